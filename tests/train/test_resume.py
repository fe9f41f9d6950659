"""Exact resume: a run stopped with SIGTERM and resumed computes the same losses as one never stopped."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from conftest import SMALL, STEPS, TINY, prepare, status, step_losses, trainer, wait_for
from omni_runner.commands.ls import describe_run
from omni_runner.run.events import read_events
from omni_runner.run.rundir import RunDir
from omni_runner.run.supervisor import is_alive
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


def omni_run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "omni_runner.cli", *args], capture_output=True, text=True,
                          timeout=600, check=False)


@pytest.mark.timeout(900)  # two trainer lifetimes, and the reference run when this test comes first
def test_a_killed_supervisor_leaves_a_stopped_run_that_resume_checks_and_continues_exactly(finished_run, tmp_path):
    run = RunDir(tmp_path / "run")
    started = omni_run(str(TINY), "--run-dir", str(run.path), *(arg for item in SMALL for arg in ("--set", item)), "--detach")
    assert started.returncode == 0, started.stderr
    wait_for(lambda: (status(run).get("step") or 0) >= 1, what="step 1")
    trainer_pid = status(run)["pid"]

    os.kill(status(run)["supervisor_pid"], signal.SIGKILL)

    # The orphaned trainer is told to checkpoint and stop (it would otherwise run on with nobody to restart it).
    wait_for(lambda: not is_alive(trainer_pid), 120, "the orphaned trainer to exit")
    assert (status(run)["state"], status(run)["reason"]) == ("stopped", "supervisor gone")
    assert describe_run(run, time.time())["state"] == "stopped"
    stopped_at = step_of(find_resumable(run.path))
    assert 1 <= stopped_at < STEPS and stopped_at == status(run)["step"]

    recipe = run.recipe.read_text()
    run.recipe.write_text(recipe.replace("\n  lr: 0.002\n", "\n  lr: 0.001\n"))
    refused = omni_run("resume", str(run.path))
    assert refused.returncode == 1
    assert "training.lr: 0.002 → 0.001 (the optimizer)" in refused.stderr and "--accept-changes" in refused.stderr
    run.recipe.write_text(recipe)
    plan = run.plan.read_text()
    refused = omni_run("resume", str(run.path), "--set", "training.lr=0.001")
    assert refused.returncode == 1
    assert "--set would change" in refused.stderr and "training.lr: 0.002 → 0.001 (the optimizer)" in refused.stderr
    assert f"omni-run resume {run.path} --set training.lr=0.001 --accept-changes" in refused.stderr
    assert (run.recipe.read_text(), run.plan.read_text()) == (recipe, plan)  # nothing written when refused

    resumed = omni_run("resume", str(run.path))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    starts = [e for e in read_events(run.events) if e["type"] == "run_start"]
    assert len(starts) == 2 and starts[-1]["resumed_from"].endswith(f"step-{stopped_at}")
    reference, losses = step_losses(finished_run), step_losses(run)
    assert [losses[s] for s in range(stopped_at + 1, STEPS + 1)] == [reference[s] for s in range(stopped_at + 1, STEPS + 1)]
