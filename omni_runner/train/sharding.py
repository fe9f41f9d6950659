"""FSDP2 (`distributed.strategy: fsdp`): the model's parameters, gradients and optimizer state split over the ranks.

Each block of the language model that the model names in its own `_no_split_modules` (a decoder layer)
becomes one unit: gathered whole for its forward and backward, freed after. What is left (embeddings,
final norm, output head) is the root unit, which stays gathered from its forward to the end of its
backward; that is what lets the chunked loss apply the output head after the model's forward. The
vision and audio towers are never split into units (`shard` says why).

Checkpoints stay consolidated: at a checkpoint every rank hands in its shards and rank 0 writes the
same files a single process would (whole tensors, the optimizer's state by parameter index). A sharded
run therefore resumes on any number of processes under any strategy, and `final/` is written by the
same code as always. The price is a gather of the trained weights and their optimizer state at each
checkpoint, held whole in rank 0's host memory: megabytes for LoRA, 12 bytes a trained parameter for
full fine-tuning.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import FSDPModule, fully_shard
from torch.distributed.tensor import DTensor, distribute_tensor


def shard(model: torch.nn.Module, device: torch.device, world_size: int, towers: Iterable[torch.nn.Module] = (),
          towers_train: bool = False) -> FSDPModule:
    """Split `model` over the ranks in place (once: a model already split is returned as it is).

    A tower (vision, audio) runs only on the ranks whose micro-batch holds its medium, while a unit's
    gather is a collective every rank must join; so no block inside `towers` becomes a unit of its own.
    With `towers_train` (a stage trains a tower or its merger or projection) the towers join the root
    unit: gathered once a step on every rank, and a rank whose batch left a parameter unused hands in a
    zero gradient for it. Otherwise they stay out of FSDP: every rank holds them whole, as under DDP, and
    nothing of them crosses the network. Zero gradients for unused parameters also cover the experts of a
    mixture-of-experts layer that one rank's tokens did not reach.

    The input embeddings' output is made to require a gradient on every rank. FSDP2 reduces a unit's
    gradients when its inputs' gradients arrive, and leaves a unit whose inputs need none to the end of
    backward. With frozen embeddings, only a rank whose batch brought media (through a trained merger or
    projection) would reduce its first block on time, and the ranks' collectives would run in different
    orders.
    """
    if isinstance(model, FSDPModule):
        return model
    model.enable_input_require_grads()
    mesh = init_device_mesh(device.type, (world_size,))
    towers = list(towers)
    inside_towers = {id(module) for tower in towers for module in tower.modules()}
    blocks = set()
    for module in model.modules():
        blocks |= set(getattr(module, "_no_split_modules", None) or ())
    for module in reversed(list(model.modules())):  # innermost first: a unit never holds a unit's weights
        if module is not model and type(module).__name__ in blocks and id(module) not in inside_towers:
            fully_shard(module, mesh=mesh)
    ignored = None if towers_train else {parameter for tower in towers for parameter in tower.parameters()}
    root = fully_shard(model, mesh=mesh, ignored_params=ignored or None)
    root.set_reduce_scatter_unused_params(True)
    return root


def clip_gradients(parameters: Iterable[torch.Tensor], max_norm: float) -> float:
    """The gradients' total norm, after scaling them down to `max_norm` when it is above, as torch's
    `clip_grad_norm_` does, for a mix of split gradients (DTensor) and whole ones (the parts beside the
    sharded model), which torch's cannot take in one call. A collective: every rank calls it."""
    gradients = [p.grad for p in parameters if p.grad is not None]
    groups = ([g for g in gradients if isinstance(g, DTensor)], [g for g in gradients if not isinstance(g, DTensor)])
    total = math.sqrt(sum(float(whole(torch.nn.utils.get_total_norm(group))) ** 2 for group in groups if group))
    coefficient = max_norm / (total + 1e-6)
    if coefficient < 1:
        for gradient in gradients:
            gradient.mul_(coefficient)
    return total


def whole(value: torch.Tensor) -> torch.Tensor:
    """The full tensor behind a shard (a collective: every rank calls it, in the same order); others as they are."""
    return value.full_tensor() if isinstance(value, DTensor) else value


def like(value: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """This rank's shard of the whole tensor `value`, split as `reference` is (no communication: every rank
    holds `value`); `value` itself where `reference` is not split."""
    if not isinstance(reference, DTensor):
        return value
    return distribute_tensor(value.to(reference.device, reference.dtype), reference.device_mesh, reference.placements,
                             src_data_rank=None)


def _whole_on_cpu(value: Any, keep: bool) -> Any:
    """A tensor made whole (a collective for a shard) and, where `keep`, copied to the CPU; anything else as it is."""
    if not isinstance(value, torch.Tensor):
        return value
    full = whole(value.detach())
    return full.cpu() if keep else None


def gathered_weights(weights: Mapping[str, torch.Tensor], keep: bool) -> dict[str, torch.Tensor]:
    """Whole copies of `weights` on the CPU, as one process would have them. Every rank calls it at the same
    boundary, with the same names in the same order; only where `keep` (rank 0) is anything kept."""
    gathered = {name: _whole_on_cpu(value, keep) for name, value in weights.items()}
    return gathered if keep else {}


def gathered_optimizer(optimizer: dict[str, Any], keep: bool) -> dict[str, Any]:
    """The optimizer state dict `optimizer` with whole tensors on the CPU (as `gathered_weights`)."""
    state = {index: {key: _whole_on_cpu(value, keep) for key, value in entries.items()}
             for index, entries in optimizer["state"].items()}
    return {**optimizer, "state": state if keep else {}}


def split(weights: Mapping[str, torch.Tensor], optimizer: dict[str, Any], parameters: Mapping[str, torch.Tensor],
          optimized: Iterable[torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A consolidated checkpoint's `weights` and `optimizer` state cut to this rank's shards: weights by
    name (`parameters`), optimizer state by index into `optimized` (the optimizer's parameters, in order)."""
    own_weights = {name: like(value, parameters[name]) if name in parameters else value for name, value in weights.items()}
    by_index = list(optimized)
    state = {}
    for index, entries in optimizer["state"].items():
        reference = by_index[int(index)]
        state[index] = {key: like(value, reference) if isinstance(value, torch.Tensor) and value.shape == reference.shape
                        else value for key, value in entries.items()}
    return own_weights, {**optimizer, "state": state}


@contextlib.contextmanager
def gradients_kept_local(model: FSDPModule) -> Iterator[None]:
    """Within the block, backward accumulates whole gradients on each rank instead of reduce-scattering
    them: an optimizer step's last micro-batch then sends them all at once."""
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


@contextlib.contextmanager
def root_gathered(model: torch.nn.Module) -> Iterator[None]:
    """Within the block, the root unit's weights (embeddings, final norm, output head) are whole, for code
    that runs the model's inner modules rather than its forward (the talker's conditioning on the thinker's
    hidden states) or its embeddings alone (external encoders' tokens). FSDP2 takes the first unit whose
    forward runs as the root, so the root is settled first: otherwise a block's forward, run before the
    model's own, would claim that place. A model that is not split (one process, ddp, or the whole model
    rank 0 rebuilds for `final/`) is whole already."""
    if not isinstance(model, FSDPModule):
        yield
        return
    fully_shard.state(model)._lazy_init()  # private, but the only way to settle the root without a forward
    model.unshard()
    try:
        yield
    finally:
        model.reshard()
