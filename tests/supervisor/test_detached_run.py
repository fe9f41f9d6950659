"""A detached run steered from outside, as a user would: signals and `omni-run pause|resume|checkpoint|stop`.

The tests in this file share one long tiny run and follow its life in order.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from omni_run_driver import FAST, SHORT_STEPS, TINY, omni_run, only_run
from run_watch import events_of, status_of, wait_for
from omni_runner.train.checkpoint import verify_checkpoint

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def live_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("detached")
    process = omni_run(TINY, "--runs-dir", str(runs), *FAST, *SHORT_STEPS, "--set", "training.max_steps=2000", "--detach")
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    run = only_run(runs)
    # Past the first steps, which are slow while the CPU kernels warm up: the pause test measures
    # the step boundary, not the warm-up.
    wait_for(lambda: (status_of(run).get("step") or 0) >= 6, what="the sixth step")
    yield run, runs, output
    pid = status_of(run).get("pid")
    if pid and status_of(run).get("state") not in ("stopped", "finished", "failed"):
        os.kill(pid, signal.SIGKILL)


def control(runs, *args):
    process = omni_run(*args, "--runs-dir", str(runs))
    output, _ = process.communicate(timeout=300)
    return process.returncode, output


def test_detach_returns_at_once_and_says_how_to_follow(live_run):
    run, _, output = live_run
    assert "omni-tui attach" in output and "omni-run logs -f" in output
    assert status_of(run)["supervisor_pid"] != os.getpid()


def test_sigusr1_pauses_the_real_trainer_within_two_seconds_and_no_step_advances(live_run):
    run, _, _ = live_run
    os.kill(status_of(run)["pid"], signal.SIGUSR1)
    wait_for(lambda: status_of(run)["state"] == "paused", timeout=2, what="paused")
    step = status_of(run)["step"]
    time.sleep(5)
    assert status_of(run)["step"] == step


def test_a_second_sigusr1_resumes_and_steps_advance(live_run):
    run, _, _ = live_run
    step = status_of(run)["step"]
    os.kill(status_of(run)["pid"], signal.SIGUSR1)
    wait_for(lambda: status_of(run)["step"] > step, timeout=60, what="steps after resuming")
    assert status_of(run)["state"] == "running"


def test_sigusr2_writes_a_verified_checkpoint_and_training_continues(live_run):
    run, _, _ = live_run
    before = len(events_of(run, "checkpoint"))
    os.kill(status_of(run)["pid"], signal.SIGUSR2)
    checkpoint = wait_for(lambda: events_of(run, "checkpoint")[before:], timeout=60, what="a checkpoint")[0]
    assert checkpoint["reason"] == "signal" and verify_checkpoint(checkpoint["path"]) is None
    wait_for(lambda: status_of(run)["step"] > checkpoint["step"], timeout=60, what="training after the checkpoint")


def test_omni_run_pause_and_resume_go_through_the_socket(live_run):
    run, runs, _ = live_run
    code, output = control(runs, "pause", run.path.name)
    assert code == 0 and "paused" in output and status_of(run)["state"] == "paused"
    code, output = control(runs, "resume", run.path.name)
    assert code == 0 and "running" in output


def test_omni_run_checkpoint_replies_with_a_verified_checkpoint(live_run):
    run, runs, _ = live_run
    code, output = control(runs, "checkpoint", run.path.name)
    assert code == 0
    assert verify_checkpoint(events_of(run, "checkpoint")[-1]["path"]) is None


def test_omni_run_stop_checkpoints_and_the_run_ends_stopped(live_run):
    run, runs, _ = live_run
    code, _ = control(runs, "stop")
    assert code == 0
    wait_for(lambda: events_of(run, "exit"), timeout=60, what="the supervisor to record the exit")
    assert status_of(run)["state"] == "stopped"
    assert events_of(run, "exit")[-1]["cause"] == "stopped"


def test_omni_run_resume_restarts_a_stopped_run_from_its_checkpoint(live_run):
    run, runs, _ = live_run
    stopped_at = status_of(run)["step"]
    code, _ = control(runs, "resume", run.path.name, "--detach")
    assert code == 0
    wait_for(lambda: status_of(run)["state"] == "running" and status_of(run)["step"] > stopped_at, timeout=120,
             what="the resumed run to step")
    assert events_of(run, "run_start")[-1]["resumed_from"].endswith(f"step-{stopped_at}")
    code, _ = control(runs, "stop", run.path.name)
    assert code == 0


def test_logs_prints_the_run_history(live_run):
    run, runs, _ = live_run
    code, output = control(runs, "logs", run.path.name)
    assert code == 0
    assert "run tiny-omni started" in output and "state running → paused: user" in output
