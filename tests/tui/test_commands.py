"""`omni-tui` on the command line and the run picker."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from omni_tui.app import OmniTUI
from omni_tui.screens.dashboard import Dashboard
from textual.widgets import DataTable

from tests.tui.conftest import FIXTURES, FROZEN_NOW

OMNI_TUI = Path(sys.executable).with_name("omni-tui")


def test_attach_without_runs_says_where_it_looked_and_exits_1(tmp_path):
    result = subprocess.run([str(OMNI_TUI), "attach", "--runs-dir", str(tmp_path / "runs")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "no runs in" in result.stderr and "omni-run RECIPE.yaml" in result.stderr
    assert "Traceback" not in result.stderr


def test_attach_to_an_unknown_run_names_it(tmp_path):
    result = subprocess.run([str(OMNI_TUI), "attach", "nope", "--runs-dir", str(tmp_path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "no run 'nope'" in result.stderr


def copy_runs(tmp_path: Path, *states: str) -> Path:
    runs = tmp_path / "runs"
    for state in states:
        shutil.copytree(FIXTURES / state, runs / f"tiny-omni-{state}")
    return runs


async def test_picker_lists_runs_with_state_step_loss_and_age(tmp_path):
    runs = copy_runs(tmp_path, "finished", "paused")
    app = OmniTUI(runs_dir=runs, clock=lambda: FROZEN_NOW, alive=lambda pid: True)
    async with app.run_test(size=(120, 30)):
        table = app.screen.query_one(DataTable)
        rows = {table.get_row_at(i)[0]: table.get_row_at(i) for i in range(table.row_count)}
        assert rows["tiny-omni-finished"][1:] == ["finished", "40/40", "0.6000", "just now"]
        assert rows["tiny-omni-paused"][1:4] == ["paused", "15/40", "1.2000"]


async def test_picker_shows_a_run_whose_processes_are_gone_as_stale_like_ls(tmp_path):
    app = OmniTUI(runs_dir=copy_runs(tmp_path, "paused"), clock=lambda: FROZEN_NOW, alive=lambda pid: False)
    async with app.run_test(size=(120, 30)):
        assert app.screen.query_one(DataTable).get_row_at(0)[1] == "stale (paused)"


async def test_enter_in_the_picker_attaches_to_the_selected_run(tmp_path):
    runs = copy_runs(tmp_path, "failed")
    app = OmniTUI(runs_dir=runs, clock=lambda: FROZEN_NOW, follow=False)
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, Dashboard)
        assert app.screen.view.state == "failed"


async def test_picker_with_no_runs_says_how_to_start_one(tmp_path):
    app = OmniTUI(runs_dir=tmp_path / "runs", clock=lambda: FROZEN_NOW)
    async with app.run_test():
        assert "No runs in" in str(app.screen.query_one("#picker-title").render())
