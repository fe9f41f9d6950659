"""What a recipe problem looks like: where it is, what is wrong, and what to do about it.

Every failure while loading a recipe becomes a `Diagnostic`; the loader collects them all and
raises one `RecipeError`, so a person fixes every problem in one pass instead of one per run.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

ERROR = "error"
WARNING = "warning"


# NamedTuples rather than dataclasses: importing dataclasses (and inspect) is a measurable part of
# `omni-run validate`'s start-up, which must stay cheap enough for pre-commit hooks.
class Location(NamedTuple):
    """A place in a recipe file; `line` and `col` count from 1, as editors show them."""

    file: Path
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


class Diagnostic(NamedTuple):
    """One problem. `field` is the dotted recipe path (`training.lr`, `stages[0].name`), or ''."""

    severity: str
    message: str
    location: Location | None
    field: str = ""
    hint: str | None = None

    def render(self) -> str:
        """Compiler style: `file:line:col: error: message (field)`, then an indented hint."""
        where = str(self.location) if self.location else "<command line>"
        text = f"{where}: {self.severity}: {_visible(self.message)}"
        if self.field:
            text += f" ({_visible(self.field)})"
        if self.hint:
            text += f"\n    hint: {_visible(self.hint)}"
        return text

    def to_json(self) -> dict:
        loc = self.location
        return {
            "severity": self.severity,
            "message": self.message,
            "file": str(loc.file) if loc else None,
            "line": loc.line if loc else None,
            "col": loc.col if loc else None,
            "field": self.field,
            "hint": self.hint,
        }


class RecipeError(Exception):
    """The one error type of recipe loading; it carries every problem found, not just the first."""

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = sort_diagnostics(diagnostics)
        super().__init__(self.render())

    def render(self) -> str:
        return "\n".join(d.render() for d in self.diagnostics)

    def __str__(self) -> str:
        return self.render()


def sort_diagnostics(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    """Command-line problems first, then by file, line and column."""

    def key(d: Diagnostic) -> tuple:
        loc = d.location
        return (0, "", 0, 0) if loc is None else (1, str(loc.file), loc.line, loc.col)

    return sorted(diagnostics, key=key)


def _visible(text: str) -> str:
    """Control and invisible format characters from the recipe, written as `\\u202e`: echoed raw they
    could reorder or hide the rest of the terminal line."""
    if text.replace("\n", "").isprintable():
        return text
    import unicodedata  # only needed when something odd is echoed

    return "".join(
        f"\\u{ord(c):04x}" if c != "\n" and unicodedata.category(c) in ("Cc", "Cf") else c for c in text
    )


def error(message: str, location: Location | None, field: str = "", hint: str | None = None) -> Diagnostic:
    return Diagnostic(ERROR, message, location, field, hint)


def warning(message: str, location: Location | None, field: str = "", hint: str | None = None) -> Diagnostic:
    return Diagnostic(WARNING, message, location, field, hint)


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """A hint naming the closest valid choice, or listing the choices when none is close."""
    import difflib  # only needed when something is wrong

    choices = sorted(choices)
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{close[0]}'?"
    if not choices:
        return None
    return "expected one of: " + ", ".join(choices)


def field_name(path: Iterable[str | int]) -> str:
    """`("stages", 0, "name")` -> `stages[0].name`."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text
