"""A JSON Schema 2020-12 validator for exactly the keywords the recipe schema uses.

Why not jsonschema at run time: importing it costs more than everything else `omni-run validate`
does together (~0.15 s of a 0.3 s budget), and recipes are checked on every commit and keystroke.
jsonschema stays the reference: the test suite checks the schema with it and compares this
validator's findings against Draft202012Validator's on generated recipes. A keyword this module
does not implement makes `check_supported` fail, so the schema cannot silently outgrow it.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Iterator
from typing import Any, Callable, NamedTuple

# Keywords with no effect on validity: documentation, defaults, and our `x-` annotations.
_ANNOTATIONS = frozenset({"$schema", "$id", "$defs", "title", "description", "default"})
_ASSERTIONS = frozenset({
    "$ref", "type", "enum", "not",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
    "minLength", "maxLength", "pattern",
    "items", "minItems", "uniqueItems",
    "properties", "additionalProperties", "required", "propertyNames", "minProperties",
})

_BOUNDS = (
    ("minimum", operator.ge),
    ("maximum", operator.le),
    ("exclusiveMinimum", operator.gt),
    ("exclusiveMaximum", operator.lt),
)


class Violation(NamedTuple):
    """One failed keyword. `expected` is the keyword's value, `schema` the schema holding it.

    For `additionalProperties`, `required` and `propertyNames`, `instance` is the offending key
    and `path` the mapping that has (or lacks) it; `in_key` marks `propertyNames` findings.
    """

    keyword: str
    expected: Any
    instance: Any
    schema: dict
    path: tuple
    in_key: bool = False


def check_supported(schema: Any, where: str = "#") -> None:
    """Raise ValueError naming the first keyword this validator would ignore."""
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key not in _ASSERTIONS and key not in _ANNOTATIONS and not key.startswith("x-"):
                raise ValueError(f"recipe schema keyword {key!r} at {where} is not supported by the validator")
            if key in ("properties", "$defs"):
                for name, sub in value.items():
                    check_supported(sub, f"{where}/{key}/{name}")
            elif key in ("items", "additionalProperties", "propertyNames", "not"):
                check_supported(value, f"{where}/{key}")


def iter_violations(instance: Any, schema: dict, resolve: Callable[[dict], dict], path: tuple = ()) -> Iterator[Violation]:
    """Every violation of `schema` by `instance`; `resolve` expands `$ref`s."""
    schema = resolve(schema)

    def fail(keyword: str, value: Any = instance, at: tuple = path, in_key: bool = False) -> Violation:
        return Violation(keyword, schema[keyword], value, schema, at, in_key)

    if "type" in schema and not any(_is_type(instance, t) for t in _as_list(schema["type"])):
        yield fail("type")
    if "enum" in schema and not any(_json_equal(instance, choice) for choice in schema["enum"]):
        yield fail("enum")
    if "not" in schema and not any(True for _ in iter_violations(instance, schema["not"], resolve, path)):
        yield fail("not")
    if _is_type(instance, "number"):
        for keyword, holds in _BOUNDS:
            if keyword in schema and not holds(instance, schema[keyword]):
                yield fail(keyword)
    if isinstance(instance, str):
        if "minLength" in schema and len(instance) < schema["minLength"]:
            yield fail("minLength")
        if "maxLength" in schema and len(instance) > schema["maxLength"]:
            yield fail("maxLength")
        if "pattern" in schema and not re.search(schema["pattern"], instance):
            yield fail("pattern")
    if isinstance(instance, list):
        if "minItems" in schema and len(instance) < schema["minItems"]:
            yield fail("minItems")
        if schema.get("uniqueItems") and any(
            _json_equal(a, b) for i, a in enumerate(instance) for b in instance[i + 1:]
        ):
            yield fail("uniqueItems")
        if "items" in schema:
            for index, item in enumerate(instance):
                yield from iter_violations(item, schema["items"], resolve, path + (index,))
    if isinstance(instance, dict):
        yield from _object_violations(instance, schema, resolve, path, fail)


def _object_violations(instance: dict, schema: dict, resolve, path: tuple, fail) -> Iterator[Violation]:
    properties = schema.get("properties", {})
    for key in schema.get("required", []):
        if key not in instance:
            yield fail("required", key)
    if "minProperties" in schema and len(instance) < schema["minProperties"]:
        yield fail("minProperties")
    for key, value in instance.items():
        if "propertyNames" in schema:
            for found in iter_violations(key, schema["propertyNames"], resolve, path):
                yield Violation(found.keyword, found.expected, key, found.schema, path, in_key=True)
        if key in properties:
            yield from iter_violations(value, properties[key], resolve, path + (key,))
        elif schema.get("additionalProperties") is False:
            yield fail("additionalProperties", key)
        elif isinstance(schema.get("additionalProperties"), dict):
            yield from iter_violations(value, schema["additionalProperties"], resolve, path + (key,))


def _is_type(value: Any, kind: str) -> bool:
    if kind == "null":
        return value is None
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind == "object":
        return isinstance(value, dict)
    if kind == "array":
        return isinstance(value, list)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return kind == "number" or isinstance(value, int) or value.is_integer()  # kind == "integer"


def _json_equal(a: Any, b: Any) -> bool:
    """Equality as JSON means it: `true` is not `1`, but `1` is `1.0`."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if _is_type(a, "number") and _is_type(b, "number"):
        return a == b
    return type(a) is type(b) and a == b


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]
