"""The one YAML reader and writer for plain data outside the recipe loader (resolved recipes, NeMo configs)."""

from __future__ import annotations

import pytest

from omni_runner.plain_yaml import (
    YAMLError,
    dump_plain_yaml,
    load_plain_yaml,
    read_plain_yaml,
)


def test_a_python_tag_is_an_error_and_never_builds_an_object(tmp_path):
    hostile = tmp_path / "recipe.yaml"
    hostile.write_text("controller: !!python/object/apply:os.getpid []\n")

    with pytest.raises(YAMLError, match="python/object/apply:os.getpid"):
        read_plain_yaml(hostile)


def test_written_data_reads_back_equal_with_its_keys_in_their_order():
    data = {"name": "run", "training": {"lr": 0.0001, "stages": [{"name": "b"}, {"name": "a"}]}, "base_model": None}

    text = dump_plain_yaml(data)

    assert load_plain_yaml(text) == data
    assert text.index("name: run") < text.index("training:") < text.index("base_model:")
    assert "{" not in text  # block style, as a person writes a recipe
