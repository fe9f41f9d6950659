"""Which model fills each recipe slot, and what it provides: detection on disk, else the known table.

A missing folder is normal at plan time (CI has no weights), so it becomes a warning and the plan
uses the known-architecture table; only a folder that exists but cannot be read, or a missing one
that matches no known architecture, is an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omni_runner.detect import Detection, DetectionError, detect
from omni_runner.paths import is_builtin, resolve_model_path
from omni_runner.plan.architectures import find_known, known_detection, known_names
from omni_runner.recipe.errors import Diagnostic, did_you_mean, error, warning

# Recipe slots that name a model folder, in the order they are reported.
MODEL_SLOTS: tuple[tuple[str, ...], ...] = (
    ("base_model",),
    ("encoders", "vision"),
    ("encoders", "audio"),
    ("encoders", "asr"),
    ("decoders", "image"),
    ("decoders", "video"),
)


@dataclass(frozen=True)
class PlannedModel:
    slot: str  # dotted recipe path: "base_model", "encoders.vision", ...
    section: dict[str, Any]
    detection: Detection
    from_table: str | None  # the known-architecture key when the folder was not read


def effective_quantization(data: dict[str, Any], base: PlannedModel) -> str | None:
    """The quantization the loader gives the base model: the recipe's `base_model.quantization` when it names
    one, else the folder's own (GPTQ), else bnb-4bit for `training.method: qlora` on an unquantized folder."""
    requested = (data.get("base_model") or {}).get("quantization", "auto")
    if requested not in ("auto", None):
        return None if requested == "none" else requested
    if base.detection.quantization is None and (data.get("training") or {}).get("method") == "qlora":
        return "bnb-4bit"
    return base.detection.quantization


def _section(data: dict[str, Any], slot: tuple[str, ...]) -> dict[str, Any] | None:
    node: Any = data
    for key in slot:
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, dict) and node.get("path") else None


def resolve_models(recipe: Any) -> tuple[dict[str, PlannedModel], list[Diagnostic]]:
    """Every model slot the recipe fills, with the diagnostics (warnings and errors) found on the way."""
    models: dict[str, PlannedModel] = {}
    diagnostics: list[Diagnostic] = []
    for slot in MODEL_SLOTS:
        section = _section(recipe.data, slot)
        if section is None:
            continue
        name = ".".join(slot)
        planned = _resolve_one(recipe, slot, section, diagnostics)
        if planned is not None:
            models[name] = PlannedModel(name, section, *planned)
    return models, diagnostics


def _resolve_one(recipe: Any, slot: tuple[str, ...], section: dict[str, Any], diagnostics: list[Diagnostic]) -> tuple[Detection, str | None] | None:
    name = ".".join(slot)
    value = str(section["path"])
    path_location = recipe.location((*slot, "path"))
    base_dir = path_location.file.parent if path_location else Path(recipe.source).parent
    folder = resolve_model_path(value, base_dir)
    architecture = section.get("architecture")
    if architecture and find_known(architecture) is None:
        diagnostics.append(
            error(
                f"unknown architecture {architecture!r}",
                recipe.location((*slot, "architecture")),
                f"{name}.architecture",
                did_you_mean(architecture, known_names()),
            )
        )
        return None
    if folder.exists():
        try:
            return detect(folder), None
        except DetectionError as problem:
            diagnostics.append(error(str(problem), path_location, f"{name}.path"))
            return None
    key = find_known(architecture) if architecture else find_known(value)
    if key is None:
        what = "is not built yet" if is_builtin(value) else "is not on disk"
        diagnostics.append(
            error(
                f"{value} {what} and matches no known architecture, so it cannot be planned",
                path_location,
                f"{name}.path",
                f"set {name}.architecture to one of: {', '.join(known_names())}",
            )
        )
        return None
    diagnostics.append(
        warning(
            f"{folder} {'is not built yet' if is_builtin(value) else 'is not on disk'}; planned from the known-architecture table ({key})",
            path_location,
            f"{name}.path",
        )
    )
    return known_detection(key, str(folder)), key
