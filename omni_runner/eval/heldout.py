"""Held-out loss and perplexity per capability: how well the model predicts replies it never trained on.

    losses = heldout_losses(loaded, recipe_data, recipe_dir, max_samples=16)
    # {"tool-calling": {"loss": 0.84, "perplexity": 2.32, "n": 16, "tokens": 1204}}

The held-out split is the recipe's `eval.datasets`: data sets no capability trains on (as the schema
asks of them), each scored under the capability that uses its format (`capability_for_format`, as `evaluate`
does), so its records are rendered, masked and tokenised exactly as that capability's training samples
are (`SamplePreparer`). No fraction of the training data is split off: a split would change which
records training draws, and so every existing run's numbers, while `eval.datasets` already names data
kept out of training. Each data set contributes its first `max_samples` usable records; a record that
cannot become a sample (longer than `training.seq_len`, unreadable media) is counted in `skipped`.

The loss is the trainer's own: the same forward (`loaded.forward_inputs`, the model, under the
caller's autocast) and the same token cross-entropy, averaged over the capability's reply tokens across
its data sets; perplexity is its exponential. It runs without gradients and with every module in eval
mode, each module's own mode restored afterwards; it reads no random numbers and leaves the training
stream untouched, so a run that evaluates every N steps trains exactly like one that does not.
Generation capabilities (an image or video reply) have no token loss and are left out.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omni_runner.data.conversation import RecordError
from omni_runner.data.generation import is_generation
from omni_runner.data.mixer import Draw
from omni_runner.data.sources import open_source
from omni_runner.data.stream import SamplePreparer
from omni_runner.eval import capability_for_format, record_needs

SUITE = "perplexity"


def heldout_losses(loaded: Any, recipe_data: dict[str, Any], recipe_dir: Path, max_samples: int,
                   autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext) -> dict[str, dict[str, Any]]:
    """Each capability's held-out `loss`, `perplexity`, samples `n` and reply `tokens` over the recipe's
    `eval.datasets` (at most `max_samples` records each); `skipped` when some records could not be scored."""
    import torch

    totals: dict[str, dict[str, float]] = {}
    modes = {module: module.training for module in loaded.model.modules()}
    loaded.model.eval()
    try:
        with torch.no_grad():
            for name in recipe_data["eval"].get("datasets") or []:
                source = open_source(name, recipe_data["datasets"][name], Path(recipe_dir))
                source.scan(max_samples)
                capability = capability_for_format(source.format, recipe_data.get("capabilities") or {}, record_needs(source))
                if capability is None or is_generation(capability):
                    continue
                total = totals.setdefault(capability, {"nll": 0.0, "tokens": 0, "n": 0, "skipped": 0})
                _add_dataset(loaded, recipe_data, name, source, capability, autocast, total)
    finally:
        for module, training in modes.items():
            module.train(training)
    return {capability: summarise(total) for capability, total in totals.items()}


def _add_dataset(loaded: Any, recipe_data: dict[str, Any], name: str, source: Any, capability: str,
                 autocast: Callable[[], contextlib.AbstractContextManager], total: dict[str, float]) -> None:
    """Add the data set's summed token losses, reply tokens and sample counts to `total`."""
    from omni_runner.data.packing import collate_padded
    from omni_runner.models.output_head import deferred_output_head
    from omni_runner.train.losses import (
        IGNORE_INDEX,
        head_token_losses,
        shifted_targets,
    )

    preparer = SamplePreparer({name: source}, loaded.tokenizer, int(recipe_data["training"]["seq_len"]),
                              processor=loaded.processor, thinker=loaded.thinker, external=loaded.external_features())
    for position in range(len(source)):
        try:
            sample = preparer.sample(Draw(capability, name, position, epoch=0))
        except RecordError:
            total["skipped"] += 1
            continue
        batch = collate_padded([sample], loaded.tokenizer.pad_token_id, mrope=True)
        with autocast(), deferred_output_head(loaded.thinker) as head:
            hidden = loaded.model(**loaded.forward_inputs(batch)).logits
            targets, _ = shifted_targets(batch["labels"].to(hidden.device), batch["token_capability"].to(hidden.device))
            total["nll"] += float(head_token_losses(hidden, head, targets).double().sum())
        total["tokens"] += int((targets != IGNORE_INDEX).sum())
        total["n"] += 1


def summarise(total: dict[str, float]) -> dict[str, Any]:
    """Mean token loss and perplexity from summed losses and token counts (pure); None with no tokens."""
    loss = total["nll"] / total["tokens"] if total["tokens"] else None
    summary: dict[str, Any] = {"loss": loss, "perplexity": _perplexity(loss), "n": int(total["n"]), "tokens": int(total["tokens"])}
    if total.get("skipped"):
        summary["skipped"] = int(total["skipped"])
    return summary


def _perplexity(loss: float | None) -> float | None:
    if loss is None:
        return None
    return math.exp(loss) if loss < 700 else math.inf  # exp overflows a float past ~709
