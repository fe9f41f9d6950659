"""The built-in tiny model: deterministic, complete, rebuilt only when its inputs change."""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from omni_runner.models import tiny


def _digest(folder: Path) -> dict[str, str]:
    files = ("model.safetensors", "tokenizer.json", "config.json", "spk_dict.pt")
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in files}


def test_tiny_model_command_builds_the_cached_model_bit_for_bit(tiny_model_dir, tmp_path, capsys):
    from omni_runner.commands import tiny_model as command

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    assert command.run(parser.parse_args([str(tmp_path / "tiny")])) == 0

    assert _digest(tmp_path / "tiny") == _digest(tiny_model_dir)
    printed = capsys.readouterr().out
    for part in ("language_model", "vision_tower", "audio_tower", "talker", "token2wav", "total"):
        assert part in printed
    assert str(tmp_path / "tiny") in printed


def test_ensure_reuses_a_current_build(tiny_model_dir):
    before = (tiny_model_dir / "model.safetensors").stat().st_mtime_ns

    assert tiny.ensure_tiny_model() == tiny_model_dir
    assert (tiny_model_dir / "model.safetensors").stat().st_mtime_ns == before


def test_a_changed_builder_rebuilds_the_cached_model(tiny_model_dir, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    shutil.copytree(tiny_model_dir, cache / "models" / tiny.TINY_MODEL_NAME)
    monkeypatch.setenv("OMNI_RUNNER_CACHE", str(cache))
    monkeypatch.setattr(tiny, "BUILDER_VERSION", tiny.BUILDER_VERSION + 1)

    rebuilt = tiny.ensure_tiny_model()

    assert rebuilt == cache / "models" / tiny.TINY_MODEL_NAME
    assert tiny.read_stamp(rebuilt)["builder_version"] == tiny.BUILDER_VERSION
    assert tiny.read_stamp(rebuilt)["fingerprint"] == tiny.current_fingerprint()
    assert not [path.name for path in rebuilt.parent.iterdir() if ".building-" in path.name or ".old-" in path.name]


def test_build_refuses_to_overwrite_a_folder_that_is_not_a_tiny_model(tmp_path):
    (tmp_path / "notes.txt").write_text("precious")

    with pytest.raises(FileExistsError, match="not a tiny-model build"):
        tiny.build_tiny_model(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "precious"


def test_thinker_config_names_the_media_tokens_of_the_tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    config = json.loads((tiny_model_dir / "config.json").read_text())["thinker_config"]
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    expected = {
        "image_token_index": "<|IMAGE|>",
        "video_token_index": "<|VIDEO|>",
        "audio_token_index": "<|AUDIO|>",
        "vision_start_token_id": "<|vision_bos|>",
        "vision_end_token_id": "<|vision_eos|>",
        "audio_start_token_id": "<|audio_bos|>",
        "audio_end_token_id": "<|audio_eos|>",
    }
    assert {key: tokenizer.convert_ids_to_tokens(config[key]) for key in expected} == expected
    assert config["text_config"]["vocab_size"] >= len(tokenizer)


def test_full_model_loads_with_the_real_class_including_talker_and_speakers(tiny_model_dir):
    from transformers import Qwen2_5OmniForConditionalGeneration

    model = Qwen2_5OmniForConditionalGeneration.from_pretrained(tiny_model_dir)

    assert model.has_talker
    assert sum(p.numel() for p in model.talker.parameters()) == tiny.read_stamp(tiny_model_dir)["parameters"]["talker"]
    assert set(model.speaker_map) == set(tiny.SPEAKERS)
