"""`distributed:` in the plan: which process layouts the trainer runs and which are refused at their line,
the global batch over processes, and the per-device memory of each strategy."""

from __future__ import annotations

from pathlib import Path

import pytest
from recipe_lines import line_of

from omni_runner.plan import compile_plan
from omni_runner.recipe import RecipeError, load_recipe

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def _plan(recipe: Path | str, overrides: list[str], environ: dict[str, str] | None = None) -> dict:
    return compile_plan(load_recipe(recipe, overrides=overrides, environ=environ or {})).to_json()


def _errors(recipe: Path | str, overrides: list[str] = ()) -> list:
    with pytest.raises(RecipeError) as caught:
        compile_plan(load_recipe(recipe, overrides=list(overrides), environ={}))
    return [d for d in caught.value.diagnostics if d.severity == "error"]


def _tiny(write_recipe, distributed: str) -> Path:
    """recipes/tiny_omni.yaml with a `distributed:` block written in the file (so errors have a line)."""
    return write_recipe(f"extends: {RECIPES / 'tiny_omni.yaml'}\ndistributed:\n{distributed}")


def test_ddp_over_the_processes_of_one_machine_is_planned(write_recipe):
    plan = _plan(_tiny(write_recipe, "  num_processes: 2\n"), [])
    assert plan["distributed"]["strategy"] == "ddp" and plan["distributed"]["world_size"] == 2
    assert not [w for w in plan["warnings"] if w.startswith("distributed")]


@pytest.mark.parametrize("strategy", ["fsdp", "deepspeed-zero2", "deepspeed-zero3"])
def test_a_sharding_strategy_with_several_processes_is_refused_at_its_line(write_recipe, strategy: str):
    path = _tiny(write_recipe, f"  strategy: {strategy}\n  num_processes: 4\n")
    [problem] = _errors(path)
    assert (problem.field, problem.location.line) == ("distributed.strategy", line_of(path, "strategy:"))
    assert f"distributed.strategy {strategy} with 4 processes: sharded training is not wired yet" in problem.message
    assert "strategy: ddp" in problem.hint and "per-device estimate" in problem.hint


def test_a_sharding_strategy_with_one_process_is_a_warning_that_it_changes_nothing(write_recipe):
    plan = _plan(_tiny(write_recipe, "  strategy: fsdp\n"), [])
    assert "distributed.strategy: distributed.strategy is 'fsdp', which has no effect with one process (it trains on one device)" in plan["warnings"]
    assert plan["distributed"] | {"world_size": 1, "strategy": "fsdp"} == plan["distributed"]


def test_more_than_one_machine_is_refused_at_num_machines(write_recipe):
    path = _tiny(write_recipe, "  num_processes: 4\n  num_machines: 2\n  main_process_ip: 10.0.0.1\n")
    [problem] = _errors(path)
    assert (problem.field, problem.location.line) == ("distributed.num_machines", line_of(path, "num_machines:"))
    assert "multi-node training is not wired yet" in problem.message and "num_machines: 1" in problem.hint


def test_settings_that_change_nothing_on_one_machine_or_process_are_warnings(write_recipe):
    plan = _plan(_tiny(write_recipe, "  main_process_ip: 10.0.0.1\n  main_process_port: 29600\n"), [])
    warnings = [w for w in plan["warnings"] if w.startswith("distributed")]
    assert warnings == [
        "distributed.main_process_ip: distributed.main_process_ip is '10.0.0.1', which has no effect with one machine (its processes meet on it)",
        "distributed.main_process_port: distributed.main_process_port is 29600, which has no effect with one process (no other process connects)",
    ]


def test_generation_capabilities_with_several_processes_are_refused_at_each_capability():
    path = RECIPES / "tiny_omni_generation.yaml"
    problems = _errors(path, ["distributed.num_processes=2"])
    assert [(p.field, p.location.line) for p in problems] == [
        (f"capabilities.{name}", line_of(path, f"  {name}:")) for name in ("image-generation", "image-editing", "video-generation")]
    assert all("not wired under multiple processes yet" in p.message and p.hint for p in problems)


def test_a_talker_stage_with_several_processes_is_refused_at_its_train_entry():
    path = RECIPES / "tiny_omni_speech.yaml"
    [problem] = _errors(path, ["distributed.num_processes=2"])
    assert (problem.field, problem.location.line) == ("stages[1].train[0]", line_of(path, "name: talker_realign"))
    assert "the talker realign is not wired under multiple processes yet" in problem.message


def test_external_encoders_with_several_processes_are_refused_at_their_slot():
    path = RECIPES / "tiny_omni_encoders.yaml"
    problems = _errors(path, ["distributed.num_processes=2"])
    assert [p.field for p in problems] == ["encoders.vision", "encoders.audio"]
    assert all("projectors train beside the DDP-wrapped model" in p.message for p in problems)
