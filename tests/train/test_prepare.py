"""`prepare_run`: the run folder's recipe.yaml means the same thing from any working directory."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from omni_runner.paths import BUNDLED_DATA_DIR
from omni_runner.plain_yaml import read_plain_yaml
from omni_runner.run.prepare import prepare_run

REPO = Path(__file__).resolve().parents[2]


def test_relative_data_paths_of_a_parent_recipe_are_absolute_in_the_run_and_extends_is_gone(tmp_path, monkeypatch):
    parent_dir, child_dir = tmp_path / "shared", tmp_path / "mine"
    (parent_dir / "data").mkdir(parents=True)
    child_dir.mkdir()
    shutil.copy(BUNDLED_DATA_DIR / "tool-calling" / "xlam_train.jsonl", parent_dir / "data" / "calls.jsonl")
    (parent_dir / "base.yaml").write_text(
        f"extends: {REPO / 'recipes' / 'tiny_omni.yaml'}\n"
        "datasets:\n  xlam: {path: data/calls.jsonl, format: xlam}\n"
    )
    (child_dir / "recipe.yaml").write_text("extends: ../shared/base.yaml\nname: child\n")
    monkeypatch.chdir(tmp_path)

    run = prepare_run(child_dir / "recipe.yaml", [], None, run_dir=tmp_path / "run")

    written = read_plain_yaml(run.recipe)
    assert written["datasets"]["xlam"]["path"] == str((parent_dir / "data" / "calls.jsonl").resolve())
    assert written["datasets"]["cot"]["path"] == "builtin:cot/cot_collection.jsonl"
    assert "extends" not in written and written["name"] == "child"


def test_a_run_folder_that_already_holds_files_is_refused(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="omni-run resume"):
        prepare_run(REPO / "recipes" / "tiny_omni.yaml", [], None, run_dir=tmp_path / "run")
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"
