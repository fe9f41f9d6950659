"""The capability registry is the design's table, and the schema and the registry agree."""

from __future__ import annotations

import json
from pathlib import Path

from omni_runner.capabilities import CAPABILITIES, DATASET_FORMATS, MODALITIES, PROVIDERS, describe_missing

SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "recipe.schema.json"

# ARCHITECTURE.md, "Modalities and capabilities".
DESIGN_TABLE = {
    "tool-calling": ("text", {"text_in", "text_out"}),
    "cot": ("text", {"text_in", "text_out"}),
    "reasoning": ("text", {"text_in", "text_out"}),
    "thinking": ("text", {"text_in", "text_out"}),
    "streaming": ("text", {"text_in", "text_out"}),
    "podcast": ("audio", {"text_in", "text_out", "audio_in", "audio_out"}),
    "vision-qa": ("vision", {"text_in", "text_out", "image_in"}),
    "video-understanding": ("vision", {"text_in", "text_out", "video_in"}),
    "tri-streaming": ("omni", {"text_in", "text_out", "image_in", "video_in", "audio_in", "audio_out"}),
    "image-generation": ("generation", {"text_in", "image_out"}),
    "image-editing": ("generation", {"text_in", "image_in", "image_out"}),
    "video-generation": ("generation", {"text_in", "video_out"}),
}


def test_registry_holds_exactly_the_design_table():
    assert {name: (c.category, set(c.requires)) for name, c in CAPABILITIES.items()} == DESIGN_TABLE


def test_every_capability_accepts_only_known_formats_and_names_its_sample_recipe():
    for capability in CAPABILITIES.values():
        assert capability.formats and set(capability.formats) <= set(DATASET_FORMATS), capability.name
        assert capability.template and capability.loss_on and capability.eval_metric


def test_tool_calling_is_scored_by_exact_match_and_thinking_uses_think_tags_template():
    assert CAPABILITIES["tool-calling"].eval_metric == "tool_call_exact_match"
    assert CAPABILITIES["thinking"].template == "thinking"


def test_every_modality_has_a_provider_to_suggest():
    assert set(PROVIDERS) == set(MODALITIES)
    assert "decoders.image" in describe_missing("image_out")


def test_missing_lists_absent_modalities_in_canonical_order():
    assert CAPABILITIES["tri-streaming"].missing({"text_in", "text_out"}) == ("image_in", "video_in", "audio_in", "audio_out")


def test_schema_enumerates_the_registry_names_and_formats():
    schema = json.loads(SCHEMA.read_text())
    assert schema["$defs"]["capability_name"]["enum"] == list(CAPABILITIES)
    dataset = schema["properties"]["datasets"]["additionalProperties"]
    assert dataset["properties"]["format"]["enum"] == list(DATASET_FORMATS)
