"""Reading a recipe file and the files it `extends`, into one merged Document.

Parents load first, in the order listed, each with its own parents; the recipe itself goes on
top. A file that extends itself through any chain is reported with the whole chain, because the
loop is rarely visible from any single file.

Hostile or mistaken input must fail fast: a file is read only up to MAX_FILE_BYTES (so a huge file,
or /dev/zero, costs nothing), and `extends` may nest MAX_EXTENDS_DEPTH files deep and load at most
MAX_FILES files in all (a parent listed twice at every level would otherwise load 2**depth files).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from omni_runner.recipe.errors import Diagnostic, Location, error, field_name
from omni_runner.recipe.merge import forget_origin, merge_documents
from omni_runner.recipe.yaml_source import Document, parse_recipe_text

MAX_FILE_BYTES = 1024 * 1024  # recipes are settings; the largest shipped one is a few KB
MAX_EXTENDS_DEPTH = 16
MAX_FILES = 64


def load_sources(path: Path, environ: Mapping[str, str]) -> tuple[Document | None, list[Path], list[Diagnostic]]:
    """The merged document (None when something failed), every file read, and the problems found."""
    loader = _SourceLoader(environ)
    document = loader.load(Path(path), chain=(), referenced_at=None, field="")
    return (None if loader.diagnostics else document), loader.files, loader.diagnostics


class _SourceLoader:
    def __init__(self, environ: Mapping[str, str]):
        self.environ = environ
        self.files: list[Path] = []
        self.diagnostics: list[Diagnostic] = []
        self.too_many_files = False

    def load(self, path: Path, chain: tuple[Path, ...], referenced_at: Location | None, field: str) -> Document | None:
        if len(chain) >= MAX_EXTENDS_DEPTH:
            self.diagnostics.append(error(
                f"extends chain is deeper than {MAX_EXTENDS_DEPTH} files: " + " -> ".join(map(str, chain + (path,))),
                referenced_at, field, "let the recipe extend a shared base directly instead of through a long chain"))
            return None
        if len(self.files) >= MAX_FILES:
            if not self.too_many_files:  # once: every later parent would repeat it
                self.too_many_files = True
                self.diagnostics.append(error(
                    f"extends loads more than {MAX_FILES} recipe files", referenced_at, field,
                    "a parent listed several times at each level is loaded once per listing; list each parent once"))
            return None
        text = self._read(path, referenced_at, field)
        if text is None:
            return None
        self.files.append(path)
        document, problems = parse_recipe_text(text, path, self.environ)
        if document is None:
            self.diagnostics.extend(problems)
            return None
        merged = Document({})
        for index, parent in enumerate(self._parents(document, path)):
            parent_field = field_name(("extends", index)) if isinstance(document.data["extends"], list) else "extends"
            where = document.values.get(("extends", index)) or document.values.get(("extends",))
            loop = _cycle(chain + (path,), parent)
            if loop:
                self.diagnostics.append(
                    error(
                        "extends cycle: " + " -> ".join(str(p) for p in loop),
                        where,
                        parent_field,
                        "a recipe cannot extend itself, directly or through its parents",
                    )
                )
                continue
            parent_document = self.load(parent, chain + (path,), where, parent_field)
            if parent_document is not None:
                merged = merge_documents(merged, parent_document)
        document.data.pop("extends", None)
        forget_origin(document, ("extends",))
        return merge_documents(merged, document)

    def _read(self, path: Path, referenced_at: Location | None, field: str) -> str | None:
        try:
            with open(path, "rb") as handle:
                raw = handle.read(MAX_FILE_BYTES + 1)
        except FileNotFoundError:
            self.diagnostics.append(error(f"recipe file not found: {path}", referenced_at, field))
            return None
        except OSError as exc:
            self.diagnostics.append(error(f"cannot read {path}: {exc.strerror or exc}", referenced_at, field))
            return None
        if len(raw) > MAX_FILE_BYTES:
            self.diagnostics.append(error(
                f"the file is larger than {MAX_FILE_BYTES // 1024 // 1024} MiB, the most a recipe may be",
                Location(path, 1, 1), hint="a recipe holds settings; large data belongs in a data set under `datasets`"))
            return None
        if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
            self.diagnostics.append(error("the file is UTF-16 text", Location(path, 1, 1), hint="save the recipe as UTF-8"))
            return None
        try:
            return raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
            self.diagnostics.append(
                error("the file is not UTF-8 text", Location(path, line, col),
                      hint="save the recipe as UTF-8; if this is not a recipe, check the path")
            )
            return None

    def _parents(self, document: Document, path: Path) -> list[Path]:
        """The files named by `extends`, relative to `path`'s folder; a malformed value is reported."""
        value = document.data.get("extends")
        if value is None:
            return []
        names = [value] if isinstance(value, str) else value
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            self.diagnostics.append(
                error(
                    "extends must be a file name or a list of file names",
                    document.values.get(("extends",)),
                    "extends",
                    "for example `extends: paths.yaml` or `extends: [paths.yaml, base.yaml]`",
                )
            )
            return []
        return [Path(os.path.normpath(path.parent / os.path.expanduser(name))) for name in names]


def _cycle(chain: tuple[Path, ...], parent: Path) -> tuple[Path, ...] | None:
    """The loop (from the first repeated file back to it) when `parent` is already in `chain`."""
    resolved = [p.resolve() for p in chain]
    target = parent.resolve()
    if target not in resolved:
        return None
    return chain[resolved.index(target):] + (parent,)
