"""`omni-run pause|resume|checkpoint|stop [RUN]`: steer a training run through its control socket.

`resume` has two meanings, decided by whether a trainer is alive: a live, paused run is resumed over
the socket; a run whose trainer is gone (stopped, crashed, machine rebooted) is restarted from its
newest valid checkpoint under a new supervisor. One verb for "carry on", whatever happened.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from omni_runner.commands.run_options import add_runs_dir_option, locate_run

PER_COMMAND = True
HELPS = {
    "pause": "Pause a running run at the next step boundary (it keeps its GPU memory).",
    "resume": "Resume a paused run, or restart a stopped/crashed run from its newest valid checkpoint.",
    "checkpoint": "Write a checkpoint now and keep training.",
    "stop": "Checkpoint and stop a run cleanly (continue it later with `omni-run resume`).",
}


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument("run", nargs="?", default=None, metavar="RUN",
                        help="run folder or name (default: the newest run with a live trainer)")
    add_runs_dir_option(parser)
    parser.add_argument("--json", action="store_true", help="print the trainer's reply as JSON")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the step boundary")
    if name == "resume":
        parser.add_argument("--detach", action="store_true", help="when restarting, keep training in the background")
    parser.set_defaults(control_command=name)


def run(args: argparse.Namespace) -> int:
    from omni_runner.control.client import ControlError, send_command
    from omni_runner.run.rundir import resolve_run
    from omni_runner.run.status import read_status
    from omni_runner.run.supervisor import is_alive

    run_dir = locate_run(lambda: resolve_run(args.run, args.runs_dir) if args.run else newest_live_run(args.runs_dir))
    if run_dir is None:
        return 1
    if args.control_command == "resume" and not trainer_alive(run_dir):
        status = read_status(run_dir.path) or {}
        supervisor = status.get("supervisor_pid")
        if status.get("state") == "finished":
            print(f"error: {run_dir.path.name} already finished; there is nothing to resume", file=sys.stderr)
            return 1
        if status.get("state") not in ("stopped", "finished") and is_alive(supervisor):
            # between a crash and its automatic restart: one supervisor per run
            print(f"error: {run_dir.path.name} is being restarted by its supervisor (pid {supervisor}); "
                  "try again in a moment", file=sys.stderr)
            return 1
        return restart(run_dir, args)
    try:
        reply = send_command(run_dir.path, args.control_command, timeout=args.timeout)
    except ControlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(reply))
    else:
        where = f", checkpoint {reply['path']}" if reply.get("path") else ""
        print(f"{run_dir.path.name}: {reply.get('state')} at step {reply.get('step')}{where}")
    return 0


def trainer_alive(run_dir) -> bool:
    from omni_runner.run.status import read_status
    from omni_runner.run.supervisor import is_alive

    return is_alive((read_status(run_dir.path) or {}).get("pid"))


def newest_live_run(runs_dir: Path):
    from omni_runner.run.rundir import RunNotFoundError, list_runs

    live = [run for run in list_runs(runs_dir) if trainer_alive(run)]
    if not live:
        raise RunNotFoundError(f"no run in {runs_dir}/ has a live trainer; name one, e.g. `omni-run resume RUN`")
    return live[-1]


def restart(run_dir, args: argparse.Namespace) -> int:
    """Continue a run whose trainer is gone, from its newest valid checkpoint."""
    from omni_runner.commands.train import start

    if not any((run_dir.checkpoints).glob("step-*")):
        print(f"error: {run_dir.path.name} has no checkpoint to resume from", file=sys.stderr)
        return 1
    args.tui = False
    return start(run_dir, resume=True, args=args)
