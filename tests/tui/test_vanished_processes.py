"""A run whose trainer and supervisor vanished without a word: the dashboard says so instead of `running`."""

from __future__ import annotations

from omni_tui.widgets.header import RunHeader
from omni_tui.widgets.log_tail import LogTail

from tests.tui.conftest import dashboard_app


async def test_a_running_run_whose_processes_are_all_gone_is_shown_stale_with_how_to_continue(recorded_run):
    app = dashboard_app(recorded_run("running"), follow=True, alive=False)
    async with app.run_test(size=(160, 48)):
        header = app.screen.query_one(RunHeader)
        assert "stale: trainer and supervisor gone; `omni-run resume` continues" in header.text
        assert header.has_class("-stale")
        log = "\n".join(strip.text for strip in app.screen.query_one(LogTail).lines)
        assert "run stale" in log


async def test_a_finished_run_stays_finished_when_its_processes_are_gone(recorded_run):
    app = dashboard_app(recorded_run("finished"), alive=False)
    async with app.run_test():
        assert app.screen.view.state == "finished"


async def test_a_run_whose_status_names_no_process_yet_is_not_called_stale(recorded_run):
    run = recorded_run("running")
    run.status.unlink()  # the supervisor has not written it yet
    app = dashboard_app(run, follow=True, alive=False)
    async with app.run_test():
        assert app.screen.view.state == "running"
