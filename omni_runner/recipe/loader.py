"""`load_recipe`: files → merged document → overrides → schema → defaults → cross-field checks → Recipe.

Problems from every step are collected and raised together as one RecipeError. Only a file that
cannot be read or parsed stops early, since nothing after it would be meaningful.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from omni_runner.paths import is_builtin, resolve_data_path, resolve_model_path
from omni_runner.recipe.checks import (
    cross_field_diagnostics,
    missing_path_diagnostics,
    remote_code_warnings,
)
from omni_runner.recipe.errors import ERROR, WARNING, Diagnostic, Location, RecipeError
from omni_runner.recipe.overrides import apply_overrides, restrict_capabilities
from omni_runner.recipe.schema import fill_defaults, iter_fields, schema_diagnostics
from omni_runner.recipe.sources import load_sources
from omni_runner.recipe.yaml_source import Document, RecipePath


class Recipe:
    """A loaded, valid recipe: plain data with every default filled in, and where each value was written."""

    def __init__(self, data: dict, source: Path, files: list[Path], document: Document, warnings: list[Diagnostic]):
        self.data = data
        self.source = source
        self.files = files  # the recipe and every file it extends, in load order
        self.warnings = warnings
        self._document = document

    def location(self, path: RecipePath) -> Location | None:
        """Where `path` was written: the key for mapping entries, the item for list entries; None for defaults
        and command-line values."""
        path = tuple(path)
        return self._document.keys.get(path) or self._document.values.get(path)

    def check_paths_exist(self) -> None:
        """Raise RecipeError when a model or data path is missing: a run must not start without them."""
        problems = missing_path_diagnostics(self.data, ERROR, self._document)
        if problems:
            raise RecipeError(problems)

    def __repr__(self) -> str:
        return f"Recipe({self.data.get('name')!r}, source={str(self.source)!r})"


def load_recipe(
    path: str | os.PathLike[str],
    overrides: Iterable[str] | None = None,
    capabilities: Iterable[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Recipe:
    """Load, merge, override, validate and complete a recipe; raise RecipeError listing every problem.

    `overrides` are `a.b.c=VALUE` strings (`--set`); `capabilities` restricts the run to those names
    (`--capabilities`); `environ` defaults to the process environment, for `${VAR}` references.
    """
    source = Path(path)
    document, files, problems = load_sources(source, os.environ if environ is None else environ)
    if document is None:
        raise RecipeError(problems)
    problems = apply_overrides(document, overrides or ())
    schema_problems, invalid_paths = schema_diagnostics(document, Location(source, 1, 1))
    problems += schema_problems
    fill_defaults(document.data)
    if capabilities is not None:
        problems += restrict_capabilities(document.data, capabilities)
    problems += cross_field_diagnostics(document, invalid_paths)
    if problems:
        raise RecipeError(problems)
    _make_paths_absolute(document)
    warnings = missing_path_diagnostics(document.data, WARNING, document) + remote_code_warnings(document)
    return Recipe(document.data, source, files, document, warnings)


def _make_paths_absolute(document: Document) -> None:
    """Relative model/data paths become absolute, relative to the file that wrote them (the working
    directory for `--set` values), so the resolved recipe means the same thing wherever it is copied."""
    resolvers = {"model": resolve_model_path, "data": resolve_data_path}
    for path, schema, value in list(iter_fields(document.data)):
        kind = schema.get("x-path")
        if kind is None or not isinstance(value, str) or is_builtin(value):
            continue
        written_in = document.values.get(path)
        base_dir = written_in.file.parent if written_in else Path.cwd()
        _set(document.data, path, str(resolvers[kind](value, base_dir)))


def _set(data: Any, path: RecipePath, value: Any) -> None:
    for part in path[:-1]:
        data = data[part]
    data[path[-1]] = value
