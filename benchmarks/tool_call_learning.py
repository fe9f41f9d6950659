"""How many tool-call samples the tiny model needs before it reads argument values out of the query.

A plain loop (AdamW, warmup + cosine, packed rows with the trainer's own collation) trains the tiny
model's thinker, from its random weights, on the bundled xLAM training queries only, and scores the
held-out queries by teacher-forced exact match: a reply counts when every one of its tokens is the
model's top choice given the tokens before it, which is exactly when greedy generation writes it.
That needs one forward pass a sample, so the curve is cheap to draw.

`--prompt full` (the default) is the rendering the trainer uses: the system turn with the tool
schemas, about 243 tokens a sample; `--prompt user-turn` keeps only the user turn and the reply
(about 49). `--rows` sets how many packed rows of `--seq-len` tokens one step holds. Both matter far
more than the number of steps: the model starts reading argument values out of the query after a
few thousand samples when a step holds some 30 of them, and not within 20 thousand when it holds 8
(docs/data.md has the curves).

    python benchmarks/tool_call_learning.py [--prompt full|user-turn] [--rows 16] [--steps 600] [--every 100]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HELD_OUT_SCORED = 40
TRAIN_SCORED = 20


def rendered(path: str, tokenizer, prompt: str) -> list:  # noqa: ANN001
    """Every record of a bundled xLAM file as a packing `Sample`, optionally cut to its last user turn."""
    from omni_runner.data.packing import Sample
    from omni_runner.data.render import render_sample, template_for
    from omni_runner.data.sources import open_source

    source = open_source("xlam", {"path": path, "format": "xlam"}, REPO / "recipes")
    source.scan(10**6)
    turn_start = tokenizer.convert_tokens_to_ids("<|im_start|>")
    samples = []
    for position in range(len(source)):
        sample = render_sample(source.conversation(position), tokenizer, template_for("tool-calling"))
        start = 0
        if prompt == "user-turn":
            start = [i for i, token in enumerate(sample.input_ids) if token == turn_start][1]
        samples.append(Sample(sample.input_ids[start:], sample.labels[start:], "tool-calling", "xlam", str(position)))
    return samples


def exact_share(model, samples: list) -> float:  # noqa: ANN001
    """Share of samples whose every reply token is the model's argmax under teacher forcing."""
    import torch

    model.eval()
    hits = 0
    with torch.no_grad():
        for sample in samples:
            logits = model(input_ids=torch.tensor([sample.input_ids])).logits[0, :-1]
            targets = torch.tensor(sample.labels[1:])
            counted = targets != -100
            hits += bool((logits.argmax(-1)[counted] == targets[counted]).all())
    model.train()
    return hits / len(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompt", choices=("full", "user-turn"), default="full")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--every", type=int, default=100, help="score every this many steps")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--rows", type=int, default=16, help="packed rows a step")
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--train", default="builtin:tool-calling/xlam_train.jsonl", help="an xLAM file")
    parser.add_argument("--held-out", default="builtin:tool-calling/xlam_heldout.jsonl", help="an xLAM file")
    args = parser.parse_args()

    import torch
    from transformers import AutoTokenizer, Qwen2_5OmniThinkerConfig, Qwen2_5OmniThinkerForConditionalGeneration

    from omni_runner.data.packing import collate_packed, first_fit
    from omni_runner.models.load import sliding_window
    from omni_runner.models.tiny import ensure_tiny_model
    from omni_runner.train.losses import count_targets, shifted_targets, token_losses
    from omni_runner.train.schedule import lr_multiplier

    torch.manual_seed(0)
    folder = ensure_tiny_model()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    thinker = json.loads((folder / "config.json").read_text())["thinker_config"]
    model = Qwen2_5OmniThinkerForConditionalGeneration(Qwen2_5OmniThinkerConfig(**thinker))
    train = rendered(args.train, tokenizer, args.prompt)
    held_out = rendered(args.held_out, tokenizer, args.prompt)[:HELD_OUT_SCORED]
    mean_tokens = sum(map(len, train)) / len(train)
    print(f"{args.prompt} prompts: {len(train)} training samples of {mean_tokens:.0f} tokens on average", flush=True)

    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_multiplier(s, total_steps=args.steps, warmup_steps=5, schedule="cosine"))
    order = list(range(len(train)))
    random.Random(0).shuffle(order)
    cursor = seen = 0
    started = time.monotonic()
    print("step  samples seen  loss    held-out exact  training exact  seconds")
    for step in range(1, args.steps + 1):
        lengths = [len(train[order[(cursor + i) % len(order)]]) for i in range(args.rows * args.seq_len // 16)]
        rows, placed = first_fit(lengths, args.seq_len, args.rows)
        batch = collate_packed([[train[order[(cursor + i) % len(order)]] for i in row] for row in rows],
                               tokenizer.pad_token_id, mrope=True, sliding_window=sliding_window(model))
        cursor, seen = cursor + placed, seen + placed
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       position_ids=batch["position_ids"]).logits
        targets, _ = shifted_targets(batch["labels"], batch["token_capability"])
        loss = token_losses(logits, targets).sum() / count_targets(batch["labels"])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if step % args.every == 0 or step == args.steps:
            print(f"{step:>4}  {seen:>12}  {loss.item():.4f}  {exact_share(model, held_out):>14.0%}"
                  f"  {exact_share(model, train[:TRAIN_SCORED]):>14.0%}  {time.monotonic() - started:>7.0f}", flush=True)
    return 0 if math.isfinite(loss.item()) else 1


if __name__ == "__main__":
    sys.exit(main())
