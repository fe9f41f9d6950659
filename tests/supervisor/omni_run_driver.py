"""Helpers for driving the real `omni-run` command line on the tiny recipe."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from omni_runner.run.rundir import RunDir, list_runs

REPO = Path(__file__).resolve().parents[2]
TINY = str(REPO / "recipes" / "tiny_omni.yaml")
FAST = ["--set", "training.micro_batch=1", "--set", "eval.at_end=false", "--set", "controller.telemetry.interval_s=0.5"]
# Short samples packed into short rows: steps well under a second, so "paused within 2 s" measures the
# controller's reaction at the next step boundary, not the length of one step on a busy machine.
SHORT_STEPS = ["--capabilities", "cot", "--set", "training.seq_len=96", "--set", "training.method=lora"]


def omni_run(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "omni_runner.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kwargs)


def only_run(runs_dir: Path) -> RunDir:
    runs = list_runs(runs_dir)
    assert len(runs) == 1, runs
    return runs[0]
