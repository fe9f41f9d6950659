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
