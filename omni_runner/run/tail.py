"""Follow a growing `events.jsonl` by reading only the bytes added since the last call.

A writer may be mid-line (the partial tail is kept for the next read), a crash may leave a corrupt
line (counted, skipped), and a run may be restarted into a fresh file (a smaller size or a new inode
means the file was replaced or truncated: the reader starts over and says so). A line longer than
MAX_LINE_BYTES (no event is; a crash can leave megabytes of NUL bytes without a newline) is counted
corrupt and skipped rather than buffered without bound. Used by the
supervisor's progress display, `omni-run logs -f` and the TUI.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_LINE_BYTES = 1024 * 1024


@dataclass
class TailBatch:
    """What one `read_new()` found."""

    events: list[dict[str, Any]] = field(default_factory=list)
    corrupt: int = 0
    restarted: bool = False


class EventTail:
    """Incremental reader of one events file; keeps its byte offset between calls."""

    def __init__(self, path: Path, start_offset: int = 0) -> None:
        self.path = Path(path)
        self.offset = start_offset
        self.corrupt_total = 0
        self._partial = b""
        self._overlong = False  # inside a line already counted corrupt: skip to its newline
        self._inode: int | None = None

    def read_new(self, max_bytes: int | None = None) -> TailBatch:
        """Events appended since the last call (at most `max_bytes` read, if given)."""
        batch = TailBatch()
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return batch
        if (self._inode is not None and stat.st_ino != self._inode) or stat.st_size < self.offset:
            self.offset, self._partial, self._overlong, batch.restarted = 0, b"", False, True
        self._inode = stat.st_ino
        if stat.st_size == self.offset:
            return batch
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            data = handle.read(max_bytes) if max_bytes else handle.read()
        self.offset += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()  # b"" when the data ended on a newline
        if self._overlong and lines:
            lines[0], self._overlong = b"", False  # the end of the overlong line
        if self._overlong or len(self._partial) > MAX_LINE_BYTES:
            batch.corrupt += not self._overlong
            self._partial, self._overlong = b"", True
        for raw in lines:
            event = parse_event_line(raw)
            if event is None:
                if raw.strip():
                    batch.corrupt += 1
            else:
                batch.events.append(event)
        self.corrupt_total += batch.corrupt
        return batch


def parse_event_line(raw: bytes) -> dict[str, Any] | None:
    """One event from one line, or None when the line is not a well-formed event."""
    try:
        event = json.loads(raw)
    except ValueError:
        return None
    return event if isinstance(event, dict) and isinstance(event.get("type"), str) else None


def recent_start_offset(path: Path, window_bytes: int) -> int:
    """Where to start reading so that only about the last `window_bytes` are parsed.

    The offset sits just after a newline, so the first line read is whole. A dashboard opening a
    million-line file paints from this window at once and fills older history in the background.
    """
    try:
        size = os.path.getsize(path)
    except FileNotFoundError:
        return 0
    if size <= window_bytes:
        return 0
    with open(path, "rb") as handle:
        handle.seek(size - window_bytes)
        handle.readline()  # skip the (probably partial) line the window starts in
        return handle.tell()


def start_of_last_lines(path: Path, count: int, max_bytes: int, block_bytes: int = 1 << 16) -> int:
    """Where the last `count` lines of the file begin, found by reading backwards from its end a
    block at a time, so the cost is those lines, not the file; never more than about `max_bytes`
    before the end (then the first whole line inside that window). 0 when the file is that short."""
    try:
        size = os.path.getsize(path)
    except FileNotFoundError:
        return 0
    with open(path, "rb") as handle:
        handle.seek(max(0, size - 1))
        ending = handle.read(1) == b"\n"  # the last line's own newline does not start another line
        newlines_needed, position = count + ending, size
        while position > 0 and size - position < max_bytes:
            start = max(0, position - block_bytes, size - max_bytes)
            handle.seek(start)
            block = handle.read(position - start)
            found = block.count(b"\n")
            if found >= newlines_needed:
                cut = len(block)
                for _ in range(newlines_needed):
                    cut = block.rindex(b"\n", 0, cut)
                return start + cut + 1
            newlines_needed -= found
            position = start
    return 0 if position == 0 else recent_start_offset(path, max_bytes)


STEP_MARKER = b'"type":"step"'


def scan_step_events(path: Path, end_offset: int, chunk_bytes: int = 1 << 22) -> Iterator[dict[str, Any]]:
    """Step events before `end_offset`, parsing only lines that contain the step marker.

    The other lines (telemetry, state, ...) of an old stretch of the file matter only for what the
    window after it already says, so they are not decoded at all: that keeps the scan cheap.
    """
    with open(path, "rb") as handle:
        remaining, carry = end_offset, b""
        while remaining > 0:
            data = handle.read(min(chunk_bytes, remaining))
            if not data:
                break
            remaining -= len(data)
            lines = (carry + data).split(b"\n")
            carry = lines.pop()
            for raw in lines:
                if STEP_MARKER in raw:
                    event = parse_event_line(raw)
                    if event is not None:
                        yield event
        if carry and STEP_MARKER in carry:
            event = parse_event_line(carry)
            if event is not None:
                yield event


def first_event(path: Path) -> dict[str, Any] | None:
    """The first event of the file (the run's start), without reading the rest."""
    try:
        with open(path, "rb") as handle:
            return parse_event_line(handle.readline())
    except FileNotFoundError:
        return None
