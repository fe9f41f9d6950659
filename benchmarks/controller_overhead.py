"""What steering costs a training step: the controller and telemetry on, against both off.

One tiny run, one process, the same model, and the same micro-batches replayed in the same order in
every block (so packed lengths, the main source of step-time variance, are identical). Blocks of optimizer steps alternate
between "off" (the bare `train_step`) and "on" (`train_step`, then `controller.at_step_boundary` with
the telemetry thread sampling every 0.5 s — four times the default rate). Alternating blocks cancel the
drift of a shared machine; the medians of per-step times are compared. Goal: at most 1 % apart.

    python benchmarks/controller_overhead.py [--blocks 6] [--steps 8]
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from replay import Replay  # noqa: E402
from report import block_parser, machine_summary, update_section  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
GOAL = 0.01


def main() -> int:
    parser = block_parser(__doc__, blocks=6, steps=8)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]  # the medians are only as quiet as the machine was

    from omni_runner.control.telemetry import TelemetrySampler
    from omni_runner.run.prepare import prepare_run
    from omni_runner.train.loop import Trainer

    total = 2 * args.blocks * args.steps + 4
    overrides = [f"training.max_steps={total}", "training.micro_batch=1", "eval.at_end=false",
                 "controller.checkpoint.every_steps=0", "controller.cooldown.every_steps=0",
                 "controller.telemetry.interval_s=0.5"]
    with tempfile.TemporaryDirectory() as tmp:
        run = prepare_run(REPO / "recipes" / "tiny_omni.yaml", overrides, None, run_dir=Path(tmp) / "run")
        trainer = Trainer(run, resume=False)
        trainer.setup()
        controller = trainer.controller
        controller.telemetry = None  # started per "on" block below
        controller.start()
        stage = trainer.stages[0]
        trainer.batches = Replay([next(trainer.batches) for _ in range(args.steps)], trainer.batches.packing)
        for _ in range(args.steps):  # warm-up: the first steps build CPU kernels
            trainer.train_step(stage)
        timings: dict[str, list[float]] = {"off": [], "on": []}
        for _ in range(args.blocks):
            for mode in ("off", "on"):
                sampler = None
                if mode == "on":
                    sampler = TelemetrySampler(0.5, controller._emit_telemetry)  # noqa: SLF001
                    controller.telemetry = sampler
                    sampler.start()
                for _ in range(args.steps):
                    started = time.perf_counter()
                    trainer.train_step(stage)
                    trainer.progress.step += 1
                    if mode == "on":
                        controller.at_step_boundary(trainer.progress.step, trainer.save_checkpoint)
                    timings[mode].append(time.perf_counter() - started)
                if sampler is not None:
                    sampler.stop()
                    controller.telemetry = None
        controller.close("stopped", "benchmark done")

    off, on = statistics.median(timings["off"]), statistics.median(timings["on"])
    overhead = on / off - 1
    verdict = "meets" if overhead <= GOAL else "misses"
    print(f"median step, controller+telemetry off: {off * 1000:.1f} ms")
    print(f"median step, controller+telemetry on:  {on * 1000:.1f} ms")
    print(f"overhead: {overhead:+.2%} (goal ≤ {GOAL:.0%}: {verdict})")
    if not args.no_record:
        update_section("controller_overhead", f"""
## Controller and telemetry overhead

`python benchmarks/controller_overhead.py --blocks {args.blocks} --steps {args.steps}` on {machine_summary()}:
tiny recipe, micro-batch 1, blocks of {args.steps} optimizer steps alternating off/on, telemetry sampling
every 0.5 s in the "on" blocks. 1-minute load average of the machine: {load_before:.1f} at the start,
{os.getloadavg()[0]:.1f} at the end.

| | median step |
|---|---|
| controller + telemetry off | {off * 1000:.1f} ms |
| controller + telemetry on | {on * 1000:.1f} ms |
| overhead | {overhead:+.2%} (goal ≤ {GOAL:.0%}: {verdict}) |

The boundary check is a few dictionary operations and a non-blocking queue poll; telemetry samples in
its own thread. Every block replays the same micro-batches, so what remains between the medians is the controller, the
telemetry thread, and the noise of the machine.
""")
    return 0


if __name__ == "__main__":
    sys.exit(main())
