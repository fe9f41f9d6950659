"""`omni-run logs [-f] [RUN]`: a run's events as readable lines, optionally following until it ends."""

from __future__ import annotations

import argparse
import sys
import time

from omni_runner.commands.run_options import add_runs_dir_option, locate_run

HELP = "Print a run's events; -f follows them until the run ends."

_FOLLOW_POLL_S = 0.5
_ENDED = ("finished", "stopped", "failed")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", nargs="?", default=None, metavar="RUN", help="run folder or name (default: newest)")
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing new events until the run ends")
    parser.add_argument("--json", action="store_true", help="print the events as JSON lines")
    parser.add_argument("--all", action="store_true", help="with --json, include the frequent telemetry events too")
    add_runs_dir_option(parser)


def run(args: argparse.Namespace) -> int:
    from omni_runner.run.progress import ProgressPrinter
    from omni_runner.run.rundir import resolve_run
    from omni_runner.run.status import read_status
    from omni_runner.run.tail import EventTail

    run_dir = locate_run(lambda: resolve_run(args.run, args.runs_dir))
    if run_dir is None:
        return 1
    printer = ProgressPrinter("json" if args.json else "plain")
    tail = EventTail(run_dir.events)
    while True:
        batch = tail.read_new()
        events = batch.events if args.all or not args.json else [e for e in batch.events if e.get("type") != "telemetry"]
        printer.feed(events)
        if batch.corrupt:
            print(f"({batch.corrupt} corrupt event lines skipped)", file=sys.stderr)
        if not args.follow or _ended(read_status(run_dir.path)):
            if args.follow:
                printer.feed(tail.read_new().events)
            break
        time.sleep(_FOLLOW_POLL_S)
    printer.close()
    return 0


def _ended(status: dict | None) -> bool:
    """A run has ended when its state is terminal and no supervisor is left to restart it."""
    if not status or status.get("state") not in _ENDED:
        return False
    from omni_runner.run.supervisor import is_alive

    return not is_alive(status.get("supervisor_pid"))
