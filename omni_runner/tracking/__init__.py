"""Experiment trackers (`output.report_to`): TensorBoard, Weights & Biases and MLflow see what `events.jsonl` sees.

The trainer's event log hands every event it writes to `Trackers.record`, so a tracker logs exactly the
numbers of the run's own record: the training loss and each capability's, learning rate, gradient
norm, throughput and data wait (`step` events), GPU and host telemetry, and evaluation results, each at
the event's optimizer step (`scalars` names them). Each tracker lives in its own module behind the
`Tracker` interface, imported only when the recipe asks for it, because each is an optional extra.

A resumed run continues the same tracker run: the first start stores each tracker's run id in
`RUN/trackers.json` and a restart opens that run again (TensorBoard: the same log folder, with the
steps after the resumed checkpoint purged, since they are trained again). Defaults keep everything on
this machine: W&B logs offline unless `WANDB_MODE` says otherwise, MLflow writes a file store under
the run folder unless `MLFLOW_TRACKING_URI` names another.

A tracker that fails while logging is reported in `trainer.log` and dropped; it never costs the run.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

# Name in `output.report_to` → (the module it needs, the extra that installs it, its implementation).
TRACKERS: dict[str, tuple[str, str, str]] = {
    "tensorboard": ("tensorboard", "tensorboard", "omni_runner.tracking.tensorboard_tracker"),
    "wandb": ("wandb", "wandb", "omni_runner.tracking.wandb_tracker"),
    "mlflow": ("mlflow", "mlflow", "omni_runner.tracking.mlflow_tracker"),
}
IDS_FILE = "trackers.json"
# Event fields that are bookkeeping, not measurements.
_NOT_SCALARS = {"t", "type", "step", "total_steps", "index", "pid", "attempt"}


class TrackerError(RuntimeError):
    """A tracker the recipe asks for cannot be used (its extra is not installed)."""


class Tracker(Protocol):
    """One experiment tracker's run, opened for a run folder."""

    def ids(self) -> dict[str, Any]:
        """What reopens this tracker run after a restart (stored in `RUN/trackers.json`)."""

    def log(self, scalars: dict[str, float], step: int) -> None:
        """Record the scalars at an optimizer step."""

    def close(self, state: str) -> None:
        """End the tracker run: `finished`, `stopped` or `failed`."""


def missing_extra(name: str) -> str | None:
    """Why tracker `name` cannot run here (its package is not installed, and how to install it), or None.
    Looks the package up without importing it, so validation and plan stay light."""
    module, extra, _ = TRACKERS[name]
    if importlib.util.find_spec(module) is not None:
        return None
    return f"output.report_to names {name}, but the {module} package is not installed: pip install 'omni-runner[{extra}]'"


def scalars(event: dict[str, Any]) -> dict[str, float]:
    """The numbers of one event under tracker names (pure), e.g. `train/loss`,
    `train/capability_losses/tool-calling`, `telemetry/gpu0/temperature_c`,
    `eval/perplexity/tool-calling/loss`, `eval/xlam-heldout/tool_call_exact_match`; {} for events
    without measurements (state changes, checkpoints, warnings)."""
    kind = event.get("type")
    if kind == "step":
        return dict(_numbers("train", event))
    if kind == "telemetry":
        found = dict(_numbers("telemetry", {k: v for k, v in event.items() if k != "gpus"}))
        for position, gpu in enumerate(event.get("gpus") or []):
            found.update(_numbers(f"telemetry/gpu{gpu.get('index', position)}", gpu))
        return found
    if kind == "eval":
        subject = event.get("dataset") or "/".join(str(part) for part in (event.get("suite"), event.get("capability")) if part)
        return dict(_numbers(f"eval/{subject}", event.get("metrics") or {}))
    return {}


def _numbers(prefix: str, fields: dict[str, Any]) -> Iterator[tuple[str, float]]:
    for key, value in fields.items():
        if key in _NOT_SCALARS:
            continue
        if isinstance(value, dict):
            yield from _numbers(f"{prefix}/{key}", value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            yield f"{prefix}/{key}", float(value)


class Trackers:
    """The run's open trackers; `record` takes events from any thread (telemetry has its own)."""

    def __init__(self, opened: dict[str, Tracker]) -> None:
        self._open = opened
        self._lock = threading.Lock()

    def record(self, event: dict[str, Any]) -> None:
        values = scalars(event)
        if not values:
            return
        with self._lock:
            for name, tracker in list(self._open.items()):
                try:
                    tracker.log(values, int(event["step"]))
                except Exception as exc:  # a tracker's own failure (disk, service) must not stop training
                    print(f"tracker {name} failed and logs nothing more this run: {type(exc).__name__}: {exc}",
                          file=sys.stderr, flush=True)
                    del self._open[name]

    def close(self, state: str) -> None:
        with self._lock:
            for tracker in self._open.values():
                tracker.close(state)
            self._open.clear()


def open_trackers(names: list[str], run_path: Path, run_name: str, config: dict[str, Any], resume_step: int | None) -> Trackers:
    """Open (or, after a restart, reopen) each tracker in `names` for the run folder. `resume_step` is
    the optimizer step training continues from when the run is resumed, else None. TrackerError when
    one's extra is missing."""
    for name in names:
        problem = missing_extra(name)
        if problem:
            raise TrackerError(problem)
    ids_path = Path(run_path) / IDS_FILE
    stored = json.loads(ids_path.read_text()) if ids_path.exists() else {}
    opened: dict[str, Tracker] = {}
    for name in names:
        module = importlib.import_module(TRACKERS[name][2])
        opened[name] = module.open_run(Path(run_path), run_name, config, stored.get(name), resume_step)
        stored[name] = opened[name].ids()
    if names:
        ids_path.write_text(json.dumps(stored, indent=2) + "\n")
    return Trackers(opened)
