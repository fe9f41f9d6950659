"""The controller the training loop consults at every optimizer-step boundary.

It gathers what wants to change the run — signals, control-socket commands, the cooldown schedule,
GPU temperatures — and acts on it only between steps, where a pause or a checkpoint is exact:

    controller.start()
    for each optimizer step:
        ...
        if not controller.at_step_boundary(step, save_checkpoint=save):
            break          # stopped; the stop checkpoint is already written
    controller.close("finished", "done")

Signals (as the seed documents): SIGUSR1 toggles pause, SIGUSR2 asks for a checkpoint, SIGTERM and
SIGINT checkpoint and stop; a second SIGTERM/SIGINT stops at once. Handlers only set flags.
"""

from __future__ import annotations

import queue
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omni_runner.control.server import ControlServer, Request
from omni_runner.control.state import (
    CHECKPOINTING, COOLING, PAUSED, RUNNING, STARTING, STOPPING,
    ControllerSettings, GpuTemperature, StateMachine, Target,
)
from omni_runner.control.telemetry import TelemetrySampler
from omni_runner.run.events import EventLog
from omni_runner.run.status import RunStatus

SaveCheckpoint = Callable[[str], Path]
_WAIT_TICK_S = 0.1
SAME_STOP_S = 1.0


class Controller:
    """Pause, resume, checkpoint, stop and cool down a training loop at its step boundaries."""

    def __init__(
        self,
        run_dir: Path,
        config: dict[str, Any],
        events: EventLog,
        status: RunStatus,
        start_step: int = 0,
        telemetry: bool = True,
        clock: Callable[[], float] = time.monotonic,
        machine: dict[str, Any] | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.events = events
        self.status = status
        self.machine = StateMachine(ControllerSettings.from_recipe(config), start_step)
        self.state = STARTING
        self.step = start_step
        self._last_checkpoint_step = start_step  # a resumed run does not re-save the step it resumed at
        self._last_checkpoint_path: Path | None = None
        self._clock = clock
        self._entered_at = clock()  # when the current state began
        # Signal handlers run on the main thread between bytecodes, possibly while the loop itself is
        # reading these, so they only ever increment; the loop remembers how many it has handled.
        self._signals = {"toggle": 0, "checkpoint": 0, "stop": 0}
        self._handled = {"toggle": 0, "checkpoint": 0, "stop": 0}
        self._last_sigterm_at = 0.0
        self.server = ControlServer(self.run_dir, status=self._status_reply)
        interval = float((config.get("telemetry") or {}).get("interval_s", 2))
        self.telemetry = TelemetrySampler(interval, self._emit_telemetry) if telemetry else None
        self._previous_handlers: dict[int, Any] = {}
        # With several machines: this machine's name on its telemetry events, and the other machines' newest
        # readings (rank 0 gathers them at step boundaries), by machine rank.
        self.machine_name = machine or {}
        self._machines: dict[int, dict[str, Any]] = {}

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Install signal handlers (main thread), open the control socket, start telemetry."""
        for signum, handler in (
            (signal.SIGUSR1, self._on_toggle_signal),
            (signal.SIGUSR2, self._on_checkpoint_signal),
            (signal.SIGTERM, self._on_stop_signal),
            (signal.SIGINT, self._on_stop_signal),
        ):
            self._previous_handlers[signum] = signal.signal(signum, handler)
        self.server.start()
        if self.telemetry:
            self.telemetry.start()

    def close(self, final_state: str, reason: str, detail: str | None = None) -> None:
        """Record the final state, stop serving and sampling, restore signal handlers."""
        self._transition(Target(final_state, reason, detail))
        self.server.close({"ok": False, "error": f"run already {final_state}"})
        if self.telemetry:
            self.telemetry.stop()
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers.clear()

    # ------------------------------------------------------------ the boundary

    def at_step_boundary(self, step: int, save_checkpoint: SaveCheckpoint,
                         while_waiting: Callable[[], None] | None = None) -> bool:
        """Act on everything pending; block while paused or cooling, calling `while_waiting` about ten
        times a second (the other ranks' heartbeat). False means: stop training now."""
        self.step = step
        if self.machine.checkpoint_due(step) and step != self._last_checkpoint_step:
            self._checkpoint(save_checkpoint, "scheduled")
        while True:
            replies = self._take_requests(save_checkpoint)
            target = self.machine.target(step, self._clock(), self._temperatures())
            self._transition(target)
            stop_to_save = target.state == STOPPING and step != self._last_checkpoint_step and target.reason != "checkpoint_failed"
            if stop_to_save and self._checkpoint(save_checkpoint, "stop", keep_state=True) is None:
                target = self.machine.target(step, self._clock(), self._temperatures())  # the stop became a pause
                self._transition(target)
            for request, make_reply in replies:  # replies go out once the action has taken effect
                request.answer(make_reply())
            if target.state == STOPPING:
                return False
            if target.state not in (PAUSED, COOLING):
                return True
            if while_waiting:
                while_waiting()
            time.sleep(_WAIT_TICK_S)

    def rolled_back(self, step: int, save_checkpoint: SaveCheckpoint) -> Path | None:
        """The trainer went back to its checkpoint of `step` (training.nan_policy): save its new state
        there at once, so that a resume continues after the rollback (its lower learning rate, its count)
        rather than before it. None when the write failed (handled as any failed checkpoint)."""
        self.step = step
        self._last_checkpoint_path = None
        return self._checkpoint(save_checkpoint, "rollback")

    def _take_requests(self, save_checkpoint: SaveCheckpoint) -> list[tuple[Request, Callable[[], dict]]]:
        """Apply signal flags and queued socket commands; replies are sent after the transition."""
        toggles = self._take_signals("toggle")
        for _ in range(toggles):
            self.machine.toggle()
        if self._take_signals("checkpoint"):
            self._checkpoint(save_checkpoint, "signal")
        if self._take_signals("stop"):
            self.machine.stop()
        replies = []
        while True:
            try:
                request = self.server.requests.get_nowait()
            except queue.Empty:
                return replies
            if request.cmd == "checkpoint":
                path = self._checkpoint(save_checkpoint, "request")
                replies.append((request, lambda path=path: self._ok(path=str(path)) if path is not None
                                else {"ok": False, "error": self.machine.write_failure}))
                continue
            {"pause": self.machine.pause, "resume": self.machine.resume,
             "toggle": self.machine.toggle, "stop": self.machine.stop}[request.cmd]()
            replies.append((request, self._ok))

    def _checkpoint(self, save_checkpoint: SaveCheckpoint, reason: str, keep_state: bool = False) -> Path | None:
        """Save through the trainer, once per step: a second request at the same step gets the same folder.
        None when the write failed (the state machine then pauses or stops the run; see `_write_failed`)."""
        if self.step == self._last_checkpoint_step and self._last_checkpoint_path is not None:
            return self._last_checkpoint_path
        before = self.state
        if not keep_state:
            self._transition(Target(CHECKPOINTING, reason))
        started = time.monotonic()
        try:
            path = Path(save_checkpoint(reason))
        except OSError as exc:
            self._write_failed(exc)
            if not keep_state:
                self._transition(Target(before, reason))
            return None
        self._last_checkpoint_step, self._last_checkpoint_path = self.step, path
        self.status.update(last_checkpoint={"path": str(path), "step": self.step, "t": time.time()})
        self.events.emit("checkpoint", self.step, path=str(path), reason=reason,
                         seconds=round(time.monotonic() - started, 3), bytes=_folder_bytes(path))
        if not keep_state:
            self._transition(Target(before, reason))
        return path

    def _write_failed(self, exc: OSError) -> None:
        """Tell the user what failed and what is safe, and let the state machine pause or stop."""
        from omni_runner.train.checkpoint import list_checkpoints

        saved = list_checkpoints(self.run_dir / "checkpoints")
        kept = f"earlier checkpoints are intact (newest: {saved[0].name})" if saved else "there is no earlier checkpoint"
        action = ("the run pauses: free space, then `omni-run resume`" if self.machine.settings.on_checkpoint_error == "pause"
                  else "the run stops (controller.checkpoint.on_error: stop)")
        detail = f"checkpoint at step {self.step} could not be written: {exc.strerror or exc}"
        message = f"{detail} ({exc.filename or 'checkpoints/'}); the partial write was removed and {kept}; {action}"
        self.events.emit("error", self.step, message=message, source="checkpoint")
        print(f"error: {message}", flush=True)
        self.machine.checkpoint_failed(detail)

    def _transition(self, target: Target) -> None:
        if target.state == self.state:
            return
        previous, self.state = self.state, target.state
        detail, waited = target.detail, {}
        if CHECKPOINTING not in (previous, target.state):  # a checkpoint taken while paused is part of the pause
            now = self._clock()
            if previous in (PAUSED, COOLING):  # say how long the wait was
                waited = {"seconds": round(now - self._entered_at, 1)}
                detail = detail or f"after {now - self._entered_at:.0f} s {previous}"
            self._entered_at = now
        self.events.emit("state", self.step, **{"from": previous, "to": target.state},
                         reason=target.reason, detail=detail, **waited)
        self.status.update(state=target.state, reason=target.reason, step=self.step)

    # ------------------------------------------------------------ inputs from other threads

    def _take_signals(self, kind: str) -> int:
        """How many `kind` signals arrived since the last look (main thread only)."""
        seen = self._signals[kind]
        pending, self._handled[kind] = seen - self._handled[kind], seen
        return pending

    def _on_toggle_signal(self, signum: int, frame: object) -> None:
        self._signals["toggle"] += 1

    def _on_checkpoint_signal(self, signum: int, frame: object) -> None:
        self._signals["checkpoint"] += 1

    def _on_stop_signal(self, signum: int, frame: object) -> None:
        # A job scheduler sends SIGTERM to every process of a job, and the supervisor passes its own copy on:
        # two SIGTERMs within a second are one request. A second stop (the supervisor turns a user's second
        # Ctrl-C into SIGINT) stops at once.
        now = time.monotonic()
        if signum == signal.SIGTERM and self._last_sigterm_at and now - self._last_sigterm_at < SAME_STOP_S:
            return
        if signum == signal.SIGTERM:
            self._last_sigterm_at = now
        self._signals["stop"] += 1
        if self._signals["stop"] > 1:
            raise KeyboardInterrupt("second stop signal: stopping at once, without a checkpoint")

    def machine_telemetry(self, reading: dict[str, Any]) -> None:
        """Another machine's newest reading: its GPUs count for the thermal pause like this machine's, and
        it is written as a `telemetry` event (with its `host` and `machine_rank`) once."""
        previous = self._machines.get(reading["machine_rank"])
        self._machines[reading["machine_rank"]] = reading
        if previous is None or previous["sampled_at"] != reading["sampled_at"]:
            self.events.emit("telemetry", self.step, **{k: v for k, v in reading.items() if k != "sampled_at"})

    def _temperatures(self) -> list[GpuTemperature]:
        if not self.telemetry:
            return []
        temperatures = _gpu_temperatures(self.telemetry.latest)
        for rank, reading in sorted(self._machines.items()):
            temperatures += _gpu_temperatures(reading.get("gpus") or [], f"machine {rank} ({reading.get('host')})")
        return temperatures

    def _emit_telemetry(self, reading: dict[str, Any]) -> None:
        self.events.emit("telemetry", self.step, **reading, **self.machine_name)

    def _status_reply(self) -> dict[str, Any]:
        return {**self.status.snapshot(), "state": self.state}

    def _ok(self, **extra: Any) -> dict[str, Any]:
        return {"ok": True, "state": self.state, "step": self.step, **extra}


def _gpu_temperatures(gpus: list[dict[str, Any]], machine: str | None = None) -> list[GpuTemperature]:
    return [GpuTemperature(int(gpu.get("index", i)), float(gpu["temperature_c"]), machine)
            for i, gpu in enumerate(gpus) if isinstance(gpu, dict) and isinstance(gpu.get("temperature_c"), (int, float))]


def _folder_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0
