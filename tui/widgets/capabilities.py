"""The capability mix: weight, samples seen, current loss and (generation capabilities) denoising loss for each capability."""

from __future__ import annotations

from omni_tui.state import RunView
from omni_tui.widgets.format import loss
from textual.coordinate import Coordinate
from textual.widgets import DataTable


class CapabilityMix(DataTable):
    def on_mount(self) -> None:
        self.cursor_type = "none"
        self.add_columns("capability", "weight", "seen", "loss", "denoise")
        self._rows: list[tuple[str, ...]] = []

    def render_view(self, view: RunView) -> None:
        rows = [
            (
                name,
                "—" if cap.weight is None else f"{cap.weight:g}",
                "—" if cap.samples_seen is None else str(cap.samples_seen),
                loss(cap.loss),
                loss(cap.denoising),
            )
            for name, cap in sorted(view.capabilities.items())
        ]
        if rows == self._rows:
            return
        if [row[0] for row in rows] == [row[0] for row in self._rows]:
            # Same capabilities, new numbers (every step): rewrite only the cells that changed,
            # which costs far less than rebuilding the table.
            for y, (row, before) in enumerate(zip(rows, self._rows)):
                for x, (cell, old_cell) in enumerate(zip(row, before)):
                    if cell != old_cell:
                        self.update_cell_at(Coordinate(y, x), cell, update_width=True)
        else:
            self.clear()
            self.add_rows(rows)
        self._rows = rows
