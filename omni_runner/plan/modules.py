"""Module groups of one stage: what trains (and how many parameters that is), what stays frozen, what is resident.

The groups are the names the recipe's `stages[].train` uses. LoRA parameters follow from the
adapted projections' shapes: r x (in + out) per adapted linear layer. Projectors map encoder
widths into the language model, or the language model into a decoder's conditioning width.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omni_runner.capabilities import CAPABILITIES
from omni_runner.param_count import projection_shapes
from omni_runner.plan.models import PlannedModel

_ENCODER_PROJECTORS = {"encoders.vision": "vision_projector", "encoders.audio": "audio_projector", "encoders.asr": "audio_projector"}
_DECODER_PROJECTORS = {"image_out": ("decoders.image", "image_projector"), "video_out": ("decoders.video", "video_projector")}
_BASE_TOWERS = {"vision_tower": ("image_in", "video_in"), "audio_tower": ("audio_in",), "talker": ("audio_out",)}
# Diffusers parts the planner never loads during training, and why.
_UNUSED_DECODER_PARTS = {
    "vae": "latents are pre-computed and cached",
    "text_encoder": "the projector replaces it",
    "text_encoder_2": "the projector replaces it",
    "text_encoder_3": "the projector replaces it",
    "image_encoder": "the projector replaces it",
}


@dataclass
class ModuleGroup:
    module: str
    parameters: int
    how: str = ""
    resident: bool = True
    quantization: str | None = None
    added: bool = False  # new parameters (LoRA, projectors, queries) kept in fp32, not base weights

    def to_json(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"module": self.module, "parameters": self.parameters, "resident": self.resident}
        if self.how:
            payload["how"] = self.how
        if self.quantization:
            payload["quantization"] = self.quantization
        return payload


@dataclass
class StageModules:
    trainable: list[ModuleGroup] = field(default_factory=list)
    frozen: list[ModuleGroup] = field(default_factory=list)
    language_model: dict[str, Any] = field(default_factory=dict)
    talker: dict[str, Any] | None = None  # dims when speech loss back-propagates through it
    towers: list[dict[str, Any]] = field(default_factory=list)  # frozen encoders: forward-only, no saved activations
    trained_towers: list[dict[str, Any]] = field(default_factory=list)  # keep activations for backward
    denoisers: dict[str, dict[str, Any]] = field(default_factory=dict)  # modality -> denoiser component
    lm_loss: bool = False
    thinker_trains: bool = False  # LoRA or full training on the language model in this stage


def lora_parameters(dims: dict[str, Any], r: int, targets: list[str]) -> int:
    shapes = projection_shapes(dims)
    return dims["layers"] * sum(r * (shapes[t][0] + shapes[t][1]) for t in targets if t in shapes)


def projector_parameters(in_width: int, out_width: int, projector: dict[str, Any] | None, default_hidden: int) -> int:
    projector = projector or {}
    if projector.get("type", "mlp") == "linear":
        return in_width * out_width + out_width
    hidden = projector.get("hidden_size") or default_hidden
    return in_width * hidden + hidden + hidden * out_width + out_width


def needed_modalities(capabilities: list[str]) -> frozenset[str]:
    return frozenset().union(*(CAPABILITIES[c].requires for c in capabilities if c in CAPABILITIES))


def default_train_groups(capabilities: list[str], sources: dict[str, str]) -> list[str]:
    """What trains when a stage does not say: the thinker, plus the projectors its capabilities need."""
    needed = needed_modalities(capabilities)
    groups = ["thinker"]
    for modality in sorted(needed):
        slot = sources.get(modality, "")
        if slot in _ENCODER_PROJECTORS and _ENCODER_PROJECTORS[slot] not in groups:
            groups.append(_ENCODER_PROJECTORS[slot])
        if modality in _DECODER_PROJECTORS:
            groups += [_DECODER_PROJECTORS[modality][1], "query_tokens"]
    return list(dict.fromkeys(groups))


def stage_modules(
    capabilities: list[str],
    train: list[str],
    models: dict[str, PlannedModel],
    sources: dict[str, str],
    training: dict[str, Any],
) -> StageModules:
    """Split every model part into trainable and frozen groups for one stage."""
    needed = needed_modalities(capabilities)
    base = models["base_model"].detection
    lm_key = "thinker" if "thinker" in base.components else "language_model"
    lm = base.components[lm_key]
    lora = training.get("lora") or {}
    out = StageModules(language_model=lm, lm_loss=any(CAPABILITIES[c].loss_on != "denoising" for c in capabilities if c in CAPABILITIES))

    out.thinker_trains = "thinker" in train
    if "thinker" in train and training.get("method", "lora") == "full":
        out.trainable.append(ModuleGroup(lm_key, lm["parameters"], "full fine-tuning"))
    else:
        out.frozen.append(ModuleGroup(lm_key, lm["parameters"], quantization=base.quantization))
        if "thinker" in train:
            r, targets = int(lora.get("r", 16)), list(lora.get("target_modules") or [])
            out.trainable.append(ModuleGroup(f"{lm_key}.lora", lora_parameters(lm, r, targets), f"LoRA r={r} on {', '.join(targets)}", added=True))

    for part, modalities in _BASE_TOWERS.items():
        if part not in base.components:
            continue
        used = any(m in needed and sources.get(m) == "base_model" for m in modalities)
        group = ModuleGroup(part, base.components[part]["parameters"], resident=used or part in train)
        (out.trainable if part in train else out.frozen).append(group)
        if part == "talker" and group.resident:
            out.talker = base.components[part]
        elif part in train:
            out.trained_towers.append(base.components[part])
        elif group.resident:
            out.towers.append(base.components[part])
    if "token2wav" in base.components:
        out.frozen.append(ModuleGroup("token2wav", base.components["token2wav"]["parameters"], "renders speech at evaluation only", resident=False))

    lm_width = lm["hidden_size"]
    for slot, projector_name in _ENCODER_PROJECTORS.items():
        if slot not in models:
            continue
        tower = models[slot].detection.components.get("vision_tower") or models[slot].detection.components.get("audio_tower") or {}
        used = any(sources.get(m) == slot for m in needed)
        out.frozen.append(ModuleGroup(slot, int(tower.get("parameters") or 0), "encoder tower only", resident=used))
        if used:
            out.towers.append(tower)
        if projector_name in train and used:
            params = projector_parameters(int(tower.get("hidden_size") or lm_width), lm_width, models[slot].section.get("projector"), lm_width)
            out.trainable.append(ModuleGroup(projector_name, params, f"{slot} -> language model", added=True))

    for modality, (slot, projector_name) in _DECODER_PROJECTORS.items():
        if slot not in models:
            continue
        used = modality in needed
        decoder = models[slot].detection.components
        denoiser_key = "transformer" if "transformer" in decoder else "unet"
        denoiser = decoder.get(denoiser_key, {})
        out.frozen.append(ModuleGroup(f"{slot}.{denoiser_key}", int(denoiser.get("parameters") or 0), resident=used))
        for part, component in decoder.items():
            if part != denoiser_key:
                out.frozen.append(ModuleGroup(f"{slot}.{part}", int(component.get("parameters") or 0), _UNUSED_DECODER_PARTS.get(part, "not used in training"), resident=False))
        if not used:
            continue
        queries = int(models[slot].section.get("query_tokens") or 64)
        out.denoisers[modality] = {**denoiser, "query_tokens": queries}
        if projector_name in train:
            width = int(denoiser.get("joint_attention_dim") or denoiser.get("cross_attention_dim") or lm_width)
            pooled = int(denoiser.get("pooled_projection_dim") or 0)
            params = projector_parameters(lm_width, width, models[slot].section.get("projector"), lm_width) + lm_width * pooled
            out.trainable.append(ModuleGroup(projector_name, params, f"language model -> {slot} conditioning ({width} wide)", added=True))
        if "query_tokens" in train:
            out.trainable.append(ModuleGroup(f"query_tokens.{modality.removesuffix('_out')}", queries * lm_width, f"{queries} learnable queries", added=True))
    return out
