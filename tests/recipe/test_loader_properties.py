"""Property: whatever text or data a recipe holds, load_recipe returns a Recipe or raises RecipeError.

Never a traceback from YAML, jsonschema or our own code: a person must always get a located message.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from omni_runner.plain_yaml import dump_plain_yaml, load_plain_yaml
from omni_runner.recipe import Recipe, RecipeError, load_recipe
from omni_runner.recipe.schema import recipe_schema, resolve
from omni_runner.recipe.validator import iter_violations
from tests.recipe.conftest import VALID

SETTINGS = settings(max_examples=int(os.environ.get("RECIPE_PROPERTY_EXAMPLES", "100")), deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Pieces that stress the YAML reader and our converter: indentation, flow collections, anchors,
# aliases, tags, merge keys, tabs, variable references, numbers of every form.
YAML_TOKENS = st.sampled_from([
    "\n", "  ", "\t", ": ", "- ", "[", "]", "{", "}", ",", "&a ", "*a", "!!python/object:os.system ", "!x ",
    "<<: ", "---\n", "${HOME}", "${X:-1}", "${", "$${", "'", '"', "#", "|\n", ">\n", "~", "null", "true",
    "1e400", ".nan", "0x1F", "-3", "2.5", "name", "training", "lr", "capabilities", "cot", "datasets",
    "base_model", "path", "extends", "stages", "ü", "\x00", "\ufeff",
])
SCHEMA_KEYS = sorted({key for key in recipe_schema()["properties"]} | {"lr", "weight", "datasets", "path", "name"})
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(SCHEMA_KEYS) | st.text(max_size=6),
                                                                inner, max_size=3),
    max_leaves=8,
)


@pytest.fixture(scope="module")
def recipe_file(tmp_path_factory):
    return tmp_path_factory.mktemp("property") / "recipe.yaml"


def _only_recipe_or_recipe_error(path, **kwargs) -> None:
    try:
        result = load_recipe(path, environ={"X": "2"}, **kwargs)
    except RecipeError as exc:
        assert exc.diagnostics and all(d.severity == "error" for d in exc.diagnostics)
        assert str(exc)
    else:
        assert isinstance(result, Recipe)


@SETTINGS
@given(pieces=st.lists(YAML_TOKENS | st.text(max_size=8), max_size=40))
def test_random_yaml_text(recipe_file, pieces):
    recipe_file.write_text("".join(pieces), encoding="utf-8", errors="surrogatepass")
    _only_recipe_or_recipe_error(recipe_file)


def _paths(value, prefix=()):
    yield prefix
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        yield from _paths(child, prefix + (key,))


@st.composite
def mutated_recipes(draw) -> dict:
    """VALID as data, with one to four values replaced, deleted or added anywhere."""
    recipe = load_plain_yaml(VALID + "training: {lr: 1.0e-4, lora: {r: 8}}\nstages: [{name: a}]\n")
    for _ in range(draw(st.integers(1, 4))):
        target = draw(st.sampled_from([p for p in _paths(recipe) if p]))
        parent = recipe
        for part in target[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            parent[target[-1]] = draw(JSON_VALUES)
        elif action == "delete":
            del parent[target[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.sampled_from(SCHEMA_KEYS) | st.text(max_size=6))] = draw(JSON_VALUES)
    return recipe


@SETTINGS
@given(recipe=mutated_recipes(), data=st.data())
def test_mutated_valid_recipes(recipe_file, recipe, data):
    recipe_file.write_text(dump_plain_yaml(recipe))
    overrides = data.draw(st.lists(st.text(max_size=8) | st.sampled_from(
        ["training.lr=x", "stages.0.name=a", "capabilities.cot.weight=2", "name=", "a..b=1", "=1"]), max_size=2))
    capabilities = data.draw(st.none() | st.lists(st.sampled_from(["cot", "vision-qa", "nope", ""]), max_size=2))
    _only_recipe_or_recipe_error(recipe_file, overrides=overrides, capabilities=capabilities)


@st.composite
def schema_instances(draw, schema: dict | None = None, depth: int = 0):
    """Values shaped by the schema (every section, enum values, numbers at and beyond each bound),
    with a junk value now and then, so every keyword is exercised both ways."""
    schema = resolve(schema or recipe_schema())
    if depth > 5 or draw(st.integers(0, 11)) == 0:
        return draw(JSON_VALUES)
    if "enum" in schema:
        return draw(st.sampled_from(schema["enum"]))
    kinds = schema.get("type", ["null"])
    kind = draw(st.sampled_from(kinds if isinstance(kinds, list) else [kinds]))
    if kind == "object":
        properties = schema.get("properties", {})
        keys = draw(st.lists(st.sampled_from(sorted(properties)), unique=True)) if properties else []
        value = {key: draw(schema_instances(properties[key], depth + 1)) for key in keys}
        entry = schema.get("additionalProperties")
        if isinstance(entry, dict):
            names = resolve(schema.get("propertyNames", {})).get("enum") or ["chat", "bad name", "x.y"]
            for name in draw(st.lists(st.sampled_from(names), max_size=3, unique=True)):
                value[name] = draw(schema_instances(entry, depth + 1))
        return value
    if kind == "array":
        return draw(st.lists(schema_instances(schema.get("items", {}), depth + 1), max_size=3))
    if kind in ("integer", "number"):
        bounds = [schema[k] for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum") if k in schema]
        near = [b + d for b in bounds or [0] for d in (-1, 0, 1)] + ([b + 0.5 for b in bounds] if kind == "number" else [])
        return draw(st.sampled_from(near))
    if kind == "string":
        return draw(st.sampled_from(["", "ok", "two words", "builtin:x"]))
    return draw(st.booleans()) if kind == "boolean" else None


@SETTINGS
@given(recipe=mutated_recipes() | schema_instances())
def test_the_validator_finds_what_jsonschema_finds(recipe):
    """Our fast validator against the reference implementation: the same failed keywords at the same paths."""
    reference = {
        (tuple(e.absolute_path), e.validator, "propertyNames" in e.absolute_schema_path)
        for e in Draft202012Validator(recipe_schema()).iter_errors(recipe)
    }
    ours = {(v.path, v.keyword, v.in_key) for v in iter_violations(recipe, recipe_schema(), resolve)}
    assert ours == reference


@SETTINGS
@given(cut=st.integers(0, len(VALID)), insert=YAML_TOKENS)
def test_valid_text_with_a_random_edit(recipe_file, cut, insert):
    recipe_file.write_text(VALID[:cut] + insert + VALID[cut:])
    _only_recipe_or_recipe_error(recipe_file)


@SETTINGS
@given(data=st.binary(max_size=300) | st.builds(
    lambda cut, noise: VALID.encode()[:cut] + noise + VALID.encode()[cut:],
    st.integers(0, len(VALID)), st.binary(min_size=1, max_size=8)))
def test_random_bytes_and_byte_mutations(recipe_file, data):
    """Binary garbage, invalid UTF-8, control bytes and byte order marks are located errors too."""
    recipe_file.write_bytes(data)
    _only_recipe_or_recipe_error(recipe_file)
