"""CPU used by the real `omni-tui` attached to a live tiny run, in a real terminal (tmux), over ~20 s.

The dashboard polls the events file in a thread and repaints only what changed, so a person who
leaves it open over SSH for days costs the training machine next to nothing. Goal: under 3 % of a
core. The run is started here (`omni-run recipes/tiny_omni.yaml --detach`) unless --run names one.

    python benchmarks/tui_idle_cpu.py [--seconds 20] [--run RUN_DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine_summary, update_section

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
GOAL_PCT = 3.0
SESSION = f"omni-tui-bench-{os.getpid()}"


def start_tiny_run(runs_dir: Path) -> Path:
    subprocess.run([str(BIN / "omni-run"), str(REPO / "recipes/tiny_omni.yaml"), "--detach", "--runs-dir", str(runs_dir),
                    "--set", "training.max_steps=100000", "--set", "controller.checkpoint.every_steps=100000"],
                   check=True, capture_output=True)
    run = next(p for p in runs_dir.iterdir() if p.is_dir())
    from omni_runner.run.status import read_status

    while not (read_status(run) or {}).get("step"):  # training has begun: events are flowing
        time.sleep(1)
    return run


def tui_pid() -> int:
    """The omni-tui process in the pane; a TUI that died during start-up is shown, not measured."""
    dead, pid = subprocess.run(["tmux", "display-message", "-p", "-t", SESSION, "#{pane_dead} #{pane_pid}"],
                               check=True, capture_output=True, text=True).stdout.split()
    if dead == "1":
        screen = subprocess.run(["tmux", "capture-pane", "-p", "-t", SESSION], capture_output=True, text=True).stdout
        raise SystemExit(f"omni-tui exited during start-up; its pane showed:\n{screen.strip()}")
    return int(pid)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--run", type=Path)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="tui-idle-"))
    run = args.run or start_tiny_run(workdir)
    try:
        subprocess.run(["tmux", "new-session", "-d", "-s", SESSION, "-x", "160", "-y", "48"], check=True)
        subprocess.run(["tmux", "set-option", "-t", SESSION, "remain-on-exit", "on"], check=True)
        subprocess.run(["tmux", "respawn-pane", "-k", "-t", SESSION, f"exec {BIN / 'omni-tui'} attach {run}"], check=True)
        time.sleep(5)  # start-up and first paint are not idle time
        process = psutil.Process(tui_pid())
        before, started = process.cpu_times(), time.monotonic()
        time.sleep(args.seconds)
        after, wall = process.cpu_times(), time.monotonic() - started
        load = os.getloadavg()[0]
        pct = 100 * ((after.user - before.user) + (after.system - before.system)) / wall
    finally:
        subprocess.run(["tmux", "kill-session", "-t", SESSION], capture_output=True)
        if args.run is None:
            from omni_runner.run.status import read_status

            supervisor = (read_status(run) or {}).get("supervisor_pid")
            if supervisor:
                os.kill(supervisor, signal.SIGTERM)
                time.sleep(10)
            shutil.rmtree(workdir, ignore_errors=True)
    verdict = "meets" if pct < GOAL_PCT else "MISSES"
    print(f"omni-tui attached to a live run: {pct:.2f}% of a core over {wall:.0f} s ({verdict} the goal of {GOAL_PCT}%)")
    update_section("tui-idle-cpu", f"""## TUI: CPU while attached to a live run

`python benchmarks/tui_idle_cpu.py` ({machine_summary()}): the real `omni-tui attach` in a 160x48 tmux
pane, following a live tiny CPU run (a step and a telemetry sample every few seconds), measured with
psutil over {wall:.0f} s after start-up; 1-minute load average of the machine then: {load:.1f}.

| omni-tui CPU | goal |
|---|---|
| {pct:.2f}% of a core | under {GOAL_PCT}% ({verdict}) |""")
    return 0


if __name__ == "__main__":
    sys.exit(main())
