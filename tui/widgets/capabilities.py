"""The capability mix: weight, samples seen and current loss for each capability."""

from __future__ import annotations

from textual.widgets import DataTable

from omni_tui.state import RunView
from omni_tui.widgets.format import loss


class CapabilityMix(DataTable):
    def on_mount(self) -> None:
        self.cursor_type = "none"
        self.add_columns("capability", "weight", "seen", "loss")
        self._rows: list[tuple[str, ...]] = []

    def render_view(self, view: RunView) -> None:
        rows = [
            (
                name,
                "—" if cap.weight is None else f"{cap.weight:g}",
                "—" if cap.samples_seen is None else str(cap.samples_seen),
                loss(cap.loss),
            )
            for name, cap in sorted(view.capabilities.items())
        ]
        if rows != self._rows:
            self._rows = rows
            self.clear()
            self.add_rows(rows)
