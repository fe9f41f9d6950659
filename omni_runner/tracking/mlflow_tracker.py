"""MLflow: a file store under the run folder (`RUN/mlruns`) by default, or the server or store
`MLFLOW_TRACKING_URI` names; experiment `MLFLOW_EXPERIMENT_NAME` or "omni-runner". The run id and store
are kept so a restart logs into the same MLflow run.

MLflow 3 keeps its file store in maintenance mode and refuses it unless `MLFLOW_ALLOW_FILE_STORE` is
set; a store inside the run folder needs no server or database, so the default sets it (read the store
with `MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri RUN/mlruns`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

STORE_FOLDER = "mlruns"
DEFAULT_EXPERIMENT = "omni-runner"
_END_STATUS = {"finished": "FINISHED", "stopped": "KILLED", "failed": "FAILED"}


class MlflowRun:
    def __init__(self, client: Any, tracking_uri: str, run_id: str) -> None:
        self.client = client
        self.tracking_uri = tracking_uri
        self.run_id = run_id

    def ids(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "tracking_uri": self.tracking_uri}

    def log(self, scalars: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(name, value, now, step) for name, value in scalars.items()])

    def close(self, state: str) -> None:
        self.client.set_terminated(self.run_id, _END_STATUS.get(state, "FINISHED"))


def open_run(run_path: Path, run_name: str, config: dict[str, Any], stored: dict[str, Any] | None,
             resume_step: int | None) -> MlflowRun:
    from mlflow.tracking import MlflowClient

    stored = stored or {}
    tracking_uri = stored.get("tracking_uri") or os.environ.get("MLFLOW_TRACKING_URI") or (run_path / STORE_FOLDER).resolve().as_uri()
    if tracking_uri.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=tracking_uri)
    if stored.get("run_id"):
        client.update_run(stored["run_id"], status="RUNNING")
        return MlflowRun(client, tracking_uri, stored["run_id"])
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT
    experiment = client.get_experiment_by_name(name)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(name)
    run = client.create_run(experiment_id, run_name=run_name)
    client.log_dict(run.info.run_id, config, "recipe.json")
    return MlflowRun(client, tracking_uri, run.info.run_id)
