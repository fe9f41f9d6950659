"""The plan's torch-free length measurement counts exactly what the trainer's `render_sample` renders."""

from __future__ import annotations

import pytest

from omni_runner.data.adapters import adapt
from omni_runner.data.lengths import TemplateTokenizer, sample_length
from omni_runner.data.render import render_sample, template_for
from omni_runner.data.sources import open_source
from omni_runner.paths import BUNDLED_DATA_DIR

BUNDLED = {  # format, capability whose template renders it
    "tool-calling/quickstart_xlam.parquet": ("xlam", "tool-calling"),
    "tool-calling/quickstart_hermes.parquet": ("hermes", "tool-calling"),
    "thinking/messages.parquet": ("openai", "thinking"),
    "cot/cot_collection.jsonl": ("cot-collection", "cot"),
    "reasoning/openo1_sft.jsonl": ("openo1", "reasoning"),
    "streaming/sharegpt.jsonl": ("sharegpt", "streaming"),
}


@pytest.fixture(scope="module")
def tokenizers(_omni_runner_cache):
    from transformers import AutoTokenizer

    from omni_runner.models.tiny import ensure_tiny_model

    folder = ensure_tiny_model()
    return TemplateTokenizer(folder), AutoTokenizer.from_pretrained(folder, local_files_only=True)


@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: p.split("/")[0])
def test_a_measured_length_is_the_rendered_length(tokenizers, path):
    light, real = tokenizers
    format_name, capability = BUNDLED[path]
    source = open_source("probe", {"path": f"builtin:{path}", "format": format_name}, BUNDLED_DATA_DIR)
    for index in range(0, source.total, max(1, source.total // 8)):
        conversation = adapt(format_name, source.record(index))
        rendered = render_sample(conversation, real, template_for(capability))
        assert sample_length(conversation, light, template_for(capability)) == len(rendered.input_ids), index
