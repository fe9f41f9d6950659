"""Turn a recipe into a run directory the trainer can start from: `recipe.yaml` and `plan.json`.

The run directory must be self-contained: a trainer started (or restarted) from it later, from any
working directory, reads only what is inside. So the recipe is written as resolved (extends merged,
`${VAR}`s and `--set`s applied, defaults filled in, model and data paths absolute as the recipe
loader leaves them); `builtin:` names stay as they are (they resolve through the cache and the package).

No torch here: `omni-run RECIPE` prepares the run in the parent and only the child imports torch.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omni_runner.plain_yaml import dump_plain_yaml
from omni_runner.run.rundir import RunDir, create_run_dir

if TYPE_CHECKING:
    from omni_runner.plan import Plan
    from omni_runner.recipe import Recipe


def self_contained(data: dict[str, Any]) -> dict[str, Any]:
    """Resolved recipe data that means the same from any folder: the loader already made every model
    and data path absolute (against the file that wrote it); `extends` is dropped because its parents
    are merged in and their relative names would not resolve from the run folder."""
    return {key: value for key, value in data.items() if key != "extends"}


def render_recipe_yaml(data: dict[str, Any], source: Path) -> str:
    header = (
        f"# Resolved from {source} on {time.strftime('%Y-%m-%d %H:%M:%S')}:\n"
        "# extends merged, variables and --set overrides applied, defaults filled in, paths absolute.\n"
    )
    return header + dump_plain_yaml(data)


def _run_folder(name: str, runs_dir: str, run_dir: Path | None) -> RunDir:
    if run_dir is None:
        return create_run_dir(name, Path(runs_dir))
    run_dir = Path(run_dir)
    # slurm/ is made by `omni-run submit --slurm` before its job starts the run in this folder.
    if run_dir.exists() and any(entry != RunDir(run_dir).slurm for entry in run_dir.iterdir()):
        raise FileExistsError(
            f"--run-dir {run_dir} already exists and is not empty; "
            "choose a new folder, or continue that run with `omni-run resume`"
        )
    run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(run_dir, 0o700)
    return RunDir(run_dir)


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def measured_lengths(recipe: Any) -> Any:
    """What `training.packing: auto` decides from: the probe of the recipe's data (None when not asked for)."""
    from omni_runner.data.lengths import packing_probe
    from omni_runner.plan.packing import MEASURED_SAMPLES

    probe = packing_probe(recipe.data, Path(recipe.source).parent, MEASURED_SAMPLES)
    return probe.stage_lengths if probe is not None else None


def load_and_plan(
    recipe_path: Path, overrides: Sequence[str] = (), capabilities: Sequence[str] | None = None,
) -> tuple[Recipe, Plan]:
    """The recipe (its model and data paths checked) and its plan: everything a run must pass before
    anything is made for it. Raises `RecipeError` (recipe problems, missing paths, plan refusals)."""
    from omni_runner.plan import compile_plan
    from omni_runner.recipe import load_recipe

    recipe = load_recipe(Path(recipe_path), overrides=list(overrides), capabilities=capabilities, environ=os.environ)
    recipe.check_paths_exist()
    return recipe, compile_plan(recipe, measured_lengths(recipe))


def prepare_run(
    recipe_path: Path,
    overrides: Sequence[str] = (),
    capabilities: Sequence[str] | None = None,
    run_dir: Path | None = None,
) -> RunDir:
    """Load, validate and plan the recipe, then create the run directory with recipe.yaml and plan.json.

    Raises `RecipeError` (recipe problems, missing paths, blocked capabilities) before anything is
    created, and `FileExistsError` when `run_dir` is given and already holds something.
    """
    recipe, plan = load_and_plan(recipe_path, overrides, capabilities)
    data = self_contained(recipe.data)
    run = _run_folder(data["name"], data["output"]["runs_dir"], run_dir)
    write_run_files(run, data, plan.to_json(), Path(recipe.source))
    return run


def replanned(run: RunDir, overrides: Sequence[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The run's own recipe with `overrides` applied, and its plan made anew (`omni-run resume --set`, e.g.
    to continue on another number of processes). Raises `RecipeError` as a new run would; writes nothing."""
    recipe, plan = load_and_plan(run.recipe, overrides)
    return self_contained(recipe.data), plan.to_json()


def write_run_files(run: RunDir, data: dict[str, Any], plan: dict[str, Any], source: Path) -> None:
    """The run folder's `recipe.yaml` (resolved from `source`) and `plan.json`, each replaced whole."""
    _write_private(run.recipe, render_recipe_yaml(data, source))
    _write_private(run.plan, json.dumps(plan, indent=2) + "\n")
