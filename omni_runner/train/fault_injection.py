"""Faults the tests inject into a real trainer: test-only, each named as a simulation wherever it shows.

`OMNI_RUNNER_SIMULATE_OOM=N` makes every training step whose micro-batch is larger than N raise the
real `torch.OutOfMemoryError` that CUDA raises, so the out-of-memory handling (the explanation, the
plan's suggestion, `training.auto_micro_batch`) can be exercised on a machine without a GPU. Nothing
else reads the variable; a run without it is untouched.
"""

from __future__ import annotations

import os

import torch

SIMULATE_OOM_ENV = "OMNI_RUNNER_SIMULATE_OOM"


def raise_simulated_oom(micro_batch: int) -> None:
    """Raise `torch.OutOfMemoryError` when the simulation is on and `micro_batch` exceeds its threshold."""
    threshold = os.environ.get(SIMULATE_OOM_ENV)
    if threshold is None:
        return
    if micro_batch > int(threshold):
        raise torch.OutOfMemoryError(
            f"CUDA out of memory (SIMULATED by {SIMULATE_OOM_ENV}={threshold}: micro_batch {micro_batch} > {threshold})")
