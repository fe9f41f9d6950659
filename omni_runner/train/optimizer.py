"""AdamW over the trainable parameters, with weight decay only where it belongs.

Decay is applied to matrices (linear and embedding weights, LoRA A/B) and not to biases, norm
scales or other vectors: decaying a norm's gain towards zero fights the normalisation itself.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


def decay_groups(parameters: Iterable[torch.nn.Parameter], weight_decay: float) -> list[dict]:
    """Two parameter groups: matrices (decayed) and vectors/scalars (not decayed)."""
    decay, no_decay = [], []
    for parameter in parameters:
        if parameter.requires_grad:  # DeepSpeed's ZeRO-3 empties a weight it has split, and keeps its shape aside
            shape = getattr(parameter, "ds_shape", parameter.shape)
            (decay if len(shape) >= 2 else no_decay).append(parameter)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def make_optimizer(
    parameters: Iterable[torch.nn.Parameter], *, lr: float, weight_decay: float, device_type: str
) -> torch.optim.AdamW:
    """AdamW over the parameters that require gradients; the fused CUDA kernel when on a GPU (one
    launch per step instead of one per tensor)."""
    groups = decay_groups(parameters, weight_decay)
    if not any(group["params"] for group in groups):
        raise ValueError("nothing to train: every parameter is frozen")
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8, fused=device_type == "cuda")
