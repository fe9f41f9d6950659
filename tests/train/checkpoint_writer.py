"""Kill trials of checkpoint writes (test_faults.py, benchmarks/kill_soak.py): a forked process writes
real checkpoints back to back and is SIGKILLed at a random moment. Step N's weights are
`weights_for(N)`, so whatever checkpoint survives can be checked against what that step wrote."""

from __future__ import annotations

import multiprocessing
import random
from pathlib import Path

import numpy as np
import torch

from omni_runner.train.checkpoint import (
    CheckpointContents,
    capture_rng_state,
    prune_checkpoints,
    save_checkpoint,
)

KEEP_LAST = 2


def weights_for(step: int) -> dict[str, torch.Tensor]:
    """About 2 MB a checkpoint: big enough that a kill often lands inside a write. Made with numpy: a
    forked child must not start torch's OpenMP pool, which does not survive a fork."""
    return {"layer.weight": torch.from_numpy(np.full((512, 1024), step, dtype=np.float32)),
            "layer.bias": torch.from_numpy(np.arange(1024, dtype=np.float32) + step)}


def write_forever(run_dir: Path) -> None:
    checkpoints = run_dir / "checkpoints"
    step = 0
    while True:
        step += 1
        contents = CheckpointContents(weights=weights_for(step), optimizer={"state": {}, "param_groups": []},
                                      scheduler={"last_epoch": step}, scaler=None, rng=capture_rng_state(),
                                      trainer_state={"progress": {"step": step}})
        saved = save_checkpoint(checkpoints, step, contents)
        prune_checkpoints(checkpoints, KEEP_LAST, saved.path)



def kill_writer_at_random(run_dir: Path, rng: random.Random) -> None:
    """Fork a writer (it shares this process's imports, so it writes at once) and SIGKILL it after a
    random 0-1 s: most kills land inside a checkpoint write."""
    writer = multiprocessing.get_context("fork").Process(target=write_forever, args=(run_dir,), daemon=True)
    writer.start()
    writer.join(rng.uniform(0.0, 1.0))
    writer.kill()
    writer.join(30)


def check_after_kill(run_dir: Path) -> int | None:
    """The step resume would start from, checked against what that step wrote (AssertionError if the
    chosen checkpoint is not the one written); None when no checkpoint was complete yet."""
    from omni_runner.train.checkpoint import find_resumable, load_checkpoint, step_of

    found = find_resumable(run_dir)
    if found is None:
        return None
    step = step_of(found)
    weights = load_checkpoint(found).weights
    expected = weights_for(step)
    assert all(torch.equal(weights[name], expected[name]) for name in expected), f"{found} does not hold step {step}'s weights"
    return step
