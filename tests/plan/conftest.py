"""Shared helpers for the plan tests: the hand-written model config fixtures and a `.nemo` packer."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

MODELS = Path(__file__).resolve().parents[1] / "fixtures" / "models"


@pytest.fixture
def models() -> Path:
    return MODELS


@pytest.fixture
def parakeet_nemo(tmp_path: Path) -> Path:
    """A `.nemo` file as NeMo writes it: a tar with model_config.yaml (weights left out)."""
    archive = tmp_path / "parakeet-tdt-0.6b-v2.nemo"
    with tarfile.open(archive, "w") as tar:
        tar.add(MODELS / "parakeet-tdt-0.6b-v2-nemo" / "model_config.yaml", arcname="./model_config.yaml")
    return archive


@pytest.fixture
def write_recipe(tmp_path: Path):
    """Write a recipe file (`{models}` becomes the model fixtures folder) and return its path."""

    def write(text: str, name: str = "recipe.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text.lstrip().replace("{models}", str(MODELS)))
        return path

    return write

