"""Capabilities are gated on modalities: a blocked one is an error at the line that asks for it.

The text and audio bases here are not Qwen2.5-Omni, so the planner also refuses them as base models
(the trainer loads Omni only); these tests look at the capability gates alone.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from recipe_lines import line_of

from omni_runner.commands import capabilities as capabilities_command
from omni_runner.plan import compile_plan
from omni_runner.recipe import RecipeError, load_recipe

TEXT_BASE = textwrap.dedent("""
    name: gate
    base_model: {path: {models}/qwen2.5-7b-instruct}
    datasets:
      chat: {path: chat.jsonl, format: sharegpt}
      captions: {path: captions.jsonl, format: image-caption}
      speech: {path: speech.jsonl, format: speech-transcript}
    capabilities:
      cot: {datasets: [chat]}
""")
# The bf16 7B base needs a large card; these tests are about gates, not memory.
TEXT_BASE = TEXT_BASE.replace("datasets:\n", "hardware: {vram_gb: 80}\ndatasets:\n", 1)
OMNI_BASE = TEXT_BASE.replace("qwen2.5-7b-instruct", "qwen2.5-omni-7b")


def _refused(recipe_path: Path) -> list:
    with pytest.raises(RecipeError) as caught:
        compile_plan(load_recipe(recipe_path))
    return caught.value.diagnostics


def _blocked(recipe_path: Path) -> list:
    """The capability errors among everything the planner refuses."""
    return [d for d in _refused(recipe_path) if d.severity == "error" and d.field.startswith("capabilities.")]


def test_image_generation_without_an_image_decoder_names_it(write_recipe):
    path = write_recipe(TEXT_BASE + "  image-generation: {datasets: [captions]}\n")
    [problem] = _blocked(path)
    assert (problem.location.file, problem.location.line) == (path, line_of(path, "image-generation:"))
    assert "image_out" in problem.message and "decoders.image" in problem.message


def test_a_base_model_the_trainer_cannot_load_is_refused_at_its_path(write_recipe):
    path = write_recipe(TEXT_BASE)
    [problem] = [d for d in _refused(path) if d.severity == "error"]
    assert problem.field == "base_model.path" and problem.location.line == line_of(path, "base_model:")
    assert "Qwen2.5-Omni" in problem.message and "qwen2" in problem.message


def test_a_llava_base_is_described_and_refused_at_its_path(write_recipe, tmp_path: Path):
    from transformers import LlavaConfig

    LlavaConfig().save_pretrained(tmp_path / "llava")
    path = write_recipe(TEXT_BASE.replace("{models}/qwen2.5-7b-instruct", str(tmp_path / "llava")))
    [problem] = [d for d in _refused(path) if d.severity == "error" and d.field == "base_model.path"]
    assert problem.location.line == line_of(path, "base_model:")
    assert "this is llava (text_in, text_out, image_in)" in problem.message


def test_podcast_without_audio_out_names_the_speech_decoder(write_recipe):
    path = write_recipe(TEXT_BASE.replace("qwen2.5-7b-instruct", "qwen2-audio-7b-instruct") + "  podcast: {datasets: [speech]}\n")
    [problem] = _blocked(path)
    assert problem.location.line == line_of(path, "podcast:")
    assert "audio_out" in problem.message and "decoders.speech" in problem.message
    assert "audio_in" not in problem.message  # Qwen2-Audio hears; it only cannot speak


def test_vision_qa_without_vision_names_the_vision_encoder(write_recipe):
    path = write_recipe(TEXT_BASE + "  vision-qa: {datasets: [captions]}\n")
    [problem] = _blocked(path)
    assert problem.location.line == line_of(path, "vision-qa:")
    assert "image_in" in problem.message and "its own vision tower" in problem.message
    assert "encoders.vision" not in problem.message  # external encoders are not wired: never suggested


def test_every_blocked_capability_is_reported_at_once(write_recipe):
    path = write_recipe(TEXT_BASE + "  vision-qa: {datasets: [captions]}\n  image-generation: {datasets: [captions]}\n")
    assert [d.field for d in _blocked(path)] == ["capabilities.vision-qa", "capabilities.image-generation"]


def test_an_external_vision_encoder_takes_the_images_of_vision_qa_and_its_projector_trains(write_recipe):
    path = write_recipe(
        OMNI_BASE.replace("datasets:\n", "encoders:\n  vision: {path: {models}/siglip2-so400m-patch16-512}\ndatasets:\n", 1)
        + "  vision-qa: {datasets: [captions]}\n"
        + "stages:\n  - {name: align, capabilities: [vision-qa], train: [vision_projector]}\n"
        + "  - {name: instruct, train: [thinker, vision_projector]}\n"
    )
    align, _ = compile_plan(load_recipe(path)).stages
    trains = {group.module: group for group in align.modules.trainable}
    assert set(trains) == {"vision_projector"}
    assert trains["vision_projector"].parameters == 1152 * 3584 + 3584 + 3584 * 3584 + 3584  # MLP 1152 -> 3584 -> 3584


def test_disabled_capability_is_neither_gated_nor_refused(write_recipe):
    path = write_recipe(OMNI_BASE + "  image-generation: {datasets: [captions], enabled: false}\n")
    assert [s.name for s in compile_plan(load_recipe(path)).stages] == ["train"]


def test_capabilities_command_marks_blocked_ones_with_missing_modality_and_provider(write_recipe, capsys):
    path = write_recipe(TEXT_BASE + "  podcast: {datasets: [speech]}\n")
    args = _parse(capabilities_command, [str(path), "--json"])
    assert capabilities_command.run(args) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)["capabilities"]}
    assert rows["cot"]["available"] and rows["cot"]["requested"]
    podcast = rows["podcast"]
    assert not podcast["available"] and podcast["requested"]
    assert [m["modality"] for m in podcast["missing"]] == ["audio_in", "audio_out"]
    assert "decoders.speech" in podcast["missing"][1]["provided_by"]


def test_capabilities_command_without_recipe_prints_the_registry(capsys):
    assert capabilities_command.run(_parse(capabilities_command, ["--json"])) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 12 and rows[0]["name"] == "tool-calling"
    assert all(row["trains"] and row["not_trained_because"] is None for row in rows)


def _parse(module, argv):
    import argparse

    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return parser.parse_args(argv)


def test_capabilities_command_human_table_says_what_to_add(write_recipe, capsys):
    path = write_recipe(TEXT_BASE.replace("qwen2.5-7b-instruct", "qwen2-audio-7b-instruct"))
    assert capabilities_command.run(_parse(capabilities_command, [str(path)])) == 0
    out = capsys.readouterr().out
    assert "podcast                BLOCKED" in out
    assert "missing audio_out: add decoders.speech" in out
    assert "cot *                  available" in out


def test_speech_decoder_without_a_talker_is_a_warning(write_recipe):
    path = write_recipe(TEXT_BASE.replace("datasets:\n", "decoders:\n  speech: {kind: talker}\ndatasets:\n", 1))
    warnings = [d for d in _refused(path) if d.severity == "warning"]
    assert any(d.field == "decoders.speech" and "nothing provides audio_out" in d.message for d in warnings)


def test_validate_reports_a_blocked_capability_at_its_line(write_recipe, capsys):
    from omni_runner.cli import main

    path = write_recipe(TEXT_BASE + "  image-generation: {datasets: [captions]}\n")
    assert main(["validate", str(path)]) == 1
    output = capsys.readouterr().out
    assert f"{path}:{line_of(path, 'image-generation:')}:" in output and "image_out" in output
