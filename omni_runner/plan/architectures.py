"""The known-architecture table: plan for models whose folders are not on this machine.

CI and laptops validate and plan recipes written for a GPU box, where `/data/base-model/...` does
not exist. The facts live in `known_architectures.json` (one data file); this module turns an entry
into the same `Detection` that reading the real folder would give, so the planner has one input.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path, PurePath
from typing import Any

from omni_runner import param_count
from omni_runner.detect import Detection, Evidence

TABLE_FILE = Path(__file__).with_name("known_architectures.json")


@lru_cache(maxsize=1)
def _table() -> dict[str, dict[str, Any]]:
    data = json.loads(TABLE_FILE.read_text(encoding="utf-8"))
    return {name: entry for name, entry in data.items() if not name.startswith("_")}


def known_names() -> tuple[str, ...]:
    return tuple(_table())


def find_known(value: str) -> str | None:
    """The table key for an `architecture:` value, or for a model path whose folder name is an alias."""
    wanted = {value.lower(), PurePath(value).name.lower()}
    for name, entry in _table().items():
        if wanted & {name, *(alias.lower() for alias in entry.get("aliases", ()))}:
            return name
    return None


def known_detection(name: str, path: str) -> Detection:
    """A Detection built from the table entry `name`, as if `path` had been read."""
    entry = _table()[name]
    components = {part: _component(spec) for part, spec in entry["components"].items()}
    return Detection(
        path=path,
        role=entry["role"],
        model_type=entry["model_type"],
        modalities=tuple(entry["modalities"]),
        quantization=entry.get("quantization"),
        parameters=param_count.total(components),
        evidence=[Evidence(TABLE_FILE.name, name, f"planned from the known-architecture table: {entry['source']}")],
        components=components,
    )


def group_size(name: str) -> int:
    return int(_table()[name].get("group_size", 128))


# Table keys that give a part by its config dimensions, and the function detection sizes it with.
_SIZED_FROM_DIMS = {
    "language_model": param_count.language_model,
    "qwen_omni_vision": param_count.qwen_omni_vision_tower,
    "qwen_omni_audio": param_count.qwen_omni_audio_tower,
    "moe_language_model": param_count.moe_language_model,
    "qwen3_omni_vision": param_count.qwen3_omni_vision_tower,
    "qwen3_omni_audio": param_count.qwen3_omni_audio_tower,
}


def _component(spec: dict[str, Any]) -> dict[str, Any]:
    for key, size in _SIZED_FROM_DIMS.items():
        if key in spec:
            return size(**spec[key])
    return dict(spec)
