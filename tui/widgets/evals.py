"""The latest evaluation results: each capability's held-out loss and perplexity, and each data set's
metric, with the step they were measured at. Hidden until the run has evaluated."""

from __future__ import annotations

from typing import Any

from omni_tui.state import RunView
from omni_tui.widgets.panel import TextPanel
from rich.markup import escape

# Counts that explain a metric rather than being one; `n` stays (how many samples a score rests on).
NOT_SHOWN = ("tokens", "skipped")


class EvalPanel(TextPanel):
    def render_view(self, view: RunView) -> None:
        self.display = bool(view.evals)
        lines = [
            f"[b]{escape(subject)}[/b] {escape(metrics_text(result.metrics))} [dim]step {result.step}[/dim]"
            for subject, result in sorted(view.evals.items())
        ]
        self.show("\n".join(lines))


def metrics_text(metrics: dict[str, Any]) -> str:
    """`loss 0.842  perplexity 2.321  n 16`: numbers to 4 significant digits, notes and lists left out."""
    shown = []
    for name, value in metrics.items():
        if name in NOT_SHOWN or isinstance(value, bool) or not isinstance(value, (int, float, type(None))):
            continue
        shown.append(f"{name} {'—' if value is None else f'{value:.4g}'}")
    return "  ".join(shown)
