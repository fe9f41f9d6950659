"""Helpers for recipe tests: write recipe files into a tmp folder and load them."""

from __future__ import annotations

from pathlib import Path

import pytest

from omni_runner.recipe import Diagnostic, RecipeError, load_recipe

# Seven lines, so the line numbers of text appended to it are easy to read: line 8 is the next one.
VALID = """\
name: tiny
base_model:
  path: builtin:tiny-qwen2.5-omni
datasets:
  chat: {path: builtin:chat, format: openai}
capabilities:
  cot: {datasets: [chat]}
"""


@pytest.fixture
def write(tmp_path: Path):
    """write(name, text) -> Path of a file in this test's folder."""

    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    return _write


def recipe_errors(path: Path, **kwargs) -> list[Diagnostic]:
    """The diagnostics of a recipe that must fail to load."""
    with pytest.raises(RecipeError) as caught:
        load_recipe(path, environ=kwargs.pop("environ", {}), **kwargs)
    return caught.value.diagnostics
