"""What changed between the recipe and plan a checkpoint was trained under and the run's current ones,
and whether exact resume survives each change. Pure: dictionaries in, verdicts out.

Exact resume means the resumed run computes what the uninterrupted one would have. Settings that
only steer, report or score the run (the controller, output, evaluation, logging) may change freely;
so may a larger step count for the last stage, which trains longer on the same path (its learning
rate schedule is stretched from there on). Anything else that the trainer reads (the model, the
stages, the trained weights, the data mix, the batch shape, the seed, the optimizer, the numerics)
would silently train a different run from the checkpoint on, so resume refuses it unless the user
accepts that. Unknown keys count as breaking: a false refusal costs a flag, a false pass costs a run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Recipe keys (dotted prefixes) that never change what is trained, with the words the note uses.
HARMLESS = {
    "name": "the run's name",
    "controller": "controller settings",
    "eval": "evaluation settings",
    "output": "output settings",
    "hardware.vram_gb": "a planning input (its effect, if any, shows in the plan)",
    "training.log_every": "logging",
    "training.nan_policy": "what a streak of NaN steps does",
    "training.auto_micro_batch": "what an out-of-memory failure does",
    "training.num_workers": "which processes prepare the samples (the same samples, in the same order)",
}

# What a breaking recipe change touches, by dotted prefix: the first match names it.
BREAKING = {
    "base_model": "the model",
    "encoders": "the model",
    "decoders": "the model",
    "stages": "the stages",
    "training.method": "the trained weights",
    "training.lora": "the trained weights",
    "datasets": "the data mix",
    "capabilities": "the data mix",
    "training.micro_batch": "the batch shape",
    "training.grad_accum": "the batch shape",
    "training.seq_len": "the batch shape",
    "training.packing": "the batch shape",
    "training.epochs": "the batch shape",
    "training.seed": "the seed",
    "training.lr": "the optimizer",
    "training.lr_scheduler": "the optimizer",
    "training.warmup_steps": "the optimizer",
    "training.weight_decay": "the optimizer",
    "training.max_grad_norm": "the optimizer",
    "training.max_steps": "fewer steps than the checkpoint was planned for",
    "training.precision": "the numerics",
    "training.gradient_checkpointing": "the numerics",
    "hardware.device": "the numerics",
    "distributed": "the distribution over processes",
}

# The plan keys the trainer reads from each stage, and what a change touches; the rest of plan.json
# explains and estimates.
PLAN_STAGE_KEYS = {
    "name": "the stages",
    "capabilities": "the data mix",
    "generation": "the data mix",
    "train": "the trained weights",
    "max_steps": "the length of a stage other than the last, which moves where later ones begin",
    "lr": "the optimizer",
    "micro_batch": "the batch shape",
    "grad_accum": "the batch shape",
    "seq_len": "the batch shape",
    "gradient_checkpointing": "the numerics",
}

PLAN_PREFIX = "plan "


@dataclass(frozen=True)
class Change:
    """One setting that differs from the checkpoint's."""

    key: str  # `training.lr`, or `plan stages[0].lr`
    before: Any
    after: Any
    what: str  # what it touches, in words
    breaks_resume: bool

    def describe(self) -> str:
        return f"{self.key}: {_show(self.before)} → {_show(self.after)} ({self.what})"


_MISSING = object()


def _show(value: Any) -> str:
    return "(absent)" if value is _MISSING else repr(value)


def classify_changes(saved_recipe: dict[str, Any], saved_plan: dict[str, Any],
                     recipe: dict[str, Any], plan: dict[str, Any]) -> list[Change]:
    """Every difference between the checkpoint's recipe and plan and the current ones, classified."""
    stages = recipe.get("stages") if isinstance(recipe.get("stages"), list) else []
    longer_keys = ("training.max_steps", f"stages[{len(stages) - 1}].max_steps")
    changes = [_classify_recipe_key(key, before, after, longer_keys)
               for key, before, after in _differences(_flatten(saved_recipe), _flatten(recipe))]
    saved_stages, stages = _plan_stages(saved_plan), _plan_stages(plan)
    if len(saved_stages) != len(stages):
        changes.append(Change(f"{PLAN_PREFIX}stages", f"{len(saved_stages)} stage(s)", f"{len(stages)} stage(s)",
                              "the stages", True))
        return changes
    last = len(stages) - 1
    for index, (saved_stage, stage) in enumerate(zip(saved_stages, stages)):
        for name, before, after in _differences(_stage_keys(saved_stage), _stage_keys(stage)):
            key = f"{PLAN_PREFIX}stages[{index}].{name}"
            if name == "max_steps" and index == last:
                longer = _is_larger(before, after)
                changes.append(Change(key, before, after, "more steps in the last stage" if longer
                                      else BREAKING["training.max_steps"], not longer))
            else:
                changes.append(Change(key, before, after, PLAN_STAGE_KEYS[name], True))
    return changes


def _classify_recipe_key(key: str, before: Any, after: Any, longer_keys: tuple[str, ...]) -> Change:
    """`longer_keys`: the step counts of the last stage, which may grow."""
    if key in longer_keys and _is_larger(before, after):
        return Change(key, before, after, "more steps: the learning-rate schedule stretches from here on", False)
    harmless = _match(key, HARMLESS)
    if harmless is not None:
        return Change(key, before, after, harmless, False)
    return Change(key, before, after, _match(key, BREAKING) or "a setting exact resume depends on", True)


def _match(key: str, table: dict[str, str]) -> str | None:
    for prefix, what in table.items():
        if key == prefix or key.startswith((prefix + ".", prefix + "[")):
            return what
    return None


def _is_larger(before: Any, after: Any) -> bool:
    numbers = all(isinstance(v, int) and not isinstance(v, bool) for v in (before, after))
    return numbers and after > before


def _plan_stages(plan: dict[str, Any]) -> list[dict[str, Any]]:
    stages = plan.get("stages") if isinstance(plan, dict) else None
    return [stage if isinstance(stage, dict) else {} for stage in stages] if isinstance(stages, list) else []


def _stage_keys(stage: dict[str, Any]) -> dict[str, Any]:
    return {name: stage[name] for name in PLAN_STAGE_KEYS if name in stage}


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted keys to leaves; lists of mappings are indexed (`stages[0].name`), other lists are leaves."""
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat or ({prefix: {}} if prefix else {})
    if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        flat = {}
        for index, item in enumerate(value):
            flat.update(_flatten(item, f"{prefix}[{index}]"))
        return flat
    return {prefix: value}


def _differences(before: dict[str, Any], after: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    keys = sorted(set(before) | set(after))
    return [(key, before.get(key, _MISSING), after.get(key, _MISSING)) for key in keys
            if before.get(key, _MISSING) != after.get(key, _MISSING)]
