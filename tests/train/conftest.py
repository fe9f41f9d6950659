"""Real tiny training runs shared by the trainer tests: prepared with the real CLI code, trained by
the real trainer child. Kept short (a few steps, one sample a micro-batch) to fit CI's 2 cores."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from omni_runner.run.events import read_events
from omni_runner.run.prepare import prepare_run
from omni_runner.run.rundir import RunDir
from omni_runner.run.status import read_status

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "recipes" / "tiny_omni.yaml"
STEPS = 6
EVAL_EVERY = 4  # one periodic evaluation (step 4) before the final one (step 6)
SMALL = [
    "training.method=lora", f"training.max_steps={STEPS}", "training.micro_batch=1", "training.warmup_steps=2",
    "controller.checkpoint.every_steps=2", "controller.checkpoint.keep_last=5",
    "controller.telemetry.interval_s=0.5", "eval.at_end=false",
]


def prepare(tmp: Path, *overrides: str) -> RunDir:
    return prepare_run(TINY, [*SMALL, *overrides], None, run_dir=tmp / "run")


def trainer(run: RunDir, *args: str) -> subprocess.Popen:
    log = open(run.trainer_log, "ab")
    return subprocess.Popen([sys.executable, "-m", "omni_runner.train", str(run.path), *args], stdout=log, stderr=subprocess.STDOUT)


def step_losses(run: RunDir) -> dict[int, float]:
    """Each step's loss; a resumed run's later value for a step replaces the earlier one."""
    return {e["step"]: e["loss"] for e in read_events(run.events) if e["type"] == "step"}


def wait_for(predicate: Callable[[], object], timeout: float = 180.0, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def status(run: RunDir) -> dict:
    return read_status(run.path) or {}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> RunDir:
    """One uninterrupted tiny run to the end: the reference for contract and resume tests."""
    run = prepare(tmp_path_factory.mktemp("uninterrupted"), "eval.at_end=true", f"eval.every_steps={EVAL_EVERY}",
                  "eval.max_samples=2", "eval.max_new_tokens=8")
    assert trainer(run).wait(timeout=600) == 0, run.trainer_log.read_text()[-3000:]
    return run
