"""The wheel declares every dependency: an imported package nobody declared is missing from `pip install`
(an editable install into a full venv hides it). That the wheel ships every package is
tests/test_wheel_install.py's."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parents[1]


def test_every_third_party_import_is_a_declared_dependency():
    """A clean `pip install .[test]` (what CI does) must provide every package the code imports."""
    import ast
    import sys
    from importlib.metadata import packages_distributions

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = [*project["dependencies"], *(r for extra in project["optional-dependencies"].values() for r in extra)]
    declared = {_canonical(re.match(r"[A-Za-z0-9_.-]+", r).group()) for r in requirements}
    providers = packages_distributions()
    # Optional extras that need not be installed to test, by the distribution that provides them.
    providers.setdefault("nemo", ["nemo_toolkit"])
    # The project's own packages, and the helper modules tests and benchmarks import by file name.
    local = {"omni_runner", "omni_tui", "tests"} | {p.stem for root in ("tests", "benchmarks") for p in (REPO / root).rglob("*.py")}
    undeclared = set()
    for root in ("omni_runner", "tui", "benchmarks", "tests"):
        for path in (REPO / root).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                    [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
                for top in {name.split(".")[0] for name in names} - local - set(sys.stdlib_module_names):
                    if not {_canonical(d) for d in providers.get(top, [top])} & declared:
                        undeclared.add(f"{top} ({path.relative_to(REPO)})")
    assert not undeclared, f"imported but not declared in pyproject.toml: {sorted(undeclared)}"


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()
