"""The planner's activation model is what autograd really keeps.

Runs a real Qwen2.5-Omni thinker text stack (tiny widths, bf16, sdpa) with real peft LoRA, counts
the bytes of every tensor autograd saves for backward (saved-tensor hooks; parameters excluded),
and compares the per-layer, per-token figure with `decoder_layer_bytes_per_token`. Measuring one
and two layers and taking the difference isolates a layer from the shared rotary tables and final norm.
"""

from __future__ import annotations

import pytest

from omni_runner.plan.memory import FROZEN, Adapters, decoder_layer_bytes_per_token

torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft")

TOKENS = 96
DIMS = {"hidden_size": 256, "intermediate_size": 688, "heads": 4, "kv_heads": 2, "head_dim": 64}
ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
ALL_LINEAR = ATTENTION + ("gate_proj", "up_proj", "down_proj")


def _saved_bytes_per_token(layers: int, adapters: Adapters) -> float:
    from transformers.models.qwen2_5_omni.configuration_qwen2_5_omni import Qwen2_5OmniTextConfig
    from transformers.models.qwen2_5_omni.modeling_qwen2_5_omni import Qwen2_5OmniThinkerTextModel

    torch.manual_seed(0)
    config = Qwen2_5OmniTextConfig(
        hidden_size=DIMS["hidden_size"], intermediate_size=DIMS["intermediate_size"], num_hidden_layers=layers,
        num_attention_heads=DIMS["heads"], num_key_value_heads=DIMS["kv_heads"], vocab_size=512,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [8, 12, 12]},
    )
    config._attn_implementation = "sdpa"
    model = Qwen2_5OmniThinkerTextModel(config).to(torch.bfloat16)
    for parameter in model.parameters():
        parameter.requires_grad_(adapters.full)
    if adapters.targets:
        lora = peft.LoraConfig(r=adapters.r, lora_alpha=2 * adapters.r, lora_dropout=0.05 if adapters.dropout else 0.0,
                               target_modules=list(adapters.targets))
        model = peft.get_peft_model(model, lora)
    embeddings = torch.randn(1, TOKENS, DIMS["hidden_size"], dtype=torch.bfloat16, requires_grad=adapters == FROZEN)
    return saved_activation_bytes(model, embeddings) / TOKENS


def saved_activation_bytes(model, embeddings) -> int:
    """Bytes of the tensors autograd keeps for backward in one training forward, parameters excepted."""
    model.train()
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(inputs_embeds=embeddings)
    return sum(saved.values())


def _measured_per_layer(adapters: Adapters) -> float:
    return _saved_bytes_per_token(2, adapters) - _saved_bytes_per_token(1, adapters)


@pytest.mark.parametrize(
    "adapters",
    [
        FROZEN,  # gradients only pass through (a frozen talker, a thinker under trainable queries)
        Adapters(targets=ATTENTION, r=8, dropout=True),
        Adapters(targets=ALL_LINEAR, r=8),
        Adapters(full=True),
    ],
    ids=["frozen", "lora-attention-dropout", "lora-all-linear", "full"],
)
def test_layer_activation_model_matches_what_autograd_saves(adapters: Adapters):
    predicted = decoder_layer_bytes_per_token(DIMS, adapters, dtype_bytes=2.0)
    assert predicted == pytest.approx(_measured_per_layer(adapters), rel=0.01)


# A Qwen3-Omni-MoE thinker layer: the routed experts' activations, and with LoRA on the experts the
# per-layer merged weights. Random routing hits every expert at these sizes (96 tokens, 2 of 8 routed).
MOE = {"hidden": 256, "experts": 8, "routed": 2, "expert_width": 64}


def _moe_saved_bytes(layers: int, tokens: int, adapters: Adapters) -> int:
    from transformers.models.qwen3_omni_moe.configuration_qwen3_omni_moe import Qwen3OmniMoeTextConfig
    from transformers.models.qwen3_omni_moe.modeling_qwen3_omni_moe import Qwen3OmniMoeThinkerTextModel

    torch.manual_seed(0)
    config = Qwen3OmniMoeTextConfig(
        hidden_size=MOE["hidden"], moe_intermediate_size=MOE["expert_width"], num_experts=MOE["experts"],
        num_experts_per_tok=MOE["routed"], num_hidden_layers=layers, num_attention_heads=DIMS["heads"],
        num_key_value_heads=DIMS["kv_heads"], vocab_size=512,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [8, 12, 12], "interleaved": True},
    )
    config._attn_implementation = "sdpa"
    model = Qwen3OmniMoeThinkerTextModel(config).to(torch.bfloat16).requires_grad_(False)
    if adapters.targets:
        experts = [n for n, _ in model.named_parameters() if n.endswith(("experts.gate_up_proj", "experts.down_proj"))]
        model = peft.get_peft_model(model, peft.LoraConfig(r=adapters.r, lora_alpha=2 * adapters.r, lora_dropout=0.0,
                                                           target_modules=list(adapters.targets),
                                                           target_parameters=experts if adapters.experts else None))
    embeddings = torch.randn(1, tokens, MOE["hidden"], dtype=torch.bfloat16, requires_grad=adapters == FROZEN)
    return saved_activation_bytes(model, embeddings)


@pytest.mark.parametrize(
    "adapters",
    [FROZEN, Adapters(targets=ATTENTION, r=8), Adapters(targets=ATTENTION, r=8, experts=True)],
    ids=["frozen", "lora-attention", "lora-attention-and-experts"],
)
def test_moe_layer_activation_model_matches_what_autograd_saves(adapters: Adapters):
    from omni_runner.param_count import moe_language_model
    from omni_runner.plan.memory import expert_adapter_bytes

    dims = moe_language_model(hidden_size=MOE["hidden"], num_hidden_layers=1, num_attention_heads=DIMS["heads"],
                              num_key_value_heads=DIMS["kv_heads"], vocab_size=512, num_experts=MOE["experts"],
                              num_experts_per_tok=MOE["routed"], moe_intermediate_size=MOE["expert_width"])
    layer = {n: _moe_saved_bytes(2, n, adapters) - _moe_saved_bytes(1, n, adapters) for n in (TOKENS, 2 * TOKENS)}
    per_token = (layer[2 * TOKENS] - layer[TOKENS]) / TOKENS
    per_layer = layer[TOKENS] - per_token * TOKENS
    assert decoder_layer_bytes_per_token(dims, adapters, dtype_bytes=2.0) == pytest.approx(per_token, rel=0.01)
    expected = expert_adapter_bytes(dims, adapters.r, dtype_bytes=2.0) if adapters.experts else 0
    assert expected == pytest.approx(per_layer, rel=0.01, abs=64)  # the rotary tables' few bytes aside
