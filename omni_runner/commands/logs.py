"""`omni-run logs [-f] [RUN]`: a run's events as readable lines, optionally following until it ends.

A multi-day run's events.jsonl can be gigabytes, so by default only its last `--lines` lines are
read (found by reading backwards from the end, at most `TAIL_WINDOW_BYTES`), and everything is read
and printed a chunk at a time: memory stays bounded whatever the file's size, and `--from-start`
prints it all.
"""

from __future__ import annotations

import argparse
import sys
import time

from omni_runner.commands.run_options import add_runs_dir_option, locate_run
from omni_runner.run.progress import ProgressPrinter
from omni_runner.run.tail import EventTail, start_of_last_lines

HELP = "Print a run's events; -f follows them until the run ends."

_FOLLOW_POLL_S = 0.5
DEFAULT_LINES = 1000
TAIL_WINDOW_BYTES = 64 * 1024 * 1024
READ_CHUNK_BYTES = 4 * 1024 * 1024
_ENDED = ("finished", "stopped", "failed")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", nargs="?", default=None, metavar="RUN", help="run folder or name (default: newest)")
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing new events until the run ends")
    parser.add_argument("--json", action="store_true", help="print the events as JSON lines")
    parser.add_argument("--all", action="store_true", help="with --json, include the frequent telemetry events too")
    start = parser.add_mutually_exclusive_group()
    start.add_argument("-n", "--lines", type=int, default=DEFAULT_LINES, metavar="N",
                       help=f"start from the last N lines of the events file (default {DEFAULT_LINES})")
    start.add_argument("--from-start", action="store_true", help="print every event from the start of the run")
    add_runs_dir_option(parser)


def run(args: argparse.Namespace) -> int:
    from omni_runner.run.rundir import resolve_run
    from omni_runner.run.status import read_status

    run_dir = locate_run(lambda: resolve_run(args.run, args.runs_dir))
    if run_dir is None:
        return 1
    printer = ProgressPrinter("json" if args.json else "plain", sys.stdout)
    start = 0 if args.from_start else start_of_last_lines(run_dir.events, max(0, args.lines), TAIL_WINDOW_BYTES)
    if start:
        print(f"(earlier events not shown: from the last {args.lines} lines of {run_dir.events}; "
              "--lines N or --from-start for more)", file=sys.stderr)
    tail = EventTail(run_dir.events, start_offset=start)
    while True:
        _print_new(tail, printer, args)
        if not args.follow or _ended(read_status(run_dir.path)):
            if args.follow:
                _print_new(tail, printer, args)
            break
        time.sleep(_FOLLOW_POLL_S)
    printer.close()
    return 0


def _print_new(tail: EventTail, printer: ProgressPrinter, args: argparse.Namespace) -> None:
    """Print what the file holds beyond `tail`'s offset, a chunk at a time."""
    corrupt = 0
    while True:
        before = tail.offset
        batch = tail.read_new(READ_CHUNK_BYTES)
        events = batch.events if args.all or not args.json else [e for e in batch.events if e.get("type") != "telemetry"]
        printer.feed(events)
        corrupt += batch.corrupt
        if tail.offset - (0 if batch.restarted else before) < READ_CHUNK_BYTES:
            break
    if corrupt:
        print(f"({corrupt} corrupt event lines skipped)", file=sys.stderr)


def _ended(status: dict | None) -> bool:
    """A run has ended when its state is terminal and no supervisor is left to restart it."""
    if not status or status.get("state") not in _ENDED:
        return False
    from omni_runner.run.supervisor import is_alive

    return not is_alive(status.get("supervisor_pid"))
