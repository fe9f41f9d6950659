"""When the controller saves: once per step, whoever asks (schedule, signal, stop)."""

from __future__ import annotations

import errno
import json
import os
import signal
import threading
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


def _disk_full(reason: str) -> Path:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "checkpoints/.tmp-step-2")


def _resume_once_paused(controller: Controller) -> None:
    """The user's SIGUSR1, sent once the run is paused (from another thread, as a person would)."""
    def wait_and_resume() -> None:
        for _ in range(200):
            if controller.state == "paused":
                os.kill(os.getpid(), signal.SIGUSR1)
                return
            threading.Event().wait(0.05)

    threading.Thread(target=wait_and_resume, daemon=True).start()


def test_a_scheduled_checkpoint_that_cannot_be_written_pauses_the_run_and_says_why(tmp_path):
    controller = _controller(tmp_path / "run")
    controller.start()
    try:
        _resume_once_paused(controller)
        assert controller.at_step_boundary(2, _disk_full) is True
    finally:
        controller.close("finished", "done")
    events = [json.loads(line) for line in (tmp_path / "run" / "events.jsonl").read_text().splitlines()]
    [error] = [e for e in events if e["type"] == "error"]
    assert error["source"] == "checkpoint" and "No space left on device" in error["message"]
    assert "omni-run resume" in error["message"]
    states = [(e["to"], e["reason"]) for e in events if e["type"] == "state"]
    assert states.index(("paused", "checkpoint_failed")) < states.index(("running", "resumed"))


def test_a_stop_that_cannot_save_pauses_instead_of_losing_the_steps(tmp_path):
    controller = _controller(tmp_path / "run")
    controller.start()
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        _resume_once_paused(controller)
        assert controller.at_step_boundary(3, _disk_full) is True
    finally:
        controller.close("finished", "done")
    events = [json.loads(line) for line in (tmp_path / "run" / "events.jsonl").read_text().splitlines()]
    assert ("paused", "checkpoint_failed") in [(e["to"], e["reason"]) for e in events if e["type"] == "state"]
