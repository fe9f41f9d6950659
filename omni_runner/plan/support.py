"""What the trainer trains today, as data, and the refusals for everything a recipe names beyond it.

The schema and the capability registry describe the whole design (ARCHITECTURE.md); the trainer
trains less. Every part a recipe can name that the trainer would drop, ignore or fail on is listed
here with what is missing and what to do instead, and the planner refuses it at the line that names
it, so nothing validates and then fails, or is silently left out, at run time. `omni-run
capabilities` shows the same tables. An entry goes when the trainer learns the part, together with
a test that trains it (tests/plan/test_support_matrix.py walks every capability and format).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from omni_runner.capabilities import CAPABILITIES, enabled_capabilities
from omni_runner.plan.models import PlannedModel
from omni_runner.recipe.errors import Diagnostic, error, field_name, warning
from omni_runner.recipe.schema import child_schema, recipe_schema


@dataclass(frozen=True)
class Gap:
    """Something a recipe can name that the trainer does not train: what is missing, and what to do today."""

    missing: str
    instead: str


_GENERATION = "the trainer has no query-token/projector path into a frozen {decoder} decoder and no diffusion loss yet"
_DISABLE = "set `enabled: false` on it, or remove it"

UNTRAINED_CAPABILITIES: dict[str, Gap] = {
    "image-generation": Gap(_GENERATION.format(decoder="SD3"), _DISABLE),
    "image-editing": Gap(_GENERATION.format(decoder="SD3") + ", and no data adapter reads image-edit pairs", _DISABLE),
    "video-generation": Gap(_GENERATION.format(decoder="SVD"), _DISABLE),
}

UNTRAINED_FORMATS: dict[str, Gap] = {
    "image-edit": Gap(
        "no data adapter reads image-edit records (source image, instruction, target image); only image-editing uses them",
        "remove the data set from the enabled capabilities' `datasets`",
    ),
}

_OWN_VISION = "images and video go through the base model's own vision tower"
_OWN_AUDIO = "audio goes through the base model's own audio tower"

# Model slots whose models the trainer never loads.
UNWIRED_MODELS: dict[str, Gap] = {
    "encoders.vision": Gap("external vision encoders (SigLIP2 through a projector) are not wired into the trainer",
                           f"remove encoders.vision: {_OWN_VISION}"),
    "encoders.audio": Gap("external audio encoders (Whisper through a projector) are not wired into the trainer",
                          f"remove encoders.audio: {_OWN_AUDIO}"),
    "encoders.asr": Gap("external speech recognisers (Parakeet) are not wired into the trainer",
                        f"remove encoders.asr: {_OWN_AUDIO}"),
    "decoders.image": Gap("image decoders (SD3) are not wired: image generation does not train yet", "remove decoders.image"),
    "decoders.video": Gap("video decoders (SVD) are not wired: video generation does not train yet", "remove decoders.video"),
}

# `stages[].train` groups the trainer cannot train.
UNTRAINED_GROUPS: dict[str, Gap] = {
    "vision_projector": Gap("it projects encoders.vision, which is not wired",
                            "train vision_merger, the base model's own projection of its vision tower"),
    "audio_projector": Gap("it projects encoders.audio, which is not wired",
                           "train audio_projection, the base model's own projection of its audio tower"),
    "image_projector": Gap("it feeds decoders.image, and image generation does not train yet", "remove it"),
    "video_projector": Gap("it feeds decoders.video, and video generation does not train yet", "remove it"),
    "query_tokens": Gap("generation queries exist only for image and video generation, which do not train yet", "remove it"),
}

# Outputs a trained capability asks for that the trainer does not train directly; the stage trains the rest.
UNTRAINED_OUTPUTS: dict[str, str] = {
    "audio_out": ("the speech reply has no ground-truth target (Qwen's speech tokenizer is unreleased): the text reply "
                  "trains and the frozen talker speaks it; eval reports talker_consistency (the talker's loss on the "
                  "original model's own speech), and a stage with `train: [talker]` realigns the talker (docs/speech.md)"),
}

_ONE_PROCESS = Gap("multi-process training is not wired: the trainer runs one process on one device",
                   "remove the field (training runs on one device)")

# Fields the trainer does not read: any value but the schema default is refused at its line.
IGNORED_FIELDS: dict[tuple[str, ...], Gap] = {
    ("distributed", "strategy"): _ONE_PROCESS,
    ("distributed", "num_processes"): _ONE_PROCESS,
    ("distributed", "num_machines"): _ONE_PROCESS,
    ("distributed", "zero_stage"): _ONE_PROCESS,
    ("distributed", "launcher"): _ONE_PROCESS,
    ("training", "epochs"): Gap("the trainer runs a fixed number of optimizer steps; epochs are not turned into steps",
                                "set training.max_steps (or max_steps per stage) instead"),
}

# Base-model types the trainer loads (omni_runner/models/load.py loads the Qwen2.5-Omni thinker only).
TRAINED_BASE_MODEL_TYPES: tuple[str, ...] = ("qwen2_5_omni", "qwen2_5_omni_thinker")


def unsupported_diagnostics(recipe: Any, models: dict[str, PlannedModel]) -> list[Diagnostic]:
    """One error per part of `recipe` the trainer would not train (and a warning per untrained output),
    each at the line that names it."""
    return [
        *_base_model(recipe, models),
        *_model_slots(recipe),
        *_capabilities(recipe),
        *_formats(recipe),
        *_groups(recipe),
        *_ignored_fields(recipe),
    ]


def _refusal(recipe: Any, what: str, gap: Gap, path: tuple[str | int, ...]) -> Diagnostic:
    return error(f"{what}: {gap.missing}", recipe.location(path), field_name(path), gap.instead)


def _base_model(recipe: Any, models: dict[str, PlannedModel]) -> Iterator[Diagnostic]:
    base = models.get("base_model")
    if base is not None and base.detection.model_type not in TRAINED_BASE_MODEL_TYPES:
        yield error(
            f"the trainer loads Qwen2.5-Omni base models only, and this is {base.detection.model_type}",
            recipe.location(("base_model", "path")), "base_model.path",
            "use a Qwen2.5-Omni folder (Qwen2.5-Omni-7B, -3B, -7B-GPTQ-Int4, or builtin:tiny-qwen2.5-omni)",
        )


def _model_slots(recipe: Any) -> Iterator[Diagnostic]:
    for slot, gap in UNWIRED_MODELS.items():
        path = tuple(slot.split("."))
        section, key = recipe.data.get(path[0]) or {}, path[1]
        if section.get(key) is not None:
            yield _refusal(recipe, f"the trainer does not load {slot}", gap, path)


def _capabilities(recipe: Any) -> Iterator[Diagnostic]:
    for name in enabled_capabilities(recipe.data):
        if name in UNTRAINED_CAPABILITIES:
            yield _refusal(recipe, f"capability {name!r} does not train yet", UNTRAINED_CAPABILITIES[name], ("capabilities", name))
        for output in sorted(CAPABILITIES[name].requires & UNTRAINED_OUTPUTS.keys()):  # the loader refused unknown names
            yield warning(UNTRAINED_OUTPUTS[output], recipe.location(("capabilities", name)), f"capabilities.{name}")


def _formats(recipe: Any) -> Iterator[Diagnostic]:
    """Untrained formats among the data sets of enabled capabilities (untrained capabilities are reported already)."""
    datasets = recipe.data.get("datasets") or {}
    specs = recipe.data.get("capabilities") or {}
    used = {name for c in enabled_capabilities(recipe.data) if c not in UNTRAINED_CAPABILITIES for name in (specs[c] or {}).get("datasets") or ()}
    for name in sorted(used):
        fmt = (datasets.get(name) or {}).get("format")
        if fmt in UNTRAINED_FORMATS:
            path = ("datasets", name, "format")
            yield _refusal(recipe, f"data set {name!r} has format {fmt}, which does not train yet", UNTRAINED_FORMATS[fmt], path)


def _groups(recipe: Any) -> Iterator[Diagnostic]:
    for index, stage in enumerate(recipe.data.get("stages") or ()):
        for position, group in enumerate(stage.get("train") or ()):
            if group in UNTRAINED_GROUPS:
                path = ("stages", index, "train", position)
                yield _refusal(recipe, f"stage {stage['name']!r} cannot train {group}", UNTRAINED_GROUPS[group], path)
        yield from _talker_stage(recipe, index, stage)


def _talker_stage(recipe: Any, index: int, stage: dict[str, Any]) -> Iterator[Diagnostic]:
    """A stage that trains the talker runs the talker_realign objective (train/talker_realign.py): the
    talker alone learns, reading a frozen thinker, and only where the recipe unfroze it."""
    train = list(stage.get("train") or ())
    if "talker" not in train:
        return
    path = ("stages", index, "train", train.index("talker"))
    if train != ["talker"]:
        yield error(f"stage {stage['name']!r} trains the talker with {', '.join(g for g in train if g != 'talker')}: "
                    "a talker stage realigns the talker alone, reading the frozen thinker",
                    recipe.location(path), field_name(path), "put the other groups in a stage of their own, before it")
    speech = (recipe.data.get("decoders") or {}).get("speech") or {}
    if speech.get("freeze", True):
        yield error(f"stage {stage['name']!r} trains the talker, but decoders.speech.freeze is true (the default)",
                    recipe.location(path), field_name(path), "set decoders.speech.freeze: false to let it realign the talker")


def _ignored_fields(recipe: Any) -> Iterator[Diagnostic]:
    for path, gap in IGNORED_FIELDS.items():
        node: Any = recipe.data
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if node is not None and node != _schema_default(path):
            yield _refusal(recipe, f"{field_name(path)} is {node!r}, but the trainer does not read it", gap, path)


def _schema_default(path: tuple[str, ...]) -> Any:
    schema: Any = recipe_schema()
    for key in path:
        schema = child_schema(schema, key)
    return schema.get("default")
