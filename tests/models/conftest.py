"""Fixtures for the model tests: the cached tiny model (built once per session) and small recipes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(_omni_runner_cache: Path) -> Path:
    from omni_runner.models.tiny import ensure_tiny_model

    return ensure_tiny_model()


def _recipe(method: str = "lora", stages: list[dict[str, Any]] | None = None, **base: Any) -> dict[str, Any]:
    return {
        "base_model": {
            "path": "builtin:tiny-qwen2.5-omni",
            "quantization": "auto",
            "dtype": "auto",
            "attn_implementation": "auto",
            "trust_remote_code": False,
            **base,
        },
        "training": {
            "method": method,
            "lora": {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]},
            "gradient_checkpointing": "auto",
        },
        "stages": stages or [],
        "hardware": {"device": "cpu"},
    }


@pytest.fixture
def recipe() -> Any:
    """`recipe(method=..., stages=..., **base_model)`: the part of `Recipe.data` model loading reads."""
    return _recipe
