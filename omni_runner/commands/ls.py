"""`omni-run ls`: the runs under the runs folder with their state, progress, last loss and age.

Reads only `status.json` of each run, so it is instant and never touches a running trainer. A run
whose status is missing or unreadable is still listed (state `unknown`); a run that says it is
active but whose processes are gone is shown as `stale` (killed without a word: the machine
rebooted, or trainer and supervisor were both killed), and a trainer whose supervisor died as
`(no supervisor)`: nobody will restart it or record how it ends.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from omni_runner.commands.run_options import add_runs_dir_option
from omni_runner.run.rundir import RunDir, list_runs
from omni_runner.run.status import read_status
from omni_runner.run.supervisor import observed_state

HELP = "list runs with their state, step, last loss and age"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_runs_dir_option(parser)
    parser.add_argument("--json", action="store_true", help="one JSON object per run, for scripts")


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def describe_run(run: RunDir, now: float) -> dict[str, Any]:
    """One row of `ls`: plain values, None where unknown."""
    status = read_status(run.path) or {}
    state = observed_state(status)
    updated = _number(status.get("updated_at"))
    return {
        "run": run.path.name,
        "name": status.get("name"),
        "state": state,
        "step": status.get("step"),
        "total_steps": status.get("total_steps"),
        "loss": _number(status.get("loss")),
        "age_s": None if updated is None else max(0.0, now - updated),
        "path": str(run.path),
    }


def format_age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def format_table(rows: list[dict[str, Any]]) -> str:
    header = ("RUN", "STATE", "STEP", "LOSS", "AGE")
    lines = [header]
    for row in rows:
        step = "-" if row["step"] is None else f"{row['step']}/{row['total_steps'] if row['total_steps'] is not None else '?'}"
        loss = "-" if row["loss"] is None else f"{row['loss']:.4f}"
        lines.append((row["run"], row["state"], step, loss, format_age(row["age_s"])))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines)


def run(args: argparse.Namespace) -> int:
    runs = list_runs(args.runs_dir)
    now = time.time()
    rows = [describe_run(run, now) for run in runs]
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    if not rows:
        print(f"no runs in {args.runs_dir}/ yet; start one with `omni-run RECIPE.yaml`")
        return 0
    print(format_table(rows))
    return 0
