"""`${VAR}` and `${VAR:-default}` in recipe strings, read from the environment; nothing else is evaluated.

Shell semantics on purpose, because that is what people already know: `:-` uses the default when
the variable is unset or empty, and `$${` writes a literal `${`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_REFERENCE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{")


class InterpolationError(ValueError):
    """A reference that cannot be expanded; `offset` is its index in the string."""

    def __init__(self, message: str, offset: int, hint: str):
        super().__init__(message)
        self.offset = offset
        self.hint = hint


def has_references(text: str) -> bool:
    return "${" in text


def expand_variables(text: str, environ: Mapping[str, str]) -> str:
    """Replace every reference in `text`; raise InterpolationError for the first one that cannot be."""

    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "$${":
            return "${"
        name, default = match.group(1), match.group(2)
        if name is None:
            raise InterpolationError(
                "malformed variable reference",
                match.start(),
                "write ${NAME} or ${NAME:-default} (NAME: letters, digits, _), or $${ for a literal ${",
            )
        value = environ.get(name)
        if default is not None and not value:
            return default
        if value is not None:
            return value
        raise InterpolationError(
            f"environment variable {name} is not set",
            match.start(),
            f"export {name}=... before running, or give a default: ${{{name}:-VALUE}}",
        )

    return _REFERENCE.sub(replace, text)
