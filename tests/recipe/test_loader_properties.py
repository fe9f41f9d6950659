"""Property: whatever text or data a recipe holds, load_recipe returns a Recipe or raises RecipeError.

Never a traceback from YAML, jsonschema or our own code: a person must always get a located message.
"""

from __future__ import annotations

import io
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from omni_runner.recipe import Recipe, RecipeError, load_recipe
from omni_runner.recipe.schema import recipe_schema
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


def _valid_data() -> dict:
    return YAML(typ="safe").load(VALID)


def _paths(value, prefix=()):
    yield prefix
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        yield from _paths(child, prefix + (key,))


@SETTINGS
@given(data=st.data())
def test_mutated_valid_recipes(recipe_file, data):
    recipe = _valid_data()
    for _ in range(data.draw(st.integers(1, 4))):
        target = data.draw(st.sampled_from([p for p in _paths(recipe) if p]))
        parent = recipe
        for part in target[:-1]:
            parent = parent[part]
        action = data.draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            parent[target[-1]] = data.draw(JSON_VALUES)
        elif action == "delete":
            del parent[target[-1]]
        elif isinstance(parent, dict):
            parent[data.draw(st.sampled_from(SCHEMA_KEYS) | st.text(max_size=6))] = data.draw(JSON_VALUES)
    out = io.StringIO()
    YAML(typ="safe").dump(recipe, out)
    recipe_file.write_text(out.getvalue())
    overrides = data.draw(st.lists(st.text(max_size=8) | st.sampled_from(
        ["training.lr=x", "stages.0.name=a", "capabilities.cot.weight=2", "name=", "a..b=1", "=1"]), max_size=2))
    capabilities = data.draw(st.none() | st.lists(st.sampled_from(["cot", "vision-qa", "nope", ""]), max_size=2))
    _only_recipe_or_recipe_error(recipe_file, overrides=overrides, capabilities=capabilities)


@SETTINGS
@given(cut=st.integers(0, len(VALID)), insert=YAML_TOKENS)
def test_valid_text_with_a_random_edit(recipe_file, cut, insert):
    recipe_file.write_text(VALID[:cut] + insert + VALID[cut:])
    _only_recipe_or_recipe_error(recipe_file)
