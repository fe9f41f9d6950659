"""The built-in tiny Qwen3-Omni: real Qwen3-Omni-MoE classes shrunk, described by the known-architecture
table exactly, and rebuilt only when its inputs change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from omni_runner.detect import detect
from omni_runner.models import tiny_qwen3
from omni_runner.plan.architectures import known_detection


def test_the_build_is_a_qwen3_omni_with_routed_experts_and_no_talker(tiny_qwen3_omni_dir):
    config = json.loads((tiny_qwen3_omni_dir / "config.json").read_text())
    text = config["thinker_config"]["text_config"]
    assert (config["model_type"], config["enable_audio_output"]) == ("qwen3_omni_moe", False)
    assert (text["num_experts"], text["num_experts_per_tok"]) == (tiny_qwen3.EXPERTS, tiny_qwen3.EXPERTS_PER_TOKEN)
    processor = json.loads((tiny_qwen3_omni_dir / "processor_config.json").read_text())
    assert processor["processor_class"] == "Qwen3OmniMoeProcessor"


def test_detection_the_known_table_and_the_real_weights_agree(tiny_qwen3_omni_dir):
    detected = detect(tiny_qwen3_omni_dir)
    table = known_detection("tiny-qwen3-omni", str(tiny_qwen3_omni_dir))
    assert (detected.modalities, detected.parameters) == (table.modalities, table.parameters)
    built = tiny_qwen3.read_stamp(tiny_qwen3_omni_dir)["parameters"]  # counted on the real modules
    components = detected.components
    assert components["thinker"]["parameters"] == built["language_model"] + built["lm_head"]
    assert components["vision_tower"]["parameters"] == built["vision_tower"]
    assert components["audio_tower"]["parameters"] == built["audio_tower"]


def test_ensure_reuses_a_current_build(tiny_qwen3_omni_dir):
    before = (tiny_qwen3_omni_dir / "model.safetensors").stat().st_mtime_ns
    assert tiny_qwen3.ensure_tiny_qwen3_omni() == tiny_qwen3_omni_dir
    assert (tiny_qwen3_omni_dir / "model.safetensors").stat().st_mtime_ns == before


def test_speech_out_from_a_qwen3_omni_folder_is_a_clear_error():
    from omni_runner.models.speech import SpeechError, load_talker

    folder = Path(__file__).resolve().parents[1] / "fixtures" / "models" / "qwen3-omni-30b-a3b-instruct"
    with pytest.raises(SpeechError, match="qwen3_omni_moe model: speech out is wired for Qwen2.5-Omni"):
        load_talker(folder, dtype=None, device=None)
