"""Out of GPU memory, simulated on CPU, through the real `omni-run`: the user gets the explanation and the
plan's suggestion, and with `training.auto_micro_batch` the run restarts with half the micro-batch and
twice the accumulation (the same global batch) and finishes.

The simulation (`OMNI_RUNNER_SIMULATE_OOM=N`, test-only, omni_runner/train/fault_injection.py) makes the
trainer's step raise the real `torch.OutOfMemoryError` whenever its micro-batch is larger than N.
"""

from __future__ import annotations

import json
import os

import pytest

from omni_run_driver import FAST, SHORT_STEPS, TINY, omni_run, only_run
from omni_runner.run.batch_shape import read_batch_shapes
from omni_runner.train.fault_injection import SIMULATE_OOM_ENV
from run_watch import events_of, status_of

pytestmark = pytest.mark.slow

SHAPE = ["--set", "training.grad_accum=1", "--set", "training.max_steps=1"]


def run_to_end(runs, *args: str, oom_above: int = 1) -> tuple[int, str]:
    """`omni-run` on the tiny recipe, 1 step, out of memory at micro-batches above `oom_above`."""
    process = omni_run(TINY, "--runs-dir", str(runs), *FAST, *SHORT_STEPS, *SHAPE, *args,
                       env={**os.environ, SIMULATE_OOM_ENV: str(oom_above)})
    output, _ = process.communicate(timeout=600)
    return process.returncode, output


@pytest.fixture(scope="module")
def halved(tmp_path_factory):
    """micro_batch 2 runs out of memory at once; auto_micro_batch restarts it at 1."""
    runs = tmp_path_factory.mktemp("oom")
    code, output = run_to_end(runs, "--set", "training.micro_batch=2", "--set", "training.auto_micro_batch=true")
    return code, output, only_run(runs)


def test_auto_micro_batch_restarts_with_half_the_micro_batch_twice_the_accumulation_and_finishes(halved):
    code, output, run = halved
    assert code == 0, output
    assert (status_of(run)["state"], status_of(run)["step"]) == ("finished", 1)
    crash = events_of(run, "exit")[0]
    assert (crash["cause"], crash["will_restart"]) == ("oom", True)
    restart = events_of(run, "restart")[0]
    assert (restart["stage"], restart["micro_batch"], restart["grad_accum"]) == (0, 1, 2)
    assert [(e["micro_batch"], e["grad_accum"]) for e in events_of(run, "run_start")] == [(2, 1), (1, 2)]
    assert "with micro_batch 1, grad_accum 2" in output and "Traceback" not in output


def test_the_lowered_micro_batch_is_kept_for_every_later_start_and_the_plan_is_untouched(halved):
    _, _, run = halved
    assert read_batch_shapes(run.path) == {0: {"micro_batch": 1, "grad_accum": 2}}
    assert json.loads(run.plan.read_text())["stages"][0]["micro_batch"] == 2


def test_without_auto_micro_batch_the_user_gets_the_explanation_and_the_plans_suggestion(tmp_path):
    code, output = run_to_end(tmp_path, "--set", "training.micro_batch=2")
    assert code == 4, output
    assert "trainer exit [oom]: The GPU ran out of memory." in output
    assert "lower training.micro_batch below 2" in output and "training.auto_micro_batch: true" in output
    assert f"SIMULATED by {SIMULATE_OOM_ENV}=1: micro_batch 2 > 1" in output
    assert "Traceback" not in output

