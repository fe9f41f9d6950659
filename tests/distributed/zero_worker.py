"""One rank of test_zero_engine.py, started twice by torchrun (gloo): a small Qwen2 trained by DeepSpeed's
engine through `omni_runner.train.zero.ZeroEngine`, its state consolidated and set into a second engine.

Usage: python -m torch.distributed.run --nproc_per_node 2 zero_worker.py STAGE OUT.json
Rank 0 writes OUT.json: the losses of both engines, the consolidated weights and AdamW state (as lists).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from accelerate import PartialState
from transformers import Qwen2Config, Qwen2ForCausalLM

from omni_runner.train import zero
from omni_runner.train.optimizer import make_optimizer

CONFIG = Qwen2Config(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                     num_key_value_heads=1, max_position_embeddings=32)
STEPS, MORE = 3, 2  # steps before the state is consolidated, and after


def batches(rank: int, world_size: int) -> list[torch.Tensor]:
    """Draw k of the whole run goes to rank k % world_size, as the trainer shards its stream."""
    generator = torch.Generator().manual_seed(1)
    draws = [torch.randint(0, CONFIG.vocab_size, (1, 12), generator=generator) for _ in range((STEPS + MORE) * world_size)]
    return draws[rank::world_size]


def build(stage: int, weights: dict[str, torch.Tensor] | None = None,
          model: torch.nn.Module | None = None) -> tuple[torch.nn.Module, zero.ZeroEngine]:
    """A new engine over a new model, or over `model` (split by an earlier engine under ZeRO-3), with `weights`."""
    if model is None:
        torch.manual_seed(0)
        model = Qwen2ForCausalLM(CONFIG)
    if weights is not None:
        with zero.whole(list(model.parameters()), zero.import_deepspeed(cpu=True)):
            model.load_state_dict(weights, strict=False)
    optimizer = make_optimizer(model.parameters(), lr=1e-2, weight_decay=0.1, device_type="cpu")
    config = zero.engine_config(stage, micro_batch=1, grad_accum=1, max_grad_norm=1.0, bf16=False)
    return model, zero.ZeroEngine(model, optimizer, config, cpu=True)


def train(engine: zero.ZeroEngine, inputs: list[torch.Tensor]) -> list[float]:
    losses = []
    for ids in inputs:
        loss = engine(input_ids=ids, labels=ids).loss
        engine.backward(loss)  # each rank's mean: the engine averages the ranks' gradients
        engine.step()
        losses.append(loss.item())
    return losses


def resume(stage: int, weights: dict[str, torch.Tensor], optimizer: dict, inputs: list[torch.Tensor],
           model: torch.nn.Module | None = None) -> list[float]:
    """The losses of the steps after the consolidated state, trained by an engine built afresh from it."""
    model, engine = build(stage, weights, model)
    engine.load(weights, optimizer, dict(model.named_parameters()))
    losses = train(engine, inputs[STEPS:])
    engine.close()
    return losses


def main(stage: int, out: str) -> None:
    state = PartialState(cpu=True)
    rank, world_size = state.process_index, state.num_processes
    inputs = batches(rank, world_size)
    model, engine = build(stage)
    first = train(engine, inputs[:STEPS])
    weights = engine.gathered_weights(dict(model.named_parameters()), keep=True)
    optimizer = engine.gathered_optimizer(keep=True)
    uninterrupted = train(engine, inputs[STEPS:])
    engine.close()
    rolled_back = resume(stage, weights, optimizer, inputs, model)  # the same model, as a nan_policy rollback
    resumed = resume(stage, weights, optimizer, inputs)  # a new one, as a resume
    if rank == 0:
        Path(out).write_text(json.dumps({"first": first, "uninterrupted": uninterrupted, "resumed": resumed,
                   "rolled_back": rolled_back,
                   "weights": {name: value.tolist() for name, value in weights.items()},
                   "optimizer": {"param_groups": [{**g, "betas": list(g["betas"])} for g in optimizer["param_groups"]],
                                 "state": {str(i): {k: v.tolist() for k, v in s.items()} for i, s in optimizer["state"].items()}}}))


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
