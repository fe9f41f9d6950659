"""Warnings, errors, state changes and how the run ended, newest last."""

from __future__ import annotations

import time

from omni_tui.state import RunView
from rich.markup import escape
from textual.widgets import RichLog

LEVEL_STYLES = {"error": "bold red", "warning": "yellow", "state": "cyan", "info": "white"}


class LogTail(RichLog):
    def __init__(self, **kwargs) -> None:
        super().__init__(markup=True, wrap=True, max_lines=500, **kwargs)
        self.shown = 0

    def render_view(self, view: RunView) -> None:
        new = min(view.log_count - self.shown, len(view.log))
        if view.log_count < self.shown:  # a fresh view after the file was replaced
            self.clear()
            new = len(view.log)
        for t, level, text in view.log[len(view.log) - new :] if new > 0 else []:
            stamp = time.strftime("%H:%M:%S", time.gmtime(t))
            self.write(f"[dim]{stamp}[/dim] [{LEVEL_STYLES.get(level, 'white')}]{escape(text)}[/]")
        self.shown = view.log_count
