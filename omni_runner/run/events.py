"""The append-only event log of a run: `events.jsonl`, one JSON object a line.

Every event has `t` (Unix time, float seconds), `type` and `step` (optimizer steps
completed). The trainer, the controller's threads and the supervisor all append to
the same file; each event is written with a single `write` of one whole line on an
O_APPEND descriptor so lines from different processes never interleave.
Readers must tolerate a partial last line (a writer may be mid-line) and corrupt
lines (a crash or a full disk); see `read_events`.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

EVENTS_FILE = "events.jsonl"


def _finite(value: Any) -> Any:
    """JSON has no NaN/Infinity; write them as strings so every line stays valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


class EventLog:
    """Appends events to `RUN/events.jsonl`. Safe to share between threads."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._lock = threading.Lock()
        self._listeners: list[Callable[[dict[str, Any]], None]] = []

    def listen(self, listener: Callable[[dict[str, Any]], None]) -> None:
        """Also hand every event written from now on to `listener` (the experiment trackers), after the
        line is on disk and outside the write lock, from whichever thread emitted it."""
        self._listeners.append(listener)

    def emit(self, type: str, step: int, **fields: Any) -> dict[str, Any]:
        event = {"t": round(time.time(), 3), "type": type, "step": int(step), **_finite(fields)}
        line = (json.dumps(event, separators=(",", ":"), default=str) + "\n").encode()
        with self._lock:
            os.write(self._fd, line)
        for listener in self._listeners:
            listener(event)
        return event

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RankEventLog(EventLog):
    """A non-zero rank's share of the event log: its errors only, tagged with the rank and host.

    Rank 0 reports the run (steps, checkpoints, state); the other ranks compute the same numbers, and
    only their failures say something rank 0 cannot.
    """

    def __init__(self, path: Path, identity: dict[str, Any]) -> None:
        super().__init__(path)
        self.identity = identity

    def emit(self, type: str, step: int, **fields: Any) -> dict[str, Any]:
        if type != "error":
            return {"type": type, "step": int(step), **fields}
        return super().emit(type, step, **fields, **self.identity)


def read_events(path: Path) -> Iterator[dict[str, Any]]:
    """Yield the well-formed events of a log, skipping corrupt and partial lines."""
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        return
    with handle:
        for raw in handle:
            if not raw.endswith(b"\n"):
                return  # a writer is mid-line; the rest arrives later
            try:
                event = json.loads(raw)
            except ValueError:
                continue
            if isinstance(event, dict) and "type" in event:
                yield event
