"""The learning-rate schedule: linear warmup, then cosine, linear or constant.

Pure arithmetic (no torch) so it can be tested alone and reused by the benchmark's baseline.
"""

from __future__ import annotations

import math

SCHEDULES = ("cosine", "linear", "constant")
# Decay ends at a tenth of the peak rather than zero, as nanoGPT and the Chinchilla paper do: the
# last steps of a short run still learn something.
MIN_LR_RATIO = 0.1


def lr_multiplier(step: int, *, total_steps: int, warmup_steps: int, schedule: str) -> float:
    """The factor applied to the peak lr for optimizer step `step` (0-based) of `total_steps`."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown lr schedule {schedule!r}; expected one of {', '.join(SCHEDULES)}")
    # 1) warmup: climb linearly; the first step already moves (step 0 gets 1/(warmup+1), not 0)
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    if schedule == "constant":
        return 1.0
    # 2) decay from the peak to MIN_LR_RATIO over the remaining steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    if schedule == "linear":
        shape = 1.0 - progress
    else:
        shape = 0.5 * (1.0 + math.cos(math.pi * progress))
    return MIN_LR_RATIO + (1.0 - MIN_LR_RATIO) * shape
