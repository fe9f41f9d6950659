"""encoders.asr in the plan: a data-prepare tool, planned frozen and not resident; what it cannot do is refused at its line."""

from __future__ import annotations

from pathlib import Path

import pytest
from recipe_lines import line_of

from omni_runner.plan import compile_plan
from omni_runner.recipe import RecipeError, load_recipe

RECIPE = """\
name: asr-plan
base_model: {path: builtin:tiny-qwen2.5-omni, architecture: tiny-qwen2.5-omni}
encoders:
  asr:
    path: builtin:tiny-parakeet
    architecture: tiny-parakeet
datasets:
  speech: {path: speech.jsonl, format: speech-transcript}
capabilities:
  podcast: {datasets: [speech]}
training: {max_steps: 2, micro_batch: 1, grad_accum: 1, seq_len: 256}
hardware: {device: cpu, vram_gb: 4}
"""


def _write(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(RECIPE.replace("    architecture: tiny-parakeet\n", "    architecture: tiny-parakeet\n" + extra))
    return path


def test_asr_is_planned_as_a_data_prepare_tool_that_training_does_not_hold(tmp_path: Path):
    plan = compile_plan(load_recipe(_write(tmp_path)))
    stage = plan.to_json()["stages"][0]
    assert plan.modality_sources["audio_in"] == "base_model"  # the audio still goes through the base model's tower
    asr = next(group for group in stage["frozen"] if group["module"] == "encoders.asr")
    assert asr["resident"] is False and asr["parameters"] > 0
    assert any("data prepare" in decision["what"] for decision in stage["decisions"])
    assert "audio_projector" not in {group["module"] for group in stage["trainable"]}


def test_the_memory_estimate_is_the_same_with_and_without_asr(tmp_path: Path):
    with_asr = compile_plan(load_recipe(_write(tmp_path))).to_json()["stages"][0]["memory"]
    (tmp_path / "plain").mkdir()
    plain = tmp_path / "plain" / "recipe.yaml"
    plain.write_text(RECIPE.replace("encoders:\n  asr:\n    path: builtin:tiny-parakeet\n    architecture: tiny-parakeet\n", ""))
    assert compile_plan(load_recipe(plain)).to_json()["stages"][0]["memory"] == with_asr


@pytest.mark.parametrize(("field", "value", "words"), [
    ("freeze", "false", "nothing trains it"),
    ("kind", "whisper", "Parakeet models only"),
])
def test_what_asr_cannot_do_is_refused_at_its_line(tmp_path: Path, field: str, value: str, words: str):
    path = _write(tmp_path, f"    {field}: {value}\n")
    with pytest.raises(RecipeError) as caught:
        compile_plan(load_recipe(path))
    errors = [d for d in caught.value.diagnostics if d.severity == "error"]
    assert [(d.field, d.location.line) for d in errors] == [(f"encoders.asr.{field}", line_of(path, f"    {field}:"))]
    assert words in errors[0].message and errors[0].hint
