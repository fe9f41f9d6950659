"""The recipe schema (`schemas/recipe.schema.json`): finding it, walking it, checking data against it.

The schema is the single source of truth for recipe fields, so defaults, allowed keys for
did-you-mean hints, which fields are paths (`x-path`) and the generated reference all come from
it. `validator` does the checking; this module turns its findings into located Diagnostics that
say what to write instead.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omni_runner.recipe.errors import Diagnostic, Location, did_you_mean, error, field_name
from omni_runner.recipe.validator import Violation, check_supported, iter_violations
from omni_runner.recipe.yaml_source import Document, RecipePath

SCHEMA_FILE = "recipe.schema.json"
_CHECKOUT_SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / SCHEMA_FILE

_TYPE_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "object": "a mapping",
    "array": "a list",
    "null": "null",
}


def schema_text() -> str:
    """The schema file's text: from the source checkout this package runs from, else from the
    installed package data (a wheel maps `schemas/` to `omni_runner._schemas`)."""
    if _CHECKOUT_SCHEMA.is_file():
        return _CHECKOUT_SCHEMA.read_text(encoding="utf-8")
    from importlib import resources  # costs start-up time; only installed copies need it

    return resources.files("omni_runner._schemas").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")


@functools.cache
def recipe_schema() -> dict:
    return json.loads(schema_text())


def resolve(schema: dict) -> dict:
    """`schema` with a local `$ref` replaced by its target; sibling keys (descriptions) win."""
    ref = schema.get("$ref")
    if ref is None:
        return schema
    target: Any = recipe_schema()
    for part in ref.removeprefix("#/").split("/"):
        target = target[part]
    return {**resolve(target), **{k: v for k, v in schema.items() if k != "$ref"}}


def child_schema(schema: dict, key: str | int) -> dict | None:
    """The schema of `key` inside a value described by `schema`, or None when no such field exists."""
    schema = resolve(schema)
    if isinstance(key, int):
        items = schema.get("items")
        return resolve(items) if isinstance(items, dict) and "array" in types_of(schema) else None
    if key in schema.get("properties", {}):
        return resolve(schema["properties"][key])
    extra = schema.get("additionalProperties")
    return resolve(extra) if isinstance(extra, dict) else None


def field_names(schema: dict) -> list[str]:
    return list(resolve(schema).get("properties", {}))


def name_choices(schema: dict) -> list[str] | None:
    """The allowed names of a mapping whose keys are constrained to an enum (e.g. capabilities)."""
    names = resolve(schema).get("propertyNames")
    choices = resolve(names).get("enum") if names else None
    return list(choices) if choices else None


def fill_defaults(data: dict) -> None:
    """Insert every missing field that has a default, at every depth, in place."""
    _fill(recipe_schema(), data)


def _fill(schema: dict, value: Any) -> None:
    schema = resolve(schema)
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for key, sub in properties.items():
            sub = resolve(sub)
            if key in value:
                continue
            sibling = sub.get("x-default-unless-set")
            if sibling is not None and value.get(sibling) is not None:
                value[key] = None
            elif "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
        for key, item in value.items():
            sub = child_schema(schema, key)
            if sub is not None:
                _fill(sub, item)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            _fill(schema["items"], item)


def iter_fields(data: Any, schema: dict | None = None, path: RecipePath = ()) -> Iterator[tuple[RecipePath, dict, Any]]:
    """Every value in `data` that the schema describes, with its path and (resolved) schema."""
    schema = resolve(recipe_schema() if schema is None else schema)
    yield path, schema, data
    children = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, item in children:
        sub = child_schema(schema, key)
        if sub is not None:
            yield from iter_fields(item, sub, path + (key,))


def schema_diagnostics(document: Document, root: Location) -> tuple[list[Diagnostic], set[RecipePath]]:
    """Every schema violation in `document.data`, located in the file that set the offending value,
    and the recipe paths that are invalid (so later checks can leave them alone)."""
    diagnostics: list[Diagnostic] = []
    invalid: set[RecipePath] = set()
    for violation in iter_violations(document.data, _supported_schema(), resolve):
        diagnostics.append(_explain(violation, document, root))
        names_a_key = violation.in_key or violation.keyword in ("additionalProperties", "required")
        invalid.add(violation.path + (violation.instance,) if names_a_key else violation.path)
    return diagnostics, invalid


@functools.cache
def _supported_schema() -> dict:
    schema = recipe_schema()
    check_supported(schema)
    return schema


def _explain(found: Violation, document: Document, root: Location) -> Diagnostic:
    path = found.path
    field = field_name(path)
    owner = f"`{field}`" if field else "the recipe"
    kind = found.keyword
    if found.in_key:
        name = found.instance
        if kind == "enum":
            what = "capability" if path == ("capabilities",) else "name"
            message, hint = f"unknown {what} '{name}' in {owner}", did_you_mean(name, found.expected)
        else:
            message, hint = f"'{name}' is not a valid name in {owner}", _describe(found.schema)
        return error(message, document.locate(path + (name,), key=True) or root, field_name(path + (name,)), hint)
    if kind == "additionalProperties":
        key = found.instance
        return error(f"unknown key '{key}' in {owner}", document.locate(path + (key,), key=True) or root,
                     field_name(path + (key,)), did_you_mean(key, found.schema.get("properties", {})))
    if kind == "required":
        key = found.instance
        return error(f"missing required key '{key}' in {owner}", document.locate(path, key=True) or root,
                     field_name(path + (key,)), _describe(found.schema.get("properties", {}).get(key, {})))
    if kind == "not":
        rule = found.expected
        culprit = path + (rule.get("required", [""])[-1],)
        return error(rule.get("x-message", "this combination is not allowed"),
                     document.locate(culprit, key=True) or root, field, rule.get("x-hint"))
    where = document.locate(path) or root
    message = _message(kind, found.expected, found.instance)
    if kind == "pattern" and "x-message" in found.schema:  # what the pattern allows, said in words
        message = f"{found.schema['x-message']}, got {_show(found.instance)}"
    return error(message, where, field, _hint(found))


def _message(kind: str, expected: Any, value: Any) -> str:
    shown = _show(value)
    if kind == "type":
        wanted = " or ".join(_TYPE_NAMES[t] for t in ([expected] if isinstance(expected, str) else expected))
        return f"expected {wanted}, got {shown}"
    if kind == "enum":
        return f"{shown} is not one of: " + ", ".join(_show(choice) for choice in expected)
    bounds = {
        "minimum": "at least",
        "maximum": "at most",
        "exclusiveMinimum": "greater than",
        "exclusiveMaximum": "less than",
    }
    if kind in bounds:
        return f"must be {bounds[kind]} {expected}, got {shown}"
    if kind == "minLength":
        return "must not be empty"
    if kind == "maxLength":
        return f"must be at most {expected} characters long"
    if kind == "pattern":
        return f"{shown} contains characters that are not allowed"
    if kind == "minItems":
        return f"needs at least {expected} item{'s' if expected != 1 else ''}"
    if kind == "uniqueItems":
        return "lists the same item more than once"
    if kind == "minProperties":
        return f"needs at least {expected} entr{'ies' if expected != 1 else 'y'}"
    return f"{shown} is not valid here ({kind})"


def _hint(found: Violation) -> str | None:
    if found.keyword == "enum" and isinstance(found.instance, str):
        return did_you_mean(found.instance, [str(choice) for choice in found.expected])
    if found.keyword in ("pattern", "minProperties", "type"):
        return _describe(found.schema)
    return None


def _describe(schema: dict) -> str | None:
    return resolve(schema).get("description")


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return str(value)


def types_of(schema: dict) -> list[str]:
    """The schema's `type` as a list (it may be written as one name or several)."""
    kind = schema.get("type", [])
    return [kind] if isinstance(kind, str) else list(kind)
