"""External encoders: a frozen SigLIP(2), CLIP or Whisper encoder and a trained projector into the thinker.

LLaVA's recipe, for encoders the base model does not have: the encoder's last hidden states (CLIP's
penultimate ones without the class token, as LLaVA takes them: its last layer is shaped for the
contrastive class token) are pooled (`projector.pool` neighbouring tokens averaged: k x k patches, or
consecutive 20 ms frames), a projector (two-layer MLP with GELU, or one linear layer) maps them to the language model's width,
and the results replace the token embeddings at the medium's placeholder tokens (expanded to the
right count by `omni_runner/data/external.py`). The encoders stay frozen and run without gradients;
only the projectors train (groups `vision_projector`, `audio_projector`), alone in an `align` stage
or beside the thinker's adapters afterwards.

Public API:
- `load_external_encoders(recipe_data, recipe_dir, lm_width, device, dtype) -> ExternalEncoders | None`.
- `external_features_for(recipe_data, recipe_dir, processor) -> ExternalFeatures | None`: the data side
  alone (preprocessors and pooling, no weights), for `data check` and `data preview`.
- `ExternalEncoders` (a torch module): `.vision`, `.audio` (`ProjectedEncoder` or None), `.groups`,
  `.embed_inputs(thinker, inputs) -> inputs` (input_ids become inputs_embeds when external media are in
  the batch), `.features(thinker_config) -> ExternalFeatures` for the data workers,
  `.projector_state()`, `.settings` (what `final/` records to rebuild them).
- `save_projectors(encoders, folder)`, `load_projectors(folder, thinker, device, dtype) -> ExternalEncoders | None`:
  `final/external_encoders.json` (encoder folders and projector settings) and
  `final/external_encoders.safetensors` (projector weights).
- `resolve_encoder_dir(path_value, recipe_dir)`: `builtin:tiny-siglip2` / `builtin:tiny-clip` / `builtin:tiny-whisper` build the tiny ones.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from omni_runner.data.external import (
    EXTERNAL_KEYS,
    AudioInputs,
    ExternalFeatures,
    VisionInputs,
)
from omni_runner.models.folders import read_trained_part, save_trained_part
from omni_runner.models.hf_env import offline_hub, quiet_transformers
from omni_runner.models.load import ModelLoadError
from omni_runner.paths import is_builtin

PART_NAME = "external_encoders"  # final/external_encoders.{json,safetensors}
SETTINGS_FILE, WEIGHTS_FILE = f"{PART_NAME}.json", f"{PART_NAME}.safetensors"
VISION_TYPES = {"siglip": "SiglipVisionModel", "siglip_vision_model": "SiglipVisionModel",
                "siglip2": "Siglip2VisionModel", "siglip2_vision_model": "Siglip2VisionModel",
                "clip": "CLIPVisionModel", "clip_vision_model": "CLIPVisionModel"}
CLASS_TOKEN_TYPES = ("clip_vision_model",)  # vision encoders whose sequence starts with a class token
AUDIO_TYPES = {"whisper": "WhisperModel"}
GROUP_OF_SLOT = {"vision": "vision_projector", "audio": "audio_projector"}


class Projector(nn.Module):
    """Encoder width -> language-model width: Linear-GELU-Linear (`mlp`) or one Linear (`linear`)."""

    def __init__(self, in_width: int, out_width: int, kind: str = "mlp", hidden: int | None = None) -> None:
        super().__init__()
        if kind == "linear":
            self.layers = nn.Sequential(nn.Linear(in_width, out_width))
        else:
            hidden = hidden or out_width
            self.layers = nn.Sequential(nn.Linear(in_width, hidden), nn.GELU(), nn.Linear(hidden, out_width))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.layers(tokens)


class ProjectedEncoder(nn.Module):
    """One frozen encoder with its projector; `forward(batch)` gives the projected tokens in reading order."""

    def __init__(self, slot: str, encoder: Any, inputs: Any, projector: Projector, settings: dict[str, Any]) -> None:
        super().__init__()
        self.slot = slot
        self.encoder = encoder.requires_grad_(False).eval()
        self.projector = projector
        self.inputs = inputs  # VisionInputs / AudioInputs: the workers' half, kept here to share settings
        self.settings = settings
        self.pool = inputs.pool  # the pooling kernel: k for k x k patches, or a count of frames
        self.class_token = encoder.config.model_type in CLASS_TOKEN_TYPES

    def train(self, mode: bool = True) -> ProjectedEncoder:
        super().train(mode)
        self.encoder.eval()  # frozen: dropout and the like stay off
        return self

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        with torch.no_grad():
            tokens = self._vision(batch) if self.slot == "vision" else self._audio(batch)
        return self.projector(tokens.to(self.projector.layers[0].weight.dtype))

    def _vision(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        pixels = batch["external_pixel_values"].to(self.encoder.dtype)
        arguments = {"pixel_values": pixels}
        if "external_pixel_attention_mask" in batch:
            arguments.update(pixel_attention_mask=batch["external_pixel_attention_mask"],
                             spatial_shapes=batch["external_spatial_shapes"])
        if self.class_token:
            hidden = self.encoder(**arguments, output_hidden_states=True).hidden_states[-2][:, 1:]
        else:
            hidden = self.encoder(**arguments).last_hidden_state
        pooled = []
        for states, (h, w) in zip(hidden, batch["external_spatial_shapes"].tolist(), strict=True):
            grid = states[: h * w].reshape(h, w, -1).permute(2, 0, 1)[None]
            grid = nn.functional.avg_pool2d(grid, self.pool, ceil_mode=True) if self.pool > 1 else grid
            pooled.append(grid[0].flatten(1).T)
        return torch.cat(pooled)

    def _audio(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = self.encoder(batch["external_audio_features"].to(self.encoder.dtype)).last_hidden_state
        pooled = []
        for states, frames in zip(hidden, batch["external_audio_frames"].tolist(), strict=True):
            window = states[:frames].T[None]
            window = nn.functional.avg_pool1d(window, self.pool, ceil_mode=True) if self.pool > 1 else window
            pooled.append(window[0].T)
        return torch.cat(pooled)


class ExternalEncoders(nn.Module):
    """The recipe's external encoders; placed beside the thinker, not inside it."""

    def __init__(self, vision: ProjectedEncoder | None, audio: ProjectedEncoder | None) -> None:
        super().__init__()
        self.vision = vision
        self.audio = audio

    @property
    def groups(self) -> dict[str, list[nn.Module]]:
        return {GROUP_OF_SLOT[slot]: [encoder.projector] for slot, encoder in self._present()}

    @property
    def settings(self) -> dict[str, Any]:
        return {slot: encoder.settings for slot, encoder in self._present()}

    def _present(self) -> list[tuple[str, ProjectedEncoder]]:
        return [(slot, encoder) for slot, encoder in (("vision", self.vision), ("audio", self.audio)) if encoder is not None]

    def features(self, config: Any) -> ExternalFeatures:
        """What the data side needs to prepare media for these encoders, for a thinker with `config`."""
        placeholders = {"image": config.image_token_id, "video": config.video_token_id, "audio": config.audio_token_id}
        return ExternalFeatures(self.vision.inputs if self.vision else None, self.audio.inputs if self.audio else None,
                                placeholders)

    def projector_state(self) -> dict[str, torch.Tensor]:
        return {f"{slot}.projector.{name}": tensor for slot, encoder in self._present()
                for name, tensor in encoder.projector.state_dict().items()}

    def embed_inputs(self, thinker: Any, inputs: dict[str, Any]) -> dict[str, Any]:
        """`inputs` for the thinker's forward: when the batch carries external media, `input_ids` become
        `inputs_embeds` with the projected tokens at their placeholders (in reading order)."""
        batch = {key: inputs.pop(key) for key in EXTERNAL_KEYS if key in inputs}
        if not batch:
            return inputs
        input_ids = inputs.pop("input_ids")
        embeds = thinker.get_input_embeddings()(input_ids)
        for slot, encoder in self._present():
            if not any(key in batch for key in _SLOT_KEYS[slot]):
                continue
            placeholders = torch.zeros_like(input_ids, dtype=torch.bool)
            for token in _placeholders(thinker, slot):
                placeholders |= input_ids == token
            tokens = encoder(batch)
            if int(placeholders.sum()) != tokens.shape[0]:
                raise ValueError(f"{slot} encoder: {tokens.shape[0]} projected tokens for {int(placeholders.sum())} "
                                 "placeholders; the data and the projector's pooling disagree")
            embeds = embeds.masked_scatter(placeholders[..., None], tokens.to(embeds.dtype))
        return {**inputs, "inputs_embeds": embeds}


_SLOT_KEYS = {"vision": ("external_pixel_values",), "audio": ("external_audio_features",)}


def _placeholders(thinker: Any, slot: str) -> tuple[int, ...]:
    config = thinker.config
    if slot == "vision":
        return (config.image_token_id, config.video_token_id)
    return (config.audio_token_id,)


# ---------------------------------------------------------------- loading


def resolve_encoder_dir(path_value: str, recipe_dir: Path) -> Path:
    """An encoder path on disk; the built-in tiny encoders are built on first use."""
    from omni_runner.models.tiny_encoders import TINY_ENCODER_FAMILY

    return TINY_ENCODER_FAMILY.resolve(path_value, recipe_dir, "encoder")


def _model_type(folder: Path, slot: str) -> str:
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"encoders.{slot}.path: cannot read {folder / 'config.json'} ({error}); "
                             "point it at a transformers model folder.") from None
    return str(config.get("model_type", ""))


def _encoder_class(slot: str, folder: Path) -> str:
    """The transformers class that loads the encoder in `folder`; ModelLoadError for any other model."""
    model_type = _model_type(folder, slot)
    known = VISION_TYPES if slot == "vision" else AUDIO_TYPES
    if model_type not in known:
        raise ModelLoadError(f"encoders.{slot}.path: {folder} holds a {model_type or 'unknown'!r} model; "
                             f"encoders.{slot} loads {', '.join(sorted(set(known)))} models.")
    return known[model_type]


def _encoder_inputs(slot: str, folder: Path, config: Any, pool: int) -> VisionInputs | AudioInputs:
    """The data side of one encoder: its preprocessor (from `folder`) and the pooling of its tokens."""
    import transformers

    if slot == "vision":
        side = round(pool ** 0.5)
        if side * side != pool:
            raise ModelLoadError(f"encoders.vision.projector.pool is {pool}: vision pools a square of patches "
                                 "(1, 4, 9, 16, ...).")
    try:
        with quiet_transformers():
            if slot == "vision":
                processor = transformers.AutoImageProcessor.from_pretrained(folder, local_files_only=True)
                return VisionInputs(processor, int(config.patch_size), side)
            return AudioInputs(transformers.WhisperFeatureExtractor.from_pretrained(folder, local_files_only=True), pool)
    except (OSError, ValueError, KeyError) as error:
        raise ModelLoadError(f"cannot load the preprocessor of encoders.{slot} from {folder}: {error}") from None


def _load_encoder(slot: str, folder: Path, dtype: Any, device: Any) -> tuple[Any, int]:
    """The frozen encoder module and its output width."""
    import transformers

    class_name = _encoder_class(slot, folder)
    try:
        with quiet_transformers():
            model = getattr(transformers, class_name).from_pretrained(folder, dtype=dtype, local_files_only=True)
    except (OSError, ValueError, RuntimeError, KeyError) as error:
        raise ModelLoadError(f"cannot load encoders.{slot} from {folder}: {error}") from None
    if slot == "audio":
        model = model.get_encoder()  # the decoder of a Whisper checkpoint is never used
    width = model.config.hidden_size if slot == "vision" else model.config.d_model
    return model.to(device), int(width)


def build_encoder(slot: str, settings: dict[str, Any], lm_width: int, device: Any, dtype: Any) -> ProjectedEncoder:
    """One external encoder from its settings (`folder`, `pool`, `projector_type`, `projector_hidden`)."""
    folder, pool = Path(settings["folder"]), int(settings.get("pool") or 1)
    encoder, width = _load_encoder(slot, folder, dtype, device)
    inputs = _encoder_inputs(slot, folder, encoder.config, pool)
    projector = Projector(width, lm_width, settings.get("projector_type") or "mlp", settings.get("projector_hidden"))
    # Projectors train in fp32 like LoRA weights (ARCHITECTURE.md): they are small and new.
    projector.to(device=device, dtype=torch.float32)
    return ProjectedEncoder(slot, encoder, inputs, projector, settings)


def _recipe_settings(recipe_data: dict[str, Any], recipe_dir: Path) -> dict[str, dict[str, Any]]:
    """Per slot present: the encoder's folder (built-in tiny ones built) and its projector settings."""
    sections = recipe_data.get("encoders") or {}
    settings = {}
    for slot in ("vision", "audio"):
        section = sections.get(slot)
        if section:
            projector = section.get("projector") or {}
            settings[slot] = {"path": str(section["path"]),
                              "folder": str(resolve_encoder_dir(str(section["path"]), Path(recipe_dir))),
                              "pool": int(projector.get("pool") or 1), "projector_type": projector.get("type") or "mlp",
                              "projector_hidden": projector.get("hidden_size")}
    return settings


def load_external_encoders(
    recipe_data: dict[str, Any], recipe_dir: Path, lm_width: int, device: Any, dtype: Any,
) -> ExternalEncoders | None:
    """The recipe's `encoders.vision` / `encoders.audio`, frozen, with fresh projectors (seeded by the caller)."""
    offline_hub()
    built = {slot: build_encoder(slot, settings, lm_width, device, dtype)
             for slot, settings in _recipe_settings(recipe_data, recipe_dir).items()}
    return ExternalEncoders(built.get("vision"), built.get("audio")) if built else None


def external_features_for(recipe_data: dict[str, Any], recipe_dir: Path, processor: Any) -> ExternalFeatures | None:
    """The data side of the recipe's external encoders without loading their weights (for `data check`
    and `data preview`): preprocessors, pooling, and the base processor's placeholder ids."""
    import transformers

    offline_hub()
    inputs = {}
    for slot, settings in _recipe_settings(recipe_data, recipe_dir).items():
        folder = Path(settings["folder"])
        _encoder_class(slot, folder)
        config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True) if slot == "vision" else None
        inputs[slot] = _encoder_inputs(slot, folder, getattr(config, "vision_config", config), settings["pool"])
    if not inputs:
        return None
    placeholders = {"image": processor.image_token_id, "video": processor.video_token_id, "audio": processor.audio_token_id}
    return ExternalFeatures(inputs.get("vision"), inputs.get("audio"), placeholders)


# ---------------------------------------------------------------- final/


def save_projectors(encoders: ExternalEncoders, folder: Path) -> None:
    """Write the projectors and what rebuilds them (encoder folders, pooling, shapes) into `folder`."""
    save_trained_part(folder, PART_NAME, encoders.settings, encoders.projector_state())


def load_projectors(folder: Path, lm_width: int, device: Any, dtype: Any) -> ExternalEncoders | None:
    """The external encoders a `final/` folder was trained with, projectors restored; None if it has none."""
    part = read_trained_part(folder, PART_NAME, "the external encoders' projectors")
    if part is None:
        return None
    settings, state = part
    built = {}
    for slot, slot_settings in settings.items():
        # A built-in tiny encoder is rebuilt where the cache is now; other encoders stay where they were.
        path = slot_settings.get("path")
        folder_now = resolve_encoder_dir(path, Path(folder)) if path and is_builtin(path) else Path(slot_settings["folder"])
        built[slot] = build_encoder(slot, {**slot_settings, "folder": str(folder_now)}, lm_width, device, dtype)
    encoders = ExternalEncoders(built.get("vision"), built.get("audio"))
    result = encoders.load_state_dict(state, strict=False)
    missing = [name for name in result.missing_keys if ".projector." in name]
    if result.unexpected_keys or missing:
        raise ModelLoadError(f"{folder / WEIGHTS_FILE} does not fit the encoders in {folder / SETTINGS_FILE} "
                             f"({', '.join((result.unexpected_keys or missing)[:3])}); train again.")
    return encoders.requires_grad_(False).eval()
