"""`omni-run pause|resume|checkpoint|stop [RUN]`: steer a training run through its control socket.

`resume` has two meanings, decided by whether a trainer is alive: a live, paused run is resumed over
the socket; a run whose trainer is gone (stopped, crashed, machine rebooted) is restarted from its
newest valid checkpoint under a new supervisor. One verb for "carry on", whatever happened.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
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
        parser.add_argument("--restarts", type=int, default=None, metavar="N",
                            help="grant N automatic restarts from now on; needed to resume a run that failed after "
                                 "using its whole restart budget (controller.restarts), which is kept across resumes")
        parser.add_argument("--accept-changes", action="store_true",
                            help="resume even though the run's recipe or plan changed since its checkpoint in ways "
                                 "that break exact resume (the losses will no longer match an uninterrupted run)")
        parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                            help="when restarting, change a field of the run's recipe and plan it anew first, e.g. "
                                 "--set distributed.num_processes=8 (repeatable; a change that breaks exact resume "
                                 "also needs --accept-changes)")
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
    """Continue a run whose trainer is gone, from its newest valid checkpoint: unless it crash-looped
    through its restart budget or its recipe changed in a way exact resume cannot follow."""
    from omni_runner.commands.train import start
    from omni_runner.run.status import read_status
    from omni_runner.run.supervisor import spent_budget

    if not any((run_dir.checkpoints).glob("step-*")):
        print(f"error: {run_dir.path.name} has no checkpoint to resume from", file=sys.stderr)
        return 1
    if args.restarts is not None and args.restarts < 0:
        print("error: --restarts takes a count of 0 or more", file=sys.stderr)
        return 2
    spent = spent_budget(read_status(run_dir.path) or {})
    if spent and args.restarts is None:
        print(f"error: {run_dir.path.name} will not be resumed: {spent}.\n"
              f"  See `omni-run logs {run_dir.path}` and trainer.log for why it keeps failing; to try again, grant "
              f"a new budget: `omni-run resume {run_dir.path} --restarts N` (N automatic restarts from now on; 0 for "
              "this attempt alone).", file=sys.stderr)
        return 1
    candidate = None
    if args.overrides:
        from omni_runner.recipe import RecipeError
        from omni_runner.run.prepare import replanned

        try:
            candidate = replanned(run_dir, args.overrides)
        except RecipeError as exc:
            print(exc.render(), file=sys.stderr)
            return 1
    if not changes_allow_resume(run_dir, args.accept_changes, candidate, args.overrides):
        return 1
    if candidate is not None:
        from omni_runner.run.prepare import write_run_files

        write_run_files(run_dir, *candidate, source=run_dir.recipe)
    args.tui = False
    return start(run_dir, resume=True, args=args)


def changes_allow_resume(run_dir, accepted: bool, candidate: tuple[dict, dict] | None = None,
                         overrides: Sequence[str] = ()) -> bool:
    """Compare the run's recipe and plan (or the `candidate` recipe and plan `--set overrides` made) with the newest
    checkpoint's; say what changed; False when a change breaks exact resume and the user has not accepted
    that (after telling them what to do)."""
    from omni_runner.plain_yaml import YAMLError, read_plain_yaml
    from omni_runner.run.resume_changes import classify_changes
    from omni_runner.run.supervisor import read_json_object
    from omni_runner.train.checkpoint import (
        TRAINER_STATE_FILE,
        list_checkpoints,
        verify_checkpoint,
    )

    # Sizes only: the trainer checks every checksum again when it loads the checkpoint.
    checkpoint = next((path for path in list_checkpoints(run_dir.checkpoints)
                       if verify_checkpoint(path, checksums=False) is None), None)
    if checkpoint is None:
        return True  # the trainer says which checkpoints it skipped and why
    saved = read_json_object(checkpoint / TRAINER_STATE_FILE)
    if "recipe" not in saved or "plan" not in saved:
        return True  # written before checkpoints kept their recipe: nothing to compare with
    try:
        recipe, plan = candidate or (read_plain_yaml(run_dir.recipe), read_json_object(run_dir.plan))
    except (OSError, YAMLError) as exc:
        print(f"error: cannot read {run_dir.recipe}: {exc}", file=sys.stderr)
        return False
    changes = classify_changes(saved["recipe"], saved["plan"], recipe, plan)
    harmless = [change for change in changes if not change.breaks_resume]
    breaking = [change for change in changes if change.breaks_resume]
    where = f"{run_dir.path.name} since checkpoint {checkpoint.name}"
    if harmless:
        print(f"note: changed in {where}, which resume follows:\n"
              + "\n".join(f"  {change.describe()}" for change in harmless), file=sys.stderr)
    if not breaking:
        return True
    listed = "\n".join(f"  {change.describe()}" for change in breaking)
    if accepted:
        print(f"warning: changed in {where}; resuming anyway (--accept-changes), so the run no longer matches "
              f"an uninterrupted one:\n{listed}", file=sys.stderr)
        return True
    undo = ("Leave out those --set values" if candidate else
            f"Put them back in {run_dir.recipe} / {run_dir.plan.name} (the checkpoint's own are in "
            f"{checkpoint / TRAINER_STATE_FILE})")
    print(f"error: {'--set would change' if candidate else 'changed in'} {where}, in ways that break exact resume:\n"
          f"{listed}\n  {undo}, or train the changed recipe as a new run; "
          f"`omni-run resume {run_dir.path}{''.join(f' --set {o}' for o in overrides)} --accept-changes` continues "
          "anyway, knowingly.", file=sys.stderr)
    return False
