"""Package discovery: every package under `omni_runner/` and `tui/` ships, none is listed by hand.

Everything else about the build is in pyproject.toml. Discovery lives here because two import names
differ from their folders (`omni_tui` is `tui/`; `omni_runner._schemas` is `schemas/`, kept at the top
so editors reach the recipe schema as `../schemas/recipe.schema.json`), which pyproject's
`packages.find` cannot express: it names a package after its folder.
"""

from setuptools import find_packages, setup


def _packages() -> list[str]:
    tui = ["omni_tui" + name.removeprefix("tui") for name in find_packages(include=["tui", "tui.*"])]
    return [*find_packages(include=["omni_runner", "omni_runner.*"]), *tui, "omni_runner._schemas"]


setup(packages=_packages())
