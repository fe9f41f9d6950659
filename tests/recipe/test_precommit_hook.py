"""The pre-commit manifest that lets other repositories validate their recipes on commit."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib

from omni_runner.plain_yaml import read_plain_yaml

REPO = Path(__file__).resolve().parents[2]


def test_the_hook_runs_the_validate_console_script_on_recipe_files():
    [hook] = read_plain_yaml(REPO / ".pre-commit-hooks.yaml")
    assert (hook["id"], hook["language"], hook["entry"]) == ("omni-run-validate", "python", "omni-run validate")
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert "omni-run" in scripts
    matches = re.compile(hook["files"]).search
    assert matches("recipes/full_omni.yaml") and matches("recipes/sub/x.yml")
    assert not matches("docs/recipe-reference.md") and not matches(".github/workflows/ci.yaml")
