"""Experiment trackers (`output.report_to`): the same numbers as events.jsonl, in real TensorBoard event
files, a W&B offline run and an MLflow file store, continued by a restarted run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from omni_runner import tracking
from omni_runner.plan import compile_plan
from omni_runner.recipe import RecipeError, load_recipe
from omni_runner.tracking import missing_extra, open_trackers, scalars

REPO = Path(__file__).resolve().parents[2]
STEP = {"t": 1.0, "type": "step", "step": 3, "loss": 2.5, "lr": 1e-3, "grad_norm": 0.7, "tokens_per_s": 900.0,
        "capability_losses": {"tool-calling": 2.0, "cot": 3.0}, "eta_s": None, "total_steps": 80, "epoch": 0.1}


def test_a_step_event_gives_its_loss_per_capability_lr_grad_norm_and_throughput():
    assert scalars(STEP) == {
        "train/loss": 2.5, "train/lr": 1e-3, "train/grad_norm": 0.7, "train/tokens_per_s": 900.0, "train/epoch": 0.1,
        "train/capability_losses/tool-calling": 2.0, "train/capability_losses/cot": 3.0,
    }


def test_telemetry_gives_each_gpus_readings_and_the_hosts():
    event = {"type": "telemetry", "step": 3, "source": "nvml", "note": None, "cpu_pct": 40.0,
             "gpus": [{"index": 1, "name": "H100", "temperature_c": 71, "throttle_reasons": ["thermal"]}]}
    assert scalars(event) == {"telemetry/cpu_pct": 40.0, "telemetry/gpu1/temperature_c": 71.0}


def test_eval_events_are_named_by_data_set_or_by_suite_and_capability():
    by_dataset = {"type": "eval", "step": 6, "dataset": "xlam-heldout", "capability": "tool-calling",
                  "metrics": {"tool_call_exact_match": 0.5, "n": 2}}
    by_suite = {"type": "eval", "step": 6, "suite": "perplexity", "capability": "cot",
                "metrics": {"loss": 1.0, "perplexity": 2.718, "n": 4, "tokens": 99}}
    assert scalars(by_dataset) == {"eval/xlam-heldout/tool_call_exact_match": 0.5, "eval/xlam-heldout/n": 2.0}
    assert scalars(by_suite)["eval/perplexity/cot/loss"] == 1.0


def test_events_without_measurements_and_non_finite_values_give_nothing():
    assert scalars({"type": "state", "step": 3, "from": "running", "to": "paused"}) == {}
    assert scalars({"type": "step", "step": 3, "loss": "nan"}) == {}


def test_plan_refuses_a_tracker_whose_extra_is_missing_and_names_the_extra(monkeypatch):
    monkeypatch.setitem(tracking.TRACKERS, "wandb", ("omni_runner_no_such_tracker", "wandb", "unused"))
    with pytest.raises(RecipeError) as caught:
        compile_plan(load_recipe(REPO / "recipes" / "tiny_omni.yaml", overrides=["output.report_to=[tensorboard, wandb]"]))
    [problem] = [d for d in caught.value.diagnostics if d.field.startswith("output.report_to")]
    assert problem.field == "output.report_to[1]" and "pip install 'omni-runner[wandb]'" in problem.message
    assert missing_extra("tensorboard") is None


def _log_two_attempts(run: Path) -> dict:
    """An attempt that logs steps 1-3 and crashes after its step-2 checkpoint, then the resumed attempt
    (steps 3-4, step 3 with a new value); returns the stored tracker ids after each."""
    ids = []
    for resume_step, losses in ((None, {1: 3.0, 2: 2.0, 3: 1.5}), (2, {3: 1.0, 4: 0.5})):
        trackers = open_trackers(["tensorboard", "wandb", "mlflow"], run, "tiny", {"name": "tiny"}, resume_step)
        for step, loss in losses.items():
            trackers.record({"type": "step", "step": step, "loss": loss, "capability_losses": {"cot": loss}})
        trackers.record({"type": "eval", "step": 4, "suite": "perplexity", "capability": "cot", "metrics": {"loss": 0.9}})
        trackers.close("failed" if resume_step is None else "finished")
        ids.append(json.loads((run / tracking.IDS_FILE).read_text()))
    return {"first": ids[0], "resumed": ids[1]}


@pytest.fixture(scope="module")
def two_attempts(tmp_path_factory) -> tuple[Path, dict]:
    """The defaults under test: no tracker settings in the environment."""
    run = tmp_path_factory.mktemp("run")
    with pytest.MonkeyPatch.context() as environment:
        for name in ("WANDB_MODE", "WANDB_PROJECT", "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME"):
            environment.delenv(name, raising=False)
        return run, _log_two_attempts(run)


def test_tensorboard_event_files_read_back_with_the_resumed_steps_replacing_the_crashed_ones(two_attempts):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, _ = two_attempts
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("train/loss")] == [(1, 3.0), (2, 2.0), (3, 1.0), (4, 0.5)]
    assert [e.value for e in events.Scalars("eval/perplexity/cot/loss")][-1] == pytest.approx(0.9)


def test_mlflow_file_store_holds_one_run_that_the_resumed_attempt_continued(two_attempts):
    from mlflow.tracking import MlflowClient

    run, ids = two_attempts
    assert ids["resumed"]["mlflow"] == ids["first"]["mlflow"]
    assert ids["first"]["mlflow"]["tracking_uri"] == (run / "mlruns").resolve().as_uri()
    client = MlflowClient(tracking_uri=ids["first"]["mlflow"]["tracking_uri"])
    history = client.get_metric_history(ids["first"]["mlflow"]["run_id"], "train/capability_losses/cot")
    assert sorted((m.step, m.value) for m in history) == [(1, 3.0), (2, 2.0), (3, 1.0), (3, 1.5), (4, 0.5)]
    assert client.get_run(ids["first"]["mlflow"]["run_id"]).info.status == "FINISHED"


def test_wandb_logs_offline_and_the_resumed_attempt_continues_the_same_run_id(two_attempts):
    run, ids = two_attempts
    run_id = ids["first"]["wandb"]["id"]
    assert ids["resumed"]["wandb"]["id"] == run_id
    offline = sorted((run / "wandb").glob("offline-run-*"))
    assert len(offline) == 2 and all(folder.name.endswith(f"-{run_id}") for folder in offline)
    assert all(list(folder.glob("*.wandb")) for folder in offline)
