"""A user who installs the wheel (not `pip install -e`) gets every package and a quick start that trains and
evaluates: the wheel is built from a copy of the sources, installed with `--no-deps` into a fresh virtual
environment that reuses this environment's installed dependencies, and `omni-run` runs from a folder
outside the source tree, so nothing can be imported from the checkout."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from omni_runner.run.events import read_events

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("omni_runner", "schemas", "tui", "pyproject.toml", "setup.py")
QUICK_START = ["--set", "training.max_steps=5", "--set", "training.micro_batch=1", "--set", "eval.max_samples=2",
               "--set", "eval.max_new_tokens=8", "--set", "output.report_to=[tensorboard]"]


def _wheel(tmp_path: Path) -> Path:
    source = tmp_path / "src"
    source.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(REPO / name, source / name)
    (source / "README.md").write_text("omni-runner\n")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", ".", "-w", "dist"],
                   cwd=source, check=True, capture_output=True)
    [wheel] = (source / "dist").glob("*.whl")
    return wheel


def _venv_over_this_environment(path: Path) -> Path:
    """A venv whose own site-packages comes first and this environment's installed packages after it (a
    path line in a .pth: the editable install's own .pth hooks in there are not run, so its checkout
    stays out of reach)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    shared = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(purelib) / "test_environment.pth").write_text("".join(f"{folder}\n" for folder in sorted(shared)))
    return python


def _package_folders() -> set[str]:
    """Where each package folder of the checkout lands in an installed tree."""
    folders = set()
    for root, installed_as in (("omni_runner", "omni_runner"), ("tui", "omni_tui")):
        for init in (REPO / root).rglob("__init__.py"):
            folders.add((Path(installed_as) / init.parent.relative_to(REPO / root)).as_posix())
    return folders


@pytest.mark.slow
def test_the_installed_wheel_trains_and_evaluates_the_quick_start_from_outside_the_checkout(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    wheel = _wheel(tmp_path)
    shipped = {Path(name).parent.as_posix() for name in zipfile.ZipFile(wheel).namelist() if name.endswith("__init__.py")}
    assert _package_folders() <= shipped

    python = _venv_over_this_environment(tmp_path / "venv")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(wheel)],
                   check=True, capture_output=True)
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(REPO / "recipes" / "tiny_omni.yaml", work / "tiny_omni.yaml")
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    where = subprocess.run([str(python), "-c", "import omni_runner, omni_tui; print(omni_runner.__file__, omni_tui.__file__)"],
                           cwd=work, env=env, check=True, capture_output=True, text=True).stdout.split()
    assert all(path.startswith(str(tmp_path / "venv")) for path in where), where

    result = subprocess.run([str(python.parent / "omni-run"), "tiny_omni.yaml", *QUICK_START], cwd=work, env=env,
                            capture_output=True, text=True, timeout=600, check=False)

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [run] = (work / "runs").iterdir()
    events = list(read_events(run / "events.jsonl"))
    assert any(e["type"] == "eval" and e.get("dataset") for e in events), "the end-of-run evaluation did not run"
    assert json.loads((run / "eval" / "results.json").read_text())
    losses = {e["step"]: e["loss"] for e in events if e["type"] == "step"}
    logged = EventAccumulator(str(run / "tensorboard"))
    logged.Reload()
    assert {e.step: e.value for e in logged.Scalars("train/loss")} == pytest.approx(losses)
