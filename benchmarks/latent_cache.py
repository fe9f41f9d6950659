"""Generation steps with cached target latents against encoding every target with the VAE on the fly.

`recipes/tiny_omni_generation.yaml` (image generation, editing and video generation through the tiny SD3
and SVD) trained in child processes that differ only in where the targets' latents come from:
- cached: the latent cache holds every target (filled before timing), so no VAE is ever loaded;
- encoding: the cache is a folder that stays empty, so every step loads the targets' pixels and
  encodes them with the decoders' VAEs, as a run without the cache would.
Children alternate (cached, encoding, cached, ...); each reports its median optimizer-step time and its
peak resident memory (ru_maxrss), so the two are measured side by side in one run.

    python benchmarks/latent_cache.py [--blocks 2] [--steps 8]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import block_parser, machine_summary, update_section  # noqa: E402

from omni_runner.data.generation import LatentCache  # noqa: E402 - light: no torch

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "tiny_omni_generation.yaml"
MODES = ("cached", "encoding")


def _child(mode: str, steps: int, folder: Path) -> dict[str, float]:
    from omni_runner.run.prepare import prepare_run
    from omni_runner.train.loop import Trainer

    run = prepare_run(RECIPE, [f"stages.0.max_steps={steps + 1}", "training.num_workers=0",
                               "controller.checkpoint.every_steps=0"], None, run_dir=folder / "run")
    trainer = Trainer(run, resume=False)
    trainer.setup()
    if mode == "encoding":  # a cache that never holds anything: every target is encoded, every step
        empty = NeverStored(folder / "empty")
        trainer.latents.cache = empty
        trainer.batches.stream.preparer.generation.cache = empty
    trainer.train_step(trainer.stages[0])  # warm-up
    seconds = []
    for _ in range(steps):
        started = time.perf_counter()
        trainer.train_step(trainer.stages[0])
        seconds.append(time.perf_counter() - started)
    trainer.batches.stream.close()
    trainer.controller.close("stopped", "benchmark done")
    trainer.events.close()
    vaes = sum(decoder.vae is not None for decoder in trainer.loaded.generation.decoders.values())
    return {"step_s": statistics.median(seconds), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "vaes_loaded": vaes, **trainer.latents.counts()}


class NeverStored(LatentCache):
    """A latent cache that keeps nothing: every target is a miss, every time (the run without a cache)."""

    def write(self, file: Path, latents: dict) -> None:
        return None


def main() -> int:
    parser = block_parser(__doc__, blocks=2, steps=8)
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(_child(args.child, args.steps, Path(tmp))))
        return 0

    def run_child(mode: str) -> dict[str, float]:
        output = subprocess.run([sys.executable, __file__, "--child", mode, "--steps", str(args.steps)],
                                check=True, capture_output=True, text=True).stdout
        return json.loads(output.strip().splitlines()[-1])

    run_child("cached")  # fills the cache for the cached children (its own figures are not counted)
    results: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    for _ in range(args.blocks):
        for mode in MODES:
            results[mode].append(run_child(mode))
    step = {mode: statistics.median(r["step_s"] for r in results[mode]) for mode in MODES}
    peak = {mode: max(r["peak_rss_mb"] for r in results[mode]) for mode in MODES}
    last = {mode: results[mode][-1] for mode in MODES}
    for mode in MODES:
        print(f"{mode}: {step[mode]:.3f} s a step, peak RSS {peak[mode]:.0f} MB, VAEs loaded {last[mode]['vaes_loaded']}, "
              f"cache hits {last[mode]['hits']}, misses {last[mode]['misses']}")
    print(f"cached/encoding: step time {step['cached'] / step['encoding']:.2f}x, peak memory {peak['cached'] / peak['encoding']:.2f}x")
    if not args.no_record:
        update_section("latent_cache", f"""
## Generation: cached target latents against on-the-fly VAE encoding

`python benchmarks/latent_cache.py --blocks {args.blocks} --steps {args.steps}` on {machine_summary()}:
`recipes/tiny_omni_generation.yaml` (micro-batch 4, image generation, editing and video generation through
the tiny SD3 and SVD), child processes alternating between a full latent cache and an empty one; median
optimizer-step time and peak resident memory of each.

| | s a step | peak RSS (MB) | VAEs loaded | cache hits / misses (last child) |
|---|---|---|---|---|
| cached latents | {step['cached']:.3f} | {peak['cached']:.0f} | {last['cached']['vaes_loaded']} | {last['cached']['hits']} / {last['cached']['misses']} |
| VAE encoding on the fly | {step['encoding']:.3f} | {peak['encoding']:.0f} | {last['encoding']['vaes_loaded']} | {last['encoding']['hits']} / {last['encoding']['misses']} |

Cached / on the fly: step time {step['cached'] / step['encoding']:.2f}x, peak memory {peak['cached'] / peak['encoding']:.2f}x.
The tiny VAEs are small, so the memory saved here is small; with SD3-medium or SVD-xt the VAE's weights
and its encoder's activations at full resolution stay off the card for the whole run.
""")
    return 0


if __name__ == "__main__":
    sys.exit(main())
