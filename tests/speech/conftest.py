"""The built-in tiny model (real talker, token2wav and speaker table) for the speech tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(_omni_runner_cache: Path) -> Path:
    from omni_runner.models.tiny import ensure_tiny_model

    return ensure_tiny_model()
