"""Where runs live and how a run is found: `runs/<name>-<YYYYmmdd-HHMMSS>/`.

Everything a person or a tool needs to follow or resume a run is inside that folder:
`recipe.yaml` (resolved), `plan.json`, `events.jsonl`, `status.json`, `control.sock`,
`trainer.log`, `checkpoints/step-N/`, `final/`, `eval/`; and `slurm/` for a run submitted to SLURM.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

DEFAULT_RUNS_DIR = Path("runs")
_STAMP = "%Y%m%d-%H%M%S"


class RunNotFoundError(LookupError):
    """No run matches what the user named; the message says where we looked."""


@dataclass(frozen=True)
class RunDir:
    """The paths inside one run directory."""

    path: Path

    @property
    def recipe(self) -> Path:
        return self.path / "recipe.yaml"

    @property
    def plan(self) -> Path:
        return self.path / "plan.json"

    @property
    def events(self) -> Path:
        return self.path / "events.jsonl"

    @property
    def status(self) -> Path:
        return self.path / "status.json"

    @property
    def control_socket(self) -> Path:
        return self.path / "control.sock"

    @property
    def trainer_log(self) -> Path:
        return self.path / "trainer.log"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def final(self) -> Path:
        return self.path / "final"

    @property
    def eval(self) -> Path:
        return self.path / "eval"

    @property
    def slurm(self) -> Path:
        """The batch script, job ids and job logs of `omni-run submit --slurm`: made at submission,
        before the job starts the run in this same folder."""
        return self.path / "slurm"


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "run"


def run_folder_name(name: str, now: float | None = None) -> str:
    """`<name>-<YYYYmmdd-HHMMSS>`: the folder name of a run of recipe `name` started at `now`."""
    stamp = time.strftime(_STAMP, time.localtime(time.time() if now is None else now))
    return f"{_safe_name(name)}-{stamp}"


def create_run_dir(name: str, runs_dir: Path = DEFAULT_RUNS_DIR, now: float | None = None) -> RunDir:
    """Make a new, private (0700) run directory named after the recipe and the time."""
    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    base = run_folder_name(name, now)
    for suffix in ["", *(f"-{i}" for i in range(2, 100))]:
        path = runs_dir / f"{base}{suffix}"
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            continue
        os.chmod(path, 0o700)  # mkdir's mode is filtered by the umask
        return RunDir(path)
    raise FileExistsError(f"too many runs named {base!r} in {runs_dir}")


def list_runs(runs_dir: Path = DEFAULT_RUNS_DIR) -> list[RunDir]:
    """Run directories under `runs_dir`, oldest first (by creation time of their files)."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    found = [RunDir(p) for p in runs_dir.iterdir() if p.is_dir() and (p / "plan.json").exists()]
    return sorted(found, key=lambda run: (run.plan.stat().st_mtime, run.path.name))


def resolve_run(name_or_path: str | None, runs_dir: Path = DEFAULT_RUNS_DIR) -> RunDir:
    """A run named by path or by folder name under `runs_dir`; None means the newest run."""
    if name_or_path is None:
        runs = list_runs(runs_dir)
        if not runs:
            raise RunNotFoundError(f"no runs in {runs_dir}/ yet; start one with `omni-run RECIPE.yaml`")
        return runs[-1]
    candidate = Path(name_or_path)
    for path in (candidate, Path(runs_dir) / name_or_path):
        if path.is_dir() and (path / "plan.json").exists():
            return RunDir(path)
    matches = [run for run in list_runs(runs_dir) if run.path.name.startswith(name_or_path)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        names = ", ".join(run.path.name for run in matches)
        raise RunNotFoundError(f"{name_or_path!r} matches several runs: {names}")
    raise RunNotFoundError(f"no run {name_or_path!r} (looked for a folder and in {runs_dir}/)")
