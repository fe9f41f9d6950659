"""`--set a.b.c=VALUE` and `--capabilities a,b` on top of a loaded recipe."""

from __future__ import annotations

import pytest

from omni_runner.recipe import load_recipe
from tests.recipe.conftest import VALID, recipe_errors

TWO_CAPABILITIES = VALID + "  tool-calling: {datasets: [chat]}\n"


def test_set_changes_a_field_with_the_value_read_as_yaml(write):
    path = write("r.yaml", VALID)
    recipe = load_recipe(
        path,
        overrides=["training.lr=1e-4", "training.lora.target_modules=[q_proj, v_proj]", "eval.at_end=false"],
        environ={},
    )
    assert recipe.data["training"]["lr"] == 1e-4
    assert recipe.data["training"]["lora"]["target_modules"] == ["q_proj", "v_proj"]
    assert recipe.data["eval"]["at_end"] is False


def test_set_reaches_into_list_items_and_named_entries(write):
    path = write("r.yaml", VALID + "stages:\n  - {name: align}\n")
    recipe = load_recipe(path, overrides=["stages.0.max_steps=20", "datasets.chat.max_samples=5"], environ={})
    assert recipe.data["stages"][0]["max_steps"] == 20
    assert recipe.data["datasets"]["chat"]["max_samples"] == 5


def test_the_last_set_of_a_field_wins(write):
    recipe = load_recipe(write("r.yaml", VALID), overrides=["training.seed=1", "training.seed=2"], environ={})
    assert recipe.data["training"]["seed"] == 2


def test_a_set_value_is_validated_like_the_file(write):
    [problem] = recipe_errors(write("r.yaml", VALID), overrides=["training.micro_batch=0"])
    assert problem.message == "must be at least 1, got 0"
    assert problem.field == "training.micro_batch"


def test_a_set_value_is_no_longer_located_in_the_file(write):
    recipe = load_recipe(write("r.yaml", VALID), overrides=["name=other"], environ={})
    assert recipe.location(("name",)) is None
    assert recipe.location(("base_model", "path")).line == 3


@pytest.mark.parametrize(
    ("override", "message", "hint"),
    [
        ("training.lrr=1e-4", "--set training.lrr=1e-4: unknown field 'lrr' in training", "did you mean 'lr'?"),
        ("trainig.lr=1e-4", "--set trainig.lr=1e-4: unknown field 'trainig' in the recipe", "did you mean 'training'?"),
        ("capabilities.cott.weight=2", "--set capabilities.cott.weight=2: unknown capability 'cott' in capabilities",
         "did you mean 'cot'?"),
        ("training.lr", "--set training.lr: expected KEY=VALUE", "for example --set training.lr=1e-4"),
    ],
    ids=["unknown-nested-field", "unknown-section", "unknown-capability", "no-equals-sign"],
)
def test_a_bad_set_path_is_an_error_with_the_nearest_field(write, override, message, hint):
    [problem] = recipe_errors(write("r.yaml", VALID), overrides=[override])
    assert (problem.message, problem.hint, problem.location) == (message, hint, None)


def test_set_cannot_index_past_the_end_of_a_list(write):
    [problem] = recipe_errors(write("r.yaml", VALID), overrides=["stages.3.lr=0.1"])
    assert problem.message == "--set stages.3.lr=0.1: stages has 0 item(s), no index 3"


def test_capabilities_option_enables_only_the_named_ones(write):
    recipe = load_recipe(write("r.yaml", TWO_CAPABILITIES), capabilities=["tool-calling"], environ={})
    enabled = {name: entry["enabled"] for name, entry in recipe.data["capabilities"].items()}
    assert enabled == {"cot": False, "tool-calling": True}


def test_capabilities_option_rejects_an_unknown_name_with_a_suggestion(write):
    [problem] = recipe_errors(write("r.yaml", TWO_CAPABILITIES), capabilities=["tool-caling"])
    assert problem.message == "--capabilities: unknown capability 'tool-caling'"
    assert problem.hint == "did you mean 'tool-calling'?"


def test_capabilities_option_rejects_a_capability_the_recipe_does_not_define(write):
    [problem] = recipe_errors(write("r.yaml", TWO_CAPABILITIES), capabilities=["vision-qa"])
    assert problem.message == "--capabilities: capability 'vision-qa' is not in the recipe"
    assert problem.hint == "the recipe has: cot, tool-calling; add it under `capabilities:` first"
