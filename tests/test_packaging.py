"""The wheel ships every package and declares every dependency: a folder of Python files missing from
pyproject.toml is missing from `pip install`, and so is an imported package nobody declared (an editable
install into a full venv hides both)."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parents[1]


def test_every_python_folder_is_a_shipped_package():
    setup = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    shipped = {_folder(name, setup["package-dir"]) for name in setup["packages"]}
    for root in ("omni_runner", "tui"):
        for init in (REPO / root).rglob("__init__.py"):
            folder = init.parent.relative_to(REPO).as_posix()
            assert folder in shipped, f"{folder} has Python files but is not in pyproject.toml's packages"


def _folder(package: str, package_dir: dict[str, str]) -> str:
    """Where setuptools looks for `package`: under the folder its top-level package is mapped to."""
    top, _, rest = package.partition(".")
    root = package_dir.get(package) or package_dir.get(top, top)
    return (Path(root) / rest.replace(".", "/")).as_posix() if rest and package not in package_dir else root


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
