"""YAML text to plain data, remembering the file, line and column of every key and value.

We compose with ruamel.yaml's round-trip composer and build the Python values ourselves rather
than letting a YAML constructor do it. That is how every node keeps its position (constructed
scalars do not carry one), and how no tag can ever build a Python object: anything beyond plain
strings, numbers, booleans, nulls, lists and mappings is reported, never constructed.

Hostile text fails fast and at its place: nesting deeper than MAX_NESTING stops the composer (whose
recursion and scanner grow with depth), aliases may expand the file to at most MAX_VALUES values
("billion laughs"), and control or bidirectional-override characters, which YAML rejects without a
line or which make the text display differently from what it is, are refused at their line and column.
"""

from __future__ import annotations

import functools
import io
import math
import re
import unicodedata
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.scanner import RoundTripScanner

from omni_runner.recipe.errors import Diagnostic, Location, error, field_name
from omni_runner.recipe.interpolate import InterpolationError, expand_variables, has_references

RecipePath = tuple  # a recipe path: ("training", "lora", "r") or ("stages", 0, "name")

_CORE = "tag:yaml.org,2002:"
_PLAIN_DATA_TAGS = {f"{_CORE}{t}" for t in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp")}
MAX_NESTING = 64  # the deepest shipped recipe nests 5 levels
MAX_VALUES = 100_000  # after alias expansion; the largest shipped recipe has a few hundred
# C0/C1 controls YAML forbids (tab, LF, CR and NEL are allowed), surrogates, non-characters, and the
# bidirectional controls of "Trojan source" attacks.
_FORBIDDEN_CHARACTERS = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\ud800-\udfff\ufffe\uffff"
    "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)
_PLAIN_DATA_HINT = "recipes hold plain data only: strings, numbers, booleans, null, lists and mappings"


class Document:
    """Plain data plus where each part came from: `keys` locates mapping keys, `values` the values
    (and list items), both by recipe path."""

    def __init__(self, data: Any, keys: dict[RecipePath, Location] | None = None,
                 values: dict[RecipePath, Location] | None = None):
        self.data = data
        self.keys = {} if keys is None else keys
        self.values = {} if values is None else values

    def locate(self, path: RecipePath, key: bool = False) -> Location | None:
        """Where `path` was written: its key (`key=True`) or value node; else the nearest written parent key."""
        exact = (self.keys, self.values) if key else (self.values, self.keys)
        for table in exact:
            if path in table:
                return table[path]
        for end in range(len(path) - 1, 0, -1):
            parent = path[:end]
            if parent in self.keys or parent in self.values:
                return self.keys.get(parent) or self.values[parent]
        return None


class _TooLarge(Exception):
    pass


def parse_recipe_text(text: str, file: Path, environ: Mapping[str, str]) -> tuple[Document | None, list[Diagnostic]]:
    """One recipe file's text to a Document; `${VAR}` references are expanded from `environ`.

    Returns every problem found in the file (syntax errors stop at the first, as YAML must).
    """
    forbidden = _FORBIDDEN_CHARACTERS.search(text)
    if forbidden:
        return None, [_forbidden_character(text, forbidden.start(), file)]
    node, diagnostics = _compose(text, file)
    if diagnostics:
        return None, diagnostics
    if node is None:
        return None, [error("the recipe is empty", Location(file, 1, 1), hint="start with `name:` and `base_model:`")]
    if not isinstance(node, MappingNode):
        return None, [
            error(
                "a recipe is a mapping of keys (name, base_model, capabilities, ...) at its top level",
                _location(file, node),
            )
        ]
    converter = _Converter(file, environ)
    document = converter.document(node)
    return (None if converter.diagnostics else document), converter.diagnostics


def parse_value_text(text: str) -> Any:
    """A command-line value (`--set key=VALUE`) as YAML would read it; ValueError when it cannot."""
    node, diagnostics = _compose(text, Path("<value>"))
    if diagnostics:
        raise ValueError(diagnostics[0].message)
    if node is None:
        return None
    converter = _Converter(Path("<value>"), environ=None)
    value = converter.value(node, ())
    if converter.diagnostics:
        raise ValueError(converter.diagnostics[0].message)
    return value


def _forbidden_character(text: str, index: int, file: Path) -> Diagnostic:
    line = text.count("\n", 0, index) + 1
    col = index - (text.rfind("\n", 0, index) + 1) + 1
    character = text[index]
    code = f"U+{ord(character):04X}"
    if unicodedata.category(character) == "Cf":
        return error(f"invisible text-direction character {code} ({unicodedata.name(character)})",
                     Location(file, line, col),
                     hint="it makes the recipe display differently from what it says; delete it")
    return error(f"control character {code}, which YAML does not allow", Location(file, line, col),
                 hint="recipes are plain text; a NUL or other control byte usually means a binary file or a bad copy")


class _NestingLimitedScanner(RoundTripScanner):
    """Stops at MAX_NESTING levels of brackets and indentation together. It must be the scanner: it
    reads a whole flow collection ahead while checking every open level on each token, so 5,000
    nested brackets cost seconds before the (recursive) composer would see the second one."""

    def fetch_flow_collection_start(self, TokenClass: Any, to_push: Any) -> None:
        self._check_nesting()
        super().fetch_flow_collection_start(TokenClass, to_push)

    def add_indent(self, column: int) -> bool:
        self._check_nesting()
        return super().add_indent(column)

    def _check_nesting(self) -> None:
        if self.flow_level + len(self.indents) >= MAX_NESTING:
            raise _TooDeep(self.reader.get_mark())


class _TooDeep(Exception):
    def __init__(self, mark: Any):
        super().__init__()
        self.mark = mark


def _compose(text: str, file: Path) -> tuple[Node | None, list[Diagnostic]]:
    yaml = YAML(typ="rt")
    yaml.Scanner = _NestingLimitedScanner
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return yaml.compose(io.StringIO(text)), []
    except _TooDeep as exc:
        return None, [error(f"the recipe nests more than {MAX_NESTING} levels deep",
                            Location(file, exc.mark.line + 1, exc.mark.column + 1),
                            hint="recipes need a handful of levels; check for unclosed brackets")]
    except MarkedYAMLError as exc:
        return None, [_syntax_diagnostic(exc, text, file)]
    except YAMLError as exc:
        return None, [error(f"YAML syntax error: {exc}", Location(file, 1, 1))]
    except RecursionError:
        return None, [error("YAML nesting is too deep", Location(file, 1, 1))]


def _syntax_diagnostic(exc: MarkedYAMLError, text: str, file: Path) -> Diagnostic:
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark else 1
    col = mark.column + 1 if mark else 1
    lines = text.splitlines()
    source_line = lines[line - 1] if 0 < line <= len(lines) else ""
    indent = source_line[: len(source_line) - len(source_line.lstrip(" \t"))]
    if "\t" in indent:
        return error(
            "tab character in indentation",
            Location(file, line, indent.index("\t") + 1),
            hint="YAML indents with spaces only; replace the tab with spaces",
        )
    problem = exc.problem or "invalid YAML"
    if exc.context:
        context = exc.context
        if exc.context_mark and exc.problem_mark and exc.context_mark.line != exc.problem_mark.line:
            context += f" that starts at line {exc.context_mark.line + 1}"
        problem = f"{problem} ({context})"
    if "\t" in problem:
        return error("tab character where YAML does not allow one", Location(file, line, col),
                     hint="replace the tab with spaces")
    return error(f"YAML syntax error: {problem}", Location(file, line, col))


def _location(file: Path, node: Node) -> Location:
    return Location(file, node.start_mark.line + 1, node.start_mark.column + 1)


class _Converter:
    """Builds plain values from composed nodes, collecting every problem instead of stopping."""

    def __init__(self, file: Path, environ: Mapping[str, str] | None):
        self.file = file
        self.environ = environ
        self.diagnostics: list[Diagnostic] = []
        self.keys: dict[RecipePath, Location] = {}
        self.values: dict[RecipePath, Location] = {}
        self._nodes_seen = 0
        self._active: set[int] = set()
        self._done: set[int] = set()  # nodes already converted: meeting one again means an alias
        self._aliases_used = False

    def document(self, node: MappingNode) -> Document:
        try:
            data = self.value(node, ())
        except _TooLarge as exc:
            top = exc.args[0][:1]
            hint = ("each YAML alias (*name) copies its anchor's whole value; "
                    "a recipe needs far fewer values") if self._aliases_used else None
            self.diagnostics = [error(f"the recipe holds more than {MAX_VALUES} values",
                                      self.keys.get(top, Location(self.file, 1, 1)), field_name(top), hint)]
            data = None
        except RecursionError:
            self.diagnostics = [error("YAML nesting is too deep", Location(self.file, 1, 1))]
            data = None
        return Document(data, self.keys, self.values)

    def value(self, node: Node, path: RecipePath) -> Any:
        self._nodes_seen += 1
        if self._nodes_seen > MAX_VALUES:
            raise _TooLarge(path)
        self._aliases_used = self._aliases_used or id(node) in self._done
        if str(node.tag) not in _PLAIN_DATA_TAGS:
            self._error(f"YAML tag '{_short_tag(node.tag)}' is not allowed", node, path, _PLAIN_DATA_HINT)
            return None
        if id(node) in self._active:
            self._error("a YAML alias refers to the node that contains it", node, path)
            return None
        self._active.add(id(node))
        try:
            if isinstance(node, MappingNode):
                return self._mapping(node, path)
            if isinstance(node, SequenceNode):
                return self._sequence(node, path)
            return self._scalar(node, path)
        finally:
            self._active.discard(id(node))
            self._done.add(id(node))

    def _mapping(self, node: MappingNode, path: RecipePath) -> dict[str, Any]:
        result: dict[str, Any] = {}
        first_seen: dict[str, Node] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                self._error("mapping keys must be plain words, not lists or mappings", key_node, path)
                continue
            key = str(key_node.value)
            invisible = next((c for c in key if unicodedata.category(c) == "Cf"), None)
            if invisible is not None:
                self._error(f"key '{key}' holds the invisible character U+{ord(invisible):04X} "
                            f"({unicodedata.name(invisible, 'format character')})", key_node, path + (key,),
                            "retype the key; invisible characters make it differ from the key it looks like")
                continue
            if key == "<<" and key_node.style is None:
                self._error("YAML merge keys (<<) are not supported", key_node, path + (key,),
                            "use `extends:` to build on another recipe")
                continue
            if key in first_seen:
                self._error(
                    f"duplicate key '{key}' (first defined at line {first_seen[key].start_mark.line + 1})",
                    key_node,
                    path + (key,),
                    "remove one of them; YAML keeps only one value per key",
                )
                continue
            first_seen[key] = key_node
            child = path + (key,)
            self.keys[child] = _location(self.file, key_node)
            self.values[child] = (
                self.keys[child] if _is_empty_scalar(value_node) else _location(self.file, value_node)
            )
            result[key] = self.value(value_node, child)
        return result

    def _sequence(self, node: SequenceNode, path: RecipePath) -> list[Any]:
        result = []
        for index, item in enumerate(node.value):
            child = path + (index,)
            self.values[child] = _location(self.file, item)
            result.append(self.value(item, child))
        return result

    def _scalar(self, node: ScalarNode, path: RecipePath) -> Any:
        text = str(node.value)
        tag = str(node.tag)
        if tag == f"{_CORE}str" and self.environ is not None and has_references(text):
            try:
                text = expand_variables(text, self.environ)
            except InterpolationError as exc:
                self._error(str(exc), node, path, exc.hint, offset=exc.offset)
                return None
            if node.style is None:  # plain scalars are typed after expansion: `steps: ${STEPS:-100}` is a number
                tag = str(_resolve_plain(text))
        try:
            return _construct(tag, text)
        except ValueError as exc:
            self._error(str(exc), node, path)
            return None

    def _error(self, message: str, node: Node, path: RecipePath, hint: str | None = None, offset: int | None = None) -> None:
        location = _location(self.file, node)
        single_line = node.start_mark.line == node.end_mark.line
        if offset is not None and single_line and isinstance(node, ScalarNode):
            quote = 1 if node.style in ("'", '"') else 0
            location = Location(location.file, location.line, location.col + quote + offset)
        self.diagnostics.append(error(message, location, field_name(path), hint))


@functools.cache
def _resolver() -> Any:
    return YAML(typ="rt").resolver


def _resolve_plain(text: str) -> str:
    """The tag YAML 1.2 would give `text` written as a plain scalar."""
    return _resolver().resolve(ScalarNode, text, (True, False))


def _construct(tag: str, text: str) -> Any:
    kind = tag[len(_CORE):] if tag.startswith(_CORE) else ""
    if kind == "null":
        return None
    if kind == "bool":
        return text.lower() == "true"
    if kind == "int":
        return _yaml_int(text)
    if kind == "float":
        special = text.lstrip("+-").lower() in (".inf", ".nan")
        value = math.inf if special else float(text.replace("_", ""))
        if not math.isfinite(value):
            raise ValueError(f"'{text}' is not a finite number")
        return value
    return text  # str, and timestamps kept as the text the person wrote


def _yaml_int(text: str) -> int:
    digits = text.replace("_", "")
    sign = -1 if digits.startswith("-") else 1
    digits = digits.lstrip("+-")
    for prefix, base in (("0x", 16), ("0o", 8), ("0b", 2)):
        if digits.lower().startswith(prefix):
            return sign * int(digits[2:], base)
    return sign * int(digits, 10)


def _is_empty_scalar(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.value == "" and node.style is None


def _short_tag(tag: Any) -> str:
    text = str(tag)
    return "!!" + text[len(_CORE):] if text.startswith(_CORE) else text
