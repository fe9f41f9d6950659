"""Rank 0's controller decisions, acted on by every rank at the same step boundary.

Only rank 0 has a controller: it owns the signals, the control socket and the telemetry, so a user
steers one process whatever the world size. At every step boundary rank 0 consults its controller
and tells the other ranks what happened, in order: each checkpoint it takes (every rank hands in its
own data position and random state), then `continue` or `stop`. While the run is paused or cooling
rank 0 sends a heartbeat, so the others, waiting in that broadcast, never reach the collective
timeout however long the pause lasts. With one process the broadcasts are no-ops and this is the
controller itself.

With several machines, rank 0 also needs the other machines' GPU temperatures (the thermal pause
reacts to the hottest GPU anywhere): the first rank of each other machine samples its machine, and
every rank hands in that reading (or None) at each step boundary and each heartbeat, which then
comes every telemetry interval rather than every minute so a cooling run sees the GPUs cool.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

from omni_runner.control.controller import Controller, SaveCheckpoint
from omni_runner.control.telemetry import TelemetrySampler
from omni_runner.train.ranks import Ranks

HEARTBEAT_S = 60.0
_CONTINUE, _STOP, _WAIT, _CHECKPOINT = "continue", "stop", "wait", "checkpoint"


class SharedBoundary:
    """The step boundary of one rank: rank 0 decides (`controller`), the others follow (None)."""

    def __init__(self, ranks: Ranks, controller: Controller | None, telemetry_interval_s: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ranks = ranks
        self.controller = controller
        self._clock = clock
        self._last_heartbeat = clock()
        self._heartbeat_s = min(HEARTBEAT_S, telemetry_interval_s) if ranks.num_machines > 1 else HEARTBEAT_S
        self._machine_sampler = (TelemetrySampler(telemetry_interval_s, lambda reading: None)
                                 if ranks.reports_its_machine else None)

    def start(self) -> None:
        """Rank 0 starts its controller. The other ranks ignore the control signals: a user or a job
        scheduler signalling the whole process group steers the run once, through rank 0, and the
        launcher's SIGTERM on a failed rank does not cut a checkpoint rank 0 may be writing with them."""
        if self.controller is not None:
            self.controller.start()
            return
        for signum in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)
        if self._machine_sampler is not None:
            self._machine_sampler.start()

    def at_step_boundary(self, step: int, save_checkpoint: SaveCheckpoint) -> bool:
        """Pause, checkpoint, cool down or stop every rank together. False means: stop training now."""
        self._share_machine_telemetry()
        if self.controller is None:
            return self._follow(save_checkpoint)
        go_on = self.controller.at_step_boundary(step, self._everywhere(save_checkpoint), self._heartbeat)
        self.ranks.broadcast(_CONTINUE if go_on else _STOP)
        return go_on

    def rolled_back(self, step: int, save_checkpoint: SaveCheckpoint) -> None:
        """Every rank rolled back together (the non-finite streak is the same on all): save that state."""
        if self.controller is None:
            self._follow(save_checkpoint)
            return
        self.controller.rolled_back(step, self._everywhere(save_checkpoint))
        self.ranks.broadcast(_CONTINUE)

    def _everywhere(self, save_checkpoint: SaveCheckpoint) -> SaveCheckpoint:
        def save(reason: str) -> Path:
            self.ranks.broadcast((_CHECKPOINT, reason))
            return save_checkpoint(reason)

        return save

    def _heartbeat(self) -> None:
        if self.ranks.distributed and self._clock() - self._last_heartbeat >= self._heartbeat_s:
            self.ranks.broadcast(_WAIT)
            self._share_machine_telemetry()
            self._last_heartbeat = self._clock()

    def _share_machine_telemetry(self) -> None:
        """With several machines: every rank hands in its machine's reading (or None), and rank 0 takes the
        other machines' into its controller."""
        if self.ranks.num_machines == 1:
            return
        reading = self._machine_sampler.latest_reading if self._machine_sampler is not None else None
        if reading is not None:
            reading = {**reading, "host": self.ranks.host, "machine_rank": self.ranks.machine_rank}
        readings = self.ranks.gather(reading)
        if self.controller is not None:
            for other in readings:
                if other is not None:
                    self.controller.machine_telemetry(other)

    def _follow(self, save_checkpoint: SaveCheckpoint) -> bool:
        while True:
            order = self.ranks.broadcast(None)
            if order == _CONTINUE:
                return True
            if order == _STOP:
                return False
            if order == _WAIT:
                self._share_machine_telemetry()
            if isinstance(order, tuple) and order[0] == _CHECKPOINT:
                save_checkpoint(order[1])
