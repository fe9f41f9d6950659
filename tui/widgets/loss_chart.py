"""The loss over steps, total and per capability, raw or smoothed."""

from __future__ import annotations

from textual_plotext import PlotextPlot

from omni_tui.state import RunView, smooth


class LossChart(PlotextPlot):
    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.smoothing = True
        self._drawn: tuple | None = None

    def render_view(self, view: RunView) -> None:
        key = (self.smoothing, len(view.loss_history), view.loss_history.steps[-1:] ,
               tuple((c, len(h)) for c, h in view.capability_history.items()))
        if key == self._drawn:
            return
        self._drawn = key
        plt = self.plt
        plt.clear_data()
        plt.title("loss (smoothed)" if self.smoothing else "loss")
        series = [("total", view.loss_history), *sorted(view.capability_history.items())]
        for label, history in series:
            if history.steps:
                values = smooth(history.values) if self.smoothing else history.values
                plt.plot(history.steps, values, label=label)
        self.refresh()
