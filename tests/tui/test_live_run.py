"""The dashboard against a real tiny training run: keys steer it, leaving the TUI leaves it running.

One detached run serves the whole module (starting the trainer costs about a minute here); the last
test stops it, and the fixture stops it anyway if a test failed first.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omni_tui.app import OmniTUI

from omni_runner.control.client import send_command
from omni_runner.run.rundir import RunDir, list_runs
from tests.run_watch import status_of, wait_for

REPO = Path(__file__).resolve().parents[2]
OMNI_RUN = Path(sys.executable).with_name("omni-run")
OMNI_TUI = Path(sys.executable).with_name("omni-tui")
STARTUP_DEADLINE_S = 300

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def state_of(run: RunDir) -> str | None:
    return status_of(run).get("state")


@pytest.fixture(scope="module")
def live_run(tmp_path_factory) -> RunDir:
    runs_dir = tmp_path_factory.mktemp("runs")
    subprocess.run(
        [str(OMNI_RUN), str(REPO / "recipes/tiny_omni.yaml"), "--detach", "--runs-dir", str(runs_dir),
         "--set", "training.max_steps=100000", "--set", "controller.checkpoint.every_steps=100000"],
        check=True, cwd=REPO, capture_output=True,
    )
    run = list_runs(runs_dir)[-1]
    wait_for(lambda: status_of(run).get("step"), STARTUP_DEADLINE_S, "the first training step")
    yield run
    supervisor = status_of(run).get("supervisor_pid")
    if state_of(run) not in ("finished", "stopped", "failed") and supervisor:
        os.kill(supervisor, signal.SIGTERM)
        wait_for(lambda: state_of(run) in ("finished", "stopped", "failed"), 120, "the run to end")


async def wait_in_app(pilot, condition, deadline_s: float = 120.0):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if condition():
            return
        await pilot.pause(0.25)
    raise AssertionError(f"condition not met within {deadline_s} s")


def acknowledged(app, word: str) -> bool:
    return any(word in n.message for n in app._notifications)


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], check=True, capture_output=True, text=True).stdout


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_real_omni_tui_in_tmux_pauses_the_run_and_detaches_without_stopping_it(live_run: RunDir):
    session = f"omni-tui-test-{os.getpid()}"
    tmux("new-session", "-d", "-s", session, "-x", "120", "-y", "40", f"{OMNI_TUI} attach {live_run.path}")
    try:
        wait_for(lambda: "running" in tmux("capture-pane", "-p", "-t", session), 60, "the dashboard to show the run")
        tmux("send-keys", "-t", session, "p")
        wait_for(lambda: "paused: user" in tmux("capture-pane", "-p", "-t", session), 120, "paused on screen")
        assert state_of(live_run) == "paused"
        tmux("send-keys", "-t", session, "q")
        wait_for(lambda: session not in subprocess.run(["tmux", "ls"], capture_output=True, text=True).stdout, 30, "omni-tui to exit")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
    status = status_of(live_run)
    os.kill(status["supervisor_pid"], 0)  # the supervisor outlived the TUI
    os.kill(status["pid"], 0)  # and so did the trainer
    assert status["state"] == "paused"
    assert send_command(live_run.path, "resume")["state"] == "running"


async def test_keys_pause_resume_checkpoint_and_stop_a_real_run(live_run: RunDir):
    app = OmniTUI(run=live_run)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("p")
        await wait_in_app(pilot, lambda: acknowledged(app, "toggle: ok, now paused"))
        assert state_of(live_run) == "paused"
        app.clear_notifications()

        await pilot.press("p")
        await wait_in_app(pilot, lambda: acknowledged(app, "toggle: ok, now running"))
        assert state_of(live_run) == "running"

        before = {p.name for p in live_run.checkpoints.glob("step-*")}
        await pilot.press("c")
        await wait_in_app(pilot, lambda: acknowledged(app, "checkpoint: ok"))
        after = {p.name for p in live_run.checkpoints.glob("step-*")}
        assert after - before
        assert status_of(live_run)["last_checkpoint"]["path"].endswith(sorted(after - before)[-1])

        await pilot.press("s")
        await pilot.press("n")  # cancelled: the run goes on
        await pilot.pause(0.5)
        assert state_of(live_run) == "running"

        await pilot.press("s")
        await pilot.press("y")
        await wait_in_app(pilot, lambda: state_of(live_run) == "stopped")


async def test_a_key_on_an_ended_run_says_so(live_run: RunDir):
    wait_for(lambda: state_of(live_run) == "stopped", 120, "the run to stop")
    app = OmniTUI(run=live_run, follow=False)
    async with app.run_test() as pilot:
        await pilot.press("p")
        await wait_in_app(pilot, lambda: acknowledged(app, "run already stopped"))
        assert "stopped" in app.screen.view.state_text()
