"""Helpers for driving the real `omni-run` command line on the tiny recipe."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from omni_runner.run.events import read_events
from omni_runner.run.rundir import RunDir, list_runs
from omni_runner.run.status import read_status

REPO = Path(__file__).resolve().parents[2]
TINY = str(REPO / "recipes" / "tiny_omni.yaml")
FAST = ["--set", "training.micro_batch=1", "--set", "eval.at_end=false", "--set", "controller.telemetry.interval_s=0.5"]
# Short samples packed into short rows: steps well under a second, so "paused within 2 s" measures the
# controller's reaction at the next step boundary, not the length of one step on a busy machine.
SHORT_STEPS = ["--capabilities", "cot", "--set", "training.seq_len=128"]


def omni_run(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "omni_runner.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kwargs)


def only_run(runs_dir: Path) -> RunDir:
    runs = list_runs(runs_dir)
    assert len(runs) == 1, runs
    return runs[0]


def status(run: RunDir) -> dict:
    return read_status(run.path) or {}


def events(run: RunDir, kind: str) -> list[dict]:
    return [e for e in read_events(run.events) if e["type"] == kind]


def wait_for(predicate: Callable[[], object], timeout: float = 180.0, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except (AssertionError, KeyError):
            value = None
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
