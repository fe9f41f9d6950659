"""Every capability and every data set format is either trained end to end by a named test, or refused by
the planner at the recipe line that asks for it: nothing validates and is then dropped at run time.

A capability or format moves from "refused" to the trained tables when the trainer learns it: take it
out of omni_runner/plan/support.py and name here the test that trains it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from recipe_lines import line_of

from omni_runner.capabilities import CAPABILITIES
from omni_runner.plan import compile_plan
from omni_runner.recipe import RecipeError, load_recipe

REPO = Path(__file__).resolve().parents[2]
FORMATS = json.loads((REPO / "schemas" / "recipe.schema.json").read_text())["properties"]["datasets"][
    "additionalProperties"]["properties"]["format"]["enum"]

# The tiny run of recipes/tiny_omni.yaml (every text capability; cot-collection, openo1, xlam, hermes,
# openai, sharegpt and alpaca records) through the real trainer child.
TEXT_RUN = "tests/train/test_training_run.py::test_every_step_is_an_event_with_the_documented_metrics"
MEDIA = "tests/train/test_media_training.py::"
# The tiny run of recipes/tiny_omni_generation.yaml: image-generation (JourneyDB-GoT records), image-editing
# (OmniEdit-GoT) and video-generation (MSR-VTT) through the tiny SD3 and SVD.
GENERATION_RUN = "tests/train/test_generation.py::test_the_decoder_loss_reaches_connectors_queries_and_adapters_and_nothing_frozen"

TRAINED_CAPABILITIES = {
    "tool-calling": TEXT_RUN,
    "cot": TEXT_RUN,
    "reasoning": TEXT_RUN,
    "thinking": TEXT_RUN,
    "streaming": TEXT_RUN,
    "vision-qa": MEDIA + "test_vision_qa_trains_end_to_end",
    "video-understanding": MEDIA + "test_video_understanding_trains_end_to_end",
    "podcast": MEDIA + "test_podcast_trains_end_to_end",
    "tri-streaming": MEDIA + "test_tri_streaming_trains_end_to_end",
    "image-generation": GENERATION_RUN,
    "image-editing": GENERATION_RUN,
    "video-generation": GENERATION_RUN,
}
TRAINED_FORMATS = {
    "openai": TEXT_RUN,
    "sharegpt": TEXT_RUN,
    "alpaca": TEXT_RUN,
    "cot-collection": TEXT_RUN,
    "openo1": TEXT_RUN,
    "xlam": TEXT_RUN,
    "hermes": TEXT_RUN,
    "image-caption": MEDIA + "test_caption_and_transcript_formats_train",
    "video-caption": MEDIA + "test_caption_and_transcript_formats_train",
    "speech-transcript": MEDIA + "test_caption_and_transcript_formats_train",
    "image-edit": GENERATION_RUN,
}
# Formats the planner accepts that no test trains yet: each is a failing (strict xfail) row until one does.
UNTESTED_FORMATS = {
    "gorilla": "no bundled gorilla records, so no training test reads them yet (its adapter is tested in tests/data)",
}


def _node_exists(node: str) -> bool:
    """Whether `path::function` names a test function in that file (grepped: collecting would import torch)."""
    path, function = node.split("::")
    file = REPO / path
    return file.is_file() and f"def {function}(" in file.read_text()


def _recipe(tmp_path: Path, capability: str, fmt: str) -> Path:
    """The smallest recipe that trains `capability` on one data set of format `fmt`, on the tiny model
    (with the tiny decoders its outputs need)."""
    path = tmp_path / "recipe.yaml"
    requires = CAPABILITIES[capability].requires
    decoders = {kind: f"{{path: builtin:tiny-{model}, architecture: tiny-{model}}}"
                for kind, model in (("image", "sd3"), ("video", "svd")) if f"{kind}_out" in requires}
    path.write_text(
        "name: matrix\n"
        "base_model: {path: builtin:tiny-qwen2.5-omni, architecture: tiny-qwen2.5-omni}\n"
        + ("decoders:\n" + "".join(f"  {kind}: {spec}\n" for kind, spec in decoders.items()) if decoders else "")
        + "datasets:\n"
        "  records:\n"
        f"    path: records.jsonl\n"
        f"    format: {fmt}\n"
        "capabilities:\n"
        f"  {capability}: {{datasets: [records]}}\n"
        "training: {max_steps: 2, micro_batch: 1, grad_accum: 1, seq_len: 256}\n"
        "hardware: {device: cpu, vram_gb: 4}\n"
    )
    return path


def _refusals(path: Path) -> list:
    with pytest.raises(RecipeError) as caught:
        compile_plan(load_recipe(path))
    return [d for d in caught.value.diagnostics if d.severity == "error"]


def _trained_capability_for(fmt: str) -> str:
    """A trained capability that reads `fmt`, or any trained one when none does (the format is then refused)."""
    readers = [name for name, c in CAPABILITIES.items() if fmt in c.formats and name in TRAINED_CAPABILITIES]
    return (readers or list(TRAINED_CAPABILITIES))[0]


@pytest.mark.parametrize("capability", list(CAPABILITIES))
def test_every_capability_is_trained_by_a_named_test_or_refused_at_its_line(capability: str, tmp_path: Path):
    fmt = CAPABILITIES[capability].formats[0]
    path = _recipe(tmp_path, capability, fmt)
    if capability in TRAINED_CAPABILITIES:
        assert _node_exists(TRAINED_CAPABILITIES[capability]), f"{TRAINED_CAPABILITIES[capability]} does not exist"
        assert compile_plan(load_recipe(path)).stages[0].capabilities == [capability]
        return
    problems = _refusals(path)
    assert [(p.field, p.location.line) for p in problems] == [(f"capabilities.{capability}", line_of(path, f"  {capability}:"))]
    assert "does not train yet" in problems[0].message and problems[0].hint


@pytest.mark.parametrize("fmt", [
    pytest.param(f, marks=pytest.mark.xfail(strict=True, reason=UNTESTED_FORMATS[f])) if f in UNTESTED_FORMATS else f
    for f in FORMATS
])
def test_every_format_is_trained_by_a_named_test_or_refused_at_its_line(fmt: str, tmp_path: Path):
    path = _recipe(tmp_path, _trained_capability_for(fmt), fmt)
    if fmt in TRAINED_FORMATS:
        assert _node_exists(TRAINED_FORMATS[fmt]), f"{TRAINED_FORMATS[fmt]} does not exist"
        compile_plan(load_recipe(path))
        return
    problems = _refusals(path)
    assert [(p.field, p.location.line) for p in problems] == [("datasets.records.format", line_of(path, f"format: {fmt}"))]
    assert "does not train yet" in problems[0].message and problems[0].hint


def test_the_tables_name_only_real_capabilities_and_formats():
    assert set(TRAINED_CAPABILITIES) <= set(CAPABILITIES)
    assert set(TRAINED_FORMATS) | set(UNTESTED_FORMATS) <= set(FORMATS)
    assert not set(TRAINED_FORMATS) & set(UNTESTED_FORMATS)
