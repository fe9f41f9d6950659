"""`omni-tui`: a dashboard that follows a run from its folder; leaving it never touches training.

`omni-tui attach [RUN]` opens one run (the newest when none is named); `omni-tui` alone lists the
runs to pick from. The TUI reads files and talks to the control socket only: no torch here.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from omni_tui.screens.dashboard import Dashboard
from omni_tui.screens.picker import RunPicker
from textual.app import App

from omni_runner.run.rundir import (
    DEFAULT_RUNS_DIR,
    RunDir,
    RunNotFoundError,
    resolve_run,
)
from omni_runner.run.supervisor import is_alive


class OmniTUI(App):
    CSS_PATH = "omni_tui.tcss"
    TITLE = "omni-runner"

    def __init__(self, run: RunDir | None = None, runs_dir: Path = DEFAULT_RUNS_DIR,
                 clock: Callable[[], float] = time.time, follow: bool = True,
                 alive: Callable[[object], bool] = is_alive) -> None:
        super().__init__()
        self.attached_run = run
        self.runs_dir = Path(runs_dir)
        self.clock = clock
        self.follow = follow
        self.alive = alive  # whether a PID from status.json is a live process (tests replay recorded runs)

    def on_mount(self) -> None:
        if self.attached_run is not None:
            self.attach(self.attached_run.path)
        else:
            self.push_screen(RunPicker(self.runs_dir, self.clock, self.attach, self.alive))

    def attach(self, path: Path) -> None:
        self.push_screen(Dashboard(RunDir(path), self.clock, self.follow, self.alive))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="omni-tui", description="Watch and steer omni-runner runs.")
    parser.add_argument("--runs-dir", type=Path, default=DEFAULT_RUNS_DIR, help="where runs live (default ./runs)")
    commands = parser.add_subparsers(dest="command")
    attach = commands.add_parser("attach", help="open the dashboard of a run (default: the newest)")
    attach.add_argument("run", nargs="?", help="run folder name or path")
    attach.add_argument("--runs-dir", type=Path, default=argparse.SUPPRESS, help="where runs live (default ./runs)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run = None
    if args.command == "attach":
        try:
            run = resolve_run(args.run, args.runs_dir)
        except RunNotFoundError as error:
            print(f"omni-tui: {error}", file=sys.stderr)
            return 1
    OmniTUI(run=run, runs_dir=args.runs_dir).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
