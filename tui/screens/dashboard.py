"""The dashboard of one run: panels fed by a tailing thread, keys that steer through the socket."""

from __future__ import annotations

import threading
from collections.abc import Callable

from omni_tui.screens.dialogs import ConfirmStop, HelpScreen
from omni_tui.source import RunSource
from omni_tui.state import RunView
from omni_tui.widgets.capabilities import CapabilityMix
from omni_tui.widgets.controller import ControllerPanel
from omni_tui.widgets.evals import EvalPanel
from omni_tui.widgets.gpu import GpuPanel
from omni_tui.widgets.header import RunHeader
from omni_tui.widgets.log_tail import LogTail
from omni_tui.widgets.loss_chart import LossChart
from omni_tui.widgets.throughput import Throughput
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Footer, ProgressBar

from omni_runner.control.client import ControlError, send_command
from omni_runner.run.rundir import RunDir
from omni_runner.run.supervisor import is_alive
from omni_runner.run.tail import TailBatch

POLL_SECONDS = 1.0
# Numbers that move every step are repainted at this pace at most; state changes are shown at once.
# Repainting is what an attached dashboard costs the training machine, so it is kept rare.
REPAINT_SECONDS = 2.0
CONTROL_TIMEOUT_S = 60.0
HISTORY_DELAY_S = 1.0


class Dashboard(Screen):
    BINDINGS = [
        Binding("p", "control('toggle')", "Pause/resume", id="pause", tooltip="Pause the run, or resume a paused one"),
        Binding("c", "control('checkpoint')", "Checkpoint", id="checkpoint", tooltip="Save a checkpoint now"),
        Binding("s", "stop", "Stop", id="stop", tooltip="Stop the run for good (asks first; saves a checkpoint)"),
        Binding("l", "toggle_smoothing", "Smoothing", id="smoothing", tooltip="Loss chart: smoothed or raw"),
        Binding("question_mark", "help", "Help", key_display="?", id="help", tooltip="Show these keys"),
        Binding("q", "detach", "Detach", id="detach", tooltip="Leave the dashboard; training goes on"),
    ]

    version: reactive[int] = reactive(0, init=False)  # bumped when the view changed: repaint the panels

    def __init__(self, run: RunDir, clock: Callable[[], float], follow: bool = True,
                 alive: Callable[[object], bool] = is_alive) -> None:
        super().__init__()
        self.run = run
        self.clock = clock
        self.follow = follow
        self.source = RunSource(run, alive=alive)
        self.view: RunView = self.source.fresh_view()
        self._corrupt_reported = False
        self.history_complete = self.source.window_start == 0  # False until the older history is merged
        self._unpainted = False
        self._painted_state = ""
        self._stop_following = threading.Event()

    def compose(self) -> ComposeResult:
        yield RunHeader(id="header")
        yield ProgressBar(id="progress", show_eta=False)
        with Horizontal(id="main"):
            yield LossChart(id="loss-chart")
            with Vertical(id="side"):
                yield Throughput(id="throughput")
                yield GpuPanel(id="gpus")
                yield ControllerPanel(id="controller")
                yield EvalPanel(id="evals")
        with Horizontal(id="bottom"):
            yield CapabilityMix(id="capabilities")
            yield LogTail(id="log")
        yield Footer()

    def on_mount(self) -> None:
        # The first window is read here, before the first paint: it is small by construction.
        self._fold(self.source.tail.read_new(), self.source.read_status_if_changed(), self.source.processes_alive())
        self._repaint()
        if self.source.window_start:
            # Later, so the scan (CPU-bound, holding the GIL half the time) does not slow the first paints.
            self.set_timer(HISTORY_DELAY_S, self._fill_older_history)
        if self.follow:
            self._follow_events()
        self.set_interval(1.0, self._tick_clock)
        self.set_interval(REPAINT_SECONDS, self._repaint_if_changed)

    def on_unmount(self) -> None:
        self._stop_following.set()

    # ------------------------------------------------------------ data flow

    @work(thread=True, exclusive=True, group="history")
    def _fill_older_history(self) -> None:
        older = self.source.older_history()
        if older is not None:
            self.app.call_from_thread(self._merge_older, older)

    def _merge_older(self, older: RunView) -> None:
        self.view.merge_older(older)
        self.history_complete = True
        self.query_one(LossChart).render_view(self.view, force=True)
        self.version += 1

    @work(thread=True, exclusive=True, group="tail")
    def _follow_events(self) -> None:
        alive = None
        while not self._stop_following.wait(POLL_SECONDS):
            batch = self.source.tail.read_new()
            status = self.source.read_status_if_changed()
            alive, was_alive = self.source.processes_alive(), alive
            if batch.events or batch.restarted or batch.corrupt or status or alive != was_alive:
                self.app.call_from_thread(self._fold, batch, status, alive)

    def _fold(self, batch: TailBatch, status: dict | None, alive: tuple[bool, bool] | None) -> None:
        self.view = self.source.apply_new(self.view, batch)
        if status:
            self.view.apply_status(status)
        if alive is not None:
            self.view.apply_processes(*alive)
        if self.view.corrupt_lines and not self._corrupt_reported:
            self._corrupt_reported = True
            self.notify(f"{self.view.corrupt_lines} unreadable line(s) in events.jsonl were skipped", severity="warning")
        self._unpainted = True
        if self.view.state_text() != self._painted_state or batch.restarted:
            self.version += 1

    def _repaint_if_changed(self) -> None:
        if self._unpainted:
            self.version += 1

    def watch_version(self) -> None:
        self._repaint()

    def _repaint(self) -> None:
        view, now = self.view, self.clock()
        self._unpainted, self._painted_state = False, view.state_text()
        self.query_one(RunHeader).render_view(view, now)
        progress = self.query_one(ProgressBar)
        progress.update(total=view.total_steps, progress=view.step)
        self.query_one(LossChart).render_view(view)
        self.query_one(Throughput).render_view(view)
        self.query_one(GpuPanel).render_view(view)
        self.query_one(ControllerPanel).render_view(view, now)
        self.query_one(EvalPanel).render_view(view)
        self.query_one(CapabilityMix).render_view(view)
        self.query_one(LogTail).render_view(view)

    def _tick_clock(self) -> None:
        """Ages and elapsed time move on without events; the panels skip unchanged text."""
        now = self.clock()
        self.query_one(RunHeader).render_view(self.view, now)
        self.query_one(ControllerPanel).render_view(self.view, now)
        self.query_one(LossChart).render_view(self.view)

    # ------------------------------------------------------------ keys

    def action_control(self, command: str) -> None:
        self._send(command)

    def action_stop(self) -> None:
        def confirmed(answer: bool | None) -> None:
            if answer:
                self._send("stop")

        self.app.push_screen(ConfirmStop(self.view.name), confirmed)

    def action_toggle_smoothing(self) -> None:
        chart = self.query_one(LossChart)
        chart.smoothing = not chart.smoothing
        chart.render_view(self.view, force=True)
        self.notify("loss chart: " + ("smoothed" if chart.smoothing else "raw"), timeout=2)

    def action_help(self) -> None:
        self.app.push_screen(HelpScreen(list(self.BINDINGS)))

    def action_detach(self) -> None:
        self.app.exit()

    @work(thread=True, group="control")
    def _send(self, command: str) -> None:
        try:
            reply = send_command(self.run.path, command, timeout=CONTROL_TIMEOUT_S)
        except ControlError as error:
            self.app.call_from_thread(self.notify, f"{command}: {error}", severity="error")
            return
        said = f"{command}: ok, now {reply.get('state')} at step {reply.get('step')}"
        if reply.get("path"):
            said += f", saved {reply['path']}"
        self.app.call_from_thread(self.notify, said)
