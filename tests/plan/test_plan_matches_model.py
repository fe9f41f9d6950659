"""The plan's per-stage trainable parameter count is what the loader really trains on the tiny model.

The planner counts from config dimensions; the loader freezes a real model. Both split the model into
the same groups (omni_runner/plan/modules.py, omni_runner/models/load.py), so for every group, LoRA
or full, the counts must be equal to the parameter, not just close.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from omni_runner.plan import compile_plan
from omni_runner.recipe import load_recipe

pytestmark = pytest.mark.slow

# training.method, stages[0].train, the stage's capabilities (each group must be fed by them)
CASES = [
    ("full", ["thinker"], ["cot"]),
    ("lora", ["thinker"], ["cot"]),
    ("lora", ["vision_tower"], ["vision-qa"]),
    ("full", ["vision_tower"], ["vision-qa"]),
    ("full", ["vision_merger"], ["vision-qa"]),
    ("lora", ["vision_tower", "vision_merger"], ["vision-qa"]),
    ("full", ["vision_tower", "vision_merger"], ["vision-qa"]),
    ("lora", ["audio_tower"], ["podcast"]),
    ("full", ["audio_tower"], ["podcast"]),
    ("full", ["audio_projection"], ["podcast"]),
    ("lora", ["audio_tower", "audio_projection"], ["podcast"]),
    ("lora", ["thinker", "vision_merger", "audio_projection"], ["vision-qa", "podcast"]),
]


def _recipe(tmp_path: Path, method: str, stages: list[list[str]], capabilities: list[str]) -> Path:
    """A one-data-set recipe on the tiny model whose stages train `stages` in turn, each on all `capabilities`."""
    path = tmp_path / "recipe.yaml"
    path.write_text(
        "name: counts\n"
        "base_model: {path: builtin:tiny-qwen2.5-omni, architecture: tiny-qwen2.5-omni}\n"
        "datasets:\n"
        "  chat: {path: chat.jsonl, format: sharegpt}\n"
        "capabilities:\n" + "".join(f"  {c}: {{datasets: [chat]}}\n" for c in capabilities)
        + f"training: {{method: {method}, lora: {{r: 4, target_modules: [q_proj, v_proj]}}, max_steps: 2, seq_len: 256}}\n"
        + "stages:\n" + "".join(f"  - {{name: s{i}, train: [{', '.join(train)}]}}\n" for i, train in enumerate(stages))
        + "hardware: {device: cpu, vram_gb: 4}\n"
    )
    return path


@pytest.mark.parametrize(("method", "train", "capabilities"), CASES, ids=[f"{m}-{'+'.join(t)}" for m, t, _ in CASES])
def test_planned_trainable_parameters_equal_the_loaded_models(method, train, capabilities, tmp_path: Path):
    from omni_runner.models.load import load_for_training

    recipe = load_recipe(_recipe(tmp_path, method, [train], capabilities))
    [stage] = compile_plan(recipe).to_json()["stages"]
    loaded = load_for_training(recipe.data, tmp_path, "cpu", train_groups=train)
    assert stage["trainable_parameters"] == loaded.parameter_counts()["trainable"], stage["trainable"]


def test_lora_with_no_stage_training_an_adapted_group_is_refused_at_training_method(tmp_path: Path):
    from omni_runner.recipe import RecipeError

    recipe = load_recipe(_recipe(tmp_path, "lora", [["vision_merger"]], ["vision-qa"]))
    with pytest.raises(RecipeError) as refused:
        compile_plan(recipe)
    [problem] = [d for d in refused.value.diagnostics if d.severity == "error"]
    assert problem.field == "training.method" and problem.location.line == 7
    assert "no stage trains any of them" in problem.message


def test_a_merger_stage_after_a_tower_stage_trains_the_merger_alone(tmp_path: Path):
    """LoRA adapters are placed for every stage at load; the merger gets none, so its stage trains its weights only."""
    from omni_runner.models.load import load_for_training, set_trainable_groups

    recipe = load_recipe(_recipe(tmp_path, "lora", [["vision_tower"], ["vision_merger"]], ["vision-qa"]))
    counts = [stage["trainable_parameters"] for stage in compile_plan(recipe).to_json()["stages"]]
    loaded = load_for_training(recipe.data, tmp_path, "cpu")
    first = loaded.parameter_counts()["trainable"]
    set_trainable_groups(loaded, ["vision_merger"])
    assert counts == [first, loaded.parameter_counts()["trainable"]]
