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
from pathlib import Path
from typing import Any

from omni_runner.data.conversation import DataError, RecordError

STREAMING_THRESHOLD_BYTES = 512 * 1024 * 1024


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


def _parse_line(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise RecordError(f"line is not valid JSON ({exc.msg.removesuffix(' at')}, column {exc.colno})") from None


def _json_lines(path: str, size: int, mtime_ns: int):
    """Yield the non-blank lines of a JSON-lines file with their 1-based line numbers.

    `size` and `mtime_ns` are unused here but part of the datasets cache fingerprint, so an
    edited file is re-read instead of served from a stale cache.
    """
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield {"line": number, "text": line.rstrip("\r\n")}


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
            features=datasets.Features({"line": datasets.Value("int64"), "text": datasets.Value("string")}),
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
        start = int(self._offsets[index])
        chunks = []
        while True:
            chunk = os.pread(self._fd, 65536, start)
            newline = chunk.find(b"\n")
            chunks.append(chunk if newline < 0 else chunk[:newline])
            if newline >= 0 or not chunk:
                break
            start += len(chunk)
        return _parse_line(b"".join(chunks).decode("utf-8", errors="replace"))

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
        return self._rows[index]

    def location(self, index: int) -> str:
        return f"{self.path.name} {self._unit} {index}"


def _starts_with_array(path: Path) -> bool:
    with open(path, "rb") as handle:
        head = handle.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(b"[")


def _load_json_array(path: Path) -> list[Any]:
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
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

    loaded = datasets.load_from_disk(str(path))
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise DataError(f"{path}: no split '{split}' (has: {', '.join(loaded)}); set datasets.<name>.split")
        return loaded[split]
    return loaded


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
        import datasets

        return IndexedTable(path, datasets.Dataset.from_parquet(str(path), cache_dir=str(cache_dir)), "row")
    if suffix not in (".json", ".jsonl"):
        raise DataError(f"{path}: unsupported file type '{suffix}' (use .jsonl, .json, .parquet or a save_to_disk folder)")
    if suffix == ".json" and _starts_with_array(path):
        return IndexedTable(path, _load_json_array(path), "item")
    if use_streaming(path, streaming):
        return StreamedLinesTable(path)
    return ArrowLinesTable(path, cache_dir)
