"""`omni-run validate FILE...`: exit status, output formats, and no heavy imports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from omni_runner.cli import main
from tests.recipe.conftest import VALID

REPO = Path(__file__).resolve().parents[2]
BAD = VALID + "training:\n  lrr: 1e-4\n"


# What the `omni-run` console script runs.
OMNI_RUN = [sys.executable, "-c", "import sys; from omni_runner.cli import main; sys.exit(main())"]


def _validate(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([*OMNI_RUN, "validate", *argv], capture_output=True, text=True, cwd=REPO)


def test_a_valid_recipe_exits_0_with_a_summary(write):
    result = _validate(str(write("r.yaml", VALID)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == "1 recipe checked, all valid: 0 errors, 0 warnings\n"


def test_an_invalid_recipe_exits_1_with_compiler_style_lines(write):
    path = write("r.yaml", BAD)
    result = _validate(str(path))
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"{path}:9:3: error: unknown key 'lrr' in `training` (training.lrr)",
        "    hint: did you mean 'lr'?",
        "1 recipe checked, 1 invalid: 1 error, 0 warnings",
    ]


def test_usage_errors_exit_2():
    assert _validate().returncode == 2
    assert _validate("--format", "xml", "r.yaml").returncode == 2


def test_missing_paths_are_warnings_and_still_exit_0(write, capsys):
    path = write("r.yaml", VALID.replace("builtin:tiny-qwen2.5-omni", "absent-model"))
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"{path}:3:9: warning: model path not found: {path.parent / 'absent-model'} (base_model.path)" in out
    assert out.endswith("1 recipe checked, all valid: 0 errors, 1 warning\n")


def test_github_format_prints_workflow_annotations(write, capsys):
    path = write("r.yaml", BAD)
    assert main(["validate", "--format", "github", str(path)]) == 1
    assert capsys.readouterr().out == (
        f"::error file={path},line=9,col=3,title=omni-run validate::"
        "unknown key 'lrr' in `training` (training.lrr)%0Adid you mean 'lr'?\n"
    )


def test_json_format_lists_each_file_and_its_diagnostics(write, capsys):
    good, bad = write("good.yaml", VALID), write("bad.yaml", BAD)
    assert main(["validate", "--format", "json", str(good), str(bad)]) == 1
    report = json.loads(capsys.readouterr().out)
    assert (report["valid"], report["errors"], report["warnings"]) == (False, 1, 0)
    assert [(f["file"], f["valid"]) for f in report["files"]] == [(str(good), True), (str(bad), False)]
    [diagnostic] = report["files"][1]["diagnostics"]
    assert diagnostic == {"severity": "error", "message": "unknown key 'lrr' in `training`", "file": str(bad),
                          "line": 9, "col": 3, "field": "training.lrr", "hint": "did you mean 'lr'?"}


def test_set_and_capabilities_options_apply(write, capsys):
    path = write("r.yaml", VALID)
    assert main(["validate", str(path), "--set", "training.micro_batch=0"]) == 1
    assert "must be at least 1, got 0 (training.micro_batch)" in capsys.readouterr().out
    assert main(["validate", str(path), "--capabilities", "cot,vison-qa"]) == 1
    assert "did you mean 'vision-qa'?" in capsys.readouterr().out


def test_validate_never_imports_torch_transformers_or_diffusers(write):
    path = write("r.yaml", VALID)
    probe = (
        "import sys\n"
        "from omni_runner.cli import main\n"
        f"assert main(['validate', {str(path)!r}]) == 0\n"
        "heavy = sorted({'torch', 'transformers', 'diffusers'} & set(sys.modules))\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr


def test_the_shipped_recipes_are_valid():
    recipes = sorted(str(p.relative_to(REPO)) for p in (REPO / "recipes").glob("*.yaml"))
    if not recipes:
        pytest.fail("recipes/*.yaml is empty")
    result = _validate(*recipes)
    assert result.returncode == 0, result.stdout + result.stderr
