"""What `omni-run eval TARGET` scores: a run's `final/` model, one of its checkpoints, or a model
folder; what that model can take in and put out (read from files, before any weights load, so a suite
it cannot take is refused at once); and loading it, or the recipe's base model for `--compare base`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omni_runner.run.rundir import RunDir, RunNotFoundError, resolve_run

_STEP = re.compile(r"^(?:step-)?(\d+)$")
_INPUT_SLOTS = {"vision": ("image_in", "video_in"), "audio": ("audio_in",)}
_OUTPUT_KINDS = {"image": "image_out", "video": "video_out"}
# The trained parts' file names beside a final model: models/encoders.py's and models/generation.py's
# PART_NAME (those modules import torch; refusals must come before it loads).
ENCODERS_PART = "external_encoders"
GENERATION_PART = "generation"


class TargetError(Exception):
    """The target cannot be evaluated as named; the message says why and what to name instead."""


@dataclass
class Target:
    """`model_path`: the folder (or checkpoint) to load; `run` and `recipe` None for a bare model folder."""

    model_path: Path
    run: RunDir | None = None
    recipe: dict[str, Any] | None = None
    step: int | None = None
    checkpoint: bool = False

    @property
    def recipe_dir(self) -> Path:
        return self.run.path if self.run is not None else Path.cwd()

    def describe(self) -> str:
        if self.run is None:
            return str(self.model_path)
        return f"{self.run.path.name} ({self.model_path.relative_to(self.run.path)})"


def _is_model_folder(path: Path) -> bool:
    return path.is_dir() and ((path / "config.json").is_file() or (path / "adapter_config.json").is_file())


def resolve_target(name: str, checkpoint: str | None, runs_dir: Path) -> Target:
    """The run (by folder or name) or model folder `name`, at `checkpoint` (`step-N`) when given."""
    path = Path(name)
    if _is_model_folder(path) and not (path / "plan.json").exists():
        if checkpoint is not None:
            raise TargetError(f"--checkpoint picks a checkpoint of a run, and {name} is a model folder")
        return Target(path)
    try:
        run = resolve_run(name, runs_dir)
    except RunNotFoundError as exc:
        raise TargetError(f"{exc}; TARGET is a run folder or name, or a model folder (holding config.json "
                          "or adapter_config.json)") from None
    from omni_runner.plain_yaml import read_plain_yaml

    recipe = read_plain_yaml(run.recipe)
    if checkpoint is not None:
        folder = _checkpoint_folder(run, checkpoint)
        return Target(folder, run, recipe, int(folder.name.removeprefix("step-")), checkpoint=True)
    if not run.final.is_dir():
        raise TargetError(f"{run.path.name} has no final/ model yet (it is written when training finishes); "
                          f"evaluate a checkpoint with --checkpoint step-N ({_available(run)})")
    return Target(run.final, run, recipe, _final_step(run))


def _available(run: RunDir) -> str:
    steps = sorted(int(m.group(1)) for p in (run.checkpoints.iterdir() if run.checkpoints.is_dir() else [])
                   if (m := _STEP.match(p.name)) and p.name.startswith("step-"))
    return "its checkpoints: " + ", ".join(f"step-{s}" for s in steps) if steps else "it has no checkpoints"


def _checkpoint_folder(run: RunDir, checkpoint: str) -> Path:
    match = _STEP.match(checkpoint)
    if not match:
        raise TargetError(f"--checkpoint {checkpoint!r}: name a checkpoint as step-N ({_available(run)})")
    folder = run.checkpoints / f"step-{int(match.group(1))}"
    if not folder.is_dir():
        raise TargetError(f"{run.path.name} has no checkpoint step-{int(match.group(1))} ({_available(run)})")
    from omni_runner.train.checkpoint import verify_checkpoint

    problem = verify_checkpoint(folder, checksums=False)
    if problem:
        raise TargetError(f"checkpoint {folder} cannot be used: {problem}")
    return folder


def _final_step(run: RunDir) -> int | None:
    from omni_runner.run.status import read_status

    step = (read_status(run.path) or {}).get("step")
    return int(step) if isinstance(step, int) else None


def base_model_dir(target: Target) -> Path:
    """The folder of the recipe's base model (built first when it is the built-in tiny model)."""
    if target.recipe is None:
        raise TargetError("--compare base needs a run: a model folder names no base model (evaluate the base "
                          "folder on its own and compare by hand)")
    from omni_runner.models.load import resolve_model_dir

    return resolve_model_dir(str(target.recipe["base_model"]["path"]), target.recipe_dir)


def _trained_part_keys(folder: Path, name: str) -> list[str]:
    try:
        return list(json.loads((folder / f"{name}.json").read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return []


def modalities(target: Target, *, base: bool = False) -> set[str]:
    """What the target's model (or, with `base`, the recipe's base model) takes in and puts out: its
    base folder's modalities (models' configs, `detect`), plus the external encoders and generation
    decoders the run trained."""
    from omni_runner.detect import detect

    if base or target.checkpoint:
        found = set(detect(base_model_dir(target)).modalities)
        if base:
            return found
        recipe = target.recipe or {}
        slots = list(recipe.get("encoders") or {})
        kinds = [kind for kind in (recipe.get("decoders") or {}) if kind in _OUTPUT_KINDS]
    else:
        folder = target.model_path
        if (folder / "adapter_config.json").is_file():
            from omni_runner.models.export import speech_folder

            folder = speech_folder(folder)  # the base the adapter sits on
        found = set(detect(folder).modalities)
        slots = _trained_part_keys(target.model_path, ENCODERS_PART)
        kinds = _trained_part_keys(target.model_path, GENERATION_PART)
    for slot in slots:
        found.update(_INPUT_SLOTS.get(slot, ()))
    found.update(_OUTPUT_KINDS[kind] for kind in kinds if kind in _OUTPUT_KINDS)
    return found


def load_target(target: Target, device: str | None, *, decoders: bool = False) -> Any:
    """The target's model, ready to generate (`models.load.LoadedModel`, in eval mode)."""
    if not target.checkpoint:
        from omni_runner.models.export import load_for_inference

        return load_for_inference(target.model_path, device, decoders=decoders)
    from safetensors.torch import load_file

    from omni_runner.models.load import ModelLoadError, load_for_training
    from omni_runner.train.checkpoint import WEIGHTS_FILE

    # The training model's shape (LoRA on every stage's groups, the talker when a stage trains it),
    # then the checkpoint's trained weights into it.
    loaded = load_for_training(target.recipe, target.recipe_dir, device)
    misfits = loaded.load_weights(load_file(target.model_path / WEIGHTS_FILE))
    if misfits:
        raise ModelLoadError(f"{target.model_path} holds weights this run's model does not have ({', '.join(misfits[:3])})")
    loaded.model.eval()
    loaded.model.requires_grad_(False)
    return loaded


def load_base(target: Target, device: str | None) -> Any:
    from omni_runner.models.export import load_for_inference

    return load_for_inference(base_model_dir(target), device)
