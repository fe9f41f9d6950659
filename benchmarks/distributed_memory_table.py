"""Which distributed strategy suits which model on which cards: the planner's per-device estimates.

    python benchmarks/distributed_memory_table.py [--seq-len 4096]

Prints the markdown table in docs/distributed.md. Each row compiles a one-capability text recipe (the
thinker trains; the towers, talker and token2wav stay unloaded) with `--set` overrides for the method
and sequence length, on one process, planned from the known-architecture table (no weights are
read). Then the real estimator (omni_runner.plan.fit.estimate) gives one device's peak under each
strategy at 1, 2, 4 and 8 processes, at micro_batch 1 with gradient checkpointing on. Refused
strategies are estimated the same way: the estimate says what sharding would need, not that it runs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from omni_runner.plan import compile_plan
from omni_runner.plan.fit import Shape, estimate
from omni_runner.plan.memory import GIB, STRATEGY_SHARDS, sharding
from omni_runner.recipe import load_recipe

# One text capability: the thinker trains; the towers, talker and token2wav stay unloaded. The model is
# planned from the known-architecture table (its folder is absent); the table judges the fit card by card.
RECIPE = """\
name: distributed-table
base_model: {{path: /absent/{architecture}, architecture: {architecture}, quantization: none}}
datasets:
  chat: {{path: /absent/chat.jsonl, format: openai}}
capabilities:
  cot: {{datasets: [chat]}}
training: {{max_steps: 1, micro_batch: 1, grad_accum: 1, gradient_checkpointing: "on"}}
hardware: {{vram_gb: 100000}}
"""
CARDS_GB = (24, 48, 80)
PROCESSES = (1, 2, 4, 8)
# (row label, known architecture, training.method)
MODELS = (
    ("Qwen2.5-Omni-3B, bf16 LoRA", "qwen2.5-omni-3b", "lora"),
    ("Qwen2.5-Omni-3B, full fine-tuning", "qwen2.5-omni-3b", "full"),
    ("Qwen2.5-Omni-7B, bf16 LoRA", "qwen2.5-omni-7b", "lora"),
    ("Qwen2.5-Omni-7B, full fine-tuning", "qwen2.5-omni-7b", "full"),
    ("Qwen3-Omni-30B-A3B, bf16 LoRA", "qwen3-omni-30b-a3b-instruct", "lora"),
)


def per_device_gb(architecture: str, method: str, seq_len: int) -> dict[tuple[str, int], float]:
    """(strategy, processes) -> one device's estimated peak in GiB, for a text stage of `architecture`."""
    with tempfile.TemporaryDirectory() as folder:
        recipe = Path(folder) / "recipe.yaml"
        recipe.write_text(RECIPE.format(architecture=architecture))
        overrides = [f"training.method={method}", f"training.seq_len={seq_len}"]
        plan = compile_plan(load_recipe(recipe, overrides=overrides, environ={}))
    [stage] = plan.stages
    shape = Shape(micro_batch=1, grad_accum=1, seq_len=seq_len, checkpointing=True)
    return {
        (strategy, n): estimate(stage.modules, shape, plan.precision, sharding(strategy, n)).total / GIB
        for strategy in STRATEGY_SHARDS for n in PROCESSES
    }


def smallest_card(gb: float) -> str:
    fitting = [card for card in CARDS_GB if gb <= card]
    return f"{fitting[0]} GB" if fitting else "none"


def render(seq_len: int) -> str:
    lines = [
        f"| model, method | strategy | {' | '.join(f'{n} GPU' + ('s' if n > 1 else '') for n in PROCESSES)} |",
        "|---|---|" + "---|" * len(PROCESSES),
    ]
    # Strategies that split the same parts (FSDP2 and ZeRO-3) have the same estimate: one row for both.
    alike: dict[tuple[str, ...], list[str]] = {}
    for strategy, parts in STRATEGY_SHARDS.items():
        alike.setdefault(parts, []).append(strategy)
    for label, architecture, method in MODELS:
        estimates = per_device_gb(architecture, method, seq_len)
        for strategies in alike.values():
            cells = [f"{estimates[strategies[0], n]:.1f} ({smallest_card(estimates[strategies[0], n])})" for n in PROCESSES]
            lines.append(f"| {label} | {', '.join(strategies)} | {' | '.join(cells)} |")
    return "\n".join(lines)


def page(seq_len: int = 4096) -> str:
    """What docs/distributed.md shows: the conditions, then the table."""
    return (f"Per-device estimate in GB at micro_batch 1, seq_len {seq_len}, gradient checkpointing on; "
            f"in brackets the smallest of {', '.join(str(c) for c in CARDS_GB)} GB cards it fits on.\n\n" + render(seq_len))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq-len", type=int, default=4096)
    print(page(parser.parse_args().seq_len))


if __name__ == "__main__":
    main()
