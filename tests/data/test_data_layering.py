"""`data check|preview` read data with the processor the command hands them; loading models is not theirs."""

from __future__ import annotations

import ast
from pathlib import Path

CHECK = Path(__file__).resolve().parents[2] / "omni_runner" / "data" / "check.py"


def test_the_data_check_module_imports_nothing_from_models():
    tree = ast.parse(CHECK.read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert not {name for name in imported if name and name.startswith("omni_runner.models")}
