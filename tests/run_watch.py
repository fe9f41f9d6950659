"""Watching a run folder that another process writes: the one way the process-level tests look and wait."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from omni_runner.run.events import read_events
from omni_runner.run.rundir import RunDir
from omni_runner.run.status import read_status


def status_of(run: Path | RunDir) -> dict:
    return read_status(getattr(run, "path", run)) or {}


def events_of(run: Path | RunDir, kind: str) -> list[dict]:
    return [e for e in read_events(Path(getattr(run, "path", run)) / "events.jsonl") if e["type"] == kind]


def wait_for(predicate: Callable[[], object], timeout: float = 60.0, what: str = "condition") -> object:
    """Poll `predicate` until it returns something truthy; fail naming `what` after `timeout` seconds.

    A KeyError, IndexError or AssertionError counts as "not yet": status.json may not have the field so far,
    nor the events file its first event of a kind.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except (AssertionError, KeyError, IndexError):
            value = None
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
