"""Peak accelerator memory of one training step, from first principles (no weights, no torch).

Every term is bytes = count x bytes-per-element, with the count taken from architecture dimensions
and the stage's batch shape. The constants below are the element counts a layer keeps for its
backward pass; docs/plan.md derives each one and works the 16 GB example. The estimate is meant to
be a little pessimistic: a plan that fits here should fit on the card.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from omni_runner.param_count import projection_shapes

GIB = 1024**3

BYTES_PER_DTYPE = {"bfloat16": 2.0, "float16": 2.0, "float32": 4.0}

# CUDA context, cuBLAS/cuDNN workspaces and the allocator's first pools, before any tensor exists.
CUDA_CONTEXT_BYTES = 0.75 * GIB
# The caching allocator rounds blocks and fragments; a few percent of everything else is lost to it.
FRAGMENTATION = 0.05

# AdamW keeps two fp32 moments per trainable parameter.
ADAM_STATE_BYTES = 8.0
# Trainable parameters held in half precision get an fp32 master copy (full fine-tuning in bf16).
MASTER_COPY_BYTES = 4.0
# peft keeps LoRA weights (and we keep projectors/query tokens) in fp32 even on a bf16 base.
ADAPTER_BYTES = 4.0
GRADIENT_BYTES = 4.0
# LoRA dropout keeps the dropped fp32 copy of each adapted projection's input as well.
LORA_DROPOUT_BYTES = 4.0
# Logits for the loss: bf16 logits, their fp32 upcast for cross-entropy, and its fp32 gradient.
LOGIT_BYTES_PER_ENTRY = 2.0 + 4.0 + 4.0
# The trainer computes the loss from the final hidden states a chunk of target tokens at a time, so at
# most this many logits exist at once (about 0.6 GiB at LOGIT_BYTES_PER_ENTRY), whatever the batch.
LOSS_CHUNK_ENTRIES = 2**26


def loss_chunk_tokens(vocab_size: int) -> int:
    """Target tokens per loss chunk: 441 at Qwen2.5's 151,936-row vocabulary, 16,384 at 4,096."""
    return max(1, LOSS_CHUNK_ENTRIES // vocab_size)

# Elements of width `hidden` a diffusion-transformer block keeps per token and stream: norm input,
# modulated input, q, k, v, attention output, gated projection, second norm input and modulated
# input (9) plus the 4x-wide MLP's pre- and post-activation (8).
DIT_SAVED_PER_TOKEN = 17
# Per latent position and channel, a spatio-temporal UNet keeps about this many elements in a
# resnet (spatial + temporal: norm, activation and conv output, twice each) and in a transformer
# (spatial + temporal: norm, q, k, v, attention output, projection, then a GEGLU feed-forward).
UNET_RESNET_SAVED = 12
UNET_TRANSFORMER_SAVED = 44
# Up-path resnets read the skip connection concatenated to their input.
UNET_UP_RESNET_WIDTH = 1.5


def weight_bytes_per_param(quantization: str | None, dtype: str = "bfloat16", group_size: int = 128) -> float:
    """Storage per parameter: packed integers plus one fp16 scale and one packed zero point per group."""
    if quantization in ("gptq-int4", "awq-int4"):
        return 0.5 + (2.0 + 0.5) / group_size
    if quantization in ("gptq-int8", "awq-int8"):
        return 1.0 + (2.0 + 1.0) / group_size
    if quantization == "bnb-4bit":
        return 0.5 + 4.0 / 64  # NF4 blocks of 64 with an fp32 absmax each
    if quantization == "bnb-8bit":
        return 1.0 + 4.0 / 4096  # LLM.int8(): one fp32 scale per row of ~4k
    return BYTES_PER_DTYPE.get(dtype, 2.0)


@dataclass(frozen=True)
class Adapters:
    """How a language-model stack trains: LoRA on some projections, fully, or not at all (gradients only pass through)."""

    targets: tuple[str, ...] = ()
    r: int = 0
    dropout: bool = False
    full: bool = False
    experts: bool = False  # LoRA on a mixture-of-experts stack's fused expert weights too


FROZEN = Adapters()


def decoder_layer_bytes_per_token(dims: dict[str, Any], adapters: Adapters = FROZEN, dtype_bytes: float = 2.0) -> float:
    """What one decoder layer keeps per token for backward, with memory-efficient (sdpa/flash) attention.

    The terms are what autograd saves in a Qwen2-style layer (tests/plan/test_activation_model.py
    counts them with saved-tensor hooks): each RMSNorm keeps its input upcast to fp32 and 1/rms;
    attention keeps q, k, v, its output and an fp32 log-sum-exp per head; the SwiGLU MLP keeps gate,
    up and the activated gate (a frozen down projection keeps nothing). Each LoRA-adapted projection
    keeps its input cast to fp32 plus the rank-r intermediate, and with dropout the dropped fp32 copy
    of that input too. Full training also keeps every linear layer's input.
    """
    h, heads = dims["hidden_size"], dims.get("heads", 1)
    q = heads * dims.get("head_dim", h // max(heads, 1))
    kv = dims.get("kv_heads", heads) * dims.get("head_dim", h // max(heads, 1))
    inner = dims["intermediate_size"]
    kept = 2 * (4 * h + 4) + dtype_bytes * (2 * q + 2 * kv) + 4 * heads + 3 * dtype_bytes * inner
    experts = dims.get("experts")
    if experts:
        # A mixture-of-experts MLP: `inner` is the routed experts' width (only they see the token). The
        # expert loop also keeps, per routed (token, expert) pair, the gathered input and the output
        # scaled by its routing weight, plus the summed output; the router its logits and fp32 softmax.
        # With LoRA on the experts the adapted matmuls keep their inputs too.
        k = experts["per_token"]
        kept += dtype_bytes * h * (2 * k + 1) + 12 * experts["count"]
        if adapters.experts:
            kept += dtype_bytes * k * (h + experts["intermediate_size"])
    if adapters.full:
        # the inputs of q/k/v, o, gate/up and down, and the normalised hidden state for the norm weights
        kept += dtype_bytes * (3 * h + q + inner)
    shapes = projection_shapes(dims) if adapters.targets else {}
    for target in adapters.targets:
        if target in shapes:
            width = shapes[target][0]
            kept += 4 * width + 4 * adapters.r + (LORA_DROPOUT_BYTES * width if adapters.dropout else 0)
    return kept


def expert_adapter_bytes(dims: dict[str, Any], r: int, dtype_bytes: float = 2.0) -> float:
    """What one layer keeps for backward, beyond its tokens, with LoRA on its fused expert weights (peft
    `target_parameters` adds B x A to every expert's weight in the forward): the merged weights and the
    adapter's A and B cast to the base dtype, alive until every routed expert's matmul has its gradient."""
    experts = dims["experts"]
    h, i, count = dims["hidden_size"], experts["intermediate_size"], experts["count"]
    return dtype_bytes * (count * 3 * h * i + r * count * ((h + 2 * i) + (i + h)))


def stack_activation_bytes(tokens: int, layers: int, per_token_layer: float, hidden: int, checkpointing: bool, dtype_bytes: float = 2.0) -> float:
    """A stack of identical layers: all of them kept, or (checkpointed) each layer's input plus one recomputed layer."""
    if checkpointing:
        return tokens * (layers * hidden * dtype_bytes + per_token_layer)
    return tokens * layers * per_token_layer


def dit_activation_bytes(tokens: int, layers: int, hidden: int, checkpointing: bool) -> float:
    """A diffusion transformer; in a joint (MMDiT) block each token lives in one stream, so streams add no tokens."""
    per_token_layer = DIT_SAVED_PER_TOKEN * hidden * 2.0
    return stack_activation_bytes(tokens, layers, per_token_layer, hidden, checkpointing)


def unet_activation_bytes(
    batch: int,
    frames: int,
    latent_side: int,
    channels: list[int],
    layers_per_block: int,
    attention_levels: list[bool],
    checkpointing: bool,
) -> float:
    """A (spatio-temporal) UNet at one latent size: every level keeps its resnets' and transformers' tensors.

    Checkpointed, each block keeps only its input, plus the working set of the largest block while it
    is recomputed.
    """
    kept = 0.0
    largest_block = 0.0
    for level, width in enumerate(channels):
        positions = batch * frames * (latent_side >> level) ** 2
        transformer = UNET_TRANSFORMER_SAVED if attention_levels[level] else 0
        down_block = UNET_RESNET_SAVED + transformer
        up_block = UNET_RESNET_SAVED * UNET_UP_RESNET_WIDTH + transformer
        blocks = 2 * layers_per_block + 1
        if checkpointing:
            kept += blocks * positions * width * 2.0
        else:
            kept += (layers_per_block * down_block + (layers_per_block + 1) * up_block) * positions * width * 2.0
        largest_block = max(largest_block, max(down_block, up_block) * positions * width * 2.0)
    return kept + (largest_block if checkpointing else 0.0)


@dataclass
class MemoryEstimate:
    """Bytes per category on one device; `estimate_gb` adds overhead (context + fragmentation) on top."""

    weights: float = 0.0
    adapters: float = 0.0
    optimizer: float = 0.0
    gradients: float = 0.0
    activations: float = 0.0
    decoders: float = 0.0
    gathered: float = 0.0  # sharded parameters gathered whole while a device computes with them (per_device)
    context: float = CUDA_CONTEXT_BYTES  # 0 on CPU: no CUDA context to pay for

    @property
    def payload(self) -> float:
        return self.weights + self.adapters + self.optimizer + self.gradients + self.activations + self.decoders + self.gathered

    @property
    def overhead(self) -> float:
        return self.context + FRAGMENTATION * self.payload

    @property
    def total(self) -> float:
        return self.payload + self.overhead

    def to_json(self) -> dict[str, Any]:
        parts = ("weights", "adapters", "optimizer", "gradients", "activations", "decoders", "gathered", "overhead")
        return {
            "estimate_gb": round(self.total / GIB, 2),
            "breakdown": {name: round(getattr(self, name) / GIB, 2) for name in parts},
        }


@dataclass(frozen=True)
class Sharding:
    """Which parts of the training state a distributed strategy splits over its `world_size` processes;
    every device holds 1/world_size of a split part and the whole of the rest. Activations are never
    split: each process runs its own micro-batch."""

    world_size: int = 1
    parameters: bool = False
    gradients: bool = False
    optimizer: bool = False


UNSHARDED = Sharding()

# What each `distributed.strategy` splits: DDP replicates everything; ZeRO-2 splits gradients and the
# optimizer state (with the fp32 master copy); ZeRO-3 and FSDP2 with FULL_SHARD split the parameters too.
STRATEGY_SHARDS: dict[str, tuple[str, ...]] = {
    "ddp": (),
    "deepspeed-zero2": ("gradients", "optimizer"),
    "deepspeed-zero3": ("parameters", "gradients", "optimizer"),
    "fsdp": ("parameters", "gradients", "optimizer"),
}


def sharding(strategy: str, world_size: int) -> Sharding:
    """How `strategy` splits the training state over `world_size` processes (one process splits nothing)."""
    if world_size == 1:
        return UNSHARDED
    return Sharding(world_size, **{part: True for part in STRATEGY_SHARDS[strategy]})


def gathered_bytes(language_model: dict[str, Any], dtype_bytes: float, tower_parameters: float = 0.0) -> float:
    """What a device holds whole, beyond its shard, when parameters are split (FSDP2, ZeRO-3): the root
    unit (embeddings and output head, which FSDP2 keeps gathered from forward to backward), one decoder
    block being computed and the next one being prefetched, and the towers a stage loads, which
    train/sharding.py keeps whole on every device (a tower runs only where its medium is)."""
    layers = max(int(language_model.get("layers") or 1), 1)
    blocks = float(language_model.get("quantizable") or 0)
    root = float(language_model.get("parameters") or 0) - blocks
    return (root + 2 * blocks / layers + tower_parameters) * dtype_bytes


def per_device(whole: MemoryEstimate, split: Sharding, gathered: float) -> MemoryEstimate:
    """One device's share of `whole` (a one-process estimate) under `split`.

    Split parts are divided by the world size. Split parameters cost `gathered` on top (gathered_bytes).
    With more than one process and unsplit gradients (DDP), the reducer's buckets hold a second copy of
    the trainable gradients while they are averaged (accelerate leaves gradient_as_bucket_view off).
    Frozen generation decoders sit beside the wrapped model and stay whole.
    """
    if split.world_size == 1:
        return whole
    n = split.world_size
    return replace(
        whole,
        weights=whole.weights / n if split.parameters else whole.weights,
        adapters=whole.adapters / n if split.parameters else whole.adapters,
        optimizer=whole.optimizer / n if split.optimizer else whole.optimizer,
        gradients=whole.gradients / n if split.gradients else 2 * whole.gradients,
        gathered=gathered if split.parameters else 0.0,
    )
