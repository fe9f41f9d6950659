"""Faults the tests inject into a real trainer: test-only, each named as a simulation wherever it shows.

`OMNI_RUNNER_SIMULATE_OOM=N` makes every training step whose micro-batch is larger than N raise the
real `torch.OutOfMemoryError` that CUDA raises, so the out-of-memory handling (the explanation, the
plan's suggestion, `training.auto_micro_batch`) can be exercised on a machine without a GPU.

`OMNI_RUNNER_SIMULATE_NAN=STEP` (or `STEP@RANK`) turns every gradient of optimizer step STEP not finite,
on rank 0 (or RANK) alone, as an overflow on one device does, so that the NaN guard can be exercised
across processes: it multiplies that step's loss by NaN before its backward.

Nothing else reads these variables; a run without them is untouched.
"""

from __future__ import annotations

import os

import torch

SIMULATE_OOM_ENV = "OMNI_RUNNER_SIMULATE_OOM"
SIMULATE_NAN_ENV = "OMNI_RUNNER_SIMULATE_NAN"


def raise_simulated_oom(micro_batch: int) -> None:
    """Raise `torch.OutOfMemoryError` when the simulation is on and `micro_batch` exceeds its threshold."""
    threshold = os.environ.get(SIMULATE_OOM_ENV)
    if threshold is None:
        return
    if micro_batch > int(threshold):
        raise torch.OutOfMemoryError(
            f"CUDA out of memory (SIMULATED by {SIMULATE_OOM_ENV}={threshold}: micro_batch {micro_batch} > {threshold})")


def simulated_nan_factor(step: int, rank: int) -> float:
    """NaN where the simulation names optimizer step `step` (counted from 1) on `rank`; 1.0 otherwise."""
    named = os.environ.get(SIMULATE_NAN_ENV)
    if named is None:
        return 1.0
    at_step, _, at_rank = named.partition("@")
    return float("nan") if (int(at_step), int(at_rank or 0)) == (step, rank) else 1.0
