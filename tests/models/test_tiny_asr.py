"""The built-in tiny Parakeet TDT and `encoders.asr` loading: real transformers classes, no downloads."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from omni_runner.data.bundled.media import ensure_media_data
from omni_runner.data.media import load_audio
from omni_runner.models.asr import (
    NEMO_INSTALL,
    AsrLoadError,
    load_asr,
    resolve_asr_path,
)
from omni_runner.models.tiny_asr import (
    STAMP_FILE,
    TINY_ASR_NAME,
    build_tiny_asr,
    read_stamp,
)


@pytest.fixture(scope="module")
def clips() -> list:
    speech = ensure_media_data() / "speech"
    return [load_audio(str(speech / f"s{number:03d}.wav"), 16000) for number in range(4)]


def test_builtin_name_resolves_to_the_cached_build(tiny_asr_dir: Path):
    assert resolve_asr_path("builtin:tiny-parakeet", Path("/nowhere")) == tiny_asr_dir
    assert read_stamp(tiny_asr_dir)["name"] == TINY_ASR_NAME
    with pytest.raises(AsrLoadError, match="builtin:tiny-parakeet"):
        resolve_asr_path("builtin:tiny-whisper", Path("/nowhere"))


def test_build_is_deterministic(tiny_asr_dir: Path, tmp_path: Path):
    fresh = build_tiny_asr(tmp_path / "again")
    for name in ("model.safetensors", "tokenizer.json", "config.json", STAMP_FILE):
        assert (fresh / name).read_bytes() == (tiny_asr_dir / name).read_bytes(), name


def test_it_loads_as_parakeet_tdt_and_transcribes_each_clip(tiny_asr_dir: Path, clips: list):
    recognizer = load_asr(tiny_asr_dir)
    assert type(recognizer._model).__name__ == "ParakeetForTDT"
    texts = recognizer.transcribe(clips)
    assert len(texts) == len(clips) and all(isinstance(text, str) for text in texts)
    assert len(set(texts)) > 1  # random weights, but the transcript depends on the audio
    assert "<blank>" not in " ".join(texts)


def test_a_batch_transcribes_as_the_clips_one_by_one(tiny_asr_dir: Path, clips: list):
    recognizer = load_asr(tiny_asr_dir)
    assert recognizer.transcribe(clips) == [recognizer.transcribe([clip])[0] for clip in clips]


@pytest.mark.skipif(importlib.util.find_spec("nemo") is not None, reason="NeMo is installed here")
def test_a_nemo_file_without_nemo_names_the_extra_and_the_conversion(tmp_path: Path):
    archive = tmp_path / "parakeet-tdt-0.6b-v2.nemo"
    archive.write_bytes(b"")
    with pytest.raises(AsrLoadError) as caught:
        load_asr(archive)
    assert NEMO_INSTALL in str(caught.value) and "Hugging Face folder" in str(caught.value)


def test_whisper_and_non_parakeet_folders_are_refused(tiny_model_dir: Path):
    with pytest.raises(AsrLoadError, match="Parakeet"):
        load_asr(tiny_model_dir, kind="whisper")
    with pytest.raises(AsrLoadError, match="qwen2_5_omni"):
        load_asr(tiny_model_dir)
