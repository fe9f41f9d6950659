"""Token-weighted losses: the training loss and its split by capability.

With packing, one row holds samples of several capabilities; each target token carries the
capability of the sample it belongs to. Every token counts once, whichever row or micro-batch it
sits in, so a capability's loss is (sum of its token losses) / (its number of target tokens) over
the whole optimizer step, and the training loss is the same over all capabilities.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from omni_runner.models.output_head import deferred_output_head
from omni_runner.plan.memory import loss_chunk_tokens

IGNORE_INDEX = -100


def shifted_targets(labels: torch.Tensor, capability_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets for next-token prediction: position t predicts token t+1, and the last position predicts
    nothing. The targets move rather than the logits: slicing the logits would copy them, which at a
    real vocabulary (152k) is gigabytes a micro-batch."""
    return F.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX), F.pad(capability_ids[:, 1:], (0, 1), value=-1)


def token_losses(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of every position (0 where the target is ignored), computed in fp32."""
    return F.cross_entropy(
        logits.reshape(-1, logits.size(-1)).float(),
        targets.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="none",
    ).view(targets.shape)


def head_token_losses(hidden: torch.Tensor, head: torch.nn.Module, targets: torch.Tensor) -> torch.Tensor:
    """`token_losses` of the logits `head(hidden)` would give, without materialising them: only target
    positions get logits, a chunk of `loss_chunk_tokens` at a time, and each chunk's logits are
    recomputed in the backward pass rather than kept. At a real vocabulary the full fp32 logits of one
    4,096-token row are 2.5 GB; a chunk's stay under LOSS_CHUNK_ENTRIES whatever the batch.
    A batch that fits in one chunk is computed directly (nothing to recompute)."""
    flat_targets = targets.reshape(-1)
    positions = (flat_targets != IGNORE_INDEX).nonzero().squeeze(1)
    losses = torch.zeros(flat_targets.shape, dtype=torch.float32, device=hidden.device)
    if positions.numel() == 0:
        return losses.view(targets.shape)
    states = hidden.reshape(-1, hidden.size(-1)).index_select(0, positions)
    wanted = flat_targets.index_select(0, positions)
    chunk = loss_chunk_tokens(head.out_features)  # not the weight's shape, which ZeRO-3 empties between uses
    if len(positions) <= chunk:
        values = _chunk_losses(head, states, wanted)
    else:
        values = torch.cat([
            checkpoint(_chunk_losses, head, states[start:start + chunk], wanted[start:start + chunk], use_reentrant=False)
            for start in range(0, len(positions), chunk)
        ])
    return losses.index_put((positions,), values).view(targets.shape)


class ForwardWithTokenLosses(torch.nn.Module):
    """The model's forward and its per-token LM losses as one module: returns (hidden states, losses).

    The output head runs after the thinker's forward (in chunks, `head_token_losses`); inside this
    module it is still part of the forward, which is where DistributedDataParallel looks for the weights
    a step uses.
    """

    def __init__(self, model: torch.nn.Module, thinker: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self._thinker = (thinker,)  # a part of `model`: a tuple keeps its weights from being registered twice

    def forward(self, targets: torch.Tensor, **inputs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        with deferred_output_head(self._thinker[0]) as head:
            hidden = self.model(**inputs).logits  # final hidden states: the head is applied in chunks below
            return hidden, head_token_losses(hidden, head, targets)


def _chunk_losses(head: torch.nn.Module, states: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(head(states).float(), targets, reduction="none")


def capability_sums(
    losses: torch.Tensor, targets: torch.Tensor, capability_ids: torch.Tensor, num_capabilities: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss sum, target-token count) per capability index, detached, as float64 on the CPU."""
    counted = targets != IGNORE_INDEX
    ids = capability_ids[counted].long()
    sums = torch.zeros(num_capabilities, dtype=torch.float64, device=losses.device)
    counts = torch.zeros(num_capabilities, dtype=torch.float64, device=losses.device)
    sums.index_add_(0, ids, losses.detach()[counted].double())
    counts.index_add_(0, ids, torch.ones_like(ids, dtype=torch.float64))
    return sums.cpu(), counts.cpu()


def count_targets(labels: torch.Tensor) -> int:
    """Target tokens a batch contributes to the loss (the first position predicts nothing)."""
    return int((labels[:, 1:] != IGNORE_INDEX).sum())


def capability_loss_weights(recipe: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Each capability's `loss_weights`: `lm` scales its reply tokens' cross-entropy, `denoising` its
    decoder loss (generation capabilities), both 1 unless the recipe says otherwise."""
    weights = {}
    for name, spec in (recipe.get("capabilities") or {}).items():
        given = (spec or {}).get("loss_weights") or {}
        weights[name] = {"lm": float(given.get("lm", 1.0)), "denoising": float(given.get("denoising", 1.0))}
    return weights
