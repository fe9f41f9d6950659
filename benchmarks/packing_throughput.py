"""Packed against padded training: real (non-pad) tokens per second on the bundled length mix.

Two trainers from the tiny recipe in one process, identical but for `training.packing`: both draw
the same samples in the same mixer order (same seed) and run the real `train_step` (forward,
token-weighted loss, backward, clipping, AdamW). Packed rows hold several samples of at most
`seq_len` tokens behind a block-diagonal mask; padded rows hold one sample each, right-padded to
the longest in the micro-batch. Blocks of steps alternate between the two; only sample tokens
count, never padding. Goal: packed at least 1.5x padded.

    python benchmarks/packing_throughput.py [--blocks 3] [--steps 6]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import block_parser, machine_summary, update_section  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
GOAL = 1.5


def main() -> int:
    parser = block_parser(__doc__, blocks=3, steps=6)
    args = parser.parse_args()

    from omni_runner.run.prepare import prepare_run
    from omni_runner.train.loop import Trainer

    total = args.blocks * args.steps + 2
    common = [f"training.max_steps={total}", "eval.at_end=false", "controller.checkpoint.every_steps=0",
              "controller.cooldown.every_steps=0", "training.grad_accum=1"]
    tokens = {"packed": 0, "padded": 0}
    seconds = {"packed": 0.0, "padded": 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {}
        for mode in ("packed", "padded"):
            run = prepare_run(REPO / "recipes" / "tiny_omni.yaml", [*common, f"training.packing={mode == 'packed'}"],
                              None, run_dir=Path(tmp) / mode)
            trainers[mode] = Trainer(run, resume=False)
            trainers[mode].setup()
            trainers[mode].train_step(trainers[mode].stages[0])  # warm-up: CPU kernels for both shapes
        micro_batch = trainers["packed"].stages[0]["micro_batch"]
        seq_len = trainers["packed"].stages[0]["seq_len"]
        for _ in range(args.blocks):
            for mode, trainer in trainers.items():
                for _ in range(args.steps):
                    started = time.perf_counter()
                    metrics = trainer.train_step(trainer.stages[0])
                    seconds[mode] += time.perf_counter() - started
                    tokens[mode] += metrics["tokens"]
        for trainer in trainers.values():
            trainer.controller.close("stopped", "benchmark done")
            trainer.events.close()

    rate = {mode: tokens[mode] / seconds[mode] for mode in tokens}
    ratio = rate["packed"] / rate["padded"]
    verdict = "meets" if ratio >= GOAL else "misses"
    print(f"packed: {rate['packed']:.0f} tokens/s ({tokens['packed']} tokens in {seconds['packed']:.1f} s)")
    print(f"padded: {rate['padded']:.0f} tokens/s ({tokens['padded']} tokens in {seconds['padded']:.1f} s)")
    print(f"ratio packed/padded: {ratio:.2f}x (goal ≥ {GOAL}x: {verdict})")
    if not args.no_record:
        update_section("packing_throughput", f"""
## Packing: real tokens per second, packed against padded

`python benchmarks/packing_throughput.py --blocks {args.blocks} --steps {args.steps}` on {machine_summary()}:
tiny recipe (its `training.method`), micro-batch {micro_batch}, seq_len {seq_len}, the bundled capability mix in the same mixer
order for both; blocks of {args.steps} real optimizer steps alternating; only sample tokens count.

| | non-pad tokens/s |
|---|---|
| packed (block-diagonal mask) | {rate['packed']:.0f} |
| padded (one sample a row) | {rate['padded']:.0f} |
| ratio | {ratio:.2f}x (goal ≥ {GOAL}x: {verdict}) |
""")
    return 0


if __name__ == "__main__":
    sys.exit(main())
