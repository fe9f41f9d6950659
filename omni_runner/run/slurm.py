"""The sbatch script of `omni-run submit --slurm`: pure text from a typed job description (no I/O).

The script runs `omni-run` in the foreground of the batch job, so the job lasts as long as training,
and starts or continues one fixed run folder: a job that SLURM requeues finds `status.json` there and
resumes from the newest checkpoint instead of starting over.

Signals (docs/slurm.md):
- SIGURG, sent by SLURM to the batch shell alone (`--signal=B:URG@GRACE`) GRACE seconds before the
  time limit, means "checkpoint and requeue". URG because SIGUSR1 (pause) and SIGUSR2 (checkpoint)
  already mean something to omni-run, SIGTERM is what `scancel` sends, and a stray SIGURG kills
  nothing (its default action is to be ignored). SLURM accepts it by name (`signals_mapping` in
  SchedMD/slurm src/common/proc_args.c: HUP INT QUIT ABRT KILL ALRM TERM USR1 USR2 URG CONT STOP TSTP
  TTIN TTOU XCPU). The shell turns it into SIGTERM for omni-run (checkpoint and stop), waits for it,
  then asks SLURM to requeue the job.
- SIGTERM (`scancel`, or preemption by a higher-priority job) reaches every process of the job from
  SLURM itself, omni-run included, so the shell does not pass it on (a second SIGTERM would mean
  "stop at once, without a checkpoint") and does not requeue.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from omni_runner.run.launcher import MAIN_PROCESS_IP_ENV
from omni_runner.run.rundir import RunDir

PREEMPT_SIGNAL = "URG"
DEFAULT_PREEMPT_GRACE_S = 300

_SUBMITTED = re.compile(r"Submitted batch job (\d+)")
# SLURM's --time forms: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S (sbatch(1)).
_TIME_LIMIT = re.compile(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?")


class SlurmOptionError(ValueError):
    """An sbatch option `omni-run submit` cannot use; the message names the option and what to give."""


@dataclass(frozen=True)
class SlurmJob:
    """One training run as a SLURM batch job. Paths are absolute: the job runs wherever SLURM puts it."""

    run_dir: Path
    recipe: Path
    workdir: Path
    job_name: str
    train_options: tuple[str, ...] = ()  # `omni-run train` options after RECIPE: --set ..., --capabilities ...
    nodes: int = 1
    gpus_per_node: int = 1
    time_limit: str | None = None
    partition: str | None = None
    account: str | None = None
    cpus_per_task: int | None = None
    preempt_grace_s: int = DEFAULT_PREEMPT_GRACE_S

    @property
    def num_processes(self) -> int:
        return self.nodes * self.gpus_per_node

    @property
    def log_pattern(self) -> Path:
        """Where SLURM writes the job's output; `%j` is the job id, the same again after a requeue."""
        return RunDir(self.run_dir).slurm / "%j.out"


def time_limit_seconds(text: str) -> int:
    """SLURM's `--time` in seconds; raises SlurmOptionError for a form sbatch would not take."""
    match = _TIME_LIMIT.fullmatch(text.strip())
    if not match:
        raise SlurmOptionError(f"--time {text!r} is not a SLURM time limit; give minutes or HH:MM:SS or D-HH:MM:SS")
    days, first, second, third = (int(part) if part else None for part in match.groups())
    if days is not None:  # D-H, D-H:M, D-H:M:S
        return days * 86400 + first * 3600 + (second or 0) * 60 + (third or 0)
    if third is not None:  # H:M:S
        return first * 3600 + second * 60 + third
    return first * 60 + (second or 0)  # M or M:S


def check_job(job: SlurmJob) -> None:
    """Refuse counts and times that would make a job SLURM rejects or one that is requeued at once."""
    for name, value in (("--nodes", job.nodes), ("--gpus-per-node", job.gpus_per_node),
                        ("--cpus-per-task", job.cpus_per_task)):
        if value is not None and value < 1:
            raise SlurmOptionError(f"{name} {value}: give 1 or more")
    if job.preempt_grace_s < 0:
        raise SlurmOptionError(f"--preempt-grace {job.preempt_grace_s}: give the seconds before the time limit, 0 or more")
    if job.time_limit is not None:
        limit = time_limit_seconds(job.time_limit)
        if job.preempt_grace_s >= limit:
            raise SlurmOptionError(
                f"--preempt-grace {job.preempt_grace_s} s is not shorter than --time {job.time_limit} ({limit} s): the job "
                "would be told to checkpoint and requeue as soon as it starts; give a longer --time or a shorter grace")


def _directives(job: SlurmJob) -> list[str]:
    options = [
        ("job-name", job.job_name),
        ("nodes", str(job.nodes)),
        ("ntasks-per-node", "1"),  # one omni-run per node; it starts one process per GPU itself
        ("gpus-per-node", str(job.gpus_per_node)),
        ("cpus-per-task", None if job.cpus_per_task is None else str(job.cpus_per_task)),
        ("time", job.time_limit),
        ("partition", job.partition),
        ("account", job.account),
        ("chdir", str(job.workdir)),
        ("output", str(job.log_pattern)),
        ("open-mode", "append"),  # a requeued job keeps the same id, so its log continues
        ("requeue", ""),
        ("signal", f"B:{PREEMPT_SIGNAL}@{job.preempt_grace_s}"),
    ]
    return [f"#SBATCH --{name}={value}" if value else f"#SBATCH --{name}"
            for name, value in options if value is not None]


def train_command(job: SlurmJob) -> list[str]:
    """The first start of the run, in the folder chosen at submission."""
    return ["omni-run", "train", str(job.recipe), "--run-dir", str(job.run_dir), *job.train_options]


def resume_command(job: SlurmJob) -> list[str]:
    """Every later start (after a requeue): continue from the newest checkpoint, in the foreground."""
    return ["omni-run", "resume", str(job.run_dir)]


def node_launch(job: SlurmJob, command: list[str]) -> str:
    """How the run starts on the job's nodes, in the background of the batch shell, so the shell can
    handle signals while it runs (a shell runs no trap until its foreground command ends).

    One node runs `command` itself. Several run one task a node through `srun`: node 0 runs `command`
    (it starts or resumes the run and reports it), every other node joins it with its SLURM node id as
    its machine rank; srun passes the shell's SIGTERM on to all of them.
    """
    if job.nodes == 1:
        return f"{shlex.join(command)} &"
    join = ["omni-run", "join", str(job.run_dir), "--machine-rank"]
    per_node = f'if [ "$SLURM_NODEID" -eq 0 ]; then exec {shlex.join(command)}; else exec {shlex.join(join)} "$SLURM_NODEID"; fi'
    return f"srun --ntasks-per-node=1 --kill-on-bad-exit=0 bash -c {shlex.quote(per_node)} &"


def sbatch_script(job: SlurmJob) -> str:
    """The batch script: SBATCH directives, the signal traps, one omni-run, and the requeue decision."""
    check_job(job)
    run = shlex.quote(str(job.run_dir))
    return "\n".join([
        "#!/bin/bash",
        f"# Written by `omni-run submit --slurm` for the run in {job.run_dir} (docs/slurm.md).",
        *_directives(job),
        "",
        f"# SIG{PREEMPT_SIGNAL} comes from SLURM to this shell alone, {job.preempt_grace_s} s before the time limit:",
        "# omni-run checkpoints and stops on SIGTERM, then the job is requeued and continues the run.",
        "# SIGTERM (scancel, preemption) reaches omni-run from SLURM itself: it checkpoints and stops; this script",
        "# does not requeue the job (SLURM requeues a preempted job itself where the cluster is set up to).",
        "set -u",
        f"run={run}",
        "requeue=no",
        "omni_run_pid=",
        "checkpoint_and_requeue() {",
        "  requeue=yes",
        f'  echo "omni-run submit: SIG{PREEMPT_SIGNAL} from SLURM: checkpointing, then requeueing job ${{SLURM_JOB_ID:-}}"',
        '  if [ -n "$omni_run_pid" ]; then kill -TERM "$omni_run_pid" 2>/dev/null; fi',
        "}",
        "cancelled() {",
        "  requeue=no",
        '  echo "omni-run submit: SIGTERM from SLURM (scancel, preemption): omni-run checkpoints and stops; no requeue from here"',
        "}",
        f"trap checkpoint_and_requeue {PREEMPT_SIGNAL}",
        "trap cancelled TERM",
        "",
        *(["# Machine 0 of the run is the allocation's first node, looked up at every start (a requeued job may get others).",
           f'export {MAIN_PROCESS_IP_ENV}="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"']
          if job.nodes > 1 else []),
        'if [ -e "$run/status.json" ]; then',
        f"  {node_launch(job, resume_command(job))}",
        "else",
        f"  {node_launch(job, train_command(job))}",
        "fi",
        "omni_run_pid=$!",
        'if [ "$requeue" = yes ]; then kill -TERM "$omni_run_pid" 2>/dev/null; fi  # the signal came before the pid',
        "# A trapped signal ends `wait` early: wait again while omni-run runs.",
        'wait "$omni_run_pid"; code=$?',
        'while kill -0 "$omni_run_pid" 2>/dev/null; do wait "$omni_run_pid"; code=$?; done',
        "# bash loses the exit status of a child that ends as a trapped signal arrives; the run's status says how it ended.",
        'if [ "$code" -gt 128 ] && grep -Eqs \'"state": *"(stopped|finished)"\' "$run/status.json"; then code=0; fi',
        "# Requeue a run that stopped cleanly, not one that finished (the signal may come at its very end).",
        'if [ "$requeue" = yes ] && [ "$code" -eq 0 ] && grep -qs \'"state": *"stopped"\' "$run/status.json"; then',
        '  scontrol requeue "$SLURM_JOB_ID"',
        "fi",
        'exit "$code"',
        "",
    ])


def submitted_job_id(sbatch_output: str) -> str | None:
    """The job id in sbatch's "Submitted batch job N" line, or None when it is not there."""
    match = _SUBMITTED.search(sbatch_output)
    return match.group(1) if match else None
