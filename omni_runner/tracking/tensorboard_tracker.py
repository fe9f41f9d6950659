"""TensorBoard: scalars in `RUN/tensorboard/`, written with torch's SummaryWriter (it needs the tensorboard package).

A restarted run writes into the same folder with `purge_step` at the first step it trains again, so
TensorBoard hides what the crashed attempt logged past the checkpoint and the curve has one value a step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

LOG_FOLDER = "tensorboard"


class TensorBoardRun:
    def __init__(self, log_dir: Path, purge_step: int | None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = log_dir
        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)

    def ids(self) -> dict[str, Any]:
        return {"log_dir": str(self.log_dir)}

    def log(self, scalars: dict[str, float], step: int) -> None:
        for name, value in scalars.items():
            self.writer.add_scalar(name, value, global_step=step)
        self.writer.flush()

    def close(self, state: str) -> None:
        self.writer.close()


def open_run(run_path: Path, run_name: str, config: dict[str, Any], stored: dict[str, Any] | None,
             resume_step: int | None) -> TensorBoardRun:
    return TensorBoardRun(run_path / LOG_FOLDER, None if resume_step is None else resume_step + 1)
