"""An end-to-end tiny run through the trainer child: the run-folder contract others rely on."""

from __future__ import annotations

import json
import math

import pytest

from conftest import EVAL_EVERY, STEPS, status
from omni_runner.run.events import read_events
from omni_runner.train.checkpoint import verify_checkpoint

pytestmark = pytest.mark.slow


def test_every_step_is_an_event_with_the_documented_metrics(finished_run):
    steps = [e for e in read_events(finished_run.events) if e["type"] == "step"]
    assert [e["step"] for e in steps] == list(range(1, STEPS + 1))
    for event in steps:
        assert {"t", "loss", "lr", "grad_norm", "tokens_per_s", "samples_per_s", "capability_losses",
                "epoch", "eta_s", "total_steps"} <= event.keys()
        assert math.isfinite(event["loss"]) and event["capability_losses"]


def test_the_run_start_says_samples_are_prepared_on_the_training_thread_on_cpu(finished_run):
    start = next(e for e in read_events(finished_run.events) if e["type"] == "run_start")
    assert start["data_workers"] == 0  # training.num_workers: auto, on CPU
    assert "samples prepared on the training thread" in finished_run.trainer_log.read_text()


def test_status_json_ends_finished_with_the_trainer_pid_and_last_checkpoint(finished_run):
    final = status(finished_run)
    assert (final["state"], final["step"], final["total_steps"]) == ("finished", STEPS, STEPS)
    assert final["pid"] and final["last_checkpoint"]["step"] == STEPS


def test_scheduled_checkpoints_verify(finished_run):
    names = sorted(p.name for p in finished_run.checkpoints.iterdir())
    assert names == ["step-2", "step-4", "step-6"]
    assert all(verify_checkpoint(finished_run.checkpoints / name) is None for name in names)


def test_state_changes_are_events_with_from_to_and_reason(finished_run):
    states = [(e["from"], e["to"]) for e in read_events(finished_run.events) if e["type"] == "state"]
    assert states[0] == ("starting", "running") and states[-1][1] == "finished"


def test_the_final_adapter_is_saved_with_its_manifest(finished_run):
    manifest = json.loads((finished_run.final / "omni_runner_final.json").read_text())
    assert manifest["kind"] == "adapter"
    assert (finished_run.final / "adapter_config.json").exists()


def test_the_run_ends_with_a_run_end_event(finished_run):
    last = [e for e in read_events(finished_run.events) if e["type"] == "run_end"][-1]
    assert (last["state"], last["reason"]) == ("finished", "done")


def test_eval_results_are_reported_at_the_end(finished_run):
    evals = [e for e in read_events(finished_run.events) if e["type"] == "eval"]
    assert evals[-1]["step"] == STEPS and "tool_call_exact_match" in evals[-1]["metrics"]
    assert (evals[-1]["dataset"], evals[-1]["capability"]) == ("xlam-heldout", "tool-calling")
    assert (finished_run.eval / "results.json").exists()


def test_eval_every_steps_also_scores_the_model_during_training(finished_run):
    evals = [e for e in read_events(finished_run.events) if e["type"] == "eval"]
    assert [e["step"] for e in evals if e.get("dataset")] == [EVAL_EVERY, STEPS]
    assert (finished_run.eval / f"step-{EVAL_EVERY}" / "results.json").exists()


def test_eval_every_steps_reports_each_capabilitys_held_out_loss(finished_run):
    heldout = [e for e in read_events(finished_run.events) if e["type"] == "eval" and e.get("suite") == "perplexity"]
    assert [(e["step"], e["capability"]) for e in heldout] == [(EVAL_EVERY, "tool-calling"), (STEPS, "tool-calling")]
    assert all(e["metrics"]["n"] == 2 and e["metrics"]["loss"] > 0 for e in heldout)
    assert json.loads((finished_run.eval / "perplexity.json").read_text())["tool-calling"] == heldout[-1]["metrics"]
