"""Rules that span several fields, which a JSON Schema cannot express, and the model/data path check.

These run on schema-valid-or-not data alike (every access checks its type first), so a recipe
with a type error elsewhere still gets its dangling dataset names reported in the same pass. A
rule whose fields already failed the schema stays quiet: one mistake, one message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from omni_runner.paths import is_builtin
from omni_runner.recipe.errors import ERROR, Diagnostic, did_you_mean, error, field_name, warning
from omni_runner.recipe.schema import iter_fields
from omni_runner.recipe.yaml_source import Document, RecipePath


def cross_field_diagnostics(document: Document, invalid: set[RecipePath]) -> list[Diagnostic]:
    """Problems between fields; `invalid` holds the paths the schema already rejected."""

    def broken(*paths: RecipePath) -> bool:
        return any(path[:end] in invalid for path in paths for end in range(1, len(path) + 1))

    return [
        *_dangling_datasets(document, broken),
        *_all_disabled(document),
        *_stage_problems(document, broken),
        *_thermal_problems(document, broken),
        *_distributed_problems(document, broken),
    ]


def _dangling_datasets(document: Document, broken: Callable[..., bool]) -> Iterator[Diagnostic]:
    data = document.data
    datasets = _mapping(data.get("datasets"))
    references = [
        (("capabilities", capability, "datasets", index), name, f"capability '{capability}'")
        for capability, entry in _mapping(data.get("capabilities")).items()
        for index, name in enumerate(_list(_mapping(entry).get("datasets")))
    ]
    references += [(("eval", "datasets", index), name, "eval")
                   for index, name in enumerate(_list(_mapping(data.get("eval")).get("datasets")))]
    for path, name, who in references:
        if isinstance(name, str) and name not in datasets and not broken(path, ("datasets",)):
            hint = did_you_mean(name, datasets) if datasets else "define it under `datasets:` (none is defined yet)"
            yield error(f"{who} names dataset '{name}', which is not defined under `datasets`",
                        document.locate(path), field_name(path), hint)


def _all_disabled(document: Document) -> Iterator[Diagnostic]:
    capabilities = _mapping(document.data.get("capabilities"))
    if capabilities and all(_mapping(entry).get("enabled") is False for entry in capabilities.values()):
        yield error("every capability is disabled (enabled: false)", document.locate(("capabilities",), key=True),
                    "capabilities", "enable at least one, or pick some with --capabilities")


def _stage_problems(document: Document, broken: Callable[..., bool]) -> Iterator[Diagnostic]:
    capabilities = _mapping(document.data.get("capabilities"))
    first_use: dict[str, int] = {}
    for index, stage in enumerate(_list(document.data.get("stages"))):
        stage = _mapping(stage)
        name = stage.get("name")
        if isinstance(name, str) and name in first_use:
            path = ("stages", index, "name")
            yield error(f"stage name '{name}' is used twice (first by stages[{first_use[name]}])",
                        document.locate(path), field_name(path))
        if isinstance(name, str):
            first_use.setdefault(name, index)
        for position, capability in enumerate(_list(stage.get("capabilities"))):
            path = ("stages", index, "capabilities", position)
            if isinstance(capability, str) and capability not in capabilities and not broken(path, ("capabilities",)):
                listed = ", ".join(sorted(capabilities)) or "none"
                yield error(f"stage '{name}' trains capability '{capability}', which is not under `capabilities`",
                            document.locate(path), field_name(path),
                            f"add it under `capabilities:` or remove it from the stage (the recipe has: {listed})")


def _thermal_problems(document: Document, broken: Callable[..., bool]) -> Iterator[Diagnostic]:
    thermal = _mapping(_mapping(document.data.get("controller")).get("thermal"))
    limit, resume = thermal.get("limit_c"), thermal.get("resume_c")
    path = ("controller", "thermal", "resume_c")
    if _number(limit) and _number(resume) and resume >= limit and not broken(path, path[:-1] + ("limit_c",)):
        yield error(f"resume_c ({resume}) must be below limit_c ({limit})", document.locate(path),
                    field_name(path), "training resumes once every GPU has cooled below resume_c")


def _distributed_problems(document: Document, broken: Callable[..., bool]) -> Iterator[Diagnostic]:
    """The process layout must be one accelerate can launch: the same number of processes on every
    machine, a rank for this machine among them, and an address the other machines can reach."""
    section = _mapping(document.data.get("distributed"))
    processes, machines, rank = section.get("num_processes"), section.get("num_machines"), section.get("machine_rank")
    if not (_count(processes) and _count(machines)) or broken(("distributed", "num_processes"), ("distributed", "num_machines")):
        return
    if processes % machines:
        path = ("distributed", "num_processes")
        lower, upper = machines * (processes // machines), machines * (processes // machines + 1)
        choices = f"{lower} or {upper}" if lower else str(upper)
        yield error(f"num_processes ({processes}) is not a multiple of num_machines ({machines})", document.locate(path),
                    field_name(path), f"every machine runs the same number of processes, and num_processes counts them on all "
                    f"machines together: use {choices}")
    if _count(rank) and rank >= machines and not broken(("distributed", "machine_rank")):
        path = ("distributed", "machine_rank")
        yield error(f"machine_rank ({rank}) must be below num_machines ({machines})", document.locate(path),
                    field_name(path), f"machine ranks run from 0 (the main machine) to {machines - 1}")
    if machines > 1 and section.get("main_process_ip") is None:
        path = ("distributed", "num_machines")
        yield error(f"num_machines is {machines}, and main_process_ip is not set", document.locate(path), field_name(path),
                    "set distributed.main_process_ip to the address of the machine with machine_rank 0, which the others connect to")


def remote_code_warnings(document: Document) -> list[Diagnostic]:
    """`trust_remote_code: true` runs Python files from the model folder when it loads: say so where it is set."""
    if _mapping(document.data.get("base_model")).get("trust_remote_code") is not True:
        return []
    path = ("base_model", "trust_remote_code")
    return [warning("trust_remote_code runs the Python code in the model folder when the model loads: "
                    "only set it for a folder whose code you have read or trust", document.locate(path), field_name(path),
                    "Qwen2.5-Omni needs no remote code: transformers has its classes")]


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


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
