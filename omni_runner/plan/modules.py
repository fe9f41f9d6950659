"""Module groups of one stage: what trains (and how many parameters that is), what stays frozen, what is resident.

The groups are the names the recipe's `stages[].train` uses, and they split the model the way
omni_runner/models/load.py does: `thinker` is the language model (LoRA or full, per
training.method); `vision_tower` and `audio_tower` are the base model's towers (LoRA on every
linear layer, or full); `vision_merger` (`visual.merger`) and `audio_projection` (`audio_tower.ln_post`
+ `proj`) sit inside those towers, never get LoRA adapters and always train fully. LoRA parameters follow from the adapted
layers' shapes: r x (in + out) per adapted linear layer. Projectors map encoder widths into the
language model, or the language model into a decoder's conditioning width.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omni_runner.capabilities import CAPABILITIES, LOSS_DENOISING
from omni_runner.param_count import expert_lora_parameters, projection_shapes
from omni_runner.plan.models import PlannedModel
from omni_runner.plan.support import ASR_SLOT

# External encoders' projectors: group -> (the encoder slot, the inputs it reads).
_ENCODER_GROUPS = {"vision_projector": ("encoders.vision", ("image_in", "video_in")),
                   "audio_projector": ("encoders.audio", ("audio_in",))}
_ENCODER_PROJECTORS = {slot: group for group, (slot, _) in _ENCODER_GROUPS.items()}
_DECODER_PROJECTORS = {"image_out": ("decoders.image", "image_projector"), "video_out": ("decoders.video", "video_projector")}
# Generation groups and the outputs whose decoder loss trains them.
GENERATION_OUTPUTS = {"image_projector": ("image_out",), "video_projector": ("video_out",), "query_tokens": ("image_out", "video_out")}
# The base model's towers and the inputs that go through them.
_BASE_TOWERS = {"vision_tower": ("image_in", "video_in"), "audio_tower": ("audio_in",)}
# Groups that are one fully trained piece of a tower: group -> (tower, the tower component's key for it).
_TOWER_PIECES = {"vision_merger": ("vision_tower", "merger"), "audio_projection": ("audio_tower", "projection")}
# The groups that are the base towers' own weights (not their LoRA adapters).
TOWER_MODULES = (*_BASE_TOWERS, *_TOWER_PIECES)
DEFAULT_TRAIN = ("thinker",)  # what a stage without `train:` trains, as the loader does
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


def capability_inputs(capability: str, data: dict[str, Any]) -> frozenset[str]:
    """The modalities a capability's samples carry: its gate's, plus the audio track of its videos when
    one of its data sets sets `use_audio_in_video` (that audio goes through the audio tower)."""
    requires = CAPABILITIES[capability].requires
    datasets = data.get("datasets") or {}
    names = ((data.get("capabilities") or {}).get(capability) or {}).get("datasets") or ()
    with_audio = "video_in" in requires and any((datasets.get(name) or {}).get("use_audio_in_video") for name in names)
    return requires | {"audio_in"} if with_audio else requires




def tower_inputs(group: str) -> tuple[str, ...]:
    """The input modalities whose samples reach a tower group (a tower, a piece of it, or an encoder's projector)."""
    if group in _ENCODER_GROUPS:
        return _ENCODER_GROUPS[group][1]
    return _BASE_TOWERS[_TOWER_PIECES[group][0] if group in _TOWER_PIECES else group]


def feeds(capability: str, group: str, sources: dict[str, str], data: dict[str, Any]) -> bool:
    """Whether samples of `capability` reach `group`, so that the stage's loss has a gradient there."""
    if group == "thinker":  # a reply's tokens, or the queries' states the decoder loss reads
        return True
    if group in GENERATION_OUTPUTS:
        return bool(CAPABILITIES[capability].requires & set(GENERATION_OUTPUTS[group]))
    if group == "talker":  # the talker_realign objective: the capability's replies, spoken
        return "audio_out" in CAPABILITIES[capability].requires and sources.get("audio_out") == "base_model"
    inputs = capability_inputs(capability, data)
    source = _ENCODER_GROUPS[group][0] if group in _ENCODER_GROUPS else "base_model"
    return any(m in inputs and sources.get(m) == source for m in tower_inputs(group))


def stage_modules(
    capabilities: list[str],
    train: list[str],
    models: dict[str, PlannedModel],
    sources: dict[str, str],
    data: dict[str, Any],
) -> StageModules:
    """Split every model part into trainable and frozen groups for one stage."""
    training = data.get("training") or {}
    inputs = frozenset().union(*(capability_inputs(c, data) for c in capabilities if c in CAPABILITIES))
    needed = needed_modalities(capabilities) | inputs
    base = models["base_model"].detection
    lm_key = "thinker" if "thinker" in base.components else "language_model"
    lm = base.components[lm_key]
    lora = training.get("lora") or {}
    r = int(lora.get("r", 16))
    full = training.get("method", "lora") == "full"
    out = StageModules(language_model=lm, lm_loss=any(CAPABILITIES[c].loss_on != LOSS_DENOISING for c in capabilities if c in CAPABILITIES))

    out.thinker_trains = "thinker" in train
    if "thinker" in train and full:
        out.trainable.append(ModuleGroup(lm_key, lm["parameters"], "full fine-tuning"))
    else:
        out.frozen.append(ModuleGroup(lm_key, lm["parameters"], quantization=base.quantization))
        if "thinker" in train:
            targets = list(lora.get("target_modules") or [])
            parameters, how = lora_parameters(lm, r, targets), f"LoRA r={r} on {', '.join(targets)}"
            if lora.get("target_experts") and "experts" in lm:
                parameters += expert_lora_parameters(lm, r)
                how += f" and on all {lm['experts']['count']} experts of {lm['experts']['layers']} layers"
            out.trainable.append(ModuleGroup(f"{lm_key}.lora", parameters, how, added=True))

    for part, modalities in _BASE_TOWERS.items():
        if part in base.components:
            used = any(m in needed and sources.get(m) == "base_model" for m in modalities)
            _plan_tower(out, part, base.components[part], train, used, r if not full else None)
    if "talker" in base.components:
        talker = base.components["talker"]
        speaks = "audio_out" in needed and sources.get("audio_out") == "base_model"
        if "talker" in train:  # talker_realign: adapters on the talker, which reads the frozen thinker
            targets = list(lora.get("target_modules") or [])
            out.frozen.append(ModuleGroup("talker", talker["parameters"], "realigned to the tuned thinker"))
            out.trainable.append(ModuleGroup("talker.lora", lora_parameters(talker, r, targets), f"LoRA r={r} on {', '.join(targets)}", added=True))
        else:
            why = "scores talker consistency at evaluation" if speaks else "speaks at evaluation and chat only"
            out.frozen.append(ModuleGroup("talker", talker["parameters"], why, resident=speaks))
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

    if ASR_SLOT in models:
        recogniser = models[ASR_SLOT].detection
        out.frozen.append(ModuleGroup(ASR_SLOT, int(recogniser.parameters or 0), "transcribes in `omni-run data prepare`, not loaded in training", resident=False))

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
        if projector_name in train and models[slot].section.get("freeze") is False:
            out.trainable.append(_denoiser_lora(f"{slot}.{denoiser_key}", denoiser, r))
        if projector_name in train:
            width = int(denoiser.get("joint_attention_dim") or denoiser.get("cross_attention_dim") or lm_width)
            pooled = int(denoiser.get("pooled_projection_dim") or 0)
            params = projector_parameters(lm_width, width, models[slot].section.get("projector"), lm_width) + lm_width * pooled
            out.trainable.append(ModuleGroup(projector_name, params, f"language model -> {slot} conditioning ({width} wide)", added=True))
        if "query_tokens" in train:
            out.trainable.append(ModuleGroup(f"query_tokens.{modality.removesuffix('_out')}", queries * lm_width, f"{queries} learnable queries", added=True))
    return out


def _denoiser_lora(name: str, denoiser: dict[str, Any], r: int) -> ModuleGroup:
    """LoRA on every linear and convolution layer of a denoiser (models/generation.py), sized as if
    its parameters were square layers of its working width w: r x 2w per w x w layer, 2rP/w in all."""
    width = int(denoiser.get("hidden_size") or (denoiser.get("block_out_channels") or [320])[-1])
    parameters = 2 * r * int(denoiser.get("parameters") or 0) // max(1, width)
    return ModuleGroup(f"{name}.lora", parameters, f"LoRA r={r} on every linear and convolution layer (estimate)", added=True)


def _plan_tower(out: StageModules, part: str, tower: dict[str, Any], train: list[str], used: bool, lora_r: int | None) -> None:
    """A base-model tower: whole (LoRA on every linear layer, or full), and its fully trained piece.

    The tower's count includes its piece, so a piece that trains is taken out of the frozen tower;
    with full training the whole tower already holds it. `lora_r` is None for full training.
    """
    group, key = next((g, k) for g, (t, k) in _TOWER_PIECES.items() if t == part)
    piece = tower.get(key) or {"parameters": 0}
    whole, alone = part in train, group in train and not (part in train and lora_r is None)
    if whole and lora_r is None:
        out.trainable.append(ModuleGroup(part, tower["parameters"], "full fine-tuning"))
    else:
        out.frozen.append(ModuleGroup(part, tower["parameters"] - (piece["parameters"] if alone else 0), resident=used or whole or alone))
    if whole and lora_r is not None:
        out.trainable.append(ModuleGroup(f"{part}.lora", lora_r * tower["lora_widths"], f"LoRA r={lora_r} on every linear layer but the {key}'s", added=True))
    if alone:
        out.trainable.append(ModuleGroup(group, piece["parameters"], "trained fully"))
    if whole:
        out.trained_towers.append(tower)
    elif used or alone:
        out.towers.append(tower)
