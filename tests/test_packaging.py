"""The wheel ships every package: a folder of Python files missing from pyproject.toml is missing from
`pip install` (an editable install hides that)."""

from __future__ import annotations

import tomllib
from pathlib import Path

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
