"""Soak: SIGKILL checkpoint writes (and, optionally, whole training runs) at seeded random moments.

Each write trial forks a process that writes real checkpoints back to back and kills it after a random
0-1 s, then checks that resume would pick a complete checkpoint holding exactly what its step wrote
(tests/train/checkpoint_writer.py; the suite runs 20 such trials). Each run trial trains the tiny
model (recipes/tiny_omni.yaml, 6 steps, a checkpoint every 2), SIGKILLs the trainer at a random moment
after its first checkpoint, resumes it, and compares every later step's loss with an uninterrupted run.
The result goes into docs/reliability.md.

    python benchmarks/kill_soak.py [--writes 200] [--runs 0] [--seed 20261202] [--no-record]
"""

from __future__ import annotations

import argparse
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(REPO / "tests" / "train"))
from checkpoint_writer import check_after_kill, kill_writer_at_random  # noqa: E402
from report import machine_summary, update_section  # noqa: E402

RELIABILITY_PAGE = REPO / "docs" / "reliability.md"
SMALL = ["training.method=lora", "training.max_steps=6", "training.micro_batch=1", "training.warmup_steps=2",
         "controller.checkpoint.every_steps=2", "controller.checkpoint.keep_last=5", "eval.at_end=false"]


def write_trials(count: int, rng: random.Random, folder: Path) -> dict[str, int]:
    outcome = {"resumable": 0, "nothing_yet": 0, "wrong": 0}
    for trial in range(count):
        run_dir = folder / f"write-{trial}"
        kill_writer_at_random(run_dir, rng)
        try:
            outcome["nothing_yet" if check_after_kill(run_dir) is None else "resumable"] += 1
        except AssertionError as error:
            outcome["wrong"] += 1
            print(f"write trial {trial}: {error}", file=sys.stderr)
    return outcome


def _losses(run) -> dict[int, float]:
    from omni_runner.run.events import read_events

    return {e["step"]: e["loss"] for e in read_events(run.events) if e["type"] == "step"}


def _trainer(run, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "omni_runner.train", str(run.path), *args],
                            stdout=open(run.trainer_log, "ab"), stderr=subprocess.STDOUT)


def run_trials(count: int, rng: random.Random, folder: Path) -> dict[str, int]:
    from omni_runner.run.prepare import prepare_run
    from omni_runner.train.checkpoint import find_resumable, step_of

    recipe = REPO / "recipes" / "tiny_omni.yaml"
    reference = prepare_run(recipe, SMALL, None, run_dir=folder / "reference")
    assert _trainer(reference).wait() == 0
    expected = _losses(reference)
    outcome = {"equal": 0, "different": 0, "no_checkpoint": 0}
    for trial in range(count):
        run = prepare_run(recipe, SMALL, None, run_dir=folder / f"run-{trial}")
        process = _trainer(run)
        while find_resumable(run.path) is None and process.poll() is None:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 1.0))
        process.send_signal(signal.SIGKILL)
        process.wait()
        found = find_resumable(run.path)
        if found is None:
            outcome["no_checkpoint"] += 1
            continue
        _trainer(run, "--resume").wait()
        later = range(step_of(found) + 1, 7)
        got = _losses(run)
        outcome["equal" if all(got.get(s) == expected[s] for s in later) else "different"] += 1
    return outcome


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=200, help="checkpoint-write kill trials (default %(default)s)")
    parser.add_argument("--runs", type=int, default=0, help="trainer kill-and-resume trials (default %(default)s; ~25 s each)")
    parser.add_argument("--seed", type=int, default=20261202)
    parser.add_argument("--no-record", action="store_true", help="print only; leave docs/reliability.md alone")
    args = parser.parse_args()
    import torch  # noqa: F401 - loaded before the forks, so every writer starts writing at once

    rng = random.Random(args.seed)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        writes = write_trials(args.writes, rng, Path(tmp))
        runs = run_trials(args.runs, rng, Path(tmp)) if args.runs else None
    minutes = (time.monotonic() - started) / 60
    print(f"write trials: {writes}")
    if runs:
        print(f"run trials: {runs}")
    if not args.no_record:
        run_row = (f"| trainer SIGKILLed after its first checkpoint, then resumed | {args.runs} | losses equal the "
                   f"uninterrupted run's in {runs['equal']}, differ in {runs['different']}; no checkpoint yet in "
                   f"{runs['no_checkpoint']} | {runs['different']} runs |\n") if runs else ""
        update_section("kill_soak", f"""
### Soak: `python benchmarks/kill_soak.py --writes {args.writes} --runs {args.runs} --seed {args.seed}`

On {machine_summary()}, {minutes:.1f} minutes.

| fault | trials | what happened | lost |
|---|---|---|---|
| checkpoint writer SIGKILLed at a random 0-1 s | {args.writes} | resume picked a complete checkpoint holding its step's exact weights in {writes['resumable']}; no checkpoint complete yet in {writes['nothing_yet']}; a wrong or half-written one chosen in {writes['wrong']} | {writes['wrong']} checkpoints |
{run_row}""", page=RELIABILITY_PAGE)
    return 0 if writes["wrong"] == 0 and (runs is None or runs["different"] == 0) else 1


if __name__ == "__main__":
    sys.exit(main())
