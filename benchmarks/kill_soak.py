"""Soak: SIGKILL checkpoint writes and trainers at seeded random moments.

Each write trial forks a process that writes real checkpoints back to back and kills it after a random
0-1 s, then checks that resume would pick a complete checkpoint holding exactly what its step wrote
(tests/train/checkpoint_writer.py; the suite runs 20 such trials). Each run trial trains the tiny
model (recipes/tiny_omni.yaml, 6 steps, a checkpoint every 2), SIGKILLs the trainer at a random moment
after its first checkpoint, resumes it, and compares every later step's loss with an uninterrupted run.

The trainer-kill chain costs one start-up a kill, not a whole run: one run of the tiny model (LoRA, a
checkpoint every step, 3 steps a kill) is SIGKILLed at a seeded random moment (15% during start-up,
30% within 50 ms of a checkpoint write starting, the rest 0-3 steps after its first step), resumed with
`--resume`, killed again, and so on; after the last kill it runs to the end. After every kill the
checkpoint resume would choose must verify and load, and at the end every step loss the chain logged
(recomputed steps included) must equal the uninterrupted run's. The result goes into docs/reliability.md.

    python benchmarks/kill_soak.py [--writes 200] [--runs 0] [--trainer-kills 0] [--seed 20261202] [--no-record]
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


CHAIN = ["training.method=lora", "training.micro_batch=1", "training.warmup_steps=2",
         "controller.checkpoint.every_steps=1", "controller.checkpoint.keep_last=3", "eval.at_end=false"]
STARTUP_KILL_SHARE = 0.15  # kills that land while the trainer is still starting (loading, resuming)
WRITE_KILL_SHARE = 0.3  # kills aimed inside a checkpoint write: at most 50 ms after its folder appears


def _step_events(run, offset: int) -> list[dict]:
    """Step events written after byte `offset` of the run's events file."""
    from omni_runner.run.tail import EventTail

    return [e for e in EventTail(run.events, start_offset=offset).read_new().events if e["type"] == "step"]


def _temporaries(run) -> set[str]:
    folder = run.path / "checkpoints"
    return {p.name for p in folder.glob(".tmp-*")} if folder.is_dir() else set()


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def trainer_kill_chain(kills: int, rng: random.Random, folder: Path) -> dict[str, int]:
    from omni_runner.run.prepare import prepare_run
    from omni_runner.train.checkpoint import find_resumable, load_checkpoint

    recipe = REPO / "recipes" / "tiny_omni.yaml"
    steps = 3 * kills + 10
    overrides = [*CHAIN, f"training.max_steps={steps}"]
    reference = prepare_run(recipe, overrides, None, run_dir=folder / "chain-reference")
    spawned = time.time()
    assert _trainer(reference).wait() == 0, reference.trainer_log.read_text()[-2000:]
    reference_steps = _step_events(reference, 0)
    expected = {e["step"]: e["loss"] for e in reference_steps}
    startup_s = reference_steps[0]["t"] - spawned
    step_s = (reference_steps[-1]["t"] - reference_steps[0]["t"]) / max(1, len(reference_steps) - 1)

    run = prepare_run(recipe, overrides, None, run_dir=folder / "chain")
    outcome = {"kills": 0, "in_startup": 0, "in_write": 0, "no_checkpoint": 0, "wrong": 0, "ended_alone": 0,
               "compared": 0, "equal": 0, "different": 0, "finished": 0}
    for trial in range(kills):
        offset, before = _size(run.events), _temporaries(run)
        process = _trainer(run, "--resume")
        moment = rng.random()
        if moment < STARTUP_KILL_SHARE:
            time.sleep(rng.uniform(0.0, startup_s))
        elif moment < STARTUP_KILL_SHARE + WRITE_KILL_SHARE:
            while not _temporaries(run) - before and process.poll() is None:
                time.sleep(0.002)
            time.sleep(rng.uniform(0.0, 0.05))
        else:
            while not _step_events(run, offset) and process.poll() is None:
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 3 * step_s))
        if process.poll() is not None:  # ended before this kill: at the run's end the chain is over
            if process.returncode == 0 and max((e["step"] for e in _step_events(run, 0)), default=0) == steps:
                break
            outcome["ended_alone"] += 1  # a crash, or the kernel's OOM killer: say so, and go on resuming
            print(f"chain trial {trial}: the trainer ended by itself (exit {process.returncode}) before the kill:\n"
                  + run.trainer_log.read_text()[-1500:], file=sys.stderr)
            continue
        process.send_signal(signal.SIGKILL)
        process.wait()
        outcome["kills"] += 1
        outcome["in_startup"] += not _step_events(run, offset)
        outcome["in_write"] += bool(_temporaries(run) - before)
        found = find_resumable(run.path)
        if found is None:
            outcome["no_checkpoint"] += 1
            continue
        try:
            load_checkpoint(found)
        except Exception as error:  # noqa: BLE001 - any failure to load the chosen checkpoint is the finding
            outcome["wrong"] += 1
            print(f"chain kill {trial}: {found} was chosen but does not load: {error}", file=sys.stderr)
    outcome["finished"] = int(_trainer(run, "--resume").wait() == 0)
    logged = _step_events(run, 0)
    outcome["compared"] = len(logged)
    outcome["equal"] = sum(e["loss"] == expected.get(e["step"]) for e in logged)
    outcome["different"] = outcome["compared"] - outcome["equal"]
    if not outcome["finished"] or max((e["step"] for e in logged), default=0) != steps:
        print(f"the chain did not finish its {steps} steps; see {run.trainer_log}", file=sys.stderr)
        outcome["finished"] = 0
    return outcome


def _chain_row(kills: int, chain: dict[str, int]) -> str:
    return (f"| trainer SIGKILLed at a random moment (start-up, a step or a checkpoint write), resumed with "
            f"`--resume`, killed again, as one chain | {chain['kills']} of {kills} | {chain['in_write']} kills fell "
            f"inside a checkpoint write, {chain['in_startup']} in start-up; resume chose a checkpoint that did not "
            f"load in {chain['wrong']}, had none yet in {chain['no_checkpoint']}; a trainer ended by itself before its "
            f"kill {chain['ended_alone']} times; the run "
            f"{'finished' if chain['finished'] else 'did NOT finish'}, and {chain['equal']} of {chain['compared']} "
            f"logged step losses (recomputed steps included) equal the uninterrupted run's, {chain['different']} "
            f"differ | {chain['wrong']} checkpoints |\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=200, help="checkpoint-write kill trials (default %(default)s)")
    parser.add_argument("--runs", type=int, default=0, help="trainer kill-and-resume trials (default %(default)s; ~25 s each)")
    parser.add_argument("--trainer-kills", type=int, default=0,
                        help="trainer kills in one kill-resume chain (default %(default)s; ~one start-up each)")
    parser.add_argument("--seed", type=int, default=20261202)
    parser.add_argument("--no-record", action="store_true", help="print only; leave docs/reliability.md alone")
    args = parser.parse_args()
    import torch  # noqa: F401 - loaded before the forks, so every writer starts writing at once

    rng = random.Random(args.seed)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        writes = write_trials(args.writes, rng, Path(tmp))
        runs = run_trials(args.runs, rng, Path(tmp)) if args.runs else None
        chain = trainer_kill_chain(args.trainer_kills, rng, Path(tmp)) if args.trainer_kills else None
    minutes = (time.monotonic() - started) / 60
    print(f"write trials: {writes}")
    if runs:
        print(f"run trials: {runs}")
    if chain:
        print(f"trainer-kill chain: {chain}")
    if not args.no_record:
        write_row = (f"| checkpoint writer SIGKILLed at a random 0-1 s | {args.writes} | resume picked a complete "
                     f"checkpoint holding its step's exact weights in {writes['resumable']}; no checkpoint complete "
                     f"yet in {writes['nothing_yet']}; a wrong or half-written one chosen in {writes['wrong']} | "
                     f"{writes['wrong']} checkpoints |\n") if args.writes else ""
        run_row = (f"| trainer SIGKILLed after its first checkpoint, then resumed | {args.runs} | losses equal the "
                   f"uninterrupted run's in {runs['equal']}, differ in {runs['different']}; no checkpoint yet in "
                   f"{runs['no_checkpoint']} | {runs['different']} runs |\n") if runs else ""
        chain_row = _chain_row(args.trainer_kills, chain) if chain else ""
        update_section("kill_soak", f"""
### Soak: `python benchmarks/kill_soak.py --writes {args.writes} --runs {args.runs} --trainer-kills {args.trainer_kills} --seed {args.seed}`

On {machine_summary()}, {minutes:.1f} minutes.

| fault | trials | what happened | lost |
|---|---|---|---|
{write_row}{run_row}{chain_row}""", page=RELIABILITY_PAGE)
    chain_ok = chain is None or (chain["wrong"] == 0 and chain["different"] == 0 and chain["finished"])
    return 0 if writes["wrong"] == 0 and (runs is None or runs["different"] == 0) and chain_ok else 1


if __name__ == "__main__":
    sys.exit(main())
