"""Micro-batch shapes lowered while a run runs (`training.auto_micro_batch`): their one record.

The plan fixes each stage's `micro_batch` and `grad_accum`. After a CUDA out-of-memory failure the
supervisor may halve a stage's micro-batch and raise its accumulation to keep the global batch. The
change goes into `batch_shapes.json` in the run folder, beside plan.json rather than into it: the plan
stays what was planned (and what checkpoints name by digest), and every later trainer start of the run
(a restart, an `omni-run resume`) reads the file and trains with the lowered shape.

A checkpoint's data position counts samples drawn from the stream, not micro-batches, so a checkpoint
written at one micro-batch resumes at the same sample at another: nothing here needs converting.
No torch: the supervisor reads this.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omni_runner.run.status import write_json_atomic

SHAPES_FILE = "batch_shapes.json"


class BatchShapeError(ValueError):
    """`batch_shapes.json` cannot be read as the shapes it should hold."""


def smaller_shape(micro_batch: int, grad_accum: int) -> tuple[int, int] | None:
    """The next micro-batch down and the accumulation that keeps `micro_batch × grad_accum`; None at 1.

    Half the micro-batch when it is even; otherwise its largest divisor below half (3 → 1, 6 → 3, 9 → 3),
    because only a divisor keeps the global batch exactly the same.
    """
    for candidate in range(micro_batch // 2, 0, -1):
        if micro_batch % candidate == 0:
            return candidate, grad_accum * (micro_batch // candidate)
    return None


def stage_at_step(stages: list[dict[str, Any]], step: int) -> int:
    """The index of the stage that runs optimizer step `step + 1` (`step` steps completed)."""
    end = 0
    for index, stage in enumerate(stages):
        end += int(stage["max_steps"])
        if step < end:
            return index
    return len(stages) - 1


def read_batch_shapes(run_dir: Path) -> dict[int, dict[str, int]]:
    """{stage index: {"micro_batch", "grad_accum"}} for the stages whose shape was lowered; {} for none."""
    path = Path(run_dir) / SHAPES_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise BatchShapeError(f"{path} is unreadable ({exc}); delete it to train with the plan's micro-batches") from None
    try:
        return {int(index): {"micro_batch": int(shape["micro_batch"]), "grad_accum": int(shape["grad_accum"])}
                for index, shape in data["stages"].items()}
    except (AttributeError, KeyError, TypeError, ValueError):
        raise BatchShapeError(f"{path} does not hold stage shapes; delete it to train with the plan's micro-batches") from None


def write_batch_shape(run_dir: Path, stage: int, micro_batch: int, grad_accum: int) -> None:
    """Record a stage's lowered shape (atomically: a reader sees the old file or the new one)."""
    shapes = read_batch_shapes(run_dir)
    shapes[stage] = {"micro_batch": micro_batch, "grad_accum": grad_accum}
    write_json_atomic(Path(run_dir) / SHAPES_FILE, {"stages": {str(i): shapes[i] for i in sorted(shapes)}})


def with_batch_shapes(stages: list[dict[str, Any]], shapes: dict[int, dict[str, int]]) -> list[dict[str, Any]]:
    """The plan's stages with each lowered shape put in place of the planned one."""
    return [{**stage, **shapes.get(index, {})} for index, stage in enumerate(stages)]


def oom_suggestion(plan: dict[str, Any], stage_index: int = 0) -> str:
    """What to change after an out-of-memory failure in stage `stage_index`, from the plan's numbers."""
    stages = plan.get("stages") or [{}]
    stage = stages[min(stage_index, len(stages) - 1)]
    parts = []
    if not stage.get("gradient_checkpointing"):
        parts.append("turn on training.gradient_checkpointing")
    if (stage.get("micro_batch") or 1) > 1:
        parts.append(f"lower training.micro_batch below {stage['micro_batch']} (raise grad_accum to keep the batch), "
                     "or let training.auto_micro_batch: true do it")
    if stage.get("seq_len"):
        parts.append(f"lower training.seq_len below {stage['seq_len']}")
    parts.append("set hardware.vram_gb to what the card really has free so the plan fits itself")
    return "Try: " + "; ".join(parts) + "."
