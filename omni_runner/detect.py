"""Modality detection: what a model folder can take in and put out, read from its config files only.

The planner gates capabilities on modalities, so it must know them before any weights load (and on
machines, like CI, that have only the configs). Every conclusion records the file and key it came
from, so a surprising answer can be checked by hand. Nothing here imports torch; `.nemo` archives are
read with `tarfile` without extracting the weights.
"""

from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omni_runner import param_count
from omni_runner.capabilities import MODALITIES
from omni_runner.models.quantization import stored_quantization
from omni_runner.plain_yaml import YAMLError, load_plain_yaml

ROLES = ("base", "encoder", "decoder")
_TEXT = ("text_in", "text_out")
_VISION = ("image_in", "video_in")

# diffusers pipeline class -> (output modality, conditioning modality)
_DIFFUSERS_PIPELINES: dict[str, tuple[str, str]] = {
    "StableDiffusion3Pipeline": ("image_out", "text_in"),
    "StableDiffusionXLPipeline": ("image_out", "text_in"),
    "StableDiffusionPipeline": ("image_out", "text_in"),
    "FluxPipeline": ("image_out", "text_in"),
    "StableVideoDiffusionPipeline": ("video_out", "image_in"),
}
_TEXT_ONLY_TYPES = ("qwen2", "qwen3", "llama", "mistral", "gemma", "gemma2", "phi3")
_VISION_ENCODER_TYPES = ("siglip", "siglip2", "siglip_vision_model", "siglip2_vision_model", "clip", "clip_vision_model")
_PARAKEET_TYPES = ("parakeet_ctc", "parakeet_tdt", "parakeet_rnnt", "parakeet_encoder")
# Denoiser config keys the planner needs to size activations (latent size, frames, widths).
_DENOISER_SHAPE_KEYS = (
    "sample_size",
    "patch_size",
    "joint_attention_dim",
    "pooled_projection_dim",
    "block_out_channels",
    "layers_per_block",
    "down_block_types",
    "num_frames",
    "cross_attention_dim",
)
_BYTES_PER_PARAM = {"float32": 4, "F32": 4, "bfloat16": 2, "float16": 2, "BF16": 2, "F16": 2}


class DetectionError(Exception):
    """A folder or file that cannot be read as a model, with what to do about it."""


@dataclass(frozen=True)
class Evidence:
    file: str
    key: str
    conclusion: str

    def to_json(self) -> dict[str, str]:
        return {"file": self.file, "key": self.key, "conclusion": self.conclusion}


@dataclass
class Detection:
    """What one model folder provides. `components` holds per-part dimensions for the planner."""

    path: str
    role: str
    model_type: str
    modalities: tuple[str, ...]
    quantization: str | None
    parameters: int | None
    evidence: list[Evidence]
    components: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "role": self.role,
            "model_type": self.model_type,
            "modalities": list(self.modalities),
            "quantization": self.quantization,
            "parameters": self.parameters,
            "evidence": [e.to_json() for e in self.evidence],
            "components": self.components,
        }


class _Findings:
    """Collects modalities and evidence while one detector walks a config."""

    def __init__(self) -> None:
        self.modalities: set[str] = set()
        self.evidence: list[Evidence] = []

    def add(self, file: str, key: str, conclusion: str, *modalities: str) -> None:
        self.modalities.update(modalities)
        self.evidence.append(Evidence(file, key, conclusion))

    def ordered(self) -> tuple[str, ...]:
        return tuple(m for m in MODALITIES if m in self.modalities)


def detect(path: str | Path) -> Detection:
    """Detect a model folder, a diffusers pipeline folder, or a NeMo `.nemo` file."""
    target = Path(path).expanduser()
    if not target.exists():
        raise DetectionError(f"{target}: no such file or folder. Check the path, or set `architecture:` in the recipe to plan without it.")
    if target.is_file():
        if target.suffix == ".nemo":
            return _detect_nemo(target)
        raise DetectionError(f"{target}: a file, but not a `.nemo` archive. Point at the model folder (the one holding config.json).")
    if (target / "model_index.json").is_file():
        return _detect_diffusers(target)
    if (target / "config.json").is_file():
        return _detect_transformers(target)
    nemo_files = sorted(target.glob("*.nemo"))
    if len(nemo_files) == 1:
        return _detect_nemo(nemo_files[0])
    raise DetectionError(
        f"{target}: no config.json, model_index.json or .nemo file here, so this is not a model folder "
        "omni-run can read. Point at the folder that holds the model's config.json (a Hugging Face "
        "snapshot), a diffusers pipeline (model_index.json) or a NeMo .nemo file."
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise DetectionError(f"{path}: cannot be read ({error.strerror or error}).") from None
    except UnicodeDecodeError:
        raise DetectionError(f"{path}: not UTF-8 text; is this really a config file?") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise DetectionError(f"{path}:{error.lineno}:{error.colno}: not valid JSON ({error.msg}).") from None
    if not isinstance(data, dict):
        raise DetectionError(f"{path}: expected a JSON object at the top, found {type(data).__name__}.")
    return data


def _quantization(config: dict[str, Any], findings: _Findings) -> str | None:
    """Name the weight quantization from `quantization_config` (GPTQ, AWQ, bitsandbytes, ...)."""
    stored = stored_quantization(config)
    if stored is None:
        return None
    findings.add("config.json", f"{stored.key}.quant_method", f"{stored.describe()}: weights are {stored.name}")
    return stored.name


def _text_section(config: dict[str, Any]) -> dict[str, Any]:
    """The language-model dimensions: nested `text_config` (transformers 5) or flat (older releases)."""
    nested = config.get("text_config")
    return nested if isinstance(nested, dict) and "hidden_size" in nested else config


def _language_model(section: dict[str, Any], **overrides: Any) -> dict[str, Any] | None:
    try:
        return param_count.language_model(
            hidden_size=int(section["hidden_size"]),
            intermediate_size=int(section["intermediate_size"]),
            num_hidden_layers=int(section["num_hidden_layers"]),
            num_attention_heads=int(section["num_attention_heads"]),
            num_key_value_heads=section.get("num_key_value_heads"),
            vocab_size=int(section["vocab_size"]),
            head_dim=section.get("head_dim"),
            tie_word_embeddings=bool(section.get("tie_word_embeddings", False)),
            **overrides,
        )
    except (KeyError, TypeError, ValueError):
        return None


def _qwen_vision_tower(vision: dict[str, Any]) -> dict[str, Any]:
    """The Qwen2-VL / Qwen2.5-VL / Omni vision tower: ViT blocks plus a 2x2 patch-merger into the LLM width."""
    hidden = int(vision.get("hidden_size", vision.get("embed_dim", 1280)))
    if vision.get("embed_dim") and vision.get("hidden_size") and vision["hidden_size"] != vision["embed_dim"]:
        hidden = int(vision["embed_dim"])  # Qwen2-VL: hidden_size is the LLM width, embed_dim the tower's
    out = int(vision.get("out_hidden_size", vision.get("hidden_size", hidden)))
    merged = hidden * int(vision.get("spatial_merge_size", 2)) ** 2
    patch = int(vision.get("patch_size", 14))
    stem = int(vision.get("in_channels", 3)) * int(vision.get("temporal_patch_size", 2)) * patch * patch * hidden
    intermediate = int(vision.get("intermediate_size", hidden * int(vision.get("mlp_ratio", 4))))
    gated = "intermediate_size" in vision  # Qwen2.5-VL towers use SwiGLU; Qwen2-VL uses mlp_ratio GELU
    return param_count.transformer_encoder(
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_layers=int(vision.get("depth", 32)),
        gated_mlp=gated,
        extra=stem + merged * merged + merged * out,
    )


def _audio_tower(audio: dict[str, Any], output_dim: int | None = None) -> dict[str, Any]:
    """A Whisper-style audio encoder (Qwen2-Audio, the Omni audio tower): two conv stems plus a transformer."""
    d = int(audio.get("d_model", 1280))
    mels = int(audio.get("num_mel_bins", 128))
    out = int(audio.get("output_dim", output_dim or d))
    return param_count.transformer_encoder(
        hidden_size=d,
        intermediate_size=int(audio.get("encoder_ffn_dim", 4 * d)),
        num_layers=int(audio.get("encoder_layers", 32)),
        extra=3 * mels * d + 3 * d * d + d * out,
    )


def _token2wav(config: dict[str, Any]) -> dict[str, Any]:
    """The Omni speech renderer: a DiT (codec tokens -> mel) and a BigVGAN vocoder (mel -> waveform)."""
    dit = config.get("dit_config", {}) or {}
    dim = int(dit.get("hidden_size", dit.get("dim", 1024)))
    dit_part = param_count.diffusion_transformer(
        hidden_size=dim,
        num_layers=int(dit.get("num_hidden_layers", dit.get("depth", 22))),
        streams=1,
        mlp_ratio=int(dit.get("ff_mult", 2)),
    )
    vocoder = config.get("bigvgan_config", {}) or {}
    channels = int(vocoder.get("upsample_initial_channel", 1536))
    kernels = sum(vocoder.get("resblock_kernel_sizes", (3, 7, 11)))
    vocoder_params = 0
    for stage, kernel in enumerate(vocoder.get("upsample_kernel_sizes", (11, 7, 4, 4, 4, 4))):
        c_in, c_out = channels >> stage, channels >> (stage + 1)
        vocoder_params += c_in * c_out * int(kernel) + 6 * c_out * c_out * kernels
    return {"kind": "decoder", "parameters": dit_part["parameters"] + vocoder_params, "quantizable": 0}


def _detect_transformers(folder: Path) -> Detection:
    config = _read_json(folder / "config.json")
    model_type = str(config.get("model_type", "")).lower()
    architectures = config.get("architectures") or []
    findings = _Findings()
    quantization = _quantization(config, findings)
    components: dict[str, dict[str, Any]] = {}
    family = next((detector for types, detector in _FAMILIES if model_type in types), None)
    if family is None and _has_language_model_structure(config):
        family = _by_structure
    if family is None:
        raise DetectionError(
            f"{folder / 'config.json'}: model_type {model_type or '(missing)'!r}"
            f"{' (architectures ' + ', '.join(map(str, architectures)) + ')' if architectures else ''} is not a family "
            "omni-run knows. Known: Qwen2.5-Omni, Qwen3-Omni, Qwen2.5/Llama text models, Qwen2-VL/Qwen2.5-VL, Qwen2-Audio, "
            "SigLIP/SigLIP2, Whisper, Parakeet, diffusers SD3/SVD, and by structure any decoder-only language model "
            "(a *ForCausalLM) or one with a text_config beside a vision_config or audio_config (LLaVA-style). "
            "Set `architecture:` in the recipe to plan with a known one."
        )
    role = family(model_type, config, folder, findings, components)
    if architectures:
        findings.add("config.json", "architectures", ", ".join(map(str, architectures)))
    return Detection(
        path=str(folder),
        role=role,
        model_type=model_type,
        modalities=findings.ordered(),
        quantization=quantization,
        parameters=_parameters(folder, components, findings),
        evidence=findings.evidence,
        components=components,
    )


# Each family detector fills `components` and `findings` from config.json, and returns the role.
Components = dict[str, dict[str, Any]]


# Omni tower config keys and transformers' defaults for them (Qwen2_5Omni{Vision,Audio}EncoderConfig).
_OMNI_VISION_DIMS = {"hidden_size": 3584, "intermediate_size": 3420, "depth": 32, "out_hidden_size": 3584,
                     "spatial_merge_size": 2, "patch_size": 14, "temporal_patch_size": 2, "in_channels": 3}
_OMNI_AUDIO_DIMS = {"d_model": 1280, "encoder_ffn_dim": 5120, "encoder_layers": 32, "output_dim": 3584, "num_mel_bins": 128}


def _dims(config: dict[str, Any], defaults: dict[str, int]) -> dict[str, int]:
    return {key: int(config.get(key, default)) for key, default in defaults.items()}


def _omni(model_type: str, config: dict[str, Any], folder: Path, findings: _Findings, components: Components) -> str:
    thinker = config.get("thinker_config", config) or {}
    findings.add("config.json", "model_type", f"{model_type}: Qwen2.5-Omni thinker{'-talker' if 'talker_config' in config else ''} model", *_TEXT)
    components["thinker"] = _language_model(_text_section(thinker)) or {}
    if isinstance(thinker.get("vision_config"), dict):
        findings.add("config.json", "thinker_config.vision_config", "vision tower: images and video frames", *_VISION)
        components["vision_tower"] = param_count.qwen_omni_vision_tower(**_dims(thinker["vision_config"], _OMNI_VISION_DIMS))
    if isinstance(thinker.get("audio_config"), dict):
        findings.add("config.json", "thinker_config.audio_config", "audio tower: speech and sound in", "audio_in")
        components["audio_tower"] = param_count.qwen_omni_audio_tower(**_dims(thinker["audio_config"], _OMNI_AUDIO_DIMS))
    talker, token2wav = config.get("talker_config"), config.get("token2wav_config")
    if isinstance(talker, dict) and isinstance(token2wav, dict) and config.get("enable_audio_output", True):
        findings.add("config.json", "talker_config", "talker: speech codec tokens from thinker states")
        findings.add("config.json", "token2wav_config", "token2wav: codec tokens to waveform", "audio_out")
        components["talker"] = _language_model(talker, embedding_size=talker.get("embedding_size")) or {}
        components["token2wav"] = _token2wav(token2wav)
    return "base"


# Qwen3-Omni's tower and decoder config keys and transformers' defaults for them
# (Qwen3OmniMoe{Vision,Audio}EncoderConfig, Qwen3OmniMoeTextConfig).
_OMNI3_VISION_DIMS = {"hidden_size": 1152, "intermediate_size": 4304, "depth": 27, "out_hidden_size": 3584,
                      "num_position_embeddings": 2304, "spatial_merge_size": 2, "patch_size": 16,
                      "temporal_patch_size": 2, "in_channels": 3}
_OMNI3_AUDIO_DIMS = {"d_model": 1280, "encoder_ffn_dim": 5120, "encoder_layers": 32, "output_dim": 3584,
                     "num_mel_bins": 128, "downsample_hidden_size": 480}
_MOE_TEXT_DEFAULTS = {"hidden_size": 2048, "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28,
                      "num_key_value_heads": 4, "vocab_size": 3584, "num_experts": 128, "num_experts_per_tok": 8,
                      "moe_intermediate_size": 768, "decoder_sparse_step": 1}


def _moe_language_model(section: dict[str, Any], defaults: dict[str, int] = _MOE_TEXT_DEFAULTS, **overrides: Any) -> dict[str, Any]:
    """A Qwen3-MoE decoder from its config section (the talker names its expert count `num_local_experts`)."""
    dims = {key: int(section.get(key, section.get("num_local_experts") if key == "num_experts" else None) or default)
            for key, default in defaults.items()}
    return param_count.moe_language_model(
        **dims,
        head_dim=section.get("head_dim"),
        tie_word_embeddings=bool(section.get("tie_word_embeddings", False)),
        mlp_only_layers=tuple(section.get("mlp_only_layers") or ()),
        shared_expert_intermediate_size=int(section.get("shared_expert_intermediate_size") or 0),
        **overrides,
    )


def _qwen3_talker(talker: dict[str, Any]) -> dict[str, Any]:
    """The Qwen3-Omni talker: a MoE decoder over codec tokens, two MLPs that resize thinker states into it,
    and the code predictor (a dense decoder with one embedding and one head per residual codebook)."""
    text = talker.get("text_config") or {}
    decoder = _moe_language_model(text, {**_MOE_TEXT_DEFAULTS, "hidden_size": 1024, "intermediate_size": 2048,
                                         "num_hidden_layers": 20, "num_attention_heads": 16, "num_key_value_heads": 2,
                                         "vocab_size": 3072, "moe_intermediate_size": 384})
    thinker, width = int(talker.get("thinker_hidden_size", 2048)), decoder["hidden_size"]
    resize = 2 * (thinker * thinker + thinker + thinker * width + width)
    predictor = talker.get("code_predictor_config") or {}
    groups = int(predictor.get("num_code_groups", talker.get("num_code_groups", 32))) - 1
    stack = _language_model({"hidden_size": 1024, "intermediate_size": 3072, "num_hidden_layers": 5, "num_attention_heads": 16,
                             "num_key_value_heads": 8, "head_dim": 128, **predictor, "vocab_size": 0}) or {}
    codebooks = 2 * groups * int(predictor.get("vocab_size", 2048)) * int(stack.get("hidden_size", 1024))
    extra = resize + int(stack.get("parameters", 0)) + codebooks
    return {**decoder, "parameters": decoder["parameters"] + extra, "active_parameters": decoder["active_parameters"] + extra}


def _code2wav(config: dict[str, Any]) -> dict[str, Any]:
    """Qwen3-Omni's code2wav: codec embeddings, a sliding-window transformer, ConvNeXt upsampling, then a
    causal-convolution vocoder (SnakeBeta activations) from `decoder_dim` channels down to the waveform."""
    h = int(config.get("hidden_size", 1024))
    inner = int(config.get("intermediate_size", 3072))
    layers = int(config.get("num_hidden_layers", 8))
    transformer = layers * (4 * h * h + 3 * h * inner + 4 * h) + h
    embeddings = int(config.get("num_quantizers", 16)) * int(config.get("codebook_size", 2048)) * h
    upsample = sum(h * h * ratio + h + (7 * h + h) + 2 * h + (8 * h * h + 5 * h) for ratio in config.get("upsampling_ratios", (2, 2)))
    channels = int(config.get("decoder_dim", 1536))
    vocoder = 7 * h * channels + channels
    for stage, rate in enumerate(config.get("upsample_rates", (8, 5, 4, 3))):
        c_in, c_out = channels >> stage, channels >> (stage + 1)
        vocoder += 2 * c_in + 2 * rate * c_in * c_out + c_out + 3 * (4 * c_out + 8 * c_out * c_out + 2 * c_out)
    vocoder += 2 * (channels >> 4) + 7 * (channels >> 4) + 1
    return {"kind": "decoder", "parameters": transformer + embeddings + upsample + vocoder, "quantizable": 0}


def _omni3(model_type: str, config: dict[str, Any], folder: Path, findings: _Findings, components: Components) -> str:
    thinker = config.get("thinker_config", config) or {}
    text = thinker.get("text_config") or {}
    lm = _moe_language_model(text)
    experts = lm["experts"]
    talker, code2wav = config.get("talker_config"), config.get("code2wav_config")
    speaks = isinstance(talker, dict) and isinstance(code2wav, dict) and bool(config.get("enable_audio_output", True))
    findings.add("config.json", "model_type", f"{model_type}: Qwen3-Omni mixture-of-experts thinker{'-talker' if speaks else ''} model", *_TEXT)
    findings.add("config.json", "thinker_config.text_config.num_experts",
                 f"{experts['count']} experts of width {experts['intermediate_size']} in {experts['layers']} of "
                 f"{lm['layers']} layers, {experts['per_token']} routed per token: all resident, "
                 f"about {lm['parameters'] / 1e9:.2f} B language-model parameters, {lm['active_parameters'] / 1e9:.2f} B active per token")
    components["thinker"] = lm
    if isinstance(thinker.get("vision_config"), dict):
        vision = thinker["vision_config"]
        findings.add("config.json", "thinker_config.vision_config", "vision tower: images and video frames", *_VISION)
        components["vision_tower"] = param_count.qwen3_omni_vision_tower(
            **_dims(vision, _OMNI3_VISION_DIMS), deepstack_mergers=len(vision.get("deepstack_visual_indexes", (8, 16, 24))))
    if isinstance(thinker.get("audio_config"), dict):
        findings.add("config.json", "thinker_config.audio_config", "audio tower: speech and sound in", "audio_in")
        components["audio_tower"] = param_count.qwen3_omni_audio_tower(**_dims(thinker["audio_config"], _OMNI3_AUDIO_DIMS))
    if isinstance(talker, dict) and not speaks:
        findings.add("config.json", "enable_audio_output", "false: the talker and code2wav are not loaded, so no speech out")
    if speaks:
        findings.add("config.json", "talker_config", "talker: multi-codebook speech codec tokens from thinker states")
        findings.add("config.json", "code2wav_config", "code2wav: codec tokens to waveform", "audio_out")
        components["talker"] = _qwen3_talker(talker)
        components["code2wav"] = _code2wav(code2wav)
    return "base"


def _vision_language(model_type: str, config: dict[str, Any], folder: Path, findings: _Findings, components: Components) -> str:
    findings.add("config.json", "model_type", f"{model_type}: vision-language model", *_TEXT)
    components["language_model"] = _language_model(_text_section(config)) or {}
    if isinstance(config.get("vision_config"), dict):
        findings.add("config.json", "vision_config", "vision tower: images and video frames", *_VISION)
        components["vision_tower"] = _qwen_vision_tower(config["vision_config"])
    return "base"


def _audio_language(model_type: str, config: dict[str, Any], folder: Path, findings: _Findings, components: Components) -> str:
    findings.add("config.json", "model_type", f"{model_type}: audio-language model", *_TEXT)
    components["language_model"] = _language_model(_text_section(config)) or {}
    if isinstance(config.get("audio_config"), dict):
        findings.add("config.json", "audio_config", "audio tower: speech and sound in", "audio_in")
        components["audio_tower"] = _audio_tower(config["audio_config"])
    return "base"


def _text_only(model_type: str, config: dict[str, Any], folder: Path, findings: _Findings, components: Components) -> str:
    findings.add("config.json", "model_type", f"{model_type}: text-only language model", *_TEXT)
    components["language_model"] = _language_model(config) or {}
    return "base"


def _vision_encoder(model_type: str, config: dict[str, Any], folder: Path, findings: _Findings, components: Components) -> str:
    findings.add("config.json", "model_type", f"{model_type}: image encoder (video is read as sampled frames)", *_VISION)
    components["vision_tower"] = _vit(config.get("vision_config", config))
    if isinstance(config.get("text_config"), dict):
        components["text_tower"] = _vit(config["text_config"], vocab=config["text_config"].get("vocab_size"))
    _preprocessor_evidence(folder, findings)
    return "encoder"


def _whisper(model_type: str, config: dict[str, Any], folder: Path, findings: _Findings, components: Components) -> str:
    findings.add("config.json", "model_type", "whisper: speech recognition (audio encoder + text decoder)", "audio_in", "text_out")
    components["audio_tower"] = _audio_tower(config)
    d = int(config.get("d_model", 1280))
    layers = int(config.get("decoder_layers", 4))
    components["text_decoder"] = param_count.transformer_encoder(
        hidden_size=d,
        intermediate_size=int(config.get("decoder_ffn_dim", 4 * d)),
        num_layers=layers,
        extra=int(config.get("vocab_size", 51866)) * d + 4 * d * d * layers,  # embeddings + cross-attention
    )
    _preprocessor_evidence(folder, findings)
    return "encoder"


def _parakeet(model_type: str, config: dict[str, Any], folder: Path, findings: _Findings, components: Components) -> str:
    encoder = config if model_type == "parakeet_encoder" else config.get("encoder_config", config)
    outputs = ("audio_in",) if model_type == "parakeet_encoder" else ("audio_in", "text_out")
    findings.add("config.json", "model_type", f"{model_type}: Parakeet FastConformer speech recognition", *outputs)
    components["audio_tower"] = param_count.conformer_encoder(
        hidden_size=int(encoder.get("hidden_size", 1024)),
        intermediate_size=int(encoder.get("intermediate_size", 4096)),
        num_layers=int(encoder.get("num_hidden_layers", 24)),
        conv_kernel_size=int(encoder.get("conv_kernel_size", 9)),
    )
    return "encoder"


# Keys by which a multimodal config names its placeholder tokens, per input modality.
_PLACEHOLDER_TOKEN_KEYS = {
    "image_in": ("image_token_index", "image_token_id"),
    "video_in": ("video_token_index", "video_token_id"),
    "audio_in": ("audio_token_index", "audio_token_id"),
}
_PROJECTOR_KEYS = ("projector_hidden_act", "multimodal_projector_bias", "projector_type", "mm_projector_type")


def _has_language_model_structure(config: dict[str, Any]) -> bool:
    """A config omni-run can describe without knowing its model_type: a `text_config` beside a
    `vision_config` or `audio_config` (LLaVA, LLaVA-OneVision, PaliGemma, Ultravox and their kin), or a
    flat decoder-only language model that says so in `architectures` (a BERT-style encoder does not)."""
    text = config.get("text_config")
    if isinstance(text, dict) and any(isinstance(config.get(key), dict) for key in ("vision_config", "audio_config")):
        return True
    return any(str(name).endswith("ForCausalLM") for name in config.get("architectures") or ())


def _by_structure(model_type: str, config: dict[str, Any], folder: Path, findings: _Findings, components: Components) -> str:
    """A family known by its structure rather than its name: modalities from the sub-configs and
    placeholder tokens; sizes from the dimensions the config holds (a sub-config that leaves its
    dimensions to library defaults is not guessed at: the weights index sizes the model instead)."""
    findings.add("config.json", "model_type", f"{model_type or '(missing)'}: not a family known by name; read by the structure of its config", *_TEXT)
    language = _language_model(_text_section(config))
    vision, audio = config.get("vision_config"), config.get("audio_config")
    if isinstance(vision, dict):
        findings.add("config.json", "vision_config", f"{vision.get('model_type', 'a')} vision tower: images in", "image_in")
    if isinstance(audio, dict):
        findings.add("config.json", "audio_config", f"{audio.get('model_type', 'an')} audio tower: sound in", "audio_in")
    for modality, keys in _PLACEHOLDER_TOKEN_KEYS.items():
        key = next((k for k in keys if config.get(k) is not None), None)
        if key is not None:
            findings.add("config.json", key, f"placeholder token {config[key]}: {modality.removesuffix('_in')} features enter the text stream here", modality)
    projector = next((k for k in _PROJECTOR_KEYS if k in config), None)
    if projector is not None:
        findings.add("config.json", projector, "a projector maps the tower's features into the language model's width")
    if language is None:
        findings.add("config.json", "text_config", "language model dimensions are left to library defaults, so they are not counted from the config")
        return "base"
    components["language_model"] = language
    if isinstance(vision, dict) and "hidden_size" in vision:
        components["vision_tower"] = _vit(vision)
    if isinstance(audio, dict) and "d_model" in audio:
        components["audio_tower"] = _audio_tower(audio, output_dim=language["hidden_size"])
    return "base"


_FAMILIES = (
    (("qwen2_5_omni", "qwen2_5_omni_thinker"), _omni),
    (("qwen3_omni_moe", "qwen3_omni_moe_thinker"), _omni3),
    (("qwen2_vl", "qwen2_5_vl"), _vision_language),
    (("qwen2_audio",), _audio_language),
    (_TEXT_ONLY_TYPES, _text_only),
    (_VISION_ENCODER_TYPES, _vision_encoder),
    (("whisper",), _whisper),
    (_PARAKEET_TYPES, _parakeet),
)


def _vit(section: dict[str, Any], vocab: int | None = None) -> dict[str, Any]:
    hidden = int(section.get("hidden_size", 768))
    patch = int(section.get("patch_size", 16))
    image = int(section.get("image_size", 224))
    stem = vocab * hidden if vocab else 3 * patch * patch * hidden + (image // patch) ** 2 * hidden
    return param_count.transformer_encoder(
        hidden_size=hidden,
        intermediate_size=int(section.get("intermediate_size", 4 * hidden)),
        num_layers=int(section.get("num_hidden_layers", 12)),
        extra=stem,
    )


def _preprocessor_evidence(folder: Path, findings: _Findings) -> None:
    """The preprocessor says what input the encoder expects (image size, mel bins); shown as evidence."""
    path = folder / "preprocessor_config.json"
    if not path.is_file():
        return
    pre = _read_json(path)
    kind = pre.get("image_processor_type") or pre.get("feature_extractor_type") or pre.get("processor_class")
    detail = {k: pre[k] for k in ("size", "feature_size", "sampling_rate") if k in pre}
    findings.add(path.name, "image_processor_type" if "image_processor_type" in pre else "feature_extractor_type", f"{kind} {json.dumps(detail)}")


def _parameters(folder: Path, components: dict[str, dict[str, Any]], findings: _Findings) -> int | None:
    """Approximate count from config dims; the safetensors index's total_size when dims gave nothing."""
    counted = param_count.total(components)
    if counted:
        findings.add("config.json", "(dimensions)", f"about {counted / 1e9:.2f} B parameters from layer counts and widths")
        return counted
    return _index_parameters(folder, findings)


def _index_parameters(folder: Path, findings: _Findings, prefix: str = "") -> int | None:
    """The sharded checkpoint's index total_size; else, for one unsharded file, the shapes in its header."""
    for index in sorted(folder.glob("*.safetensors.index.json")):
        size = (_read_json(index).get("metadata") or {}).get("total_size")
        if isinstance(size, int) and size > 0:
            dtype = _folder_dtype(folder)
            params = size // _BYTES_PER_PARAM.get(dtype, 2)
            findings.add(prefix + index.name, "metadata.total_size", f"{size} bytes of {dtype or '16-bit'} weights: about {params / 1e9:.2f} B parameters")
            return params
    weights = sorted(folder.glob("*.safetensors"))
    if len(weights) == 1:
        params = _safetensors_header_parameters(weights[0])
        if params:
            findings.add(prefix + weights[0].name, "(header)", f"tensor shapes: {params:,} parameters")
            return params
    return None


def _safetensors_header_parameters(path: Path) -> int | None:
    """Parameters counted from a safetensors file's JSON header (8-byte length, then the header); no weights read."""
    try:
        with path.open("rb") as handle:
            length = int.from_bytes(handle.read(8), "little")
            if not 0 < length < 100_000_000:
                return None
            header = json.loads(handle.read(length))
    except (OSError, ValueError):
        return None
    total = 0
    for name, tensor in header.items():
        if name != "__metadata__" and isinstance(tensor, dict):
            count = 1
            for side in tensor.get("shape", ()):
                count *= int(side)
            total += count
    return total or None


def _folder_dtype(folder: Path) -> str | None:
    config = folder / "config.json"
    if not config.is_file():
        return None
    data = _read_json(config)
    return data.get("torch_dtype") or data.get("dtype")


def _detect_diffusers(folder: Path) -> Detection:
    index = _read_json(folder / "model_index.json")
    pipeline = str(index.get("_class_name", ""))
    if pipeline not in _DIFFUSERS_PIPELINES:
        raise DetectionError(
            f"{folder / 'model_index.json'}: pipeline {pipeline or '(no _class_name)'!r} is not one omni-run can "
            f"drive as a decoder. Known: {', '.join(_DIFFUSERS_PIPELINES)}."
        )
    output, conditioning = _DIFFUSERS_PIPELINES[pipeline]
    findings = _Findings()
    findings.add("model_index.json", "_class_name", f"{pipeline}: generates {output.removesuffix('_out')}s, conditioned on {conditioning}", output)
    components: dict[str, dict[str, Any]] = {}
    for name, spec in index.items():
        if name.startswith("_") or not (isinstance(spec, list) and len(spec) == 2 and spec[1]):
            continue
        sub_config = folder / name / "config.json"
        if not sub_config.is_file():
            continue
        component = _diffusers_component(str(spec[1]), _read_json(sub_config), folder / name, findings)
        if component is not None:
            components[name] = component
            findings.add(f"{name}/config.json", "(dimensions)", f"{spec[1]}: about {component['parameters'] / 1e6:.0f} M parameters")
    return Detection(
        path=str(folder),
        role="decoder",
        model_type=pipeline,
        modalities=(output,),
        quantization=None,
        parameters=param_count.total(components) or None,
        evidence=findings.evidence,
        components=components,
    )


def _diffusers_component(class_name: str, config: dict[str, Any], folder: Path, findings: _Findings) -> dict[str, Any] | None:
    """Size one pipeline component from its config; fall back to its safetensors index or header."""
    if class_name == "SD3Transformer2DModel":
        hidden = int(config.get("num_attention_heads", 24)) * int(config.get("attention_head_dim", 64))
        component = param_count.diffusion_transformer(hidden_size=hidden, num_layers=int(config.get("num_layers", 24)), streams=2)
        component.update({k: config[k] for k in _DENOISER_SHAPE_KEYS if k in config})
        return component
    if class_name in ("CLIPTextModelWithProjection", "CLIPTextModel", "CLIPVisionModelWithProjection"):
        return _vit(config, vocab=config.get("vocab_size") if "Text" in class_name else None)
    if class_name in ("T5EncoderModel",):
        d = int(config.get("d_model", 4096))
        inner = int(config.get("num_heads", 64)) * int(config.get("d_kv", 64))
        layers = int(config.get("num_layers", 24))
        return param_count.transformer_encoder(
            hidden_size=d,
            intermediate_size=int(config.get("d_ff", 10240)),
            num_layers=layers,
            gated_mlp=True,
            extra=int(config.get("vocab_size", 32128)) * d + layers * 4 * d * (inner - d),
        )
    params = _index_parameters(folder, findings, prefix=f"{folder.name}/")
    if not params:
        return None
    component = {"kind": "decoder", "parameters": params, "quantizable": 0}
    component.update({k: config[k] for k in _DENOISER_SHAPE_KEYS if k in config})
    return component


def _detect_nemo(archive: Path) -> Detection:
    """A NeMo checkpoint is a tar with `model_config.yaml` beside the weights; read only the YAML member."""
    try:
        with tarfile.open(archive) as tar:
            member = next((m for m in tar.getmembers() if m.name.lstrip("./") == "model_config.yaml"), None)
            if member is None:
                raise DetectionError(f"{archive}: a tar archive without model_config.yaml, so not a NeMo model.")
            handle = tar.extractfile(member)
            text = handle.read().decode("utf-8") if handle else ""
    except (tarfile.TarError, OSError) as error:
        raise DetectionError(f"{archive}: cannot be opened as a NeMo archive ({error}).") from None
    config = _parse_yaml(text, archive)
    target = str(config.get("target", config.get("_target_", "")))
    encoder = config.get("encoder") or {}
    findings = _Findings()
    if not ("asr" in target.lower() or "Conformer" in str(encoder.get("_target_", ""))):
        raise DetectionError(f"{archive}: NeMo model {target or '(no target)'!r} is not a speech recognition model; omni-run uses .nemo files only as ASR encoders.")
    loss = "TDT" if "tdt_durations" in (config.get("model_defaults") or {}) else "RNNT/CTC"
    findings.add(f"{archive.name}:model_config.yaml", "target", f"{target.rsplit('.', 1)[-1]} ({loss}): speech recognition", "audio_in", "text_out")
    components = {
        "audio_tower": param_count.conformer_encoder(
            hidden_size=int(encoder.get("d_model", 1024)),
            intermediate_size=int(encoder.get("d_model", 1024)) * int(encoder.get("ff_expansion_factor", 4)),
            num_layers=int(encoder.get("n_layers", 24)),
            conv_kernel_size=int(encoder.get("conv_kernel_size", 9)),
        )
    }
    findings.add(f"{archive.name}:model_config.yaml", "encoder", f"FastConformer, {encoder.get('n_layers')} layers of width {encoder.get('d_model')}")
    return Detection(
        path=str(archive),
        role="encoder",
        model_type="nemo-asr",
        modalities=findings.ordered(),
        quantization=None,
        parameters=param_count.total(components),
        evidence=findings.evidence,
        components=components,
    )


def _parse_yaml(text: str, source: Path) -> dict[str, Any]:
    try:
        data = load_plain_yaml(text)
    except YAMLError as error:
        raise DetectionError(f"{source}: model_config.yaml is not valid YAML ({error}).") from None
    if not isinstance(data, dict):
        raise DetectionError(f"{source}: model_config.yaml does not hold a mapping.")
    return data
