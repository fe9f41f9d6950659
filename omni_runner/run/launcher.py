"""How the supervisor starts the trainer, and how it learns which rank failed when several run.

One process runs as `python -m omni_runner.train RUN`. Several (`distributed.world_size` > 1 in the
plan) run under `accelerate launch` with a config file written into the run folder
(`accelerate.json`, or `accelerate-machine-K.json` on machine K of several); accelerate hands them to
torch's elastic launcher (torchrun), which starts this machine's trainers, on CPUs as on GPUs, meets
the other machines' launchers at `main_process_ip:main_process_port`, and stops its trainers when one
fails. The launcher then prints
a "Root Cause (first observed failure)" report with the rank, host, pid and exit code of the rank
that failed first; `first_rank_failure` reads it from the trainer log.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
from dataclasses import dataclass
from typing import Any

from omni_runner.run.rundir import RunDir

LAUNCH_CONFIG_FILE = "accelerate.json"
# Machine 0's address when the job scheduler picks the machines (`omni-run submit --slurm` sets it at every
# start); it overrides distributed.main_process_ip, which a requeued job's new allocation would make stale.
MAIN_PROCESS_IP_ENV = "OMNI_RUNNER_MAIN_PROCESS_IP"


def _section(plan: dict[str, Any]) -> dict[str, Any]:
    return plan["distributed"] if isinstance(plan.get("distributed"), dict) else {}


def world_size(plan: dict[str, Any]) -> int:
    """The number of trainer processes the plan asks for, over all machines (1 when it says nothing)."""
    size = _section(plan).get("world_size", 1)
    return size if isinstance(size, int) and size > 1 else 1


def num_machines(plan: dict[str, Any]) -> int:
    machines = _section(plan).get("num_machines", 1)
    return machines if isinstance(machines, int) and machines > 1 else 1


def launch_config(plan: dict[str, Any], port: int, machine_rank: int = 0, main_ip: str | None = None) -> dict[str, Any]:
    """accelerate's config for machine `machine_rank`'s share of the plan's processes.

    On one machine the processes meet on 127.0.0.1 at `port` (a free one); several machines meet at
    `main_ip` (else the plan's `main_process_ip`) and `main_process_port`, which machine 0 listens on. `MULTI_GPU` selects
    accelerate's torchrun launcher, which starts CPU trainers as well (they join the process group
    over gloo); the launcher's own mixed precision stays off because the trainer sets its precision
    from the recipe.
    """
    machines = num_machines(plan)
    section = _section(plan)
    return {
        "compute_environment": "LOCAL_MACHINE",
        "distributed_type": "MULTI_GPU",
        "num_processes": world_size(plan),
        "num_machines": machines,
        "machine_rank": machine_rank,
        "main_process_ip": (main_ip or section["main_process_ip"]) if machines > 1 else "127.0.0.1",
        "main_process_port": int(section["main_process_port"]) if machines > 1 else port,
        "rdzv_backend": "static",
        "same_network": True,
        "mixed_precision": "no",
        "use_cpu": False,
    }


def free_port() -> int:
    """A TCP port nobody listens on now, so two runs on one machine never share a rendezvous."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def trainer_command(run: RunDir, plan: dict[str, Any], resume: bool, machine_rank: int = 0) -> list[str]:
    """The command line of one trainer start on machine `machine_rank` (writing the launcher's config
    when there are several processes)."""
    train = ["-m", "omni_runner.train", str(run.path), *(["--resume"] if resume else [])]
    if world_size(plan) == 1:
        return [sys.executable, *train]
    name = LAUNCH_CONFIG_FILE if machine_rank == 0 else LAUNCH_CONFIG_FILE.replace(".json", f"-machine-{machine_rank}.json")
    config = run.path / name
    config.write_text(json.dumps(launch_config(plan, free_port(), machine_rank, os.environ.get(MAIN_PROCESS_IP_ENV)),
                                 indent=2) + "\n")
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config), *train]


@dataclass(frozen=True)
class RankFailure:
    """The rank that failed first, as the launcher reports it."""

    rank: int
    host: str
    pid: int | None
    exit_code: int  # negative: killed by that signal


_ROOT_CAUSE = "Root Cause (first observed failure)"
_FIELDS = {
    "rank": re.compile(r"^\s*rank\s*:\s*(\d+)", re.MULTILINE),
    "host": re.compile(r"^\s*host\s*:\s*(\S+)", re.MULTILINE),
    "exit_code": re.compile(r"^\s*exitcode\s*:\s*(-?\d+)", re.MULTILINE),
    "pid": re.compile(r"^\s*exitcode\s*:.*\(pid:\s*(\d+)\)", re.MULTILINE),
}


def first_rank_failure(log_tail: str) -> RankFailure | None:
    """The launcher's root-cause report at the end of `log_tail`, or None when it has none."""
    start = log_tail.rfind(_ROOT_CAUSE)
    if start < 0:
        return None
    report = log_tail[start:]
    found = {name: pattern.search(report) for name, pattern in _FIELDS.items()}
    if not (found["rank"] and found["exit_code"]):
        return None
    return RankFailure(
        rank=int(found["rank"].group(1)),
        host=found["host"].group(1) if found["host"] else "unknown host",
        pid=int(found["pid"].group(1)) if found["pid"] else None,
        exit_code=int(found["exit_code"].group(1)),
    )


def rank_lines(log: str, rank: int) -> str:
    """What rank `rank` printed, from a log where the launcher prefixes every rank's lines `[rankN]:`."""
    prefix = f"[rank{rank}]:"
    return "\n".join(line[len(prefix):].lstrip() for line in log.splitlines() if line.startswith(prefix))
