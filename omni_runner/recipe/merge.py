"""Deep merge of recipe documents (for `extends` and `--set`), keeping each value's origin.

Mappings merge key by key; lists and scalars replace. A value keeps the location of the file
that last set it, so an error in an inherited value points into the parent file.
"""

from __future__ import annotations

from typing import Any

from omni_runner.recipe.yaml_source import Document, RecipePath


def merge_documents(base: Document, over: Document) -> Document:
    """`over` on top of `base`; neither is modified."""
    merged = Document(_merge_values(base.data, over.data))
    for table, base_table, over_table in (
        (merged.keys, base.keys, over.keys),
        (merged.values, base.values, over.values),
    ):
        table.update((path, loc) for path, loc in base_table.items() if not _set_by(over.data, base.data, path))
        table.update(over_table)
    return merged


def forget_origin(document: Document, prefix: RecipePath) -> None:
    """Drop the locations at and under `prefix`: its value now comes from the command line."""
    for table in (document.keys, document.values):
        for path in [p for p in table if p[: len(prefix)] == prefix]:
            del table[path]


def _merge_values(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        result = dict(base)
        for key, value in over.items():
            result[key] = _merge_values(base[key], value) if key in base else value
        return result
    return over


def _set_by(over: Any, base: Any, path: RecipePath) -> bool:
    """Whether `over` sets the value at `path` (or replaces something above it) in the merge."""
    for part in path:
        if not (isinstance(over, dict) and isinstance(base, dict)):
            return True
        if part not in over:
            return False
        over, base = over[part], base.get(part)
    return True
