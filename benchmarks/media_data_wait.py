"""How long the training step waits on media data: decoding and tokenising inline against DataLoader workers.

Two trainers from `recipes/tiny_omni_media.yaml` in one process, identical but for `training.num_workers`
(0: samples are prepared on the training thread; N: in N worker processes, ahead of the step). Blocks of
real optimizer steps alternate between them; each step reports `data_wait_s`, the part of the step spent
waiting for prepared samples and collating them. Goal: with workers, under 10 % of step time.

    python benchmarks/media_data_wait.py [--workers 1] [--blocks 3] [--steps 10]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import block_parser, machine_summary, update_section  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
GOAL = 0.10


def main() -> int:
    parser = block_parser(__doc__, blocks=3, steps=10)
    parser.add_argument("--workers", type=int, default=1, help="DataLoader workers of the second trainer (default %(default)s)")
    args = parser.parse_args()

    from omni_runner.run.prepare import prepare_run
    from omni_runner.train.loop import Trainer

    total = args.blocks * args.steps + 2
    common = [f"training.max_steps={total}", "eval.at_end=false", "controller.checkpoint.every_steps=0"]
    modes = {"inline": 0, "workers": args.workers}
    waited = dict.fromkeys(modes, 0.0)
    seconds = dict.fromkeys(modes, 0.0)
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {}
        for mode, workers in modes.items():
            run = prepare_run(REPO / "recipes" / "tiny_omni_media.yaml", [*common, f"training.num_workers={workers}"],
                              None, run_dir=Path(tmp) / mode)
            trainers[mode] = Trainer(run, resume=False)
            trainers[mode].setup()
            trainers[mode].train_step(trainers[mode].stages[0])  # warm-up: kernels, and the workers' first samples
        for _ in range(args.blocks):
            for mode, trainer in trainers.items():
                for _ in range(args.steps):
                    started = time.perf_counter()
                    metrics = trainer.train_step(trainer.stages[0])
                    seconds[mode] += time.perf_counter() - started
                    waited[mode] += metrics["data_wait_s"]
        for trainer in trainers.values():
            trainer.batches.stream.close()
            trainer.controller.close("stopped", "benchmark done")
            trainer.events.close()

    share = {mode: waited[mode] / seconds[mode] for mode in modes}
    step = {mode: seconds[mode] / (args.blocks * args.steps) for mode in modes}
    verdict = "meets" if share["workers"] < GOAL else "misses"
    for mode in modes:
        print(f"{mode} ({modes[mode]} workers): {step[mode]:.3f} s a step, waiting on data {share[mode]:.1%}")
    print(f"step time workers/inline: {step['workers'] / step['inline']:.2f}x; goal: wait < {GOAL:.0%} with workers: {verdict}")
    if not args.no_record:
        update_section("media_data_wait", f"""
## Media: the time the step waits on data

`python benchmarks/media_data_wait.py --workers {args.workers} --blocks {args.blocks} --steps {args.steps}` on
{machine_summary()}: `recipes/tiny_omni_media.yaml` (images, videos with their audio track, audio clips;
packed, micro-batch 4, seq_len 256), blocks of {args.steps} real optimizer steps alternating between two
trainers that differ only in `training.num_workers`. `data_wait_s` is the part of each step spent waiting
for prepared samples and collating them.

| | s a step | waiting on data |
|---|---|---|
| inline (0 workers) | {step['inline']:.3f} | {share['inline']:.1%} |
| {args.workers} DataLoader worker(s) | {step['workers']:.3f} | {share['workers']:.1%} |

Goal: under {GOAL:.0%} with workers: {verdict}.
""")
    return 0


if __name__ == "__main__":
    sys.exit(main())
