"""When the controller saves: once per step, whoever asks (schedule, signal, stop)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from omni_runner.control.controller import Controller
from omni_runner.run.events import EventLog
from omni_runner.run.status import RunStatus

CHECKPOINT_EVERY_2 = {"cooldown": {"every_steps": 0}, "checkpoint": {"every_steps": 2}, "thermal": {"enabled": False}}


def _controller(run_dir: Path) -> Controller:
    run_dir.mkdir(mode=0o700)
    status = RunStatus(run_dir, name="decisions", state="starting", step=0, total_steps=10)
    return Controller(run_dir, CHECKPOINT_EVERY_2, EventLog(run_dir / "events.jsonl"), status, telemetry=False)


def test_a_stop_at_a_step_just_checkpointed_on_schedule_does_not_save_it_again(tmp_path):
    controller = _controller(tmp_path / "run")
    saved: list[str] = []
    controller.start()
    try:
        os.kill(os.getpid(), signal.SIGTERM)  # delivered to this (main) thread before the next bytecode
        assert controller.at_step_boundary(2, lambda reason: saved.append(reason) or tmp_path / "step-2") is False
    finally:
        controller.close("stopped", "user")
    assert saved == ["scheduled"]


def test_a_signal_checkpoint_between_scheduled_ones_is_saved_and_training_goes_on(tmp_path):
    controller = _controller(tmp_path / "run")
    saved: list[str] = []
    controller.start()
    try:
        os.kill(os.getpid(), signal.SIGUSR2)
        assert controller.at_step_boundary(3, lambda reason: saved.append(reason) or tmp_path / "step-3") is True
    finally:
        controller.close("finished", "done")
    assert saved == ["signal"]
