"""`omni-run resume RUN` when no trainer is alive: what it refuses, and why."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def _run_folder(tmp_path, **status) -> str:
    run = tmp_path / "runs" / "tiny-omni-20260101-000000"
    (run / "checkpoints" / "step-4").mkdir(parents=True)
    (run / "plan.json").write_text("{}")
    (run / "status.json").write_text(json.dumps({"name": "tiny-omni", "step": 4, **status}))
    return str(run)


def _resume(run: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "omni_runner.cli", "resume", run],
                          capture_output=True, text=True, timeout=60)


def test_resuming_a_finished_run_says_there_is_nothing_to_resume(tmp_path):
    result = _resume(_run_folder(tmp_path, state="finished", pid=None))
    assert result.returncode == 1
    assert "already finished; there is nothing to resume" in result.stderr


def test_resuming_while_the_supervisor_is_about_to_restart_the_trainer_starts_no_second_one(tmp_path):
    # The trainer is gone (a crash) but its supervisor, here this test's own process, is alive.
    result = _resume(_run_folder(tmp_path, state="failed", pid=None, supervisor_pid=os.getpid()))
    assert result.returncode == 1
    assert f"being restarted by its supervisor (pid {os.getpid()})" in result.stderr


def test_resuming_a_run_that_crash_looped_through_its_restart_budget_says_so_and_how_to_grant_more(tmp_path):
    last_exit = {"cause": "oom", "explanation": "The GPU ran out of memory."}
    run = _run_folder(tmp_path, state="failed", pid=None, restarts=3, restart_budget=3, last_exit=last_exit)
    result = _resume(run)
    assert result.returncode == 1
    assert "used all 3 of its 3 automatic restart(s)" in result.stderr
    assert "last failure [oom]: The GPU ran out of memory." in result.stderr
    assert f"omni-run resume {run} --restarts N" in result.stderr
