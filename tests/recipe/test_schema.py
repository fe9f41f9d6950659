"""The schema file itself: valid JSON Schema, documented, closed, in step with the capability registry,
and shipped inside the wheel."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from jsonschema import Draft202012Validator

from omni_runner.capabilities import CAPABILITIES, DATASET_FORMATS
from omni_runner.recipe.schema import recipe_schema, resolve

REPO = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((REPO / "schemas" / "recipe.schema.json").read_text())
TOP_LEVEL = ["name", "extends", "base_model", "encoders", "decoders", "datasets", "capabilities", "training",
             "stages", "controller", "hardware", "distributed", "eval", "output"]


def _object_schemas(node, path="#"):
    """Every sub-schema that describes a mapping with fixed keys, with where it is."""
    if isinstance(node, dict):
        if "properties" in node:
            yield path, node
        for key, value in node.items():
            yield from _object_schemas(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _object_schemas(value, f"{path}/{index}")


def test_it_is_a_valid_2020_12_schema():
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(SCHEMA)


def test_top_level_keys_are_exactly_the_documented_sections():
    assert list(SCHEMA["properties"]) == TOP_LEVEL


def test_every_mapping_rejects_unknown_keys():
    for path, node in _object_schemas(SCHEMA):
        if path.endswith("/not"):  # the max_steps/epochs rule, not a mapping description
            continue
        assert node.get("additionalProperties") is False, path


def test_every_property_has_a_description():
    for path, node in _object_schemas(SCHEMA):
        if path.endswith("/not"):
            continue
        for key, sub in node["properties"].items():
            assert resolve(sub).get("description"), f"{path}/properties/{key}"


def test_capability_names_are_the_registry():
    names = SCHEMA["$defs"]["capability_name"]["enum"]
    assert names == list(CAPABILITIES)
    assert len(names) == 12


def test_dataset_formats_are_the_registry():
    dataset = SCHEMA["properties"]["datasets"]["additionalProperties"]
    assert dataset["properties"]["format"]["enum"] == list(DATASET_FORMATS)


def test_the_loader_reads_the_same_schema_as_the_checkout():
    assert recipe_schema() == SCHEMA


def test_the_wheel_ships_the_schema_and_the_installed_loader_finds_it(tmp_path):
    """Build a wheel from a copy of the sources (the shared checkout stays clean), install it by
    unpacking, and load a recipe from there with no checkout on the path."""
    source = tmp_path / "src"
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("omni_runner", "schemas", "tui"):
        shutil.copytree(REPO / folder, source / folder, ignore=ignore)
    shutil.copy(REPO / "pyproject.toml", source)
    shutil.copy(REPO / "setup.py", source)
    (source / "README.md").write_text("omni-runner\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", ".", "-w", "dist"],
        cwd=source, check=True, capture_output=True,
    )
    [wheel] = (source / "dist").glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert "omni_runner/_schemas/recipe.schema.json" in archive.namelist()
        archive.extractall(tmp_path / "site")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: t\nbase_model: {path: builtin:x}\ncapabilities: {cot: {datasets: [d]}}\n"
                      "datasets: {d: {path: builtin:d, format: openai}}\n")
    probe = (
        "import omni_runner, importlib.resources as r; from omni_runner.recipe import load_recipe;"
        "print(omni_runner.__file__); print(r.files('omni_runner._schemas') / 'recipe.schema.json');"
        f"print(load_recipe({str(recipe)!r}, environ={{}}).data['training']['lr'])"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True,
        env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"},
    ).stdout.splitlines()
    assert out[0].startswith(str(tmp_path / "site"))
    assert out[1] == str(tmp_path / "site" / "omni_runner" / "_schemas" / "recipe.schema.json")
    assert out[2] == "0.0002"


def test_shipped_recipes_point_editors_at_the_schema():
    """Each recipe's first line is the yaml-language-server modeline, and its path reaches the schema."""
    recipes = sorted((REPO / "recipes").glob("*.yaml"))
    assert recipes
    for recipe in recipes:
        first = recipe.read_text().splitlines()[0]
        prefix = "# yaml-language-server: $schema="
        assert first.startswith(prefix), recipe.name
        assert (recipe.parent / first[len(prefix):]).resolve() == REPO / "schemas" / "recipe.schema.json"
