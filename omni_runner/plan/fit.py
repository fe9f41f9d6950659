"""Fit one stage onto the card: estimate its peak memory, then turn the knobs the recipe allows.

Order (cheapest loss of speed first): gradient checkpointing (~30% slower steps, only when the
recipe says `auto`), then halve the micro-batch while multiplying accumulation so the global batch
stays the same, then (generation stages only) train through the decoder at fewer video frames and
a smaller latent. Every knob turned is a decision with its reason; if nothing fits, the caller
turns the last estimate into an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from omni_runner.plan import memory
from omni_runner.plan.memory import GIB, MemoryEstimate
from omni_runner.plan.modules import TOWER_MODULES, StageModules

MIN_VIDEO_FRAMES = 8
MIN_LATENT_SIDE = 32


@dataclass(frozen=True)
class Shape:
    """The knobs: batch shape, checkpointing, and the decoders' training shape."""

    micro_batch: int
    grad_accum: int
    seq_len: int
    checkpointing: bool
    generation: dict[str, dict[str, int]] = field(default_factory=dict)  # "image"/"video" -> {frames, latent_side}


@dataclass(frozen=True)
class Precision:
    dtype: str  # weights and activations of the base model
    quantization: str | None
    group_size: int
    full_thinker: bool
    thinker_adapters: memory.Adapters  # how the language model trains when `thinker` is in the stage's groups
    on_accelerator: bool = True


def estimate(modules: StageModules, shape: Shape, precision: Precision, split: memory.Sharding = memory.UNSHARDED) -> MemoryEstimate:
    """Peak memory of one device training the stage at `shape`: the whole training state, then the
    device's share of it under `split` (memory.per_device)."""
    result = MemoryEstimate(context=memory.CUDA_CONTEXT_BYTES if precision.on_accelerator else 0.0)
    dtype_bytes = memory.BYTES_PER_DTYPE.get(precision.dtype, 2.0)
    for group in modules.frozen + modules.trainable:
        if not group.resident or group.module.startswith("decoders."):
            continue
        if group.added:
            result.adapters += group.parameters * memory.ADAPTER_BYTES
        elif group.module in ("thinker", "language_model") and not precision.full_thinker:
            lm = modules.language_model
            quantized = lm.get("quantizable", 0) if precision.quantization else 0
            per_param = memory.weight_bytes_per_param(precision.quantization, precision.dtype, precision.group_size)
            result.weights += quantized * per_param + (group.parameters - quantized) * dtype_bytes
        else:
            result.weights += group.parameters * dtype_bytes
    result.decoders = sum(g.parameters * 2.0 for g in modules.frozen if g.resident and g.module.startswith("decoders."))

    trainable_added = sum(g.parameters for g in modules.trainable if g.added)
    trainable_base = sum(g.parameters for g in modules.trainable if not g.added)
    result.optimizer = (trainable_added + trainable_base) * memory.ADAM_STATE_BYTES + trainable_base * memory.MASTER_COPY_BYTES
    result.gradients = trainable_added * memory.GRADIENT_BYTES + trainable_base * dtype_bytes
    result.activations = _activations(modules, shape, precision, dtype_bytes)
    towers = sum(g.parameters for g in modules.frozen + modules.trainable
                 if g.resident and not g.added and g.module in TOWER_MODULES)
    return memory.per_device(result, split, memory.gathered_bytes(modules.language_model, dtype_bytes, towers))


def _activations(modules: StageModules, shape: Shape, precision: Precision, dtype_bytes: float) -> float:
    tokens = shape.micro_batch * shape.seq_len
    lm = modules.language_model
    lm_adapters = precision.thinker_adapters if modules.thinker_trains else memory.FROZEN
    total = _stack(lm, tokens, shape.checkpointing, lm_adapters, dtype_bytes)
    if modules.lm_loss:
        vocab = lm["vocab_size"]
        total += min(tokens, memory.loss_chunk_tokens(vocab)) * vocab * memory.LOGIT_BYTES_PER_ENTRY
    for tower in modules.trained_towers:
        total += _stack(_as_stack(tower), tokens, shape.checkpointing, memory.Adapters(full=True), dtype_bytes)
    for tower in modules.towers:
        # Frozen encoders run without autograd: only one layer's working set exists at a time.
        if tower.get("hidden_size"):
            total += tokens * memory.decoder_layer_bytes_per_token(_as_stack(tower), memory.FROZEN, dtype_bytes)
    for modality, denoiser in modules.denoisers.items():
        total += _denoiser_activations(modality, denoiser, shape)
    return total


def _as_stack(component: dict[str, Any]) -> dict[str, Any]:
    hidden = int(component["hidden_size"])
    return {
        "hidden_size": hidden,
        "intermediate_size": int(component.get("intermediate_size") or 4 * hidden),
        "layers": int(component.get("layers") or 1),
        "heads": 1,
        "kv_heads": 1,
        "head_dim": hidden,
    }


def _stack(dims: dict[str, Any], tokens: int, checkpointing: bool, adapters: memory.Adapters, dtype_bytes: float) -> float:
    per_token_layer = memory.decoder_layer_bytes_per_token(dims, adapters, dtype_bytes)
    total = memory.stack_activation_bytes(tokens, dims["layers"], per_token_layer, dims["hidden_size"], checkpointing, dtype_bytes)
    if adapters.experts and dims.get("experts"):  # merged expert weights: one layer's when recomputed, else every layer's
        total += memory.expert_adapter_bytes(dims, adapters.r, dtype_bytes) * (1 if checkpointing else dims["experts"]["layers"])
    return total


def native_generation_shape(modules: StageModules) -> dict[str, dict[str, int]]:
    """Each decoder's own training shape: its config's latent size and (video) frame count."""
    shapes = {}
    for modality, denoiser in modules.denoisers.items():
        kind = modality.removesuffix("_out")
        shapes[kind] = {"latent_side": int(denoiser.get("sample_size") or 64), "frames": int(denoiser.get("num_frames") or 1)}
    return shapes


def _denoiser_activations(modality: str, denoiser: dict[str, Any], shape: Shape) -> float:
    gen = shape.generation.get(modality.removesuffix("_out"))
    if not gen:
        return 0.0
    if "block_out_channels" in denoiser:
        channels = list(denoiser["block_out_channels"])
        kinds = denoiser.get("down_block_types") or ["CrossAttn"] * len(channels)
        return memory.unet_activation_bytes(
            batch=shape.micro_batch,
            frames=gen["frames"],
            latent_side=gen["latent_side"],
            channels=channels,
            layers_per_block=int(denoiser.get("layers_per_block", 2)),
            attention_levels=["CrossAttn" in kind for kind in kinds],
            checkpointing=shape.checkpointing,
        )
    if denoiser.get("hidden_size"):
        patch = int(denoiser.get("patch_size") or 2)
        tokens = shape.micro_batch * ((gen["latent_side"] // patch) ** 2 + int(denoiser.get("query_tokens", 64)))
        return memory.dit_activation_bytes(tokens, int(denoiser["layers"]), int(denoiser["hidden_size"]), shape.checkpointing)
    return 0.0


@dataclass
class Fit:
    shape: Shape
    estimate: MemoryEstimate
    decisions: list[dict[str, str]]
    fits: bool


def fit_stage(
    modules: StageModules,
    shape: Shape,
    precision: Precision,
    vram_gb: float,
    checkpointing_policy: str,
    split: memory.Sharding = memory.UNSHARDED,
) -> Fit:
    """Turn knobs until one device's estimate under `split` is within `vram_gb`, recording each decision and its reason."""
    decisions: list[dict[str, str]] = []
    budget = vram_gb * GIB
    current = estimate(modules, shape, precision, split)

    def over() -> bool:
        return current.total > budget

    def gb(value: float) -> str:
        return f"{value / GIB:.1f} GB"

    if over() and not shape.checkpointing and checkpointing_policy == "auto":
        before = current.total
        shape = replace(shape, checkpointing=True)
        current = estimate(modules, shape, precision, split)
        decisions.append({
            "what": "gradient checkpointing on",
            "why": f"estimated {gb(before)} > {vram_gb:g} GB; keeping only each layer's input cuts activations to {gb(current.activations)} (total {gb(current.total)})",
        })
    while over() and shape.micro_batch > 1:
        before, old = current.total, shape
        new_micro = shape.micro_batch // 2 if shape.micro_batch % 2 == 0 else 1
        shape = replace(shape, micro_batch=new_micro, grad_accum=shape.grad_accum * shape.micro_batch // new_micro)
        current = estimate(modules, shape, precision, split)
        decisions.append({
            "what": f"micro_batch {old.micro_batch} -> {shape.micro_batch}, grad_accum {old.grad_accum} -> {shape.grad_accum}",
            "why": f"estimated {gb(before)} > {vram_gb:g} GB; global batch stays {shape.micro_batch * shape.grad_accum * split.world_size} (total now {gb(current.total)})",
        })
    while over():
        smaller = _smaller_generation(shape)
        if smaller is None:
            break
        before, what = current.total, smaller[1]
        shape = smaller[0]
        current = estimate(modules, shape, precision, split)
        decisions.append({"what": what, "why": f"estimated {gb(before)} > {vram_gb:g} GB at micro_batch 1; decoder activations dominate (total now {gb(current.total)})"})
    return Fit(shape, current, decisions, not over())


def _smaller_generation(shape: Shape) -> tuple[Shape, str] | None:
    """Halve video frames first (motion survives), then the largest latent; None when at the floor."""
    video = shape.generation.get("video")
    if video and video["frames"] > MIN_VIDEO_FRAMES:
        frames = max(MIN_VIDEO_FRAMES, video["frames"] // 2)
        return _with(shape, "video", frames=frames), f"video decoder trains on {frames} frames instead of {video['frames']}"
    candidates = [(g["latent_side"], kind) for kind, g in shape.generation.items() if g["latent_side"] > MIN_LATENT_SIDE]
    if not candidates:
        return None
    side, kind = max(candidates)
    return _with(shape, kind, latent_side=side // 2), f"{kind} decoder trains at latent {side // 2}x{side // 2} ({side * 4}px) instead of {side}x{side} ({side * 8}px)"


def _with(shape: Shape, kind: str, **changes: int) -> Shape:
    generation = {k: dict(v) for k, v in shape.generation.items()}
    generation[kind].update(changes)
    return replace(shape, generation=generation)
