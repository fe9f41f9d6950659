"""`omni-run data prepare`: speech records without text are transcribed by encoders.asr into a cache
beside the data, keyed by the audio's content, scored against the records that have transcripts, and
read back by the data sources that training uses."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest

from omni_runner.commands import data as data_command
from omni_runner.data.bundled.media import SPEECH_REFERENCES, ensure_media_data
from omni_runner.data.sources import build_sources
from omni_runner.data.transcripts import TRANSCRIPTS_FILE, TranscriptCache, file_sha256

RECIPE = """\
name: prepare
base_model: {path: builtin:tiny-qwen2.5-omni, architecture: tiny-qwen2.5-omni}
encoders:
  asr: {path: builtin:tiny-parakeet}
datasets:
  speech: {path: data/speech.jsonl, format: speech-transcript, max_bad_fraction: 1.0}
capabilities:
  podcast: {datasets: [speech]}
training: {max_steps: 2, micro_batch: 1, grad_accum: 1, seq_len: 256}
hardware: {device: cpu, vram_gb: 4}
"""
WITHOUT_TEXT = 12 - SPEECH_REFERENCES


@pytest.fixture
def recipe(tmp_path: Path, tiny_asr_dir: Path) -> Path:
    """A recipe over a copy of the bundled untranscribed speech (4 references, 8 without text)."""
    media = ensure_media_data()
    shutil.copytree(media / "speech", tmp_path / "data" / "speech")
    shutil.copy(media / "speech_untranscribed.jsonl", tmp_path / "data" / "speech.jsonl")
    path = tmp_path / "recipe.yaml"
    path.write_text(RECIPE)
    return path


def prepare(recipe: Path, capsys: pytest.CaptureFixture, *extra: str) -> tuple[int, dict]:
    parser = argparse.ArgumentParser(prog="omni-run data")
    data_command.add_arguments(parser)
    code = data_command.run(parser.parse_args(["prepare", str(recipe), "--json", *extra]))
    return code, json.loads(capsys.readouterr().out)["datasets"]["speech"]


def _speech_source(recipe: Path):
    from omni_runner.recipe import load_recipe

    return build_sources(load_recipe(recipe).data, recipe.parent, strict=False)["speech"]


def test_prepare_caches_a_transcript_per_audio_beside_the_data(recipe: Path, capsys):
    code, report = prepare(recipe, capsys)
    assert code == 0
    cache_file = recipe.parent / "data" / TRANSCRIPTS_FILE
    assert report["cache"] == str(cache_file)
    assert (report["records"], report["without_text"], report["from_cache"]) == (12, WITHOUT_TEXT, 0)
    assert report["transcribed"] == 12  # the eight without text and the four references scored
    cache = TranscriptCache.load(cache_file)
    for number in range(12):
        assert cache.get(file_sha256(recipe.parent / "data" / "speech" / f"s{number:03d}.wav")) is not None


def test_a_second_run_transcribes_nothing_and_leaves_the_cache_as_it_was(recipe: Path, capsys):
    prepare(recipe, capsys)
    cache_file = recipe.parent / "data" / TRANSCRIPTS_FILE
    before = cache_file.read_bytes()
    code, report = prepare(recipe, capsys)
    assert code == 0 and report["transcribed"] == 0 and report["from_cache"] == WITHOUT_TEXT
    assert cache_file.read_bytes() == before


def test_a_changed_audio_file_is_transcribed_again(recipe: Path, capsys):
    prepare(recipe, capsys)
    changed = recipe.parent / "data" / "speech" / "s011.wav"
    shutil.copy(recipe.parent / "data" / "speech" / "s000.wav", changed)  # now the same content as s000
    (recipe.parent / "data" / "speech" / "s010.wav").write_bytes(
        (recipe.parent / "data" / "speech" / "s010.wav").read_bytes()[:-320])  # 10 ms shorter: new content
    _, report = prepare(recipe, capsys)
    assert report["transcribed"] == 1 and report["from_cache"] == WITHOUT_TEXT - 1


def test_word_error_rate_is_reported_against_the_references(recipe: Path, capsys):
    _, report = prepare(recipe, capsys)
    assert report["scored"] == SPEECH_REFERENCES
    assert isinstance(report["wer"], float) and report["wer"] >= 0.0  # a random recogniser: high, but a number
    assert all(example["reference"] and "transcript" in example for example in report["examples"])
    _, unscored = prepare(recipe, capsys, "--score", "0")
    assert unscored["scored"] == 0 and unscored["wer"] is None


def test_training_reads_the_cached_transcripts_for_records_without_text(recipe: Path, capsys):
    before = _speech_source(recipe)
    assert len(before.bad) == WITHOUT_TEXT
    assert all("omni-run data prepare RECIPE" in bad.reason for bad in before.bad)
    prepare(recipe, capsys)
    after = _speech_source(recipe)
    assert (len(after), after.bad) == (12, [])
    cache = TranscriptCache.load(recipe.parent / "data" / TRANSCRIPTS_FILE)
    last = after.conversation(11)
    assert last.messages[-1].content == cache.lookup(last.audios[0])


def test_a_recipe_without_encoders_asr_is_told_to_add_one(recipe: Path, capsys):
    recipe.write_text(RECIPE.replace("encoders:\n  asr: {path: builtin:tiny-parakeet}\n", ""))
    parser = argparse.ArgumentParser(prog="omni-run data")
    data_command.add_arguments(parser)
    assert data_command.run(parser.parse_args(["prepare", str(recipe)])) == 1
    assert "no encoders.asr" in capsys.readouterr().err
