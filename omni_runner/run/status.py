"""`status.json`: the atomic snapshot of a run that `omni-run ls`, the TUI and tests read.

Written with write-to-temporary + fsync + rename, so a reader sees the old or the new
snapshot, never half of one. Fields (all present, null when unknown):
`name, state, reason, step, total_steps, epoch, loss, pid, supervisor_pid,
last_checkpoint, started_at, updated_at, eta_s, restarts, restart_budget, last_exit`. The last three
are the supervisor's: restarts used over the run's life, how many it may use in all, and how the
trainer last ended (the `exit` event's cause and explanation).
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

STATUS_FILE = "status.json"
# States in which a trainer or its supervisor should be alive to write the next snapshot.
ACTIVE_STATES = ("starting", "running", "paused", "cooling", "checkpointing", "stopping")

STATUS_FIELDS = (
    "name", "state", "reason", "step", "total_steps", "epoch", "loss", "pid",
    "supervisor_pid", "last_checkpoint", "started_at", "updated_at", "eta_s", "restarts",
    "restart_budget", "last_exit",
)


def write_json_atomic(path: Path, data: Any, durable: bool = True) -> None:
    """Replace `path` with `data` as JSON so that readers never see a partial file.

    `durable=False` skips the fsync: the rename alone keeps readers safe, and a snapshot rewritten at
    every step (status.json) need not survive a power cut — the events and checkpoints do.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=2, default=str)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_status(run_dir: Path) -> dict[str, Any] | None:
    """The run's last snapshot, or None when it has none yet or it is unreadable."""
    try:
        data = json.loads((Path(run_dir) / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class RunStatus:
    """The one writer of `status.json` inside a process; threads update it through here."""

    def __init__(self, run_dir: Path, **initial: Any) -> None:
        self.path = Path(run_dir) / STATUS_FILE
        self._lock = threading.Lock()
        previous = read_status(run_dir) or {}
        now = time.time()
        self._data: dict[str, Any] = {field: previous.get(field) for field in STATUS_FIELDS}
        self._data["started_at"] = previous.get("started_at") or now
        self._data.update(initial)
        self._data["updated_at"] = now
        write_json_atomic(self.path, self._data)

    def update(self, **fields: Any) -> dict[str, Any]:
        with self._lock:
            self._data.update(fields)
            self._data["updated_at"] = time.time()
            snapshot = dict(self._data)
            write_json_atomic(self.path, snapshot, durable=False)
        return snapshot

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._data)
