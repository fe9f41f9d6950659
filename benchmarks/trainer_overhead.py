"""What our training loop costs per step against a plain Hugging Face `transformers.Trainer`.

One process, the tiny recipe's model (same training method, same optimizer settings) and the same micro-batches
(rendered and packed once, collated per step by the same function, replayed in the same order on both sides, so both do identical
model work). Blocks alternate: the whole `Trainer.train()` of omni-runner (data, token-weighted loss
with capability split, clipping, NaN guard, events, status.json, controller boundary) against
`transformers.Trainer.train()` with per-step logging. Per-step times are the gaps between
consecutive step ends; each block's first steps are warm-up and dropped. Goal: at most 3 % slower.

    python benchmarks/trainer_overhead.py [--blocks 2] [--steps 10]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from replay import Replay  # noqa: E402
from report import block_parser, machine_summary, update_section  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
GOAL = 0.03
WARMUP = 2
MODEL_INPUTS = ("input_ids", "attention_mask", "position_ids", "labels")


def ours(run_path: Path, rows: list, steps: int) -> list[float]:
    from omni_runner.run.events import read_events
    from omni_runner.run.rundir import RunDir
    from omni_runner.train.loop import Trainer

    run = RunDir(run_path)
    run.events.unlink(missing_ok=True)
    trainer = Trainer(run, resume=False)
    trainer.setup()
    trainer.batches = Replay(rows, trainer.batches.packing)
    trainer.total_steps = steps
    assert trainer.train() == "finished"
    trainer.controller.close("finished", "benchmark done")
    trainer.events.close()
    ends = [e["elapsed_s"] for e in read_events(run.events) if e["type"] == "step"]
    return [b - a for a, b in zip(ends, ends[1:])][WARMUP:]


def hugging_face(run_path: Path, rows: list, steps: int, collate) -> list[float]:  # noqa: ANN001
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from omni_runner.models.load import load_for_training
    from omni_runner.train.loop import _read_yaml

    recipe = _read_yaml(run_path / "recipe.yaml")
    training = recipe["training"]
    torch.manual_seed(int(training["seed"]))
    loaded = load_for_training(recipe, run_path, "cpu")
    batches = [rows[i % len(rows)] for i in range(steps)]

    class StepEnds(TrainerCallback):
        ends: list[float] = []

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN003
            self.ends.append(time.perf_counter())

    callback = StepEnds()
    arguments = TrainingArguments(
        output_dir=str(run_path / "hf"), max_steps=steps, per_device_train_batch_size=1,
        gradient_accumulation_steps=1, learning_rate=float(training["lr"]), lr_scheduler_type="cosine",
        warmup_steps=int(training["warmup_steps"]), weight_decay=float(training["weight_decay"]),
        max_grad_norm=float(training["max_grad_norm"]), logging_steps=1, save_strategy="no", report_to=[],
        use_cpu=True, dataloader_num_workers=0, remove_unused_columns=False, seed=int(training["seed"]),
        disable_tqdm=True,
    )
    trainer = Trainer(model=loaded.model, args=arguments, train_dataset=batches, callbacks=[callback],
                      data_collator=lambda items: {k: v for k, v in collate(items[0]).items() if k in MODEL_INPUTS})
    trainer.train()
    ends = callback.ends
    return [b - a for a, b in zip(ends, ends[1:])][WARMUP:]


def main() -> int:
    parser = block_parser(__doc__, blocks=2, steps=10)
    parser.add_argument("--micro-batch", type=int, default=2, help="rows a micro-batch (default %(default)s)")
    args = parser.parse_args()

    from omni_runner.run.prepare import prepare_run
    from omni_runner.train.loop import Trainer

    overrides = [f"training.max_steps={args.steps}", f"training.micro_batch={args.micro_batch}",
                 "training.grad_accum=1", "eval.at_end=false", "controller.checkpoint.every_steps=0",
                 "controller.cooldown.every_steps=0"]
    timings: dict[str, list[float]] = {"hf": [], "ours": []}
    with tempfile.TemporaryDirectory() as tmp:
        run = prepare_run(REPO / "recipes" / "tiny_omni.yaml", overrides, None, run_dir=Path(tmp) / "run")
        probe = Trainer(run, resume=False)
        probe.setup()  # only to draw the micro-batches once, exactly as a run would
        packing = probe.batches.packing
        rows = [next(probe.batches) for _ in range(args.steps)]
        collate = probe._collate  # noqa: SLF001  (the same collation on both sides)
        probe.controller.close("stopped", "benchmark set-up")
        probe.events.close()
        for _ in range(args.blocks):
            timings["hf"] += hugging_face(run.path, rows, args.steps, collate)
            timings["ours"] += ours(run.path, rows, args.steps)

    hf, us = statistics.median(timings["hf"]), statistics.median(timings["ours"])
    overhead = us / hf - 1
    verdict = "meets" if overhead <= GOAL else "misses"
    print(f"median step, transformers.Trainer: {hf * 1000:.1f} ms")
    print(f"median step, omni-runner loop:     {us * 1000:.1f} ms")
    print(f"ratio ours/HF: {us / hf:.3f} (overhead {overhead:+.2%}, goal ≤ {GOAL:.0%}: {verdict})")
    if not args.no_record:
        update_section("trainer_overhead", f"""
## Training loop against a plain Hugging Face Trainer

`python benchmarks/trainer_overhead.py --blocks {args.blocks} --steps {args.steps} --micro-batch {args.micro_batch}`
on {machine_summary()}: tiny recipe (its `training.method`, {"packed" if packing else "padded"} rows of ≤ 512 tokens, micro-batch
{args.micro_batch}), the same micro-batches replayed in the same order on both sides, blocks alternating,
the first {WARMUP} steps of every block dropped.

| | median step |
|---|---|
| `transformers.Trainer` (logging every step) | {hf * 1000:.1f} ms |
| omni-runner loop (events, status.json, controller, capability losses) | {us * 1000:.1f} ms |
| ratio | {us / hf:.3f} (overhead {overhead:+.2%}, goal ≤ {GOAL:.0%}: {verdict}) |
""")
    return 0


if __name__ == "__main__":
    sys.exit(main())
