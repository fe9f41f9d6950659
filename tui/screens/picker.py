"""The run picker (`omni-tui` alone): every run in the runs folder, newest first; Enter attaches."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from omni_tui.widgets.format import age, loss
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Label

from omni_runner.run.rundir import list_runs
from omni_runner.run.status import read_status
from omni_runner.run.supervisor import is_alive, observed_state


def run_rows(runs_dir: Path, now: float, alive: Callable[[object], bool] = is_alive) -> list[tuple[str, str, str, str, str]]:
    """(name, state, step/total, last loss, age) for each run, newest first; the state as `omni-run ls`
    shows it (a run whose processes are gone is `stale`, not `running`)."""
    rows = []
    for run in reversed(list_runs(runs_dir)):
        status = read_status(run.path) or {}
        updated = status.get("updated_at")
        rows.append((
            run.path.name,
            observed_state(status, alive),
            f"{status.get('step') or 0}/{status.get('total_steps') or '?'}",
            loss(status.get("loss")) if isinstance(status.get("loss"), (int, float)) else "—",
            age(now - updated) if isinstance(updated, (int, float)) else "—",
        ))
    return rows


class RunPicker(Screen):
    BINDINGS = [
        Binding("enter", "attach", "Attach", id="attach", tooltip="Open the dashboard of the selected run"),
        Binding("r", "reload", "Reload", id="reload", tooltip="Read the runs folder again"),
        Binding("q", "app.quit", "Quit", id="quit", tooltip="Leave; no run is touched"),
    ]

    def __init__(self, runs_dir: Path, clock: Callable[[], float], on_pick: Callable[[Path], None],
                 alive: Callable[[object], bool] = is_alive) -> None:
        super().__init__()
        self.runs_dir = runs_dir
        self.clock = clock
        self.on_pick = on_pick
        self.alive = alive

    def compose(self) -> ComposeResult:
        yield Label(f"Runs in {self.runs_dir}/ — Enter attaches", id="picker-title")
        yield DataTable(id="runs", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("run", "state", "step", "last loss", "updated")
        self.action_reload()

    def action_reload(self) -> None:
        table = self.query_one(DataTable)
        table.clear()
        for row in run_rows(self.runs_dir, self.clock(), self.alive):
            table.add_row(*row, key=row[0])
        if not table.row_count:
            self.query_one("#picker-title", Label).update(
                f"No runs in {self.runs_dir}/ yet; start one with `omni-run RECIPE.yaml --tui`")

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.on_pick(self.runs_dir / str(event.row_key.value))

    def action_attach(self) -> None:
        table = self.query_one(DataTable)
        if table.row_count:
            self.on_pick(self.runs_dir / str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value))
