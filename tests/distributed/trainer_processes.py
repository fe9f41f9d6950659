"""`omni-run train` of the tiny recipe as a real subprocess, for the tests that start several trainers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from omni_runner.run.rundir import RunDir

REPO = Path(__file__).resolve().parents[2]
TINY = str(REPO / "recipes" / "tiny_omni.yaml")
STEPS = 10
COMMON = [f"training.max_steps={STEPS}", "training.method=lora", "training.micro_batch=1", "training.packing=false",
          "training.warmup_steps=2", "eval.at_end=false", "controller.checkpoint.every_steps=1000",
          "controller.telemetry.interval_s=0.5"]


def omni_run(log: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([sys.executable, "-m", "omni_runner.cli", *args], stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            env={**os.environ, **(env or {})})


def train(run_dir: Path, *overrides: str, env: dict[str, str] | None = None, recipe: str = TINY) -> subprocess.Popen:
    """`recipe` (the tiny one unless given) with COMMON's settings, then `overrides` (later ones win); its
    output in the run's parent folder."""
    args = [arg for override in (*COMMON, *overrides) for arg in ("--set", override)]
    return omni_run(run_dir.parent / "omni-run.log", "train", recipe, "--run-dir", str(run_dir), *args, env=env)


def trained(run_dir: Path, *overrides: str, recipe: str = TINY) -> RunDir:
    """The finished run of `train(run_dir, *overrides, recipe=recipe)`; the end of its trainer log when it failed."""
    run = RunDir(run_dir)
    assert train(run_dir, *overrides, recipe=recipe).wait(timeout=600) == 0, run.trainer_log.read_text()[-3000:]
    return run
