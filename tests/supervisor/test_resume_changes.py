"""Which recipe/plan changes since a checkpoint `omni-run resume` follows, and which it refuses."""

from __future__ import annotations

import copy

import pytest

from omni_runner.run.resume_changes import classify_changes

RECIPE = {
    "name": "tiny-omni",
    "base_model": {"path": "builtin:tiny-qwen2.5-omni"},
    "datasets": {"cot": {"path": "builtin:cot/cot_collection.jsonl", "format": "cot-collection"}},
    "capabilities": {"cot": {"weight": 1.0, "datasets": ["cot"]}},
    "training": {"method": "lora", "max_steps": 6, "micro_batch": 1, "grad_accum": 1, "seq_len": 96, "lr": 0.002,
                 "seed": 42, "log_every": 1},
    "controller": {"restarts": 0, "checkpoint": {"every_steps": 2}},
    "eval": {"at_end": False},
    "output": {"merge": False},
    "hardware": {"device": "cpu", "vram_gb": 4},
    "stages": [],
}
PLAN = {
    "total_steps": 6,
    "stages": [{"name": "train", "capabilities": ["cot"], "max_steps": 6, "lr": 0.002, "train": ["thinker"],
                "micro_batch": 1, "grad_accum": 1, "seq_len": 96, "gradient_checkpointing": False,
                "memory": {"estimate_gb": 0.19}}],
    "warnings": [],
}


def changed(recipe_edit=None, plan_edit=None):
    recipe, plan = copy.deepcopy(RECIPE), copy.deepcopy(PLAN)
    if recipe_edit:
        recipe_edit(recipe)
    if plan_edit:
        plan_edit(plan)
    return {c.key: c for c in classify_changes(RECIPE, PLAN, recipe, plan)}


def test_an_unchanged_recipe_and_plan_have_no_changes():
    assert changed() == {}


@pytest.mark.parametrize("key, value", [
    ("controller.restarts", 3), ("eval.at_end", True), ("output.merge", True), ("name", "renamed"),
    ("training.log_every", 10), ("hardware.vram_gb", 24), ("training.num_workers", "auto"),
])
def test_settings_that_only_steer_report_or_score_are_allowed(key, value):
    section, _, leaf = key.rpartition(".")

    def edit(recipe):
        (recipe[section] if section else recipe)[leaf] = value

    changes = changed(edit)
    assert list(changes) == [key]
    assert not changes[key].breaks_resume


def test_more_steps_are_allowed_in_the_recipe_and_in_the_last_stage_with_a_note_on_the_schedule():
    def longer(recipe):
        recipe["training"]["max_steps"] = 20

    def longer_plan(plan):
        plan["stages"][0]["max_steps"] = 20
        plan["total_steps"] = 20

    changes = changed(longer, longer_plan)
    assert set(changes) == {"training.max_steps", "plan stages[0].max_steps"}
    assert not any(c.breaks_resume for c in changes.values())
    assert "schedule" in changes["training.max_steps"].what


def test_fewer_steps_are_refused():
    changes = changed(lambda r: r["training"].update(max_steps=4), lambda p: p["stages"][0].update(max_steps=4))
    assert all(c.breaks_resume for c in changes.values())


@pytest.mark.parametrize("key, value, what", [
    ("base_model.path", "/models/other", "the model"),
    ("training.method", "full", "the trained weights"),
    ("capabilities.cot.weight", 0.5, "the data mix"),
    ("datasets.cot.path", "/data/other.jsonl", "the data mix"),
    ("training.micro_batch", 2, "the batch shape"),
    ("training.seq_len", 128, "the batch shape"),
    ("training.seed", 7, "the seed"),
    ("training.lr", 0.001, "the optimizer"),
    ("hardware.device", "cuda", "the numerics"),
])
def test_changes_that_would_train_a_different_run_are_refused_and_named(key, value, what):
    *path, leaf = key.split(".")

    def edit(recipe):
        node = recipe
        for part in path:
            node = node[part]
        node[leaf] = value

    change = changed(edit)[key]
    assert change.breaks_resume and change.what == what
    assert change.describe().startswith(f"{key}: ")


def test_an_unknown_setting_counts_as_breaking():
    change = changed(lambda r: r["training"].update(brand_new_knob=1))["training.brand_new_knob"]
    assert change.breaks_resume and "(absent) → 1" in change.describe()


def test_added_stages_and_changed_trainable_groups_in_the_plan_are_refused():
    more = changed(plan_edit=lambda p: p["stages"].append(dict(p["stages"][0], name="second")))
    assert more["plan stages"].breaks_resume and more["plan stages"].what == "the stages"
    groups = changed(plan_edit=lambda p: p["stages"][0].update(train=["thinker", "audio_tower"]))
    assert groups["plan stages[0].train"].what == "the trained weights"


def test_estimates_and_warnings_in_the_plan_are_not_compared():
    def replan(plan):
        plan["stages"][0]["memory"] = {"estimate_gb": 9.9}
        plan["warnings"] = ["something new"]

    assert changed(plan_edit=replan) == {}


def test_a_multi_stage_recipe_may_lengthen_its_last_stage_but_not_an_earlier_one():
    saved = dict(RECIPE, stages=[{"name": "align", "max_steps": 4}, {"name": "instruct", "max_steps": 6}])

    def lengthen(index):
        recipe = copy.deepcopy(saved)
        recipe["stages"][index]["max_steps"] = 10
        return {c.key: c for c in classify_changes(saved, PLAN, recipe, PLAN)}

    assert not lengthen(1)["stages[1].max_steps"].breaks_resume
    assert lengthen(0)["stages[0].max_steps"].breaks_resume
