"""Generate docs/recipe-reference.md from the schema: `python -m omni_runner.recipe.reference [--check]`.

The page is derived, never edited by hand, so it cannot drift from what the loader accepts;
`--check` (run by the test suite) fails when someone changed the schema and forgot to regenerate.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omni_runner.recipe.schema import recipe_schema, resolve, types_of
from omni_runner.recipe.sources import MAX_EXTENDS_DEPTH, MAX_FILE_BYTES, MAX_FILES
from omni_runner.recipe.yaml_source import MAX_NESTING, MAX_VALUES

DEFAULT_OUTPUT = Path(__file__).resolve().parents[2] / "docs" / "recipe-reference.md"
REGENERATE = "python -m omni_runner.recipe.reference"

_BOUNDS = (("minimum", "≥ {}"), ("exclusiveMinimum", "> {}"), ("maximum", "≤ {}"), ("exclusiveMaximum", "< {}"))


def render_reference() -> str:
    schema = recipe_schema()
    lines = [
        "# Recipe reference",
        "",
        f"<!-- Generated from schemas/recipe.schema.json by `{REGENERATE}`; do not edit by hand. -->",
        "",
        "Every recipe may start with `# yaml-language-server: $schema=../schemas/recipe.schema.json` so editors "
        "complete and check it. Unknown keys are errors at every depth. Strings may use `${VAR}` and "
        "`${VAR:-default}` from the environment; `omni-run ... --set a.b.c=VALUE` overrides any field.",
        "",
        (f"Limits, so that a hostile or mistaken file fails in well under a second: a recipe file is at most "
        f"{MAX_FILE_BYTES // 1024 // 1024} MiB of UTF-8 text without control or text-direction characters, "
        f"nests at most {MAX_NESTING} levels, holds at most {MAX_VALUES:,} values after YAML aliases expand, "
        f"and `extends` reaches at most {MAX_EXTENDS_DEPTH} files deep and {MAX_FILES} files in all. YAML tags "
        "(`!!python/object`, `!env`, ...) and merge keys (`<<`) are refused; nothing in a recipe is ever "
        "constructed or run."),
        "",
        "Required at the top level: " + ", ".join(f"`{k}`" for k in schema.get("required", [])) + ".",
    ]
    for title, section in _sections(schema, ""):
        lines += ["", f"## `{title}`" if title else "## Top level", "", resolve(section).get("description", ""), ""]
        lines += _table(section)
    return "\n".join(lines).rstrip() + "\n"


def _sections(schema: dict, path: str) -> Iterator[tuple[str, dict]]:
    """Each mapping with fixed keys, depth first, named by its dotted path (`<name>` for map entries)."""
    schema = resolve(schema)
    if "properties" in schema:
        yield path, schema
        for key, sub in schema["properties"].items():
            yield from _sections(sub, f"{path}.{key}" if path else key)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        yield from _sections(extra, f"{path}.<{_entry_name(path)}>")
    items = schema.get("items")
    if isinstance(items, dict):
        yield from _sections(items, f"{path}[]")


def _table(schema: dict) -> list[str]:
    required = set(schema.get("required", []))
    rows = ["| field | type | default | allowed | description |", "|---|---|---|---|---|"]
    for key, sub in schema["properties"].items():
        sub = resolve(sub)
        default = "required" if key in required else (_code(sub["default"]) if "default" in sub else "—")
        rows.append(f"| `{key}` | {_type(sub)} | {default} | {_allowed(sub)} | {_escape(sub.get('description', ''))} |")
    return rows


def _type(schema: dict) -> str:
    if "enum" in schema and "type" not in schema:
        return "enum"
    names = types_of(schema)
    if "array" in names and isinstance(schema.get("items"), dict):
        names = [f"list of {_type(resolve(schema['items']))}" if n == "array" else n for n in names]
    return " or ".join({"object": "mapping", "array": "list"}.get(n, n) for n in names)


def _allowed(schema: dict) -> str:
    parts = []
    if "enum" in schema:
        parts.append(", ".join(_code(v) for v in schema["enum"]))
    parts += [template.format(schema[key]) for key, template in _BOUNDS if key in schema]
    if "pattern" in schema:
        parts.append(f"matches `{schema['pattern']}`")
    if "minItems" in schema:
        parts.append(f"at least {schema['minItems']} item(s)")
    if "propertyNames" in schema:
        names = resolve(schema["propertyNames"])
        parts.append("keys: " + (", ".join(_code(v) for v in names["enum"]) if "enum" in names
                                 else f"matching `{names.get('pattern')}`"))
    items = schema.get("items")
    if isinstance(items, dict) and "enum" in resolve(items):
        parts.append("each one of " + ", ".join(_code(v) for v in resolve(items)["enum"]))
    if "x-default-unless-set" in schema:
        parts.append(f"default only when `{schema['x-default-unless-set']}` is not set")
    return "; ".join(parts) or "—"


def _entry_name(path: str) -> str:
    return {"datasets": "name", "capabilities": "capability"}.get(path.rsplit(".", 1)[-1], "key")


def _code(value: Any) -> str:
    return f"`{json.dumps(value, ensure_ascii=False)}`"


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=REGENERATE, description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the file differs from the schema")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="where the page lives")
    args = parser.parse_args(argv)
    text = render_reference()
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is stale: run `{REGENERATE}`", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
