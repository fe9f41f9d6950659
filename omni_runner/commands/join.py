"""`omni-run join RUN --machine-rank K`: run machine K's share of a run over several machines.

Machine 0 starts the run as usual (`omni-run RECIPE --run-dir RUN`, its recipe naming
`distributed.num_machines`, `main_process_ip` and `main_process_port`); every other machine joins it
through the same run folder on a shared file system. The joining machine waits for machine 0 to
prepare the folder, then supervises its own trainers under the same plan: their launcher meets machine
0's, their errors go to the run's events, and its restarts follow `controller.restarts` as machine 0's
do. Machine 0's rank 0 reports the run and owns its controller, so the run is watched and steered there.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HELP = "Run this machine's share of a run over several machines that machine 0 started in a shared run folder."

EXIT_ERROR = 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", type=Path, metavar="RUN", help="the run folder machine 0 prepares (on a shared file system)")
    parser.add_argument("--machine-rank", type=int, required=True, metavar="K",
                        help="this machine's rank, 1 to distributed.num_machines - 1")
    parser.add_argument("--wait", type=float, default=600.0, metavar="SECONDS",
                        help="how long to wait for machine 0 to prepare the run folder (default 600)")


def run(args: argparse.Namespace) -> int:
    from omni_runner.run.launcher import num_machines
    from omni_runner.run.rundir import RunDir
    from omni_runner.run.supervisor import read_json_object, supervise

    run_dir = RunDir(args.run)
    if not _wait_for(run_dir.plan, args.wait):
        print(f"error: {run_dir.plan} did not appear within {args.wait:g} s: start the run on machine 0 first "
              f"(`omni-run RECIPE --run-dir {run_dir.path}`), with {run_dir.path} on a file system both machines share",
              file=sys.stderr)
        return EXIT_ERROR
    machines = num_machines(read_json_object(run_dir.plan))
    if not 1 <= args.machine_rank < machines:
        print(f"error: --machine-rank {args.machine_rank} is not a joining machine of this run: its plan has "
              f"distributed.num_machines {machines}, so machines 1 to {machines - 1} join (machine 0 started it)",
              file=sys.stderr)
        return EXIT_ERROR
    print(f"machine {args.machine_rank} of {machines} joins {run_dir.path}; machine 0 reports the run: "
          f"omni-run logs -f {run_dir.path}", flush=True)
    # Always --resume: a first start finds no checkpoint and starts at step 0, as machine 0's ranks do.
    return supervise(run_dir, resume=True, machine_rank=args.machine_rank)


def _wait_for(path: Path, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not path.is_file():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)
    return True
