"""`validate`, `plan`, `detect` and `capabilities` never import torch, transformers or diffusers.

Each command runs in a fresh interpreter through the real CLI entry point; the child then checks its
own `sys.modules`, so an import hidden anywhere (a command module, the planner, the loader) fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "transformers", "diffusers")
CHILD = f"""
import json, sys
import omni_runner.cli as cli
rc = cli.main(json.loads(sys.argv[1]))
heavy = [m for m in {HEAVY!r} if m in sys.modules]
print("HEAVY=" + json.dumps(heavy), file=sys.stderr)
sys.exit(rc)
"""
FIXTURE = REPO / "tests" / "fixtures" / "models" / "qwen2.5-omni-7b-gptq-int4"
COMMANDS = {
    "validate": ["validate", "recipes/full_omni.yaml"],
    "plan": ["plan", "--json", "recipes/full_omni.yaml"],
    "detect": ["detect", str(FIXTURE)],
    "capabilities": ["capabilities"],
    "capabilities-recipe": ["capabilities", "recipes/full_omni.yaml"],
}


@pytest.mark.parametrize("argv", COMMANDS.values(), ids=COMMANDS.keys())
def test_command_runs_without_importing_heavy_libraries(argv, tmp_path: Path):
    env = {**os.environ, "OMNI_DATA": str(tmp_path / "absent")}
    child = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(argv)], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert child.returncode == 0, child.stderr
    heavy = json.loads(child.stderr.rsplit("HEAVY=", 1)[1])
    assert heavy == [], f"{' '.join(argv)} imported {heavy}"
