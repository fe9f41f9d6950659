"""Rules that span several fields, which a JSON Schema cannot express, and the model/data path check.

These run on schema-valid-or-not data alike (every access checks its type first), so a recipe
with a type error elsewhere still gets its dangling dataset names reported in the same pass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omni_runner.paths import is_builtin
from omni_runner.recipe.errors import ERROR, Diagnostic, did_you_mean, error, field_name
from omni_runner.recipe.schema import iter_fields
from omni_runner.recipe.yaml_source import Document, Path_


def cross_field_diagnostics(document: Document) -> list[Diagnostic]:
    data = document.data
    problems: list[Diagnostic] = []
    datasets = _mapping(data.get("datasets"))
    capabilities = _mapping(data.get("capabilities"))

    def dangling_dataset(path: Path_, name: Any, who: str) -> None:
        if isinstance(name, str) and name not in datasets:
            defined = ", ".join(sorted(datasets)) or "none yet"
            hint = did_you_mean(name, datasets) if datasets else f"define it under `datasets:` (defined: {defined})"
            problems.append(error(f"{who} names dataset '{name}', which is not defined under `datasets`",
                                  document.locate(path), field_name(path), hint))

    for capability, entry in capabilities.items():
        for index, name in enumerate(_list(_mapping(entry).get("datasets"))):
            dangling_dataset(("capabilities", capability, "datasets", index), name, f"capability '{capability}'")
    for index, name in enumerate(_list(_mapping(data.get("eval")).get("datasets"))):
        dangling_dataset(("eval", "datasets", index), name, "eval")

    if capabilities and not any(_mapping(entry).get("enabled", True) is not False for entry in capabilities.values()):
        problems.append(error("every capability is disabled (enabled: false)", document.locate(("capabilities",), key=True),
                              "capabilities", "enable at least one, or pick some with --capabilities"))

    stage_names: dict[str, int] = {}
    for index, stage in enumerate(_list(data.get("stages"))):
        stage = _mapping(stage)
        name = stage.get("name")
        if isinstance(name, str):
            if name in stage_names:
                path = ("stages", index, "name")
                problems.append(error(f"stage name '{name}' is used twice (first by stages[{stage_names[name]}])",
                                      document.locate(path), field_name(path)))
            stage_names.setdefault(name, index)
        for position, capability in enumerate(_list(stage.get("capabilities"))):
            if isinstance(capability, str) and capability not in capabilities:
                path = ("stages", index, "capabilities", position)
                problems.append(error(
                    f"stage '{name}' trains capability '{capability}', which is not under `capabilities`",
                    document.locate(path), field_name(path),
                    f"add it under `capabilities:` or remove it from the stage (the recipe has: "
                    f"{', '.join(sorted(capabilities)) or 'none'})"))

    thermal = _mapping(_mapping(data.get("controller")).get("thermal"))
    limit, resume = thermal.get("limit_c"), thermal.get("resume_c")
    if _number(limit) and _number(resume) and resume >= limit:
        path = ("controller", "thermal", "resume_c")
        problems.append(error(f"resume_c ({resume}) must be below limit_c ({limit})", document.locate(path),
                              field_name(path), "training resumes once every GPU has cooled below resume_c"))
    return problems


def missing_path_diagnostics(data: dict, severity: str, document: Document) -> list[Diagnostic]:
    """One diagnostic per model or data path (`x-path` fields) that is not on disk; `builtin:` counts as present."""
    problems = []
    for path, schema, value in iter_fields(data):
        kind = schema.get("x-path")
        if kind is None or not isinstance(value, str) or is_builtin(value) or Path(value).exists():
            continue
        what = "model" if kind == "model" else "data"
        problems.append(Diagnostic(
            severity,
            f"{what} path not found: {value}",
            document.locate(path),
            field_name(path),
            "a run cannot start without it: fix the path or put the files there" if severity == ERROR else None,
        ))
    return problems


def _mapping(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
