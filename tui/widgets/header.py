"""The run header: recipe name, state and reason, step/total, epoch, elapsed, ETA."""

from __future__ import annotations

from omni_tui.state import RunView
from omni_tui.widgets.format import duration
from omni_tui.widgets.panel import TextPanel
from rich.markup import escape

STATE_STYLES = {
    "running": "green", "starting": "cyan", "paused": "yellow", "cooling": "dark_orange",
    "checkpointing": "cyan", "stopping": "yellow", "finished": "green", "stopped": "yellow", "failed": "red", "stale": "red",
}


class RunHeader(TextPanel):
    def render_view(self, view: RunView, now: float) -> None:
        style = STATE_STYLES.get(view.state, "white")
        total = view.total_steps or "?"
        epoch = f"{view.epoch:.2f}" if view.epoch is not None else "—"
        eta = "—" if view.ended else duration(view.eta_s)
        lines = [
            f"[b]{escape(view.name)}[/b]  [b {style}]{escape(view.state_text())}[/]",
            f"step {view.step}/{total}   epoch {epoch}   elapsed {duration(view.elapsed_s(now))}   ETA {eta}",
        ]
        if view.ended and view.exit and view.exit.get("explanation"):
            lines.append(f"[{style}]ended: {escape(str(view.exit['explanation']))}[/]")
        self.show("\n".join(lines))
        for state in STATE_STYLES:
            self.set_class(view.state == state, f"-{state}")
