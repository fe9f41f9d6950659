"""Read a data file or folder into an indexable table of raw records, each with its exact location.

- JSON lines (`.jsonl`, and `.json` files that are not one array, like Gorilla's): each non-blank
  line is kept as raw text next to its line number and parsed only when read, so one corrupt line
  becomes one bad record at an exact `file:line` instead of failing the whole load.
  Small files go into an Arrow table through HF `datasets` (memory-mapped from the cache);
  large ones (`streaming: true`, or `auto` above `STREAMING_THRESHOLD_BYTES`) are never loaded:
  an index of line offsets is built in one pass and records are read from disk on demand.
- JSON arrays (`.json` starting with `[`): parsed once; locations are `file item N`.
- Parquet: `datasets.Dataset.from_parquet` (memory-mapped); locations are `file row N`.
- `datasets.save_to_disk` folders: `datasets.load_from_disk` (memory-mapped); `folder row N`.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omni_runner.data.conversation import DataError, RecordError

STREAMING_THRESHOLD_BYTES = 512 * 1024 * 1024
UTF8_BOM = b"\xef\xbb\xbf"
SNIFFED_BYTES = 4096


class RecordTable(ABC):
    """Random access to raw records: `len(table)`, `table.record(i)` and `table.location(i)`."""

    path: Path

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def record(self, index: int) -> Any:
        """The record as a Python value; raises RecordError when it is not valid JSON."""

    @abstractmethod
    def location(self, index: int) -> str:
        """Where the record is, for people: `file:line` or `file row N`."""


def _parse_line(raw: bytes) -> Any:
    """One JSON line's record. Lines are kept as bytes and decoded here, strictly, so a line in another
    encoding (latin-1 bytes) is one bad record at its `file:line`, never a record of replacement characters."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordError(
            f"line is not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); save the file as UTF-8"
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise RecordError(f"line is not valid JSON ({exc.msg.removesuffix(' at')}, column {exc.colno})") from None


def _json_lines(path: str, size: int, mtime_ns: int):
    """Yield the non-blank lines of a JSON-lines file, as bytes, with their 1-based line numbers.

    `size` and `mtime_ns` are unused here but part of the datasets cache fingerprint, so an
    edited file is re-read instead of served from a stale cache.
    """
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if number == 1:
                line = line.removeprefix(UTF8_BOM)
            if line.strip():
                yield {"line": number, "text": line.rstrip(b"\r\n")}


class ArrowLinesTable(RecordTable):
    """JSON lines held as raw text in a memory-mapped Arrow table (HF datasets)."""

    def __init__(self, path: Path, cache_dir: Path) -> None:
        import datasets

        datasets.disable_progress_bars()
        self.path = path
        stat = path.stat()
        self._table = datasets.Dataset.from_generator(
            _json_lines,
            gen_kwargs={"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns},
            cache_dir=str(cache_dir),
            features=datasets.Features({"line": datasets.Value("int64"), "text": datasets.Value("binary")}),
        )
        self._lines = self._table["line"]

    def __len__(self) -> int:
        return len(self._table)

    def record(self, index: int) -> Any:
        return _parse_line(self._table[index]["text"])

    def location(self, index: int) -> str:
        return f"{self.path.name}:{self._lines[index]}"


class StreamedLinesTable(RecordTable):
    """JSON lines read from disk on demand through an index of line offsets (for files too big to load)."""

    def __init__(self, path: Path) -> None:
        import numpy as np

        self.path = path
        offsets, numbers = [], []
        with open(path, "rb") as handle:
            position = 0
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    offsets.append(position)
                    numbers.append(number)
                position += len(line)
        self._offsets = np.asarray(offsets, dtype=np.int64)
        self._numbers = np.asarray(numbers, dtype=np.int64)
        self._fd = os.open(path, os.O_RDONLY)

    def __len__(self) -> int:
        return len(self._offsets)

    def record(self, index: int) -> Any:
        first = int(self._offsets[index])
        start, chunks = first, []
        while True:
            chunk = os.pread(self._fd, 65536, start)
            newline = chunk.find(b"\n")
            chunks.append(chunk if newline < 0 else chunk[:newline])
            if newline >= 0 or not chunk:
                break
            start += len(chunk)
        line = b"".join(chunks).rstrip(b"\r")
        return _parse_line(line.removeprefix(UTF8_BOM) if first == 0 else line)

    def location(self, index: int) -> str:
        return f"{self.path.name}:{int(self._numbers[index])}"


class IndexedTable(RecordTable):
    """Records that support len() and indexing: a parsed JSON array (locations `file item N`), or a
    Parquet file / `save_to_disk` folder memory-mapped by HF datasets (`file row N`)."""

    def __init__(self, path: Path, rows: Any, unit: str) -> None:
        self.path = path
        self._rows = rows
        self._unit = unit

    def __len__(self) -> int:
        return len(self._rows)

    def record(self, index: int) -> Any:
        try:
            return self._rows[index]
        except UnicodeDecodeError as exc:  # a corrupt Parquet page whose text column decodes to bad bytes
            raise RecordError(f"{self._unit} holds text that is not UTF-8 (byte 0x{exc.object[exc.start]:02x}); "
                              "the file may be corrupt: write it again from its source") from None

    def location(self, index: int) -> str:
        return f"{self.path.name} {self._unit} {index}"


def _sniff_text(path: Path) -> bytes:
    """The start of a JSON or JSON-lines file, after refusing what cannot hold records as a whole: an
    empty file, and UTF-16 or binary bytes (whose every line would otherwise be a bad record)."""
    with open(path, "rb") as handle:
        head = handle.read(SNIFFED_BYTES)
        if head.startswith((b"\xff\xfe", b"\xfe\xff")):
            raise DataError(f"{path}: the file is UTF-16 text; save it as UTF-8 (JSON lines, one record a line)")
        if b"\x00" in head:
            raise DataError(f"{path}: the file holds NUL bytes, so it is not UTF-8 JSON text (UTF-16 without a byte "
                            "order mark, or a binary file); save it as UTF-8 JSON lines, or check the path")
        chunk = head.removeprefix(UTF8_BOM)
        while chunk and not chunk.strip():  # blank so far: look on, a chunk at a time
            chunk = handle.read(1 << 20)
        if not chunk.strip():
            raise DataError(f"{path}: the file is empty (no records); write one JSON record a line, or check the path")
    return head.removeprefix(UTF8_BOM).lstrip()


def _load_json_array(path: Path) -> list[Any]:
    raw = path.read_bytes()
    try:
        items = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DataError(f"{path}:{line}: the file is not UTF-8 text (byte 0x{raw[exc.start]:02x}); save it as UTF-8") from None
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
            "fix the file, or write it as JSON lines so a bad record only skips itself"
        ) from None
    if not isinstance(items, list):
        raise DataError(f"{path}: a JSON data file must hold a list of records")
    return items


def _load_from_disk(path: Path, split: str) -> Any:
    import datasets

    with _unreadable_as_data_error(path, "a datasets save_to_disk folder"):
        loaded = datasets.load_from_disk(str(path))
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise DataError(f"{path}: no split '{split}' (has: {', '.join(loaded)}); set datasets.<name>.split")
        return loaded[split]
    return loaded


def _load_parquet(path: Path, cache_dir: Path) -> Any:
    import datasets

    with _unreadable_as_data_error(path, "a Parquet file"):
        return datasets.Dataset.from_parquet(str(path), cache_dir=str(cache_dir))


@contextmanager
def _unreadable_as_data_error(path: Path, what: str) -> Iterator[None]:
    """Turn the readers' errors for a truncated or corrupt file (pyarrow's, datasets', the OS's) into one
    DataError naming the file and what to do, and keep datasets from logging them as well."""
    import datasets
    import pyarrow

    datasets.disable_progress_bars()
    verbosity = datasets.logging.get_verbosity()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)
    try:
        yield
    except (pyarrow.ArrowException, datasets.exceptions.DatasetsError, OSError, ValueError) as exc:
        reason = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise DataError(f"{path}: cannot be read as {what}, it may be truncated or corrupt ({reason}); "
                        "write it again from its source, or check the path") from None
    finally:
        datasets.logging.set_verbosity(verbosity)


def use_streaming(path: Path, streaming: bool | str) -> bool:
    """`streaming: auto` reads big JSON-lines files lazily instead of converting them to Arrow."""
    if streaming == "auto":
        return path.is_file() and path.stat().st_size > STREAMING_THRESHOLD_BYTES
    return bool(streaming)


def open_table(path: Path, *, split: str = "train", streaming: bool | str = "auto", cache_dir: Path) -> RecordTable:
    """Open a data file or folder as a RecordTable; raises DataError when it cannot be read at all."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_dir():
        if not (path / "dataset_info.json").exists() and not (path / "dataset_dict.json").exists():
            raise DataError(f"{path}: a folder must be written by datasets' save_to_disk (no dataset_info.json)")
        return IndexedTable(path, _load_from_disk(path, split), "row")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return IndexedTable(path, _load_parquet(path, cache_dir), "row")
    if suffix not in (".json", ".jsonl"):
        raise DataError(f"{path}: unsupported file type '{suffix}' (use .jsonl, .json, .parquet or a save_to_disk folder)")
    if _sniff_text(path).startswith(b"[") and suffix == ".json":
        return IndexedTable(path, _load_json_array(path), "item")
    if use_streaming(path, streaming):
        return StreamedLinesTable(path)
    return ArrowLinesTable(path, cache_dir)
