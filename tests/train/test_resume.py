"""Exact resume: a run stopped with SIGTERM and resumed computes the same losses as one never stopped."""

from __future__ import annotations

import random
import signal
import time

import pytest

from conftest import STEPS, prepare, status, step_losses, trainer, wait_for
from omni_runner.train.checkpoint import find_resumable, step_of

pytestmark = pytest.mark.slow


def test_losses_after_a_sigterm_and_resume_equal_the_uninterrupted_run(finished_run, tmp_path):
    run = prepare(tmp_path)
    process = trainer(run)
    wait_for(lambda: (status(run).get("step") or 0) >= 3, what="step 3")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 0
    assert status(run)["state"] == "stopped"
    stopped_at = step_of(find_resumable(run.path))
    assert 3 <= stopped_at < STEPS

    assert trainer(run, "--resume").wait(timeout=300) == 0
    reference, resumed = step_losses(finished_run), step_losses(run)
    assert [resumed[s] for s in range(stopped_at + 1, STEPS + 1)] == [reference[s] for s in range(stopped_at + 1, STEPS + 1)]
    assert status(run)["state"] == "finished"


def test_a_trainer_killed_with_sigkill_resumes_to_the_uninterrupted_losses(finished_run, tmp_path):
    run = prepare(tmp_path)
    process = trainer(run)
    wait_for(lambda: find_resumable(run.path), what="the first checkpoint")
    time.sleep(random.Random(20261202).uniform(0.0, 1.0))  # a seeded moment after it, inside a step or a write
    process.kill()
    process.wait(timeout=60)
    resumed_from = step_of(find_resumable(run.path))
    assert trainer(run, "--resume").wait(timeout=300) == 0
    reference, resumed = step_losses(finished_run), step_losses(run)
    assert [resumed[s] for s in range(resumed_from + 1, STEPS + 1)] == [reference[s] for s in range(resumed_from + 1, STEPS + 1)]


def test_resume_skips_a_checkpoint_whose_write_was_interrupted(finished_run, tmp_path):
    import shutil

    run = prepare(tmp_path)
    shutil.copytree(finished_run.checkpoints / "step-4", run.checkpoints / "step-4")
    shutil.copytree(finished_run.checkpoints / "step-6", run.checkpoints / "step-6")
    (run.checkpoints / "step-6" / "manifest.json").unlink()  # as if the write died before the end
    assert step_of(find_resumable(run.path)) == 4
