"""A text panel that repaints only when its text changed: an idle dashboard costs no rendering."""

from __future__ import annotations

from textual.widgets import Static


class TextPanel(Static):
    """`Static` with `show(markup)` that skips identical updates."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.text = ""

    def show(self, markup: str) -> None:
        if markup != self.text:
            self.text = markup
            self.update(markup)
