"""Qwen3-Omni trains through the same data and media path as Qwen2.5-Omni: one short real run of
recipes/tiny_qwen3_omni.yaml (text, images and video; LoRA on attention and on every expert, the vision
mergers in full), and an exact resume from its mid-run checkpoint."""

from __future__ import annotations

import json
import math
import shutil

import pytest
from safetensors import safe_open

from conftest import REPO, status, step_losses, trainer
from omni_runner.run.events import read_events
from omni_runner.run.prepare import prepare_run
from omni_runner.run.rundir import RunDir

pytestmark = pytest.mark.slow

RECIPE = REPO / "recipes" / "tiny_qwen3_omni.yaml"
STEPS = 4
SHORT = [f"training.max_steps={STEPS}", "training.micro_batch=3", "training.warmup_steps=1",
         "controller.checkpoint.every_steps=2", "controller.checkpoint.keep_last=5", "eval.at_end=false"]
CAPABILITIES = {"cot", "vision-qa", "video-understanding"}


def _prepare(folder) -> RunDir:
    return prepare_run(RECIPE, SHORT, None, run_dir=folder / "run")


@pytest.fixture(scope="module")
def qwen3_run(tiny_qwen3_omni_dir, tmp_path_factory) -> RunDir:
    run = _prepare(tmp_path_factory.mktemp("qwen3"))
    assert trainer(run).wait(timeout=900) == 0, run.trainer_log.read_text()[-3000:]
    return run


def test_text_images_and_video_train_with_lora_on_attention_and_experts(qwen3_run):
    steps = [e for e in read_events(qwen3_run.events) if e["type"] == "step"]
    assert [e["step"] for e in steps] == list(range(1, STEPS + 1))
    assert all(math.isfinite(e["loss"]) for e in steps)
    assert set().union(*(e["capability_losses"] for e in steps)) == CAPABILITIES  # every kind of sample reached a loss
    assert status(qwen3_run)["state"] == "finished"
    planned = sum(g["parameters"] for g in json.loads((qwen3_run.path / "plan.json").read_text())["stages"][0]["trainable"])
    assert f"{planned:,} trainable parameters" in qwen3_run.trainer_log.read_text()  # the plan counts what the loader trains
    final = qwen3_run.path / "final"
    with safe_open(final / "adapter_model.safetensors", "pt") as adapter:
        names = list(adapter.keys())
    assert any(".mlp.experts." in name for name in names) and any(".self_attn.q_proj." in name for name in names)
    with safe_open(final / "trained_modules.safetensors", "pt") as trained:
        assert any("merger_list" in name for name in trained.keys())  # the deepstack mergers train in full
    assert json.loads((final / "adapter_config.json").read_text())["target_parameters"]


def test_resume_from_the_mid_run_checkpoint_gives_the_same_losses(qwen3_run, tmp_path):
    run = _prepare(tmp_path)
    shutil.copytree(qwen3_run.checkpoints / "step-2", run.checkpoints / "step-2")
    assert trainer(run, "--resume").wait(timeout=600) == 0, run.trainer_log.read_text()[-3000:]
    reference, resumed = step_losses(qwen3_run), step_losses(run)
    assert [resumed[s] for s in (3, 4)] == [reference[s] for s in (3, 4)]
