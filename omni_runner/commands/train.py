"""`omni-run RECIPE` (= `omni-run train RECIPE`): validate, plan, make the run folder, train, supervised.

The recipe is validated and planned here, in a process without torch, so a bad recipe fails in a
fraction of a second with its file:line; only the trainer child loads models.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from omni_runner.recipe.options import add_recipe_options

HELP = "Train a recipe in a supervised child process (same as `omni-run RECIPE`)."

EXIT_INVALID = 1
EXIT_USAGE = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", metavar="RECIPE", help="recipe YAML file")
    add_recipe_options(parser)
    parser.add_argument("--run-dir", type=Path, default=None, help="use this (new or empty) folder for the run")
    parser.add_argument("--runs-dir", default=None, help="make the run folder under this folder (default: output.runs_dir, `runs`)")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print the run's events as JSON lines")
    output.add_argument("--detach", action="store_true", help="keep training in the background and return at once")
    output.add_argument("--tui", action="store_true", help="train in the background and open the dashboard on it")


def run(args: argparse.Namespace) -> int:
    from omni_runner.recipe import RecipeError
    from omni_runner.run.prepare import prepare_run

    overrides = list(args.overrides) + ([f"output.runs_dir={args.runs_dir}"] if args.runs_dir else [])
    try:
        run_dir = prepare_run(Path(args.recipe), overrides, args.capabilities, args.run_dir)
    except RecipeError as exc:
        print(exc.render(), file=sys.stderr)
        return EXIT_INVALID
    except FileExistsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return start(run_dir, resume=False, args=args)


def start(run_dir, resume: bool, args: argparse.Namespace) -> int:
    """Supervise the run in the foreground, or in the background with --detach/--tui."""
    from omni_runner.run.supervisor import detach, supervise

    if args.detach or args.tui:
        pid = detach(lambda: supervise(run_dir, resume=resume, restarts=getattr(args, "restarts", None)))
        if args.tui and shutil.which("omni-tui"):
            os.execvp("omni-tui", ["omni-tui", "attach", str(run_dir.path)])
        print(f"training in the background (supervisor pid {pid}): {run_dir.path}")
        print(f"  watch:  omni-tui attach {run_dir.path}")
        print(f"  follow: omni-run logs -f {run_dir.path}")
        print(f"  steer:  omni-run pause|resume|checkpoint|stop {run_dir.path}")
        return 0
    return follow_while_supervising(run_dir, resume, mode=_mode(args), restarts=getattr(args, "restarts", None))


def _mode(args: argparse.Namespace) -> str:
    if getattr(args, "json", False):
        return "json"
    return "tty" if sys.stdout.isatty() else "plain"


def follow_while_supervising(run_dir, resume: bool, mode: str, restarts: int | None = None) -> int:
    from omni_runner.run.progress import ProgressPrinter
    from omni_runner.run.supervisor import supervise
    from omni_runner.run.tail import EventTail

    tail = EventTail(run_dir.events, start_offset=_size(run_dir.events))
    printer = ProgressPrinter(mode)
    if mode != "json":
        print(f"run folder: {run_dir.path}", flush=True)
    code = supervise(run_dir, resume=resume, on_tick=lambda: printer.feed(tail.read_new().events), restarts=restarts)
    printer.feed(tail.read_new().events)  # the supervisor's own last events (how the trainer ended)
    printer.close()
    if mode != "json":
        print(summary(run_dir), flush=True)
    return code


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def summary(run_dir) -> str:
    """The closing lines: how the run ended and where its results are."""
    from omni_runner.run.status import read_status

    status = read_status(run_dir.path) or {}
    lines = [f"{status.get('state', 'unknown')} at step {status.get('step')}/{status.get('total_steps')}"
             + (f", loss {status['loss']:.4f}" if isinstance(status.get("loss"), (int, float)) else "")]
    if run_dir.final.is_dir():
        lines.append(f"final model: {run_dir.final}")
    if status.get("state") == "stopped":
        lines.append(f"continue with: omni-run resume {run_dir.path}")
    return "\n".join(lines)
