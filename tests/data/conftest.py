"""Shared fixture for the data tests: the tiny model's tokenizer (built once into the test cache)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def tokenizer(_omni_runner_cache: Path) -> Any:
    from transformers import AutoTokenizer

    from omni_runner.models.tiny import ensure_tiny_model

    return AutoTokenizer.from_pretrained(str(ensure_tiny_model()))

