"""Qwen3-Omni (transformers' Qwen3-Omni-MoE classes) read from its config: modalities, experts, sizes.

The fixture folder's config.json was written by transformers' `Qwen3OmniMoeConfig` with the dimensions of
the released Qwen/Qwen3-Omni-30B-A3B-Instruct config.json. Its checkpoint holds 35,259,818,545 parameters
(the sum of its safetensors tensors: thinker, towers, talker and code2wav); "30B-A3B" names the thinker's
language model, about 30.5 B parameters with about 3.3 B routed per token.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from omni_runner.detect import detect

FOLDER = "qwen3-omni-30b-a3b-instruct"
CHECKPOINT_PARAMETERS = 35_259_818_545


def test_qwen3_omni_is_a_base_with_every_modality(models: Path):
    detection = detect(models / FOLDER)
    assert (detection.role, detection.model_type) == ("base", "qwen3_omni_moe")
    assert list(detection.modalities) == ["text_in", "text_out", "image_in", "video_in", "audio_in", "audio_out"]


def test_parameter_count_counts_every_expert_and_lands_on_the_checkpoint(models: Path):
    assert detect(models / FOLDER).parameters == pytest.approx(CHECKPOINT_PARAMETERS, rel=0.01)


def test_thinker_reports_total_and_active_parameters_and_its_experts(models: Path):
    thinker = detect(models / FOLDER).components["thinker"]
    assert thinker["parameters"] == pytest.approx(30.5e9, rel=0.02)
    assert thinker["active_parameters"] == pytest.approx(3.3e9, rel=0.05)
    assert thinker["experts"] == {"count": 128, "per_token": 8, "intermediate_size": 768, "layers": 48, "shared_intermediate_size": 0}
    assert thinker["intermediate_size"] == 8 * 768  # what one token's routed experts activate


def test_experts_and_towers_have_evidence(models: Path):
    evidence = {e.key: e.conclusion for e in detect(models / FOLDER).evidence}
    assert "128 experts" in evidence["thinker_config.text_config.num_experts"]
    assert "8 routed per token" in evidence["thinker_config.text_config.num_experts"]
    assert {"thinker_config.vision_config", "thinker_config.audio_config", "talker_config", "code2wav_config"} <= evidence.keys()


def test_audio_output_disabled_means_no_audio_out(models: Path, tmp_path: Path):
    config = json.loads((models / FOLDER / "config.json").read_text())
    config["enable_audio_output"] = False
    (tmp_path / "config.json").write_text(json.dumps(config))
    detection = detect(tmp_path)
    assert "audio_out" not in detection.modalities and "talker" not in detection.components
    assert any(e.key == "enable_audio_output" for e in detection.evidence)


def test_a_thinker_only_config_is_detected(models: Path, tmp_path: Path):
    thinker = json.loads((models / FOLDER / "config.json").read_text())["thinker_config"]
    (tmp_path / "config.json").write_text(json.dumps(thinker))
    detection = detect(tmp_path)
    assert detection.model_type == "qwen3_omni_moe_thinker"
    assert list(detection.modalities) == ["text_in", "text_out", "image_in", "video_in", "audio_in"]
