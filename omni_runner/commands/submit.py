"""`omni-run submit RECIPE --slurm`: train a recipe as a SLURM batch job that survives preemption.

The recipe is loaded and planned here, on the login node, so a recipe the plan refuses is never
queued. The run folder is chosen now, not when the job starts: a job that SLURM requeues (preempted,
or out of time) starts again in the same folder and continues the run from its newest checkpoint.
The script itself is `omni_runner/run/slurm.py`'s; this module only decides its inputs and submits it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from omni_runner.recipe.options import add_recipe_options
from omni_runner.run.slurm import DEFAULT_PREEMPT_GRACE_S, PREEMPT_SIGNAL

HELP = "Submit a recipe as a SLURM batch job (--slurm) that checkpoints and requeues when preempted; --dry-run prints the script."

EXIT_INVALID = 1
EXIT_USAGE = 2
JOBS_FILE = "jobs.jsonl"
FIRST_NODE = "slurm-first-node"  # distributed.main_process_ip until the job knows its allocation
SCRIPT_FILE = "submit.sbatch"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", metavar="RECIPE", help="recipe YAML file")
    parser.add_argument("--slurm", action="store_true", required=True, help="submit to SLURM with sbatch (the one scheduler today)")
    add_recipe_options(parser)
    parser.add_argument("--run-dir", type=Path, default=None, help="the (new or empty) folder for the run")
    parser.add_argument("--runs-dir", type=Path, default=None,
                        help="make the run folder under this folder (default: output.runs_dir, `runs`)")
    parser.add_argument("--nodes", type=_count, default=None, metavar="N",
                        help="nodes (default: the recipe's distributed.num_machines, 1); node 0 starts the run, the others join it")
    parser.add_argument("--gpus-per-node", type=_count, default=None, metavar="G",
                        help="GPUs a node, one training process each (default: the recipe's processes per machine, 1)")
    parser.add_argument("--time", dest="time_limit", default=None, metavar="HH:MM:SS",
                        help="the job's time limit (default: the partition's)")
    parser.add_argument("--partition", default=None, metavar="P")
    parser.add_argument("--account", default=None, metavar="A")
    parser.add_argument("--job-name", default=None, metavar="NAME", help="default: the recipe's name")
    parser.add_argument("--cpus-per-task", type=_count, default=None, metavar="C", help="CPUs for the job's one task (per node)")
    parser.add_argument("--preempt-grace", type=int, default=DEFAULT_PREEMPT_GRACE_S, metavar="SECONDS",
                        help=f"SIG{PREEMPT_SIGNAL} this long before the time limit: checkpoint and requeue "
                             f"(default {DEFAULT_PREEMPT_GRACE_S}); longer than a checkpoint takes to write")
    parser.add_argument("--dry-run", action="store_true", help="print the batch script; write and submit nothing")


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number, 1 or more")
    return value


def run(args: argparse.Namespace) -> int:
    from omni_runner.recipe import RecipeError, load_recipe
    from omni_runner.run.prepare import load_and_plan
    from omni_runner.run.slurm import SlurmOptionError, check_job

    recipe_path = Path(args.recipe).resolve()
    try:
        distributed = load_recipe(recipe_path, overrides=args.overrides, capabilities=args.capabilities).data["distributed"]
    except RecipeError as exc:
        print(exc.render(), file=sys.stderr)
        return EXIT_INVALID
    nodes = args.nodes if args.nodes is not None else distributed["num_machines"]
    gpus_per_node = (args.gpus_per_node if args.gpus_per_node is not None
                     else distributed["num_processes"] // distributed["num_machines"])
    # One process per GPU of every node, written into the recipe's own fields, so the plan checks that layout.
    overrides = [*args.overrides, f"distributed.num_processes={nodes * gpus_per_node}", f"distributed.num_machines={nodes}"]
    if nodes > 1:  # the job looks the first node up at every start (MAIN_PROCESS_IP_ENV); this names it meanwhile
        overrides.append(f"distributed.main_process_ip={FIRST_NODE}")
    try:
        recipe, plan = load_and_plan(recipe_path, overrides, args.capabilities)
    except RecipeError as exc:
        print(exc.render(), file=sys.stderr)
        if nodes * gpus_per_node != distributed["num_processes"]:
            print(f"note: planned with distributed.num_processes={nodes * gpus_per_node}, from --nodes {nodes} and "
                  f"--gpus-per-node {gpus_per_node} (docs/slurm.md)", file=sys.stderr)
        return EXIT_INVALID
    job = _job(args, recipe_path, recipe.data, overrides, nodes, gpus_per_node)
    try:
        check_job(job)
    except SlurmOptionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.run_dir is not None and job.run_dir.exists() and any(job.run_dir.iterdir()):
        print(f"error: --run-dir {job.run_dir} already exists and is not empty; choose a new folder", file=sys.stderr)
        return EXIT_USAGE
    if args.dry_run:
        return _print_dry_run(job, plan.warnings)
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        print("error: sbatch is not on PATH: `omni-run submit --slurm` submits through SLURM's sbatch, so run it where "
              "SLURM's commands are (a login node); `--dry-run` prints the batch script without submitting it",
              file=sys.stderr)
        return EXIT_INVALID
    job = dataclasses.replace(job, run_dir=_make_run_folder(args, recipe.data["name"], job))
    return _submit(sbatch, job, plan.warnings)


def _job(args: argparse.Namespace, recipe_path: Path, data: dict, overrides: list[str], nodes: int, gpus_per_node: int):
    """The job as it would be submitted; its run folder is the one that would be made now."""
    from omni_runner.run.rundir import run_folder_name
    from omni_runner.run.slurm import SlurmJob

    if args.run_dir is not None:
        run_dir = args.run_dir.resolve()
    else:
        runs_dir = args.runs_dir if args.runs_dir is not None else Path(data["output"]["runs_dir"])
        run_dir = runs_dir.resolve() / run_folder_name(data["name"])
    capabilities = ["--capabilities", ",".join(args.capabilities)] if args.capabilities is not None else []
    return SlurmJob(
        run_dir=run_dir, recipe=recipe_path, workdir=Path.cwd(), job_name=args.job_name or data["name"],
        train_options=tuple(option for value in overrides for option in ("--set", value)) + tuple(capabilities),
        nodes=nodes, gpus_per_node=gpus_per_node, time_limit=args.time_limit, partition=args.partition,
        account=args.account, cpus_per_task=args.cpus_per_task, preempt_grace_s=args.preempt_grace,
    )


def _print_dry_run(job, warnings: list[str]) -> int:
    from omni_runner.run.slurm import sbatch_script

    print(sbatch_script(job), end="")
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"dry run: nothing written or submitted; the run folder would be {job.run_dir}", file=sys.stderr)
    return 0


def _make_run_folder(args: argparse.Namespace, recipe_name: str, job) -> Path:
    """Create the run folder (private, like every run folder) and its slurm/ folder."""
    from omni_runner.run.rundir import RunDir, create_run_dir

    if args.run_dir is None:
        run = create_run_dir(recipe_name, job.run_dir.parent)
    else:
        run = RunDir(job.run_dir)
        run.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(run.path, 0o700)  # mkdir's mode is filtered by the umask
    run.slurm.mkdir(mode=0o700)
    return run.path


def _submit(sbatch: str, job, warnings: list[str]) -> int:
    from omni_runner.run.rundir import RunDir
    from omni_runner.run.slurm import sbatch_script, submitted_job_id

    run = RunDir(job.run_dir)
    script = run.slurm / SCRIPT_FILE
    fd = os.open(script, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(sbatch_script(job))
    result = subprocess.run([sbatch, str(script)], capture_output=True, text=True, cwd=job.workdir, check=False)
    job_id = submitted_job_id(result.stdout) if result.returncode == 0 else None
    if job_id is None:
        said = (result.stderr or result.stdout).strip()
        print(f"error: sbatch did not submit the job (exit {result.returncode}){': ' + said if said else ''}\n"
              f"  The script is {script}; once the cause is fixed, submit it with `sbatch {script}`.", file=sys.stderr)
        return EXIT_INVALID
    with open(run.slurm / JOBS_FILE, "a", encoding="utf-8") as jobs:
        jobs.write(json.dumps({"job_id": job_id, "submitted_at": time.time(), "script": str(script),
                               "nodes": job.nodes, "gpus_per_node": job.gpus_per_node}) + "\n")
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(_submitted(job, job_id))
    return 0


def _submitted(job, job_id: str) -> str:
    from omni_runner.run.rundir import DEFAULT_RUNS_DIR

    runs_dir = job.run_dir.parent
    ls = "omni-run ls" + ("" if runs_dir == DEFAULT_RUNS_DIR.resolve() else f" --runs-dir {runs_dir}")
    gpus = f"{job.gpus_per_node} GPU{'s' if job.gpus_per_node > 1 else ''}"
    return "\n".join([
        f"submitted SLURM job {job_id}: {job.job_name} on {job.nodes} node{'s' if job.nodes > 1 else ''} x {gpus}",
        f"  run folder: {job.run_dir}  (a requeued job continues the run here)",
        f"  job log:    {str(job.log_pattern).replace('%j', job_id)}",
        f"  queue:      squeue -j {job_id}",
        f"  watch:      {ls}   omni-tui attach {job.run_dir}   (once the job has started)",
        f"  stop:       scancel {job_id}",
    ])
