"""Parameter counts from architecture dimensions, never from weights.

Detection and the known-architecture table both describe a model by its config dimensions; the
planner needs parameter counts (for memory) and the share of them in decoder-block linear layers
(the part GPTQ/AWQ/bitsandbytes quantize, and the part LoRA adapts). Biases and norms are small
and counted roughly: these are estimates for planning, good to about one percent.
"""

from __future__ import annotations

from typing import Any

Component = dict[str, Any]


def language_model(
    *,
    hidden_size: int,
    intermediate_size: int,
    num_hidden_layers: int,
    num_attention_heads: int,
    num_key_value_heads: int | None,
    vocab_size: int,
    head_dim: int | None = None,
    tie_word_embeddings: bool = False,
    embedding_size: int | None = None,
) -> Component:
    """A decoder-only transformer with gated MLP (Qwen2, Llama, the Qwen2.5-Omni thinker and talker).

    `embedding_size` is the width of an input projection that differs from the hidden size (the
    talker reads thinker states of width 3584 into its 896-wide stack).
    """
    kv_heads = num_key_value_heads or num_attention_heads
    head = head_dim or hidden_size // num_attention_heads
    q_out, kv_out = num_attention_heads * head, kv_heads * head
    attention = hidden_size * q_out + 2 * hidden_size * kv_out + q_out * hidden_size + q_out + 2 * kv_out
    mlp = 3 * hidden_size * intermediate_size
    block_linear = attention + mlp
    embeddings = vocab_size * hidden_size * (1 if tie_word_embeddings else 2)
    projection = embedding_size * hidden_size if embedding_size and embedding_size != hidden_size else 0
    norms = (2 * num_hidden_layers + 1) * hidden_size
    return {
        "kind": "language_model",
        "parameters": num_hidden_layers * block_linear + embeddings + projection + norms,
        "quantizable": num_hidden_layers * block_linear,
        "layers": num_hidden_layers,
        "hidden_size": hidden_size,
        "intermediate_size": intermediate_size,
        "heads": num_attention_heads,
        "kv_heads": kv_heads,
        "head_dim": head,
        "vocab_size": vocab_size,
    }


def transformer_encoder(
    *,
    hidden_size: int,
    intermediate_size: int,
    num_layers: int,
    gated_mlp: bool = False,
    extra: int = 0,
    kind: str = "encoder",
) -> Component:
    """A bidirectional transformer stack (ViT towers, Whisper/CLIP/T5 encoders); `extra` adds stems and heads."""
    attention = 4 * hidden_size * hidden_size + 4 * hidden_size
    mlp = (3 if gated_mlp else 2) * hidden_size * intermediate_size
    block = attention + mlp + 4 * hidden_size
    return {
        "kind": kind,
        "parameters": num_layers * block + extra,
        "quantizable": num_layers * (attention + mlp),
        "layers": num_layers,
        "hidden_size": hidden_size,
        "intermediate_size": intermediate_size,
    }


def conformer_encoder(*, hidden_size: int, intermediate_size: int, num_layers: int, conv_kernel_size: int) -> Component:
    """A FastConformer block: two half-step feed-forwards, relative-position attention, a conv module."""
    feed_forwards = 2 * 2 * hidden_size * intermediate_size
    attention = 5 * hidden_size * hidden_size  # q, k, v, out and the positional projection
    convolution = 3 * hidden_size * hidden_size + hidden_size * conv_kernel_size
    block = feed_forwards + attention + convolution
    return {
        "kind": "encoder",
        "parameters": num_layers * block,
        "quantizable": num_layers * block,
        "layers": num_layers,
        "hidden_size": hidden_size,
        "intermediate_size": intermediate_size,
    }


def diffusion_transformer(*, hidden_size: int, num_layers: int, streams: int, mlp_ratio: int = 4) -> Component:
    """MMDiT (SD3, streams=2: image and text each have their own weights) or DiT (streams=1).

    Per stream and block: attention 4h², MLP 2·ratio·h², adaptive-norm modulation 6h².
    """
    per_stream = (4 + 2 * mlp_ratio + 6) * hidden_size * hidden_size
    return {
        "kind": "decoder",
        "parameters": num_layers * streams * per_stream,
        "quantizable": 0,
        "layers": num_layers,
        "hidden_size": hidden_size,
    }


def projection_shapes(dims: Component) -> dict[str, tuple[int, int]]:
    """(in, out) widths of each linear layer in one decoder layer, by the names peft targets."""
    h, inner = dims["hidden_size"], dims["intermediate_size"]
    q, kv = dims["heads"] * dims["head_dim"], dims["kv_heads"] * dims["head_dim"]
    return {
        "q_proj": (h, q),
        "k_proj": (h, kv),
        "v_proj": (h, kv),
        "o_proj": (q, h),
        "gate_proj": (h, inner),
        "up_proj": (h, inner),
        "down_proj": (inner, h),
    }


def total(components: dict[str, Component]) -> int:
    return sum(int(c.get("parameters") or 0) for c in components.values())


def qwen_omni_vision_tower(
    *,
    hidden_size: int,
    intermediate_size: int,
    depth: int,
    out_hidden_size: int,
    spatial_merge_size: int = 2,
    patch_size: int = 14,
    temporal_patch_size: int = 2,
    in_channels: int = 3,
) -> Component:
    """The Qwen2.5-Omni vision tower, exactly: a Conv3d patch stem (no bias), `depth` blocks (two RMSNorms,
    biased q/k/v/proj, a biased SwiGLU MLP), then the patch merger `visual.merger`.

    The merger (RMSNorm `ln_q`, Linear(4h, 4h) + GELU + Linear(4h, out), biased) is also reported on its
    own, because a stage can train it fully while the rest of the tower stays frozen or takes LoRA.
    `lora_widths` is the sum of (in + out) over the Linear layers LoRA adapts in the tower: all but the
    merger's, which never get adapters (it trains fully, as its own group). LoRA rank r adds r x that.
    """
    h, i = hidden_size, intermediate_size
    merged = h * spatial_merge_size**2
    merger = {"parameters": h + merged * merged + merged + merged * out_hidden_size + out_hidden_size}
    attention = 4 * (h * h + h)
    mlp = 3 * h * i + 2 * i + h
    block = 2 * h + attention + mlp
    stem = in_channels * temporal_patch_size * patch_size * patch_size * h
    return {
        "kind": "encoder",
        "parameters": stem + depth * block + merger["parameters"],
        "quantizable": depth * (4 * h * h + 3 * h * i),
        "layers": depth,
        "hidden_size": h,
        "intermediate_size": i,
        "lora_widths": depth * (4 * (h + h) + 3 * (h + i)),
        "merger": merger,
    }


def qwen_omni_audio_tower(
    *, d_model: int, encoder_ffn_dim: int, encoder_layers: int, output_dim: int, num_mel_bins: int = 128
) -> Component:
    """The Qwen2.5-Omni audio tower, exactly: two Conv1d stems, `encoder_layers` Whisper-style blocks
    (k without bias, q/v/out with; two LayerNorms; fc1/fc2), the begin/end-of-audio embeddings, then the
    projection into the language model (`ln_post` LayerNorm + `proj` Linear(d, output_dim)).

    The projection is also reported on its own (a stage can train it fully); `lora_widths` as for the
    vision tower, without the projection's `proj`.
    """
    d, f = d_model, encoder_ffn_dim
    projection = {"parameters": 2 * d + d * output_dim + output_dim}
    block = (4 * d * d + 3 * d) + 2 * (2 * d) + (d * f + f) + (f * d + d)
    stems = (num_mel_bins * d * 3 + d) + (d * d * 3 + d)
    return {
        "kind": "encoder",
        "parameters": stems + 2 * output_dim + encoder_layers * block + projection["parameters"],
        "quantizable": encoder_layers * (4 * d * d + 2 * d * f),
        "layers": encoder_layers,
        "hidden_size": d,
        "intermediate_size": f,
        "lora_widths": encoder_layers * (4 * (d + d) + (d + f) + (f + d)),
        "projection": projection,
    }


def moe_language_model(
    *,
    hidden_size: int,
    num_hidden_layers: int,
    num_attention_heads: int,
    num_key_value_heads: int | None,
    vocab_size: int,
    num_experts: int,
    num_experts_per_tok: int,
    moe_intermediate_size: int,
    intermediate_size: int = 0,
    head_dim: int | None = None,
    tie_word_embeddings: bool = False,
    mlp_only_layers: tuple[int, ...] | list[int] = (),
    decoder_sparse_step: int = 1,
    shared_expert_intermediate_size: int = 0,
) -> Component:
    """A mixture-of-experts decoder (the Qwen3-Omni thinker and talker, Qwen3-MoE): Qwen3 attention
    (no biases, q/k RMSNorms), and in each sparse layer a router, `num_experts` SwiGLU experts of width
    `moe_intermediate_size` (fused 3-D weights, not Linear layers) and, in the talker, a shared expert
    with its gate. Layers in `mlp_only_layers`, or off the `decoder_sparse_step`, have a dense SwiGLU MLP.

    Every expert is resident, so `parameters` counts them all; `active_parameters` counts the
    `num_experts_per_tok` a token is routed through. `intermediate_size` in the result is the MLP
    width one token activates (its routed experts plus the shared one): what its activations cost.
    `experts` gives the expert shapes, which size LoRA on the experts.
    """
    h, layers = hidden_size, num_hidden_layers
    kv_heads = num_key_value_heads or num_attention_heads
    head = head_dim or h // num_attention_heads
    q_out, kv_out = num_attention_heads * head, kv_heads * head
    attention = 2 * h * q_out + 2 * h * kv_out + 2 * head
    expert = 3 * h * moe_intermediate_size
    shared = 3 * h * shared_expert_intermediate_size + (h if shared_expert_intermediate_size else 0)
    sparse = [i for i in range(layers) if i not in set(mlp_only_layers) and num_experts > 0 and (i + 1) % decoder_sparse_step == 0]
    dense = layers - len(sparse)
    router = num_experts * h
    blocks = layers * attention + dense * 3 * h * intermediate_size + len(sparse) * (router + shared)
    embeddings = vocab_size * h * (1 if tie_word_embeddings else 2)
    norms = (2 * layers + 1) * h
    all_experts = len(sparse) * num_experts * expert
    routed = len(sparse) * num_experts_per_tok * expert
    return {
        "kind": "language_model",
        "parameters": blocks + all_experts + embeddings + norms,
        "active_parameters": blocks + routed + embeddings + norms,
        "quantizable": blocks + all_experts - len(sparse) * router,
        "layers": layers,
        "hidden_size": h,
        "intermediate_size": num_experts_per_tok * moe_intermediate_size + shared_expert_intermediate_size,
        "heads": num_attention_heads,
        "kv_heads": kv_heads,
        "head_dim": head,
        "vocab_size": vocab_size,
        "experts": {
            "count": num_experts,
            "per_token": num_experts_per_tok,
            "intermediate_size": moe_intermediate_size,
            "layers": len(sparse),
            "shared_intermediate_size": shared_expert_intermediate_size,
        },
    }


def expert_lora_parameters(dims: Component, r: int) -> int:
    """LoRA on the fused expert weights (peft `target_parameters`): each expert of each sparse layer gets
    a rank-r pair on gate_up_proj (h x 2i) and on down_proj (i x h)."""
    experts = dims.get("experts") or {}
    h, i = dims["hidden_size"], int(experts.get("intermediate_size", 0))
    return int(experts.get("layers", 0)) * int(experts.get("count", 0)) * r * ((h + 2 * i) + (i + h))


def qwen3_omni_vision_tower(
    *,
    hidden_size: int,
    intermediate_size: int,
    depth: int,
    out_hidden_size: int,
    num_position_embeddings: int = 2304,
    deepstack_mergers: int = 3,
    spatial_merge_size: int = 2,
    patch_size: int = 16,
    temporal_patch_size: int = 2,
    in_channels: int = 3,
) -> Component:
    """The Qwen3-Omni vision tower, exactly: a biased Conv3d patch stem, learned positions, `depth` blocks
    (two LayerNorms, fused biased qkv, proj, a GELU MLP linear_fc1/linear_fc2), the patch merger, and one
    more merger per deepstack layer (their features are added to early language-model layers).

    `merger` (all the mergers: what the vision_merger group trains fully) and `lora_widths` as for
    `qwen_omni_vision_tower`.
    """
    h, i = hidden_size, intermediate_size
    merged = h * spatial_merge_size**2
    mlp = merged * merged + merged + merged * out_hidden_size + out_hidden_size
    merger = {"parameters": (2 * h + mlp) + deepstack_mergers * (2 * merged + mlp)}
    block = 4 * h + (3 * h * h + 3 * h) + (h * h + h) + (h * i + i) + (i * h + h)
    stem = in_channels * temporal_patch_size * patch_size * patch_size * h + h
    return {
        "kind": "encoder",
        "parameters": stem + num_position_embeddings * h + depth * block + merger["parameters"],
        "quantizable": depth * (4 * h * h + 2 * h * i),
        "layers": depth,
        "hidden_size": h,
        "intermediate_size": i,
        "lora_widths": depth * ((h + 3 * h) + 2 * h + 2 * (h + i)),
        "merger": merger,
    }


def qwen3_omni_audio_tower(
    *, d_model: int, encoder_ffn_dim: int, encoder_layers: int, output_dim: int, num_mel_bins: int = 128,
    downsample_hidden_size: int = 480,
) -> Component:
    """The Qwen3-Omni audio tower, exactly: three strided Conv2d stems and `conv_out` into the model width,
    `encoder_layers` Whisper-style blocks (biased q/k/v/out, two LayerNorms, fc1/fc2), then the projection
    into the language model (`ln_post` + `proj1` + GELU + `proj2`), reported on its own as `projection`."""
    d, f, c = d_model, encoder_ffn_dim, downsample_hidden_size
    frequencies = (((num_mel_bins + 1) // 2 + 1) // 2 + 1) // 2
    stems = (9 * c + c) + 2 * (9 * c * c + c) + c * frequencies * d
    block = (4 * d * d + 4 * d) + 4 * d + (d * f + f) + (f * d + d)
    projection = {"parameters": 2 * d + (d * d + d) + (d * output_dim + output_dim)}
    return {
        "kind": "encoder",
        "parameters": stems + encoder_layers * block + projection["parameters"],
        "quantizable": encoder_layers * (4 * d * d + 2 * d * f),
        "layers": encoder_layers,
        "hidden_size": d,
        "intermediate_size": f,
        "lora_widths": encoder_layers * (4 * (d + d) + (d + f) + (f + d)) + (c * frequencies + d),
        "projection": projection,
    }
