"""Qwen3-Omni trains through the same data and media path as Qwen2.5-Omni: short real runs of
recipes/tiny_qwen3_omni.yaml (text, images, and videos with and without their sound track), with LoRA
on attention and on every expert and the towers' projections in full (its adapters merged into a
complete folder at the end), and with full fine-tuning; each resumes exactly from its mid-run checkpoint."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
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


METHODS = {"lora": ["output.merge=true"], "full": ["training.method=full", "training.lr=1e-4"]}
EXPERTS = "thinker.model.language_model.layers.0.mlp.experts.gate_up_proj"


def _prepare(folder, method: str = "lora") -> RunDir:
    return prepare_run(RECIPE, [*SHORT, *METHODS[method]], None, run_dir=folder / "run")


def _train(folder, method: str) -> RunDir:
    run = _prepare(folder, method)
    assert trainer(run).wait(timeout=900) == 0, run.trainer_log.read_text()[-3000:]
    return run


@pytest.fixture(scope="module")
def qwen3_run(tiny_qwen3_omni_dir, tmp_path_factory) -> RunDir:
    return _train(tmp_path_factory.mktemp("qwen3"), "lora")


@pytest.fixture(scope="module")
def qwen3_full_run(tiny_qwen3_omni_dir, tmp_path_factory) -> RunDir:
    return _train(tmp_path_factory.mktemp("qwen3-full"), "full")


def _planned_trainable(run: RunDir) -> int:
    return sum(g["parameters"] for g in json.loads((run.path / "plan.json").read_text())["stages"][0]["trainable"])


def _experts_moved(folder, base) -> bool:
    from transformers import Qwen3OmniMoeForConditionalGeneration

    tuned = Qwen3OmniMoeForConditionalGeneration.from_pretrained(folder).get_parameter(EXPERTS)
    return not torch.equal(tuned, Qwen3OmniMoeForConditionalGeneration.from_pretrained(base).get_parameter(EXPERTS))


def test_text_images_video_and_sound_tracks_train_with_lora_on_attention_and_experts(qwen3_run):
    steps = [e for e in read_events(qwen3_run.events) if e["type"] == "step"]
    assert [e["step"] for e in steps] == list(range(1, STEPS + 1))
    assert all(math.isfinite(e["loss"]) for e in steps)
    assert set().union(*(e["capability_losses"] for e in steps)) == CAPABILITIES  # every kind of sample reached a loss
    assert status(qwen3_run)["state"] == "finished"
    assert f"{_planned_trainable(qwen3_run):,} trainable parameters" in qwen3_run.trainer_log.read_text()  # the plan counts what the loader trains
    final = qwen3_run.path / "final"
    with safe_open(final / "adapter_model.safetensors", "pt") as adapter:
        names = list(adapter.keys())
    assert any(".mlp.experts." in name for name in names) and any(".self_attn.q_proj." in name for name in names)
    assert [e for e in read_events(qwen3_run.events) if e["type"] == "data"][-1]["seen_by_dataset"]["beeping"] > 0
    with safe_open(final / "trained_modules.safetensors", "pt") as trained:
        assert any("merger_list" in name for name in trained.keys())  # the deepstack mergers train in full
        assert any("audio_tower.proj1" in name for name in trained.keys())  # reached by the videos' sound tracks
    assert json.loads((final / "adapter_config.json").read_text())["target_parameters"]


def test_output_merge_writes_a_complete_qwen3_omni_folder_with_the_experts_adapters_merged(qwen3_run, tiny_qwen3_omni_dir):
    assert _experts_moved(qwen3_run.path / "final" / "merged", tiny_qwen3_omni_dir)


def test_full_fine_tuning_trains_the_experts_and_writes_a_complete_folder(qwen3_full_run, tiny_qwen3_omni_dir):
    steps = [e for e in read_events(qwen3_full_run.events) if e["type"] == "step"]
    assert [e["step"] for e in steps] == list(range(1, STEPS + 1)) and all(math.isfinite(e["loss"]) for e in steps)
    assert f"{_planned_trainable(qwen3_full_run):,} trainable parameters" in qwen3_full_run.trainer_log.read_text()
    final = qwen3_full_run.path / "final"
    assert json.loads((final / "omni_runner_final.json").read_text())["kind"] == "merged"
    assert _experts_moved(final, tiny_qwen3_omni_dir)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_resume_from_the_mid_run_checkpoint_gives_the_same_losses(method, request, tmp_path):
    finished = request.getfixturevalue({"lora": "qwen3_run", "full": "qwen3_full_run"}[method])
    run = _prepare(tmp_path, method)
    shutil.copytree(finished.checkpoints / "step-2", run.checkpoints / "step-2")
    assert trainer(run, "--resume").wait(timeout=600) == 0, run.trainer_log.read_text()[-3000:]
    reference, resumed = step_losses(finished), step_losses(run)
    assert [resumed[s] for s in (3, 4)] == [reference[s] for s in (3, 4)]
