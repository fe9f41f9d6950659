"""Follow a growing `events.jsonl` by reading only the bytes added since the last call.

A writer may be mid-line (the partial tail is kept for the next read), a crash may leave a corrupt
line (counted, skipped), and a run may be restarted into a fresh file (a smaller size or a new inode
means the file was replaced or truncated: the reader starts over and says so). Used by the
supervisor's progress display, `omni-run logs -f` and the TUI.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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
        self._inode: int | None = None

    def read_new(self, max_bytes: int | None = None) -> TailBatch:
        """Events appended since the last call (at most `max_bytes` read, if given)."""
        batch = TailBatch()
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return batch
        if (self._inode is not None and stat.st_ino != self._inode) or stat.st_size < self.offset:
            self.offset, self._partial, batch.restarted = 0, b"", True
        self._inode = stat.st_ino
        if stat.st_size == self.offset:
            return batch
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            data = handle.read(max_bytes) if max_bytes else handle.read()
        self.offset += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()  # b"" when the data ended on a newline
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
