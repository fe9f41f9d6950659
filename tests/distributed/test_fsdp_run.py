"""Full fine-tuning split over two trainer processes with FSDP2 (`distributed.strategy: fsdp`, gloo on CPU).

One real run of the tiny recipe starts as one process, is stopped, and is resumed as two FSDP processes
(`omni-run resume --set distributed.num_processes=2 ...`); it then loses rank 1 to `kill -9`, restarts
both ranks from a checkpoint they wrote (`controller.restarts: 1`), finishes and evaluates. A one-process
run with the same global batch (grad_accum 2 instead of two ranks of 1) is the reference, and so are its
checkpoints and `final/`: a sharded run's checkpoints and final model are consolidated, the very files one
process writes, which is also what lets a run change its number of processes at a resume.

Tolerance (1e-5 relative, as in test_ddp_run.py): the same samples reach every optimizer step, so only
float32 summation order differs (the reduce-scatter sums two ranks' gradients where one process
accumulates them). A missing shard, a gradient not averaged or a weight not gathered moves the loss or
the weights in the 2nd or 3rd significant digit. Weights are compared with an absolute tolerance instead:
Adam divides each gradient by its own running size, so the same float noise in a near-zero gradient moves
its weight by a visible fraction of a step. WEIGHT_TOLERANCE is 1/20 of one step's largest move (the
recipe's lr, 2e-3; 1.1e-5 was seen after 4 steps), where a weight not gathered or not updated is a whole
step or more away.
"""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch
from run_watch import events_of, status_of, wait_for
from safetensors.torch import load_file
from trainer_processes import REPO, omni_run, train, trained

from omni_runner.run.rundir import RunDir

pytestmark = pytest.mark.slow

FULL = ["training.method=full", "controller.checkpoint.every_steps=4", "controller.checkpoint.keep_last=4",
        "eval.every_steps=7", "eval.max_samples=2", "eval.max_new_tokens=4"]
PERIODIC_EVAL = 7  # of 10 steps: after the resume as two processes, and after the restart
CHECKPOINT = 4  # the first the two processes write: the stop comes at step 2 or 3
TOLERANCE = 1e-5
WEIGHT_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> RunDir:
    return trained(tmp_path_factory.mktemp("one-process") / "run", *FULL, "training.grad_accum=2")


@pytest.fixture(scope="module")
def sharded(tmp_path_factory) -> dict:
    """The run that starts as one process and goes on as two FSDP processes; what was seen on the way."""
    run = RunDir(tmp_path_factory.mktemp("fsdp") / "run")
    one = train(run.path, *FULL, "training.grad_accum=2", "controller.restarts=1", "eval.at_end=true")
    two = None
    try:
        wait_for(lambda: (status_of(run.path).get("step") or 0) >= 2, 240, "step 2")
        one.send_signal(signal.SIGTERM)
        assert one.wait(timeout=300) == 0, run.trainer_log.read_text()[-3000:]
        seen = {"run": run, "stopped_at": status_of(run.path)["step"]}
        two = omni_run(run.path.parent / "resume.log", "resume", str(run.path), "--set", "distributed.num_processes=2",
                       "--set", "distributed.strategy=fsdp", "--set", "training.grad_accum=1", "--accept-changes")
        wait_for(lambda: (status_of(run.path).get("step") or 0) > CHECKPOINT + 1
                 and len(events_of(run, "run_start")) == 2, 240, "a step after the checkpoint")
        seen["losses_before_kill"] = {e["step"]: e["loss"] for e in events_of(run, "step")}
        os.kill(status_of(run.path)["ranks"][1]["pid"], signal.SIGKILL)
        assert two.wait(timeout=600) == 0, run.trainer_log.read_text()[-3000:]
    finally:
        for process in (one, two):
            if process is not None and process.poll() is None:
                process.kill()
    return seen


def test_a_stopped_run_resumes_as_two_processes_sharing_the_model(sharded):
    first, resumed, _ = events_of(sharded["run"], "run_start")
    assert "world_size" not in first
    assert (resumed["world_size"], resumed["strategy"]) == (2, "fsdp")
    assert resumed["resumed_from"].endswith(f"step-{sharded['stopped_at']}")


def test_losses_match_one_process_with_the_same_global_batch(sharded, one_process):
    two = {e["step"]: e["loss"] for e in events_of(sharded["run"], "step")}
    one = {e["step"]: e["loss"] for e in events_of(one_process, "step")}
    assert sorted(two) == sorted(one)
    assert all(abs(two[s] - one[s]) <= TOLERANCE * abs(one[s]) for s in one), (two, one)


def test_a_killed_rank_restarts_both_from_the_checkpoint_and_retakes_its_steps_exactly(sharded):
    run = sharded["run"]
    crash = events_of(run, "exit")[1]  # after the stop of the one-process start
    assert (crash["rank"], crash["signal"], crash["will_restart"]) == (1, "SIGKILL", True)
    restarted = events_of(run, "run_start")[2]
    assert restarted["resumed_from"].endswith(f"step-{CHECKPOINT}")
    again = {e["step"]: e["loss"] for e in events_of(run, "step") if e["t"] > restarted["t"]}
    first = sharded["losses_before_kill"]
    overlap = sorted(set(first) & set(again))
    assert overlap, (first, again)
    assert [again[s] for s in overlap] == [first[s] for s in overlap]
    assert status_of(run.path)["state"] == "finished"


def test_a_sharded_checkpoint_holds_the_whole_weights_one_process_writes(sharded, one_process):
    name = f"step-{2 * CHECKPOINT}/weights.safetensors"
    two, one = load_file(sharded["run"].checkpoints / name), load_file(one_process.checkpoints / name)
    assert sorted(two) == sorted(one)
    assert all(two[k].shape == one[k].shape and torch.allclose(two[k], one[k], rtol=0, atol=WEIGHT_TOLERANCE) for k in one)


def test_final_is_a_whole_omni_folder_with_the_one_process_weights(sharded, one_process):
    from transformers import Qwen2_5OmniForConditionalGeneration

    two = Qwen2_5OmniForConditionalGeneration.from_pretrained(sharded["run"].final)
    one = Qwen2_5OmniForConditionalGeneration.from_pretrained(one_process.final)
    assert two.has_talker and two.talker is not None and two.token2wav is not None
    one_weights = dict(one.thinker.named_parameters())
    assert all(torch.allclose(p, one_weights[n], rtol=0, atol=WEIGHT_TOLERANCE) for n, p in two.thinker.named_parameters())


def test_the_gathered_model_is_evaluated_at_the_end(sharded):
    evaluated = events_of(sharded["run"], "eval")
    assert {e["dataset"] for e in evaluated if "dataset" in e} == {"xlam-heldout"}
    assert json.loads((sharded["run"].eval / "results.json").read_text())["xlam-heldout"]["n"] == 2
    assert "tool-calling" in json.loads((sharded["run"].eval / "perplexity.json").read_text())


def test_evaluation_during_training_runs_on_the_split_model_and_scores_as_one_process(sharded, one_process):
    """Every rank evaluates in step (each forward gathers the units from all ranks); rank 0 alone reports."""
    def periodic(run: RunDir) -> dict:
        return {e.get("dataset") or e["suite"]: e["metrics"] for e in events_of(run, "eval") if e["step"] == PERIODIC_EVAL}

    two, one = periodic(sharded["run"]), periodic(one_process)
    assert sorted(two) == sorted(one) == ["perplexity", "xlam-heldout"]
    assert two["xlam-heldout"]["n"] == 2
    assert abs(two["perplexity"]["loss"] - one["perplexity"]["loss"]) <= 10 * TOLERANCE * one["perplexity"]["loss"], (two, one)
    assert (sharded["run"].eval / f"step-{PERIODIC_EVAL}" / "xlam-heldout.samples.jsonl").is_file()


def test_the_tiny_qwen3_omni_experts_train_split_and_its_built_in_model_is_built_whole(tmp_path):
    """A fresh model cache: the trainers build the built-in model before their process group exists, since
    with a group up transformers writes weights from rank 0 only (a build on rank 1 left a folder without them)."""
    run = RunDir(tmp_path / "run")
    overrides = ["distributed.num_processes=2", "distributed.strategy=fsdp", "training.max_steps=2", "eval.at_end=false",
                 "capabilities.vision-qa.enabled=false", "capabilities.video-understanding.enabled=false",
                 "stages=[{name: text, train: [thinker]}]"]
    args = [arg for override in overrides for arg in ("--set", override)]
    process = omni_run(tmp_path / "omni-run.log", "train", str(REPO / "recipes" / "tiny_qwen3_omni.yaml"), "--run-dir",
                       str(run.path), *args, env={"OMNI_RUNNER_CACHE": str(tmp_path / "cache")})
    assert process.wait(timeout=600) == 0, run.trainer_log.read_text()[-3000:]
    assert (tmp_path / "cache" / "models" / "tiny-qwen3-omni" / "model.safetensors").is_file()
    assert status_of(run.path)["step"] == 2
