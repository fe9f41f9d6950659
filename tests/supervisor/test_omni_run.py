"""`omni-run RECIPE` end to end: the supervisor, its progress lines, restarts and graceful Ctrl-C."""

from __future__ import annotations

import os
import signal

import pytest

from omni_run_driver import FAST, SHORT_STEPS, TINY, omni_run, only_run
from run_watch import events_of, status_of, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def crashed_and_restarted(tmp_path_factory):
    """A run whose trainer is killed with SIGKILL at step 2, with `controller.restarts: 1`."""
    runs = tmp_path_factory.mktemp("restart")
    process = omni_run(TINY, "--runs-dir", str(runs), *FAST, *SHORT_STEPS, "--set", "training.max_steps=5",
                       "--set", "controller.restarts=1", "--set", "controller.checkpoint.every_steps=2")
    run = wait_for(lambda: only_run(runs), what="the run folder")
    wait_for(lambda: (status_of(run).get("step") or 0) >= 2 and status_of(run).get("last_checkpoint"), what="a checkpoint")
    os.kill(status_of(run)["pid"], signal.SIGKILL)
    output, _ = process.communicate(timeout=600)
    return process.returncode, output, run


def test_a_killed_trainer_is_restarted_from_its_last_checkpoint_and_finishes(crashed_and_restarted):
    code, output, run = crashed_and_restarted
    assert code == 0, output
    assert (status_of(run)["state"], status_of(run)["step"], status_of(run)["restarts"]) == ("finished", 5, 1)
    restart = events_of(run, "restart")[0]
    assert restart["attempt"] == 2 and restart["checkpoint"].endswith(("step-2", "step-4"))


def test_the_crash_is_recorded_with_its_cause_and_explanation(crashed_and_restarted):
    _, _, run = crashed_and_restarted
    crash = events_of(run, "exit")[0]
    assert (crash["cause"], crash["signal"], crash["will_restart"]) == ("killed", "SIGKILL", True)
    assert "kill -9" in crash["explanation"]


def test_progress_is_plain_lines_when_not_on_a_terminal(crashed_and_restarted):
    _, output, _ = crashed_and_restarted
    assert "\x1b" not in output
    assert "step 5/5" in output and "restarting (attempt 2)" in output
    assert "finished at step 5/5" in output


def test_a_bad_recipe_fails_at_once_with_its_line(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("name: bad\nbase_model: {path: builtin:tiny-qwen2.5-omni}\ncapabilities: {}\ntraining: {lr: -1}\n")
    process = omni_run(str(recipe), "--runs-dir", str(tmp_path / "runs"))
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 1
    assert f"{recipe}:4:" in output
    assert not (tmp_path / "runs").exists()


def test_signals_to_omni_run_pause_checkpoint_and_resume_the_trainer_and_ctrl_c_stops_it_with_a_checkpoint(tmp_path):
    """SIGUSR1/SIGUSR2 sent to the supervisor reach the trainer; Ctrl-C ends the run gracefully."""
    process = omni_run(TINY, "--runs-dir", str(tmp_path), *FAST, *SHORT_STEPS, "--set", "training.max_steps=500")
    run = wait_for(lambda: only_run(tmp_path), what="the run folder")
    wait_for(lambda: (status_of(run).get("step") or 0) >= 1, what="the first step", timeout=180)
    process.send_signal(signal.SIGUSR1)
    wait_for(lambda: status_of(run).get("state") == "paused", what="the pause")
    process.send_signal(signal.SIGUSR2)
    wait_for(lambda: events_of(run, "checkpoint"), what="the requested checkpoint")
    process.send_signal(signal.SIGUSR1)
    wait_for(lambda: status_of(run).get("state") == "running", what="the resume")
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output
    assert status_of(run)["state"] == "stopped"
    reasons = [event["reason"] for event in events_of(run, "checkpoint")]
    assert reasons[0] != "stop" and reasons[-1] == "stop"
    assert "continue with: omni-run resume" in output
