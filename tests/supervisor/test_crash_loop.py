"""A crash-looping run watched by the dashboard: the trainer is SIGKILLed (as the kernel's OOM killer
would) after each start until its restart budget is spent; `omni-run resume` refuses it until the user
grants a new budget; the dashboard, killed while steering, leaves the granted run to finish.

The tests in this file share one run and follow its life in order.
"""

from __future__ import annotations

import fcntl
import os
import pty
import signal
import struct
import subprocess
import sys
import termios
import threading
import time

import pytest
from omni_run_driver import FAST, SHORT_STEPS, TINY, omni_run, only_run
from omni_tui.app import OmniTUI
from omni_tui.widgets.header import RunHeader
from omni_tui.widgets.log_tail import LogTail
from run_watch import events_of, status_of, wait_for

from omni_runner.control.client import send_command
from omni_runner.run.events import read_events
from omni_runner.run.supervisor import is_alive

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

STEPS = 12  # the granted attempt must outlast the dashboard's pause request on a fast machine


@pytest.fixture(scope="module")
def crash_looping(tmp_path_factory):
    runs = tmp_path_factory.mktemp("crash-loop")
    process = omni_run(TINY, "--runs-dir", str(runs), *FAST, *SHORT_STEPS, "--set", f"training.max_steps={STEPS}",
                       "--set", "controller.restarts=1", "--set", "controller.checkpoint.every_steps=1", "--detach")
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    run = only_run(runs)
    yield run, runs
    for pid in (status_of(run).get("supervisor_pid"), status_of(run).get("pid")):
        if is_alive(pid):
            os.kill(pid, signal.SIGKILL)


def checkpointed_attempt(run, attempt: int) -> int | None:
    """The trainer PID of start number `attempt` once it has written a checkpoint, else None."""
    events = list(read_events(run.events))
    starts = [i for i, event in enumerate(events) if event["type"] == "run_start"]
    if len(starts) < attempt:
        return None
    since = events[starts[attempt - 1]:]
    return since[0]["pid"] if any(event["type"] == "checkpoint" for event in since) else None


async def wait_in_app(pilot, condition, what: str, deadline_s: float = 240.0):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        await pilot.pause(0.1)
    raise AssertionError(f"timed out after {deadline_s} s waiting for {what}")


def log_text(app) -> str:
    return "\n".join(strip.text for strip in app.screen.query_one(LogTail).lines)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "omni_runner.cli", *args], capture_output=True, text=True,
                          timeout=300, check=False)


async def test_the_dashboard_shows_each_killed_trainer_restarting_then_the_run_failed(crash_looping):
    run, _ = crash_looping
    app = OmniTUI(run=run)
    async with app.run_test(size=(120, 40)) as pilot:
        header = app.screen.query_one(RunHeader)
        os.kill(await wait_in_app(pilot, lambda: checkpointed_attempt(run, 1), "a checkpoint"), signal.SIGKILL)
        await wait_in_app(pilot, lambda: "restart attempt 2 from" in log_text(app), "the restart on screen")
        assert "trainer exit [killed]: The trainer was killed with SIGKILL" in log_text(app)
        assert app.screen.view.restarts == 1

        os.kill(await wait_in_app(pilot, lambda: checkpointed_attempt(run, 2), "the restarted trainer's checkpoint"),
                signal.SIGKILL)
        await wait_in_app(pilot, lambda: "ended:" in header.text, "the failure on screen")
        assert "failed: killed" in header.text and "killed with SIGKILL" in header.text
        assert header.has_class("-failed")


def test_resume_refuses_the_run_that_spent_its_restart_budget_saying_how_and_why(crash_looping):
    run, runs = crash_looping
    wait_for(lambda: not is_alive(status_of(run).get("supervisor_pid")), what="the supervisor to exit")
    assert cli("ls", "--runs-dir", str(runs)).stdout.splitlines()[1].split()[1] == "failed"

    refused = cli("resume", str(run.path))

    assert refused.returncode == 1
    assert "used all 1 of its 1 automatic restart(s)" in refused.stderr
    assert "last failure [killed]: The trainer was killed with SIGKILL" in refused.stderr
    assert f"omni-run resume {run.path} --restarts N" in refused.stderr
    assert len(events_of(run, "run_start")) == 2  # nothing was started


class Terminal:
    """A real `omni-tui attach` on a pseudo-terminal of 120x40, its screen output drained and kept."""

    def __init__(self, run) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        self.master, self.screen = master, b""
        self.process = subprocess.Popen(
            [sys.executable, "-c", "import sys; from omni_tui.app import main; sys.exit(main())", "attach", str(run.path)],
            stdin=slave, stdout=slave, stderr=slave, env={**os.environ, "TERM": "xterm-256color"}, start_new_session=True)
        os.close(slave)
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                return
            if not chunk:
                return
            self.screen = self.screen[-200_000:] + chunk

    def press(self, key: str) -> None:
        os.write(self.master, key.encode())


def test_a_dashboard_killed_while_steering_leaves_the_granted_run_to_finish(crash_looping):
    run, _ = crash_looping
    dashboard = Terminal(run)
    try:
        wait_for(lambda: b"failed" in dashboard.screen, 60, "the dashboard to show the failed run")
        granted = cli("resume", str(run.path), "--restarts", "0", "--detach")
        assert granted.returncode == 0, granted.stderr
        wait_for(lambda: len(events_of(run, "run_start")) == 3 and status_of(run).get("state") == "running", 240,
                 "the granted attempt to train")
        dashboard.press("p")
        wait_for(lambda: status_of(run).get("state") == "paused", 120, "the dashboard's pause to take effect")
        dashboard.process.kill()
        assert dashboard.process.wait(timeout=30) == -signal.SIGKILL
    finally:
        dashboard.process.kill()
        os.close(dashboard.master)

    assert send_command(run.path, "resume", timeout=120)["state"] == "running"  # the socket outlived its client
    wait_for(lambda: status_of(run).get("state") == "finished", 300, "the run to finish")
    status = status_of(run)
    assert (status["step"], status["restarts"], status["restart_budget"]) == (STEPS, 1, 1)
    assert not [e for e in events_of(run, "error") if e.get("source") != "checkpoint"]
