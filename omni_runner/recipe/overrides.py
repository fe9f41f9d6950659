"""Command-line changes to a loaded recipe: `--set a.b.c=VALUE` and `--capabilities a,b`.

Override paths are checked against the schema, not against the recipe, so any field the schema
knows can be set even when the recipe leaves it out; a typo gets the nearest real field name.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from omni_runner.recipe.errors import Diagnostic, did_you_mean, error, field_name
from omni_runner.recipe.merge import forget_origin
from omni_runner.recipe.schema import child_schema, field_names, name_choices, recipe_schema
from omni_runner.recipe.yaml_source import Document, RecipePath, parse_value_text


def apply_overrides(document: Document, overrides: Iterable[str]) -> list[Diagnostic]:
    """Apply each `KEY=VALUE` in order (later ones win); return the problems instead of applying those."""
    problems: list[Diagnostic] = []
    for text in overrides:
        problem = _apply_one(document, text)
        if problem is not None:
            problems.append(problem)
    return problems


def _apply_one(document: Document, text: str) -> Diagnostic | None:
    key, sep, value_text = text.partition("=")
    if not sep or not key.strip():
        return error(f"--set {text}: expected KEY=VALUE", None, hint="for example --set training.lr=1e-4")
    path, problem = _schema_path(key.strip(), text)
    if problem is not None:
        return problem
    try:
        value = parse_value_text(value_text)
    except ValueError as exc:
        return error(f"--set {text}: the value is not valid YAML: {exc}", None, key)
    problem = _unreachable(document.data, path)
    if problem:
        return error(f"--set {text}: {problem}", None, key)
    container: Any = document.data
    for part in path[:-1]:
        if isinstance(part, str) and not isinstance(container.get(part), (dict, list)):
            container[part] = {}
        container = container[part]
    container[path[-1]] = value
    forget_origin(document, path)
    return None


def _unreachable(data: Any, path: RecipePath) -> str | None:
    """Why `path` cannot be set in `data` (a list index past the end, a non-mapping in the way), or None.

    Checked before anything changes, so a failed override leaves the recipe as it was."""
    node = data
    for depth, part in enumerate(path):
        where = field_name(path[:depth]) or "the recipe"
        if isinstance(part, int):
            items = node if isinstance(node, list) else []
            if part >= len(items):
                return f"{where} has {len(items)} item(s), no index {part}"
            node = items[part]
        elif isinstance(node, dict) or node is None:
            node = node.get(part) if node else None
        else:
            return f"{where} is not a mapping in the recipe"
    return None


def _schema_path(key: str, text: str) -> tuple[RecipePath, Diagnostic | None]:
    """`a.b.0.c` as a recipe path, checked field by field against the schema."""
    schema = recipe_schema()
    path: list[str | int] = []
    for part in key.split("."):
        step: str | int = int(part) if part.isdigit() else part
        sub = child_schema(schema, step) if part else None
        choices = name_choices(schema)
        if sub is None or (choices and step not in choices):
            where = field_name(path) or "the recipe"
            hint = did_you_mean(part, choices or field_names(schema)) if part else None
            what = "capability" if choices else "field"
            return (), error(f"--set {text}: unknown {what} '{part}' in {where}", None, key, hint)
        path.append(step)
        schema = sub
    return tuple(path), None


def restrict_capabilities(data: dict, names: Iterable[str]) -> list[Diagnostic]:
    """Enable exactly the named capabilities (the others stay in the recipe, disabled)."""
    names = [name.strip() for name in names if name.strip()]
    known = name_choices(recipe_schema()["properties"]["capabilities"]) or []
    in_recipe = data.get("capabilities") if isinstance(data.get("capabilities"), dict) else {}
    problems = []
    for name in names:
        if name not in known:
            problems.append(error(f"--capabilities: unknown capability '{name}'", None, "capabilities",
                                  did_you_mean(name, known)))
        elif name not in in_recipe:
            listed = ", ".join(sorted(in_recipe)) or "none"
            problems.append(error(f"--capabilities: capability '{name}' is not in the recipe", None,
                                  "capabilities", f"the recipe has: {listed}; add it under `capabilities:` first"))
    if not problems:
        for name, entry in in_recipe.items():
            if isinstance(entry, dict):
                entry["enabled"] = name in names
    return problems
