"""Weights & Biases: offline by default (`RUN/wandb/offline-run-*`, uploaded later with `wandb sync`).

`WANDB_MODE=online` (with `WANDB_API_KEY`), `WANDB_PROJECT` and `WANDB_ENTITY` are W&B's own settings
and are honoured. The run's id is chosen here and stored, so a restart resumes the same W&B run. The
trainer's step is logged as the metric `train/step` and every chart is drawn against it, not against
W&B's own counter: telemetry arrives from its thread a little out of step order, and a resumed run
logs again the steps after its checkpoint, both of which W&B's monotonic step would drop.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

STEP_METRIC = "train/step"
DEFAULT_PROJECT = "omni-runner"


class WandbRun:
    def __init__(self, run: Any) -> None:
        self.run = run

    def ids(self) -> dict[str, Any]:
        return {"id": self.run.id, "project": self.run.project}

    def log(self, scalars: dict[str, float], step: int) -> None:
        self.run.log({**scalars, STEP_METRIC: step})

    def close(self, state: str) -> None:
        self.run.finish(exit_code=0 if state in ("finished", "stopped") else 1)


def open_run(run_path: Path, run_name: str, config: dict[str, Any], stored: dict[str, Any] | None,
             resume_step: int | None) -> WandbRun:
    import wandb

    stored = stored or {}
    run = wandb.init(
        project=stored.get("project") or os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT,
        name=run_name, id=stored.get("id") or secrets.token_hex(4), resume="allow", dir=str(run_path),
        config=config, mode=os.environ.get("WANDB_MODE") or "offline",
        settings=wandb.Settings(console="off", silent=True),
    )
    run.define_metric(STEP_METRIC)
    run.define_metric("*", step_metric=STEP_METRIC)
    return WandbRun(run)
