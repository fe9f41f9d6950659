"""The NaN guard across two ZeRO-3 processes, on the tiny Qwen3-Omni (LoRA on attention and on its
mixture-of-experts layers, towers frozen and hidden from the engine): a step whose gradients are not
finite on one rank only is skipped on both, and training goes on as one process that skipped the same
step. (The same under ZeRO-2 passed when run by hand; one strategy here keeps the suite's time.)

The experts are fused weights (one tensor a layer for all of them), which every rank's tokens reach
whatever experts they are routed to: each rank's gradients, and under ZeRO-3 its gathers, follow the
same weights in the same order. Had they not, the losses would differ from one process's at once.

The non-finite gradients are a simulation (`OMNI_RUNNER_SIMULATE_NAN`, test-only,
omni_runner/train/fault_injection.py): step 2's loss is multiplied by NaN before its backward, on rank 1
of the two processes and in the one process of the reference (grad_accum 2, the same global batch).
DeepSpeed checks the reduced gradients for overflow on every rank alike; had one rank stepped its
partition of the weights and the other not, the next losses would differ from one process's in the 3rd
digit. Tolerance 1e-5 relative, as in test_deepspeed_run.py.
"""

from __future__ import annotations

import os

import pytest
from run_watch import events_of, status_of
from trainer_processes import REPO, train

from omni_runner.run.rundir import RunDir
from omni_runner.train.fault_injection import SIMULATE_NAN_ENV

pytestmark = pytest.mark.slow

QWEN3_OMNI = str(REPO / "recipes" / "tiny_qwen3_omni.yaml")
SETTINGS = ["training.max_steps=4", "training.weight_decay=0.1", "stages=[{name: text-images-video, train: [thinker]}]"]
TOLERANCE = 1e-5


def _run(run_dir, nan_at: str, *overrides: str) -> RunDir:
    run = RunDir(run_dir)
    process = train(run_dir, *SETTINGS, *overrides, env={**os.environ, SIMULATE_NAN_ENV: nan_at}, recipe=QWEN3_OMNI)
    assert process.wait(timeout=600) == 0, run.trainer_log.read_text()[-3000:]
    return run


def test_gradients_not_finite_on_one_rank_skip_the_step_on_both_as_in_one_process(tmp_path):
    one_process = _run(tmp_path / "one" / "run", "2", "training.grad_accum=2")
    two = _run(tmp_path / "two" / "run", "2@1", "training.grad_accum=1", "distributed.num_processes=2",
               "distributed.strategy=deepspeed-zero3")
    for run in (one_process, two):
        [skipped] = [e for e in events_of(run, "warning") if e.get("source") == "nan_guard"]
        assert skipped["message"].startswith("step 2 skipped"), skipped
        assert (status_of(run.path)["state"], status_of(run.path)["step"]) == ("finished", 4)
    losses = [{e["step"]: e["loss"] for e in events_of(run, "step")} for run in (two, one_process)]
    assert sorted(losses[0]) == sorted(losses[1]) == [1, 2, 3, 4]
    assert all(abs(losses[0][s] - losses[1][s]) <= TOLERANCE * abs(losses[1][s]) for s in losses[1]), losses
