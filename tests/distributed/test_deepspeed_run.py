"""The tiny media recipe under DeepSpeed on two trainer processes (gloo on CPU): LoRA on the language model
with weight decay over three stages of two steps, so the engine is built afresh at each stage change, and
AdamW's undecayed group is empty (DeepSpeed drops it). One sample a micro-batch, so in most steps one
rank's batch holds a medium the other's lacks: the frozen towers run on one rank only, whole (ZeRO-2
never splits weights; ZeRO-3 has them hidden from its engine).

The run starts under ZeRO-2, changes stage, and evaluates at step 2 on rank 0 alone, which holds the whole
model. It is stopped in its second stage and resumed under ZeRO-3 (`omni-run resume --set
distributed.strategy=...`): checkpoints are consolidated, the files one process writes, so the strategy
may change at a resume. Under ZeRO-3 it changes stage again (its weights are split then), finishes,
checkpoints and evaluates the final model. A one-process run with the same global batch (grad_accum 2
instead of two ranks of 1) is the reference.

Tolerance (1e-5 relative, as in test_ddp_run.py): the same samples reach every optimizer step, so only
float32 summation order differs; a gradient not averaged, a stage's weights not carried into the next
engine or a moment not restored moves the loss in the 2nd to 4th digit. Evaluations read weights float
noise has already moved: ten times the room. The last checkpoint's weights get the absolute tolerance of
test_fsdp_run.py (Adam and float noise), and its AdamW groups must be one process's, parameter for
parameter: a weight put in the wrong group loses or gains its decay.
"""

from __future__ import annotations

import signal

import pytest
import torch
from run_watch import events_of, status_of, wait_for
from trainer_processes import REPO, omni_run, train, trained

from omni_runner.run.rundir import RunDir
from omni_runner.train.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow

STAGES = ("stages=[{name: first, max_steps: 2}, {name: second, max_steps: 2, lr: 1.0e-3}, "
          "{name: third, max_steps: 2, lr: 5.0e-4}]")
SETTINGS = [STAGES, "training.max_steps=6", "training.weight_decay=0.1", "training.lora.dropout=0.0", "eval.every_steps=2",
            "eval.max_samples=1", "eval.max_new_tokens=4", "eval.at_end=true", "controller.checkpoint.every_steps=6"]
MEDIA = str(REPO / "recipes" / "tiny_omni_media.yaml")
TOLERANCE = 1e-5
WEIGHT_TOLERANCE = 1e-4


def _losses(run: RunDir) -> dict[int, float]:
    return {e["step"]: e["loss"] for e in events_of(run, "step")}  # a step taken again after the resume: its last


def _evals(run: RunDir) -> dict[tuple[int, str], dict]:
    return {(e["step"], e.get("dataset") or e["suite"]): e["metrics"] for e in events_of(run, "eval")}


def _close(two: float, one: float, tolerance: float) -> bool:
    return abs(two - one) <= tolerance * abs(one)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> RunDir:
    return trained(tmp_path_factory.mktemp("one-process") / "run", *SETTINGS, "training.grad_accum=2", recipe=MEDIA)


@pytest.fixture(scope="module")
def zero(tmp_path_factory) -> dict:
    """Two ZeRO-2 processes, stopped in the second stage and resumed as two ZeRO-3 processes."""
    run = RunDir(tmp_path_factory.mktemp("deepspeed") / "run")
    first = train(run.path, *SETTINGS, "training.grad_accum=1", "distributed.num_processes=2",
                  "distributed.strategy=deepspeed-zero2", recipe=MEDIA)
    try:
        wait_for(lambda: (status_of(run.path).get("step") or 0) >= 3, 300, "a step of the second stage")
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=300) == 0, run.trainer_log.read_text()[-3000:]
    finally:
        if first.poll() is None:
            first.kill()
    stopped_at = status_of(run.path)["step"]
    resumed = omni_run(run.path.parent / "resume.log", "resume", str(run.path), "--set", "distributed.strategy=deepspeed-zero3",
                       "--set", "eval.every_steps=0", "--accept-changes")
    assert resumed.wait(timeout=600) == 0, run.trainer_log.read_text()[-3000:]
    return {"run": run, "stopped_at": stopped_at}


def test_a_zero2_run_stopped_in_its_second_stage_resumes_under_zero3_from_its_checkpoint(zero):
    started, restarted = events_of(zero["run"], "run_start")
    assert (started["world_size"], started["strategy"]) == (2, "deepspeed-zero2")
    assert (restarted["world_size"], restarted["strategy"]) == (2, "deepspeed-zero3")
    assert restarted["resumed_from"].endswith(f"step-{zero['stopped_at']}")
    assert status_of(zero["run"].path)["state"] == "finished"


def test_losses_match_one_process_with_the_same_global_batch(zero, one_process):
    two, one = _losses(zero["run"]), _losses(one_process)
    assert sorted(two) == sorted(one) == list(range(1, 7))
    assert all(_close(two[s], one[s], TOLERANCE) for s in one), (two, one)


def test_the_last_checkpoint_holds_one_processs_weights_and_optimizer_groups(zero, one_process):
    two, one = (load_checkpoint(run.checkpoints / "step-6") for run in (zero["run"], one_process))
    assert two.optimizer["param_groups"] == one.optimizer["param_groups"]
    assert sorted(two.weights) == sorted(one.weights)
    assert all(torch.allclose(two.weights[n], one.weights[n], atol=WEIGHT_TOLERANCE, rtol=0) for n in one.weights)


def test_rank_0_evaluates_the_zero2_model_during_training_and_the_final_model_like_one_process(zero, one_process):
    two, one = _evals(zero["run"]), _evals(one_process)
    # During training under ZeRO-2 at step 2 (and at 4 when the stop came after it: ZeRO-3 does not), and at the end.
    assert {2, 6} <= {step for step, _ in two} <= {2, 4, 6}
    for key, metrics in two.items():
        assert all(_close(value, one[key][name], 10 * TOLERANCE) if isinstance(value, float) else value == one[key][name]
                   for name, value in metrics.items()), (key, metrics, one[key])
    assert (zero["run"].final / "adapter_model.safetensors").is_file()
