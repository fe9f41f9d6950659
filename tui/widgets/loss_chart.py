"""The loss over steps, total and per capability, raw or smoothed."""

from __future__ import annotations

import time

from omni_tui.state import RunView, smooth
from textual_plotext import PlotextPlot

# Plotting is the dashboard's costliest paint; a fast run would otherwise redraw it several times a
# second. The dashboard's clock tick calls again, so a skipped change is drawn at most this much later.
MIN_REDRAW_S = 5.0


class LossChart(PlotextPlot):
    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.smoothing = True
        self._drawn: tuple | None = None
        self._drawn_at = float("-inf")

    def render_view(self, view: RunView, force: bool = False) -> None:
        key = (self.smoothing, len(view.loss_history), view.loss_history.steps[-1:],
               tuple((c, len(h)) for c, h in view.capability_history.items()))
        if key == self._drawn or (not force and time.monotonic() - self._drawn_at < MIN_REDRAW_S):
            return
        self._drawn, self._drawn_at = key, time.monotonic()
        plt = self.plt
        plt.clear_data()
        plt.title("loss (smoothed)" if self.smoothing else "loss")
        series = [("total", view.loss_history), *sorted(view.capability_history.items())]
        for label, history in series:
            if history.steps:
                values = smooth(history.values) if self.smoothing else history.values
                plt.plot(history.steps, values, label=label)
        self.refresh()
