"""Throughput and optimiser numbers: tokens/s, samples/s, learning rate, gradient norm."""

from __future__ import annotations

from omni_tui.state import RunView
from omni_tui.widgets.format import loss, number
from omni_tui.widgets.panel import TextPanel


class Throughput(TextPanel):
    def render_view(self, view: RunView) -> None:
        lr = f"{view.lr:.2e}" if view.lr is not None else "—"
        grad = number(view.grad_norm, 3)
        self.show(
            f"[b]loss[/b] {loss(view.loss)}\n"
            f"[b]tokens/s[/b] {number(view.tokens_per_s)}   [b]samples/s[/b] {number(view.samples_per_s, 2)}\n"
            f"[b]lr[/b] {lr}   [b]grad norm[/b] {grad}"
        )
