"""What the commands that act on an existing run share: the `--runs-dir` option and naming the run.

One definition so `ls`, `logs`, `chat` and `pause|resume|checkpoint|stop` find runs the same way and
say the same thing when a run cannot be found.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from omni_runner.run.rundir import DEFAULT_RUNS_DIR, RunDir, RunNotFoundError


def add_runs_dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs-dir", type=Path, default=DEFAULT_RUNS_DIR, help="where runs live (default: runs)")


def locate_run(find: Callable[[], RunDir]) -> RunDir | None:
    """The run `find` names, or None after telling the user why there is none."""
    try:
        return find()
    except RunNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def locate_finished_run(run: str | None, runs_dir: Path) -> RunDir | None:
    """The named run when it has its `final/` model (what `chat` and `generate` load), or None after
    telling the user why not."""
    from omni_runner.run.rundir import resolve_run

    run_dir = locate_run(lambda: resolve_run(run, runs_dir))
    if run_dir is not None and not run_dir.final.is_dir():
        print(f"error: {run_dir.path.name} has no final/ model yet (it is written when training finishes); "
              f"see `omni-run ls` for its state", file=sys.stderr)
        return None
    return run_dir
