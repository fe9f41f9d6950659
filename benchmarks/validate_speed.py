"""How much `omni-run validate` costs on top of starting Python, measured side by side.

Runs `omni-run validate RECIPE` (the console script next to this interpreter, else the same
entry point through `-c`) and `python -c pass` alternately, and reports the medians, their
difference and ratio. The goal is under 0.3 s above interpreter start: recipe checks must be
cheap enough for pre-commit hooks and editor integrations.

    python benchmarks/validate_speed.py [--recipe recipes/full_omni.yaml] [--repeat 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine_summary, update_section  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
GOAL_S = 0.3


def omni_run_command() -> list[str]:
    script = Path(sys.executable).with_name("omni-run")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from omni_runner.cli import main; sys.exit(main())"]


def wall_time(command: list[str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed (exit {result.returncode}):\n{result.stderr}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="recipes/full_omni.yaml", help="recipe to validate (default %(default)s)")
    parser.add_argument("--repeat", type=int, default=15, help="runs of each command (default %(default)s)")
    parser.add_argument("--no-record", action="store_true", help="print only; leave docs/performance.md alone")
    args = parser.parse_args()

    validate = [*omni_run_command(), "validate", args.recipe]
    baseline = [sys.executable, "-c", "pass"]
    wall_time(validate)  # warm the file cache and byte-code before timing
    samples: dict[str, list[float]] = {"validate": [], "baseline": []}
    for _ in range(args.repeat):  # alternate, so load on the machine hits both alike
        samples["validate"].append(wall_time(validate))
        samples["baseline"].append(wall_time(baseline))
    validate_s = statistics.median(samples["validate"])
    baseline_s = statistics.median(samples["baseline"])
    difference, ratio = validate_s - baseline_s, validate_s / baseline_s
    verdict = "meets" if difference < GOAL_S else "MISSES"

    print(f"omni-run validate {args.recipe}: median {validate_s:.3f} s over {args.repeat} runs")
    print(f"python -c pass:                median {baseline_s:.3f} s")
    print(f"difference {difference:.3f} s, ratio {ratio:.2f}x ({verdict} the goal of < {GOAL_S} s above start-up)")
    load = os.getloadavg()[0]
    if not args.no_record:
        update_section("validate_speed", f"""
## Recipe validation speed

`python benchmarks/validate_speed.py --recipe {args.recipe} --repeat {args.repeat}` on {machine_summary()}
(1-minute load average {load:.1f} when it finished; both commands ran alternately under the same load):

| command | median wall time |
|---|---|
| `omni-run validate {args.recipe}` | {validate_s:.3f} s |
| `python -c pass` | {baseline_s:.3f} s |
| difference | {difference:.3f} s ({verdict} the goal of < {GOAL_S} s) |
| ratio | {ratio:.2f}x |
""")
    return 0


if __name__ == "__main__":
    sys.exit(main())
