"""What a loaded Recipe holds: every field with its default, absolute paths, locations, path warnings."""

from __future__ import annotations

import pytest

from omni_runner.plain_yaml import dump_plain_yaml
from omni_runner.recipe import Location, RecipeError, load_recipe
from omni_runner.recipe.schema import recipe_schema
from tests.recipe.conftest import VALID


def test_every_schema_field_is_present_with_its_default(write):
    data = load_recipe(write("r.yaml", VALID), environ={}).data
    assert set(data) == set(recipe_schema()["properties"])
    assert data["training"]["lora"] == {"r": 16, "alpha": 32, "dropout": 0.05, "target_experts": False,
                                        "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}
    assert data["controller"]["thermal"]["limit_c"] == 83
    assert data["datasets"]["chat"]["split"] == "train"
    assert data["capabilities"]["cot"] == {"datasets": ["chat"], "weight": 1.0, "enabled": True,
                                           "loss_weights": {"lm": 1.0, "denoising": 1.0}}


def test_nested_optional_sections_get_defaults_only_when_present(write):
    text = VALID + "encoders:\n  vision: {path: builtin:siglip2}\n"
    data = load_recipe(write("r.yaml", text), environ={}).data
    assert data["encoders"]["vision"]["projector"] == {"type": "mlp", "hidden_size": None, "pool": 1}
    assert "audio" not in data["encoders"]


def test_max_steps_defaults_only_when_epochs_is_not_set(write):
    by_steps = load_recipe(write("a.yaml", VALID), environ={}).data["training"]
    by_epochs = load_recipe(write("b.yaml", VALID + "training: {epochs: 2}\n"), environ={}).data["training"]
    assert (by_steps["max_steps"], by_steps["epochs"]) == (1000, None)
    assert (by_epochs["max_steps"], by_epochs["epochs"]) == (None, 2)


def test_location_points_at_the_key_that_wrote_a_field(write):
    path = write("r.yaml", VALID)
    recipe = load_recipe(path, environ={})
    assert recipe.location(("capabilities", "cot")) == Location(path, 7, 3)
    assert recipe.location(("capabilities", "cot", "datasets", 0)) == Location(path, 7, 20)
    assert recipe.location(("training", "lr")) is None  # a default, written nowhere


def test_relative_paths_become_absolute_from_the_recipe_folder(write, tmp_path):
    text = VALID.replace("builtin:tiny-qwen2.5-omni", "models/omni").replace("builtin:chat", "../data/chat.jsonl")
    data = load_recipe(write("recipes/r.yaml", text), environ={}).data
    assert data["base_model"]["path"] == str(tmp_path / "recipes" / "models" / "omni")
    assert data["datasets"]["chat"]["path"] == str(tmp_path / "data" / "chat.jsonl")


def test_builtin_paths_are_kept_and_count_as_present(write):
    recipe = load_recipe(write("r.yaml", VALID), environ={})
    assert recipe.data["base_model"]["path"] == "builtin:tiny-qwen2.5-omni"
    assert recipe.warnings == []
    recipe.check_paths_exist()


def test_a_missing_model_folder_is_a_warning_at_load_and_an_error_at_run_start(write):
    path = write("r.yaml", VALID.replace("builtin:tiny-qwen2.5-omni", "no/such/model"))
    recipe = load_recipe(path, environ={})
    [warning] = recipe.warnings
    assert (warning.severity, warning.field, warning.location) == ("warning", "base_model.path", Location(path, 3, 9))
    assert warning.message == f"model path not found: {path.parent / 'no/such/model'}"
    with pytest.raises(RecipeError) as caught:
        recipe.check_paths_exist()
    [problem] = caught.value.diagnostics
    assert (problem.severity, problem.field) == ("error", "base_model.path")


def test_an_existing_data_file_gives_no_warning(write):
    write("chat.jsonl", '{"messages": []}\n')
    recipe = load_recipe(write("r.yaml", VALID.replace("builtin:chat", "chat.jsonl")), environ={})
    assert recipe.warnings == []


def test_a_missing_recipe_file_is_a_recipe_error(tmp_path):
    with pytest.raises(RecipeError) as caught:
        load_recipe(tmp_path / "absent.yaml", environ={})
    assert caught.value.diagnostics[0].message == f"recipe file not found: {tmp_path / 'absent.yaml'}"


def test_a_file_that_is_not_utf8_is_a_recipe_error_at_the_bad_byte(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_bytes(b"name: tiny\nbase_model: {path: caf\xe9}\n")
    with pytest.raises(RecipeError) as caught:
        load_recipe(path, environ={})
    [problem] = caught.value.diagnostics
    assert (problem.message, problem.location) == ("the file is not UTF-8 text", Location(path, 2, 23))


def test_a_tilde_for_an_unknown_user_is_kept_literally_like_a_shell_does(write, tmp_path):
    path = write("r.yaml", VALID.replace("builtin:chat", "~no-such-user-here/chat.jsonl"))
    data = load_recipe(path, environ={}).data
    assert data["datasets"]["chat"]["path"] == str(tmp_path / "~no-such-user-here" / "chat.jsonl")


def test_resolved_data_written_out_loads_back_to_the_same_data(write, tmp_path):
    """A run directory keeps the resolved recipe; loading it again (from anywhere) must change nothing."""
    write("recipes/base.yaml", "training: {seed: 3}\nencoders:\n  vision: {path: ../models/siglip}\n")
    source = write("recipes/r.yaml", "extends: base.yaml\n" + VALID + "stages: [{name: only}]\n")
    resolved = load_recipe(source, overrides=["training.lr=3e-4"], environ={}).data
    copy = write("runs/x/recipe.yaml", dump_plain_yaml(resolved))
    assert load_recipe(copy, environ={}).data == resolved
