"""Fixtures that start the controller harness as a real child process and watch its run folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from run_watch import status_of, wait_for

HARNESS = Path(__file__).with_name("controlled_loop.py")

QUIET = {"cooldown": {"every_steps": 0, "seconds": 0}, "checkpoint": {"every_steps": 0, "keep_last": 3},
         "thermal": {"enabled": True, "limit_c": 83, "resume_c": 75, "max_wait_s": 1800, "on_timeout": "continue"},
         "telemetry": {"interval_s": 0.1}, "restarts": 0}


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    """Start `controlled_loop.py` in a fresh 0700 run folder; kills leftovers at the end.

    `reachable=True` puts the run folder where other users can traverse to it (pytest's own
    temporary folders are private), for the tests about other users.
    """
    started: list[subprocess.Popen] = []
    shared_roots: list[Path] = []

    def start(steps: int = 10_000, step_seconds: float = 0.05, env: dict | None = None,
              reachable: bool = False, **overrides) -> subprocess.Popen:
        root = tmp_path
        if reachable:
            root = Path(tempfile.mkdtemp(prefix="omni-control-"))
            os.chmod(root, 0o711)
            shared_roots.append(root)
        run_dir = root / "run"
        run_dir.mkdir(mode=0o700)
        config = {**QUIET, **overrides}
        process = subprocess.Popen(
            [sys.executable, str(HARNESS), str(run_dir), str(steps), str(step_seconds), json.dumps(config)],
            env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        process.run_dir = run_dir  # type: ignore[attr-defined]
        started.append(process)
        wait_for(lambda: (run_dir / "control.sock").exists() and status_of(run_dir).get("step", 0) >= 1,
                 what="the harness to start stepping")
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait()
    for root in shared_roots:
        shutil.rmtree(root, ignore_errors=True)
