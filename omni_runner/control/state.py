"""The trainer's state machine, as pure logic: what state the run should be in at a step boundary.

States: `starting → running ⇄ paused`, `running → cooling → running`, `checkpointing`, `stopping`,
then `finished | stopped | failed`. No I/O, no clocks, no threads: the controller feeds in the step,
the time and the latest GPU temperatures, and applies the answer. Precedence when several apply:
stopping > paused (the user's word, or a checkpoint that could not be written) > cooling > running.
So a user pause taken during a cooldown outlives it, and a user resume during an unfinished cooldown
lands in `cooling`, not `running`. A failed checkpoint write pauses the run (or stops it, with
`controller.checkpoint.on_error: stop`) until the user resumes it; a stop whose own checkpoint fails
becomes that pause too, so the steps since the last checkpoint are never thrown away unasked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

STARTING, RUNNING, PAUSED, COOLING = "starting", "running", "paused", "cooling"
CHECKPOINTING, STOPPING = "checkpointing", "stopping"
FINISHED, STOPPED, FAILED = "finished", "stopped", "failed"
FINAL_STATES = (FINISHED, STOPPED, FAILED)


@dataclass(frozen=True)
class GpuTemperature:
    index: int
    celsius: float
    machine: str | None = None  # with several machines, which one ("machine 1 (node-b)")


@dataclass(frozen=True)
class Target:
    """The state the run should be in now, and why (`detail` is for people)."""

    state: str
    reason: str
    detail: str | None = None


@dataclass(frozen=True)
class ControllerSettings:
    """The recipe's `controller` section, as the state machine needs it."""

    cooldown_every_steps: int = 500
    cooldown_seconds: float = 60.0
    thermal_enabled: bool = True
    limit_c: float = 83.0
    resume_c: float = 75.0
    max_wait_s: float = 1800.0
    on_timeout: str = "continue"  # continue | stop
    checkpoint_every_steps: int = 500
    on_checkpoint_error: str = "pause"  # pause | stop

    @classmethod
    def from_recipe(cls, controller: Mapping[str, Any]) -> ControllerSettings:
        cooldown = controller.get("cooldown") or {}
        thermal = controller.get("thermal") or {}
        checkpoint = controller.get("checkpoint") or {}
        defaults = cls()
        return cls(
            cooldown_every_steps=int(cooldown.get("every_steps", defaults.cooldown_every_steps)),
            cooldown_seconds=float(cooldown.get("seconds", defaults.cooldown_seconds)),
            thermal_enabled=bool(thermal.get("enabled", defaults.thermal_enabled)),
            limit_c=float(thermal.get("limit_c", defaults.limit_c)),
            resume_c=float(thermal.get("resume_c", defaults.resume_c)),
            max_wait_s=float(thermal.get("max_wait_s", defaults.max_wait_s)),
            on_timeout=str(thermal.get("on_timeout", defaults.on_timeout)),
            checkpoint_every_steps=int(checkpoint.get("every_steps", defaults.checkpoint_every_steps)),
            on_checkpoint_error=str(checkpoint.get("on_error", defaults.on_checkpoint_error)),
        )


class StateMachine:
    """Decides the run's state at each step boundary from requests, the schedule and temperatures."""

    def __init__(self, settings: ControllerSettings, start_step: int = 0) -> None:
        self.settings = settings
        self.user_paused = False
        self.stop_requested = False
        self._stop_reason = "user"
        self.write_failure: str | None = None  # why the last checkpoint could not be written, until resumed
        self._scheduled_until: float | None = None
        self._last_scheduled_step = start_step  # a resumed run does not cool down at once
        self._thermal_since: float | None = None
        self._thermal_detail: str | None = None
        self._thermal_waived = False  # max_wait passed with on_timeout=continue: train on until it cools

    # ------------------------------------------------------------ requests

    def pause(self) -> None:
        self.user_paused = True

    def resume(self) -> None:
        self.user_paused = False
        self.write_failure = None

    def toggle(self) -> None:
        if self.write_failure is not None:
            self.resume()
        else:
            self.user_paused = not self.user_paused

    def checkpoint_failed(self, detail: str) -> None:
        """A checkpoint could not be written: pause (a stop in progress is withdrawn, since stopping
        now would lose the steps since the last checkpoint), or stop with `on_error: stop`."""
        self.write_failure = detail
        self.stop_requested = self.settings.on_checkpoint_error == "stop"
        self._stop_reason = "checkpoint_failed"

    def stop(self) -> None:
        self.stop_requested = True
        self._stop_reason = "user"

    # ------------------------------------------------------------ decisions

    def checkpoint_due(self, step: int) -> bool:
        every = self.settings.checkpoint_every_steps
        return every > 0 and step > 0 and step % every == 0

    def target(self, step: int, now: float, temperatures: Sequence[GpuTemperature] = ()) -> Target:
        """The state for this boundary. Call it again while waiting: cooldowns end with time and heat."""
        self._update_schedule(step, now)
        thermal_timed_out = self._update_thermal(now, temperatures)
        if self.stop_requested:
            failed = self._stop_reason == "checkpoint_failed"
            return Target(STOPPING, self._stop_reason, self.write_failure if failed else None)
        if thermal_timed_out and self.settings.on_timeout == "stop":
            self.stop_requested = True
            return Target(STOPPING, "thermal", f"still above {self.settings.resume_c:g} °C after {self.settings.max_wait_s:g} s")
        if self.write_failure is not None:
            return Target(PAUSED, "checkpoint_failed", self.write_failure)
        if self.user_paused:
            return Target(PAUSED, "user")
        if self._thermal_since is not None:
            return Target(COOLING, "thermal", self._thermal_detail)
        if self._scheduled_until is not None:
            return Target(COOLING, "scheduled", f"every {self.settings.cooldown_every_steps} steps for {self.settings.cooldown_seconds:g} s")
        if thermal_timed_out:
            return Target(RUNNING, "thermal_timeout",
                          f"still above {self.settings.resume_c:g} °C after {self.settings.max_wait_s:g} s; training on (on_timeout: continue)")
        return Target(RUNNING, "resumed" if step else "started")

    def seconds_left_in_cooldown(self, now: float) -> float | None:
        return None if self._scheduled_until is None else max(0.0, self._scheduled_until - now)

    def _update_schedule(self, step: int, now: float) -> None:
        every = self.settings.cooldown_every_steps
        if every > 0 and step > 0 and step % every == 0 and step != self._last_scheduled_step:
            self._last_scheduled_step = step
            if self.settings.cooldown_seconds > 0:
                self._scheduled_until = now + self.settings.cooldown_seconds
        if self._scheduled_until is not None and now >= self._scheduled_until:
            self._scheduled_until = None

    def _update_thermal(self, now: float, temperatures: Sequence[GpuTemperature]) -> bool:
        """Track the thermal pause (hysteresis); True when it has just run past max_wait_s."""
        if not self.settings.thermal_enabled or not temperatures:
            self._thermal_since = None
            return False
        hottest = max(temperatures, key=lambda t: t.celsius)
        all_cool = all(t.celsius < self.settings.resume_c for t in temperatures)
        if all_cool:
            self._thermal_since, self._thermal_waived = None, False
            return False
        if self._thermal_since is None:
            if hottest.celsius > self.settings.limit_c and not self._thermal_waived:
                self._thermal_since = now
            else:
                return False
        where = f" on {hottest.machine}" if hottest.machine else ""
        self._thermal_detail = f"GPU {hottest.index}{where} at {hottest.celsius:g} °C, limit {self.settings.limit_c:g} °C"
        if now - self._thermal_since >= self.settings.max_wait_s:
            self._thermal_since, self._thermal_waived = None, True
            return True
        return False
