"""The controller's side: next scheduled cooldown, the last checkpoint and its age, restarts."""

from __future__ import annotations

from omni_tui.state import RunView
from omni_tui.widgets.format import age
from omni_tui.widgets.panel import TextPanel
from rich.markup import escape


class ControllerPanel(TextPanel):
    def render_view(self, view: RunView, now: float) -> None:
        upcoming = view.next_cooldown_step()
        if upcoming is None or view.ended:
            cooldown = "none scheduled"
        else:
            cooldown = f"at step {upcoming} ({view.cooldown_seconds or 0:g} s every {view.cooldown_every} steps)"
        checkpoint = view.last_checkpoint
        if checkpoint:
            when = age(now - checkpoint["t"]) if isinstance(checkpoint.get("t"), (int, float)) else "—"
            path = str(checkpoint.get("path") or "").rstrip("/").rsplit("/", 1)[-1]
            saved = f"step {checkpoint.get('step')} ({escape(path)}), {when}"
        else:
            saved = "none yet"
        self.show(f"[b]next cooldown[/b] {cooldown}\n[b]last checkpoint[/b] {saved}\n[b]restarts[/b] {view.restarts}")
