"""`extends`: parents are deep-merged under the recipe; cycles and parent errors point into the right file."""

from __future__ import annotations

from omni_runner.recipe import load_recipe
from tests.recipe.conftest import VALID, recipe_errors


def test_parent_mappings_merge_and_the_child_wins(write):
    write("base.yaml", "training:\n  lr: 1.0e-3\n  seq_len: 512\n  lora: {r: 8, target_modules: [q_proj, v_proj]}\n")
    child = write("child.yaml", "extends: base.yaml\n" + VALID + "training:\n  lr: 5.0e-4\n  lora: {target_modules: [o_proj]}\n")
    training = load_recipe(child, environ={}).data["training"]
    assert training["lr"] == 5.0e-4  # child overrides
    assert training["seq_len"] == 512  # inherited
    assert training["lora"]["r"] == 8  # nested mapping merged
    assert training["lora"]["target_modules"] == ["o_proj"]  # lists replace, never concatenate


def test_several_parents_apply_in_order(write):
    write("a.yaml", "training: {lr: 1.0e-3, seed: 1}\n")
    write("b.yaml", "training: {lr: 2.0e-3}\n")
    child = write("child.yaml", "extends: [a.yaml, b.yaml]\n" + VALID)
    training = load_recipe(child, environ={}).data["training"]
    assert (training["lr"], training["seed"]) == (2.0e-3, 1)


def test_parent_paths_are_relative_to_the_file_that_names_them(write, tmp_path):
    write("shared/paths.yaml", "extends: more/models.yaml\n")
    write("shared/more/models.yaml", "base_model: {path: weights/omni}\n")
    child = write("recipes/child.yaml", "extends: ../shared/paths.yaml\n" + VALID.replace("  path: builtin:tiny-qwen2.5-omni\n", "  dtype: bfloat16\n"))
    recipe = load_recipe(child, environ={})
    assert recipe.data["base_model"]["path"] == str(tmp_path / "shared" / "more" / "weights" / "omni")
    assert recipe.data["base_model"]["dtype"] == "bfloat16"
    assert [p.name for p in recipe.files] == ["child.yaml", "paths.yaml", "models.yaml"]


def test_the_same_parent_reached_twice_is_not_a_cycle(write):
    write("common.yaml", "training: {seed: 7}\n")
    write("a.yaml", "extends: common.yaml\n")
    write("b.yaml", "extends: common.yaml\n")
    child = write("child.yaml", "extends: [a.yaml, b.yaml]\n" + VALID)
    assert load_recipe(child, environ={}).data["training"]["seed"] == 7


def test_an_extends_cycle_is_an_error_showing_the_chain(write):
    write("a.yaml", "extends: b.yaml\n")
    write("b.yaml", "training: {seed: 1}\nextends: [c.yaml, a.yaml]\n")
    write("c.yaml", "training: {seed: 2}\n")
    top = write("a.yaml", "extends: b.yaml\n" + VALID)
    [problem] = recipe_errors(top)
    assert problem.message == f"extends cycle: {top} -> {top.parent / 'b.yaml'} -> {top}"
    assert (problem.location.file.name, problem.location.line, problem.location.col) == ("b.yaml", 2, 19)
    assert problem.field == "extends[1]"


def test_a_syntax_error_in_a_parent_points_into_the_parent(write):
    write("base.yaml", "training:\n  lr: 1e-4\n  lr: 2e-4\n")
    [problem] = recipe_errors(write("child.yaml", "extends: base.yaml\n" + VALID))
    assert (problem.location.file.name, problem.location.line, problem.location.col) == ("base.yaml", 3, 3)
    assert "duplicate key 'lr'" in problem.message


def test_an_invalid_inherited_value_points_into_the_parent(write):
    write("base.yaml", "# shared settings\ntraining:\n  lr: fast\n")
    [problem] = recipe_errors(write("child.yaml", "extends: base.yaml\n" + VALID))
    assert (problem.location.file.name, problem.location.line, problem.location.col) == ("base.yaml", 3, 7)
    assert problem.field == "training.lr"


def test_a_child_value_that_replaces_a_bad_parent_value_is_fine(write):
    write("base.yaml", "training:\n  lr: fast\n")
    child = write("child.yaml", "extends: base.yaml\n" + VALID + "training:\n  lr: 1.0e-4\n")
    assert load_recipe(child, environ={}).data["training"]["lr"] == 1.0e-4


def test_resolved_data_has_no_extends_left(write):
    write("base.yaml", "training: {seed: 3}\n")
    recipe = load_recipe(write("child.yaml", "extends: base.yaml\n" + VALID), environ={})
    assert recipe.data["extends"] == []


def test_a_child_trains_by_epochs_by_unsetting_the_parents_max_steps(write):
    write("base.yaml", "training: {max_steps: 500}\n")
    both = write("both.yaml", "extends: base.yaml\n" + VALID + "training: {epochs: 2}\n")
    [problem] = recipe_errors(both)
    assert problem.message == "set either `max_steps` or `epochs`, not both"
    assert "write `max_steps: null`" in problem.hint
    fixed = write("fixed.yaml", "extends: base.yaml\n" + VALID + "training: {epochs: 2, max_steps: null}\n")
    training = load_recipe(fixed, environ={}).data["training"]
    assert (training["max_steps"], training["epochs"]) == (None, 2)
