"""Reading one run folder for the dashboard: the quick first window, the live tail, the old history.

All file I/O of the TUI lives here, so the widgets stay pure renderers of a `RunView`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omni_tui.state import RunView

from omni_runner.plain_yaml import YAMLError, read_plain_yaml
from omni_runner.run.rundir import RunDir
from omni_runner.run.status import read_status
from omni_runner.run.supervisor import is_alive
from omni_runner.run.tail import (
    EventTail,
    TailBatch,
    first_event,
    recent_start_offset,
    scan_step_events,
)

FIRST_WINDOW_BYTES = 2 << 20  # enough for thousands of recent events; parsed before the first paint


class RunSource:
    """One run folder: builds the view from its files and follows its events file."""

    def __init__(self, run: RunDir, window_bytes: int = FIRST_WINDOW_BYTES,
                 alive: Callable[[object], bool] = is_alive) -> None:
        self.run = run
        self.window_start = recent_start_offset(run.events, window_bytes)
        self.tail = EventTail(run.events, start_offset=self.window_start)
        self.alive = alive
        self._status_mtime: float | None = None
        self._status: dict[str, Any] = {}

    def fresh_view(self) -> RunView:
        """A view holding what the run folder says before any event (weights, thermal limits)."""
        view = RunView(name=self.run.path.name)
        plan, recipe = _read_json(self.run.plan), _read_yaml(self.run.recipe)
        if plan:
            view.apply_plan(plan)
        if recipe:
            view.name = recipe.get("name") or view.name
            view.apply_recipe(recipe)
        return view

    def apply_new(self, view: RunView, batch: TailBatch) -> RunView:
        """Fold a batch into `view`; a truncated or replaced file starts a fresh view."""
        if batch.restarted:
            view = self.fresh_view()
        for event in batch.events:
            view.apply(event)
        view.corrupt_lines = self.tail.corrupt_total
        return view

    def read_status_if_changed(self) -> dict[str, Any] | None:
        """status.json when it changed since the last call (a run killed before its end event)."""
        try:
            mtime = os.stat(self.run.status).st_mtime
        except FileNotFoundError:
            return None
        if mtime == self._status_mtime:
            return None
        self._status_mtime = mtime
        status = read_status(self.run.path)
        self._status = status or {}
        return status

    def processes_alive(self) -> tuple[bool, bool] | None:
        """Whether the trainer and the supervisor that status.json names are alive (a run killed without
        a word leaves an active state behind); None while it names neither (a run still being set up)."""
        trainer, supervisor = self._status.get("pid"), self._status.get("supervisor_pid")
        if trainer is None and supervisor is None:
            return None
        return self.alive(trainer), self.alive(supervisor)

    def older_history(self) -> RunView | None:
        """The step history before the first window, or None when the window held the whole file."""
        if self.window_start == 0:
            return None
        older = RunView()
        start = first_event(self.run.events)
        if start is not None:
            older.apply(start)
        for event in scan_step_events(self.run.events, self.window_start):
            older.apply(event)
        return older


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _read_yaml(path: Path) -> dict[str, Any] | None:
    try:
        data = read_plain_yaml(path)
    except (OSError, YAMLError):
        return None
    return data if isinstance(data, dict) else None
