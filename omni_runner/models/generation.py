"""Generation through frozen diffusion decoders: learnable queries -> connector -> SD3 or SVD.

MetaQuery's and BLIP3-o's recipe for an omni model that also draws. N learnable query vectors
(`decoders.<kind>.query_tokens`, written `<gen_image_0..N-1>` in the docs) are placed after the
prompt and its reply (the generation chain of thought, when the data has one); the thinker reads
them causally, and their final hidden states (after the language model's last norm) go through a
trained connector into the decoder's own conditioning inputs:
- SD3 (`StableDiffusion3Pipeline`): `encoder_hidden_states` of width `joint_attention_dim`, one per
  query, and `pooled_projections` (width `pooled_projection_dim`) from the mean query state.
- SVD (`StableVideoDiffusionPipeline`): `encoder_hidden_states` of the UNet's
  `cross_attention_dim`, one per query, where SVD puts its single CLIP image embedding; the first
  frame's latents are concatenated to every frame as SVD does.
The queries are not tokenizer entries: they are positions whose input embeddings are the learned
vectors (like the external encoders' projected tokens), so the vocabulary, and with LoRA the frozen
embedding matrix, never change.

The loss is the decoder's own objective, back-propagated through the frozen denoiser into the
connector, the queries and the language model's adapters:
- SD3: rectified flow as diffusers' SD3 training scripts compute it: logit-normal timestep density,
  the `FlowMatchEulerDiscreteScheduler`'s sigmas, x_t = (1 - s) x0 + s noise, target noise - x0.
- SVD: the EDM denoising objective (Karras et al.), as SVD fine-tuning scripts compute it: log-normal
  sigma (P_mean 0.7, P_std 1.6), c_in/c_skip/c_out preconditioning, weight (s^2 + 1) / s^2.
Noise and timesteps are drawn from a generator seeded by (training seed, step, micro-batch), so a
resumed run draws exactly what the uninterrupted one did.

The denoiser and VAE stay frozen. `decoders.<kind>.freeze: false` puts LoRA adapters (rank
`training.lora.r`) on every linear and 2-D convolution layer of the denoiser; they train with the
decoder's projector group. A decoder loads only while a
stage trains a capability that needs it (`GenerationHeads.use`); one with adapters stays loaded.

Public API:
- `GenerationHeads` (`connectors`, `decoders`, `groups`, `use`, `set_trainable`, `embed_queries`,
  `settings`, `kinds`), `Decoder` (`loss`, `encode`, `vae_only`), `QueryConnector.condition`.
- `load_generation_heads`, `recipe_decoder_settings`, `recipe_generation_samples` (the data side,
  without weights), `save_generation`, `load_generation` (`final/generation.{json,safetensors}`).
- The trainer's side: `target_specs`, `settings_target_specs`, `vae_identity`, `TargetLatents`,
  `FinalHiddenStates`, `query_states`, `step_generator`.
- `QUERY_GROUP`, `PROJECTOR_GROUP_OF`, `SVD_FPS`, `SVD_MOTION_BUCKET`, `SVD_NOISE_AUG`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from omni_runner.models.encoders import Projector
from omni_runner.models.folders import read_trained_part, save_trained_part
from omni_runner.models.load import ModelLoadError
from omni_runner.models.tiny_decoders import resolve_decoder_dir

PART_NAME = "generation"  # final/generation.{json,safetensors}
SETTINGS_FILE, WEIGHTS_FILE = f"{PART_NAME}.json", f"{PART_NAME}.safetensors"
QUERY_GROUP = "query_tokens"
PROJECTOR_GROUP_OF = {"image": "image_projector", "video": "video_projector"}
DECODER_SLOTS = {"image": "decoders.image", "video": "decoders.video"}
# SVD's conditioning scalars (its pipeline's defaults); training and generation use the same ones.
SVD_FPS, SVD_MOTION_BUCKET, SVD_NOISE_AUG = 7, 127, 0.02
EDM_P_MEAN, EDM_P_STD = 0.7, 1.6


@dataclass
class DecoderShape:
    """What one decoder trains at (the plan's fitting decisions): latent side, frames (video), and
    the VAE's pixel factor, which together give the target's pixel size."""

    latent_side: int
    frames: int
    vae_scale: int

    @property
    def pixel_side(self) -> int:
        return self.latent_side * self.vae_scale


class QueryConnector(nn.Module):
    """N learnable queries and the connector from their final hidden states to a decoder's conditioning."""

    def __init__(self, count: int, lm_width: int, cond_width: int, pooled_width: int, projector: dict[str, Any],
                 init_std: float) -> None:
        super().__init__()
        self.queries = nn.Parameter(torch.randn(count, lm_width) * init_std)
        self.connector = Projector(lm_width, cond_width, projector.get("type") or "mlp", projector.get("hidden_size"))
        self.pooled = nn.Linear(lm_width, pooled_width) if pooled_width else None

    def condition(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(samples, N, lm width) query states -> per-query conditioning and the pooled vector (SD3)."""
        states = states.to(self.connector.layers[0].weight.dtype)
        pooled = self.pooled(states.mean(dim=1)) if self.pooled is not None else None
        return self.connector(states), pooled


class Decoder(nn.Module):
    """One frozen diffusers decoder: its denoiser (with optional LoRA), scheduler and, on demand, its VAE.
    Without a denoiser (`vae_only`) it only encodes targets (`omni-run data prepare`)."""

    def __init__(self, kind: str, folder: Path, denoiser: nn.Module | None, scheduler: Any, lora: bool,
                 device: Any = None) -> None:
        super().__init__()
        self.kind = kind
        self.folder = folder
        self.denoiser = denoiser
        self.scheduler = scheduler
        self.lora = lora
        self.vae: nn.Module | None = None
        self.checkpointing = False  # recompute the denoiser's activations in backward (the plan's decision)
        self._device = device

    @classmethod
    def vae_only(cls, kind: str, folder: Path, device: Any) -> Decoder:
        """A decoder that encodes targets on `device` and loads nothing but its VAE."""
        return cls(kind, Path(folder), None, None, False, device=device)

    @property
    def device(self) -> Any:
        return self.denoiser.device if self.denoiser is not None else self._device

    def ensure_vae(self) -> nn.Module:
        """The VAE, loaded the first time a target has no cached latents (then kept for the stage)."""
        if self.vae is None:
            self.vae = _load_component(self.folder, "vae", _VAE_CLASSES[self.kind]).requires_grad_(False).eval()
            self.vae.to(self.device)
        return self.vae

    def train(self, mode: bool = True) -> Decoder:
        super().train(mode)
        if self.denoiser is not None:
            self.denoiser.eval()  # frozen: dropout stays off; adapters have none
        return self

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Target pixels in [-1, 1] -> what the loss needs: `latents` (scaled as the decoder's
        training does) and, for video, `first` (the first frame's unscaled latent mode, SVD's
        image conditioning). Images are (3, H, W); videos (F, 3, H, W)."""
        vae = self.ensure_vae()
        pixels = pixels.to(device=self.device, dtype=vae.dtype)
        config = vae.config
        if self.kind == "image":
            latents = vae.encode(pixels[None]).latent_dist.mode()
            return {"latents": ((latents - (config.shift_factor or 0.0)) * config.scaling_factor)[0].float()}
        latents = vae.encode(pixels).latent_dist.mode()
        return {"latents": (latents * config.scaling_factor).float(), "first": latents[0].float()}

    def loss(self, conditioning: torch.Tensor, pooled: torch.Tensor | None, targets: dict[str, torch.Tensor],
             generator: torch.Generator) -> torch.Tensor:
        """The decoder's own training loss for a batch of samples, one value per sample."""
        if self.kind == "image":
            return self._flow_matching(conditioning, pooled, targets["latents"], generator)
        return self._edm(conditioning, targets["latents"], targets["first"], generator)

    def _flow_matching(self, conditioning: torch.Tensor, pooled: torch.Tensor | None, latents: torch.Tensor,
                       generator: torch.Generator) -> torch.Tensor:
        from diffusers.training_utils import compute_density_for_timestep_sampling

        count = latents.shape[0]
        u = compute_density_for_timestep_sampling("logit_normal", count, logit_mean=0.0, logit_std=1.0,
                                                  generator=generator)
        index = (u * self.scheduler.config.num_train_timesteps).long()
        timesteps = self.scheduler.timesteps[index].to(latents.device)
        sigmas = self.scheduler.sigmas[index].to(latents.device, latents.dtype).view(-1, 1, 1, 1)
        noise = torch.randn(latents.shape, generator=generator).to(latents.device, latents.dtype)
        noisy = (1.0 - sigmas) * latents + sigmas * noise
        dtype = self.denoiser.dtype
        prediction = self.denoiser(hidden_states=noisy.to(dtype), timestep=timesteps,
                                   encoder_hidden_states=conditioning.to(dtype), pooled_projections=pooled.to(dtype),
                                   return_dict=False)[0]
        return ((prediction.float() - (noise - latents)) ** 2).flatten(1).mean(dim=1)

    def _edm(self, conditioning: torch.Tensor, latents: torch.Tensor, first: torch.Tensor,
             generator: torch.Generator) -> torch.Tensor:
        count = latents.shape[0]
        sigmas = torch.exp(torch.randn(count, generator=generator) * EDM_P_STD + EDM_P_MEAN)
        sigmas = sigmas.to(latents.device, latents.dtype).view(-1, 1, 1, 1, 1)
        noise = torch.randn(latents.shape, generator=generator).to(latents.device, latents.dtype)
        augmented = first + SVD_NOISE_AUG * torch.randn(first.shape, generator=generator).to(first.device, first.dtype)
        noisy = latents + sigmas * noise
        c_in, c_skip = 1.0 / torch.sqrt(sigmas ** 2 + 1.0), 1.0 / (sigmas ** 2 + 1.0)
        c_out, c_noise = -sigmas / torch.sqrt(sigmas ** 2 + 1.0), 0.25 * torch.log(sigmas.flatten())
        frames = latents.shape[1]
        model_input = torch.cat([c_in * noisy, augmented[:, None].expand(-1, frames, -1, -1, -1)], dim=2)
        time_ids = torch.tensor([[SVD_FPS - 1, SVD_MOTION_BUCKET, SVD_NOISE_AUG]], device=latents.device).repeat(count, 1)
        dtype = self.denoiser.dtype
        prediction = self.denoiser(model_input.to(dtype), c_noise.to(dtype), encoder_hidden_states=conditioning.to(dtype),
                                   added_time_ids=time_ids.to(dtype), return_dict=False)[0]
        denoised = c_out * prediction.float() + c_skip * noisy
        weight = (sigmas ** 2 + 1.0) / sigmas ** 2
        return (weight * (denoised - latents) ** 2).flatten(1).mean(dim=1)


_DENOISER_CLASSES = {"image": ("transformer", "SD3Transformer2DModel"), "video": ("unet", "UNetSpatioTemporalConditionModel")}
_SCHEDULER_CLASSES = {"image": "FlowMatchEulerDiscreteScheduler", "video": "EulerDiscreteScheduler"}
_VAE_CLASSES = {"image": "AutoencoderKL", "video": "AutoencoderKLTemporalDecoder"}


def _load_component(folder: Path, name: str, class_name: str, **kwargs: Any) -> Any:
    import diffusers

    try:
        return getattr(diffusers, class_name).from_pretrained(folder, subfolder=name, local_files_only=True, **kwargs)
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"{folder}/{name}: cannot load the decoder's {name} ({class_name}): {error}. "
                             "Point the decoder's path at a diffusers pipeline folder.") from None


def vae_scale(folder: Path, kind: str) -> int:
    """The VAE's pixel factor (2 to the number of down blocks minus one), read from its config."""
    config = json.loads((Path(folder) / "vae" / "config.json").read_text(encoding="utf-8"))
    return 2 ** (len(config.get("block_out_channels") or [1, 1, 1, 1]) - 1)


class GenerationHeads(nn.Module):
    """Query connectors (always present, trained and checkpointed) and the decoders they condition
    (loaded per stage). Lives beside the thinker, like the external encoders."""

    def __init__(self, settings: dict[str, dict[str, Any]], lm_width: int, init_std: float, device: Any) -> None:
        super().__init__()
        self.settings = settings
        self.device = device
        self.connectors = nn.ModuleDict({
            kind: QueryConnector(int(s["query_tokens"]), lm_width, int(s["cond_width"]), int(s.get("pooled_width") or 0),
                                 s.get("projector") or {}, init_std).to(device=device, dtype=torch.float32)
            for kind, s in settings.items()})
        self.decoders = nn.ModuleDict()

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(self.settings)

    @property
    def groups(self) -> dict[str, list[nn.Module]]:
        """Stage group -> modules: a decoder's projector group holds its connector (and the loaded
        denoiser when it carries adapters); `query_tokens` holds every kind's queries."""
        groups: dict[str, list[nn.Module]] = {QUERY_GROUP: list(self.connectors.values())}
        for kind, connector in self.connectors.items():
            modules: list[nn.Module] = [connector.connector, *([connector.pooled] if connector.pooled is not None else [])]
            if kind in self.decoders and self.decoders[kind].lora:
                modules.append(self.decoders[kind].denoiser)
            groups[PROJECTOR_GROUP_OF[kind]] = modules
        return groups

    def set_trainable(self, groups: tuple[str, ...]) -> None:
        """Freeze all, then unfreeze `groups`: queries (`query_tokens`), connectors and denoiser adapters (projector groups)."""
        self.requires_grad_(False)
        for kind, connector in self.connectors.items():
            if QUERY_GROUP in groups:
                connector.queries.requires_grad_(True)
            if PROJECTOR_GROUP_OF[kind] in groups:
                connector.connector.requires_grad_(True)
                if connector.pooled is not None:
                    connector.pooled.requires_grad_(True)
                if kind in self.decoders:
                    for name, parameter in self.decoders[kind].denoiser.named_parameters():
                        parameter.requires_grad_("lora_" in name)

    def use(self, kinds: set[str], dtype: Any, checkpointing: bool) -> None:
        """Load the decoders of `kinds` (the stage's generation capabilities) and drop the others,
        unless they carry adapters (their trained weights must stay)."""
        for kind in list(self.decoders):
            if kind not in kinds and not self.decoders[kind].lora:
                del self.decoders[kind]
        for kind in sorted(kinds - set(self.decoders)):
            self.decoders[kind] = _load_decoder(kind, self.settings[kind], dtype, self.device)
        for decoder in self.decoders.values():
            if checkpointing != decoder.checkpointing:
                (decoder.denoiser.enable_gradient_checkpointing if checkpointing else decoder.denoiser.disable_gradient_checkpointing)()
                decoder.checkpointing = checkpointing

    def embed_queries(self, thinker: Any, inputs: dict[str, Any], parts: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """`inputs` with the learned queries as the input embeddings at every query position."""
        embeds = inputs.pop("inputs_embeds", None)
        if embeds is None:
            embeds = thinker.get_input_embeddings()(inputs.pop("input_ids"))
        flat = embeds.reshape(-1, embeds.shape[-1])
        for kind, part in parts.items():
            queries = self.connectors[kind].queries
            values = queries.repeat(len(part["targets"]), 1).to(flat.dtype)
            flat = flat.index_put((part["index"].to(flat.device),), values)
        return {**inputs, "inputs_embeds": flat.view_as(embeds)}

    def trained_state(self) -> dict[str, torch.Tensor]:
        """What `final/` keeps: queries, connectors, denoiser adapters."""
        return {name: tensor for name, tensor in self.state_dict().items()
                if name.startswith("connectors.") or "lora_" in name}


def _load_decoder(kind: str, settings: dict[str, Any], dtype: Any, device: Any) -> Decoder:
    import diffusers

    folder = Path(settings["folder"])
    subfolder, class_name = _DENOISER_CLASSES[kind]
    denoiser = _load_component(folder, subfolder, class_name, torch_dtype=dtype).requires_grad_(False)
    scheduler = getattr(diffusers, _SCHEDULER_CLASSES[kind]).from_pretrained(folder, subfolder="scheduler",
                                                                              local_files_only=True)
    lora = settings.get("lora_r") is not None
    if lora:
        from peft import LoraConfig, inject_adapter_in_model

        targets = [name for name, module in denoiser.named_modules() if isinstance(module, (nn.Linear, nn.Conv2d))]
        r = int(settings["lora_r"])
        config = LoraConfig(r=r, lora_alpha=float(settings.get("lora_alpha") or r), target_modules=targets)
        denoiser = inject_adapter_in_model(config, denoiser)
        for name, parameter in denoiser.named_parameters():
            if "lora_" in name:
                parameter.data = parameter.data.float()  # adapters train in fp32, like the thinker's
    return Decoder(kind, folder, denoiser.to(device), scheduler, lora)


def decoder_settings(recipe_data: dict[str, Any], recipe_dir: Path, denoisers: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per decoder in the recipe: its folder, queries, connector and conditioning widths, adapters.

    `denoisers` are the denoiser configs read from the folders (`denoiser_config`)."""
    sections = recipe_data.get("decoders") or {}
    lora = (recipe_data.get("training") or {}).get("lora") or {}
    settings = {}
    for kind, slot in DECODER_SLOTS.items():
        section = sections.get(slot.split(".")[1])
        if not section:
            continue
        config = denoisers[kind]
        settings[kind] = {
            "path": str(section["path"]),
            "folder": str(resolve_decoder_dir(str(section["path"]), Path(recipe_dir))),
            "query_tokens": int(section.get("query_tokens") or 64),
            "projector": dict(section.get("projector") or {}),
            "cond_width": int(config.get("joint_attention_dim") or config["cross_attention_dim"]),
            "pooled_width": int(config.get("pooled_projection_dim") or 0),
            "lora_r": None if section.get("freeze", True) else int(lora.get("r", 16)),
            "lora_alpha": None if section.get("freeze", True) else float(lora.get("alpha", 32)),
        }
    return settings


def denoiser_config(folder: Path, kind: str) -> dict[str, Any]:
    subfolder = _DENOISER_CLASSES[kind][0]
    path = Path(folder) / subfolder / "config.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"{path}: cannot read the decoder's {subfolder} config ({error}); "
                             f"{DECODER_SLOTS[kind]}.path must be a diffusers pipeline folder.") from None


def recipe_decoder_settings(recipe_data: dict[str, Any], recipe_dir: Path) -> dict[str, dict[str, Any]]:
    """`decoder_settings` of the recipe's decoders, read from their folders (built-in ones built); {} without any."""
    sections = recipe_data.get("decoders") or {}
    folders = {kind: resolve_decoder_dir(str(sections[slot.split(".")[1]]["path"]), Path(recipe_dir))
               for kind, slot in DECODER_SLOTS.items() if sections.get(slot.split(".")[1])}
    if not folders:
        return {}
    return decoder_settings(recipe_data, recipe_dir, {kind: denoiser_config(f, kind) for kind, f in folders.items()})


def recipe_generation_samples(recipe_data: dict[str, Any], recipe_dir: Path, query_id: int) -> Any:
    """What the data side needs to make the recipe's generation samples, at the decoders' own shapes and
    without loading any weights (`data check`, `data preview`); None without decoders."""
    from omni_runner.data.generation import GenerationSamples, LatentCache

    settings = recipe_decoder_settings(recipe_data, recipe_dir)
    if not settings:
        return None
    return GenerationSamples(settings_target_specs(settings, set(settings), {}), LatentCache.default(), query_id)


def load_generation_heads(recipe_data: dict[str, Any], recipe_dir: Path, thinker: Any, device: Any) -> GenerationHeads | None:
    """Fresh query connectors for the recipe's decoders (seeded by the caller); no decoder loaded yet."""
    settings = recipe_decoder_settings(recipe_data, recipe_dir)
    return _heads(settings, thinker, device) if settings else None


def _heads(settings: dict[str, dict[str, Any]], thinker: Any, device: Any) -> GenerationHeads:
    """Queries start at the scale of the thinker's own token embeddings, so they read like tokens."""
    embeddings = thinker.get_input_embeddings().weight
    return GenerationHeads(settings, int(embeddings.shape[1]), float(embeddings.float().std()), device)


def query_states(hidden: torch.Tensor, index: torch.Tensor, count: int) -> torch.Tensor:
    """(samples, count, width) final hidden states at the flat query positions `index` of (batch, seq, width)."""
    return hidden.reshape(-1, hidden.shape[-1])[index].view(-1, count, hidden.shape[-1])


def step_generator(seed: int, step: int, micro_batch: int) -> torch.Generator:
    """The noise and timestep generator of one micro-batch: a pure function of the training seed and
    the position, so a resume draws exactly what the uninterrupted run did."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step * 1_009 + micro_batch) % (2 ** 63))


# ---------------------------------------------------------------- final/


def save_generation(heads: GenerationHeads, folder: Path) -> None:
    """Write the trained queries, connectors and denoiser adapters, and what rebuilds them."""
    save_trained_part(folder, PART_NAME, heads.settings, heads.trained_state())


def load_generation(folder: Path, thinker: Any, device: Any, dtype: Any) -> GenerationHeads | None:
    """The generation heads a `final/` folder was trained with, decoders loaded; None if it has none."""
    from omni_runner.paths import is_builtin

    part = read_trained_part(folder, PART_NAME, "the generation connectors")
    if part is None:
        return None
    settings, state = part
    for kind_settings in settings.values():
        path = kind_settings.get("path")
        if path and is_builtin(path):  # a built-in tiny decoder is rebuilt where the cache is now
            kind_settings["folder"] = str(resolve_decoder_dir(path, Path(folder)))
    heads = _heads(settings, thinker, device)
    heads.use(set(settings), dtype, checkpointing=False)
    result = heads.load_state_dict(state, strict=False)
    missing = [name for name in result.missing_keys if name.startswith("connectors.") or "lora_" in name]
    if result.unexpected_keys or missing:
        raise ModelLoadError(f"{folder / WEIGHTS_FILE} does not fit the decoders in {folder / SETTINGS_FILE} "
                             f"({', '.join((result.unexpected_keys or missing)[:3])}); train again.")
    return heads.requires_grad_(False).eval()


# ---------------------------------------------------------------- the trainer's side


def vae_identity(folder: Path) -> str:
    """A short id of a decoder's VAE (its config and weight files' names and sizes): latents cached
    for one VAE are never read for another."""
    import hashlib

    vae = Path(folder) / "vae"
    digest = hashlib.sha256((vae / "config.json").read_bytes())
    for file in sorted(vae.glob("*.safetensors")) + sorted(vae.glob("*.bin")):
        digest.update(f"{file.name}:{file.stat().st_size}".encode())
    return digest.hexdigest()[:16]


def target_specs(heads: GenerationHeads, kinds: set[str], shapes: dict[str, dict[str, int]]) -> dict[str, Any]:
    """Per kind the stage generates, how its targets are made (`settings_target_specs` of the heads' decoders)."""
    return settings_target_specs(heads.settings, kinds, shapes)


def settings_target_specs(settings: dict[str, dict[str, Any]], kinds: set[str], shapes: dict[str, dict[str, int]]) -> dict[str, Any]:
    """Per kind, how the targets of decoders with these `decoder_settings` are made: the plan's latent
    side and frame count (its fitting decisions), else the decoder's own config."""
    from omni_runner.data.generation import TargetSpec

    specs = {}
    for kind in sorted(kinds):
        folder = Path(settings[kind]["folder"])
        config = denoiser_config(folder, kind)
        shape = shapes.get(kind) or {"latent_side": int(config.get("sample_size") or 64),
                                     "frames": int(config.get("num_frames") or 1)}
        frames = int(shape["frames"]) if kind == "video" else 1
        specs[kind] = TargetSpec(kind, int(settings[kind]["query_tokens"]),
                                 int(shape["latent_side"]) * vae_scale(folder, kind), frames, vae_identity(folder))
    return specs


class FinalHiddenStates:
    """Captures the language model's final hidden states (after its last norm) during a forward, where
    the generation queries are read; a hook, so the forward keeps returning only logits."""

    def __init__(self, thinker: Any, enabled: bool) -> None:
        self.norm = thinker.model.language_model.norm
        self.enabled = enabled
        self.states: torch.Tensor | None = None
        self._handle: Any = None

    def __enter__(self) -> FinalHiddenStates:
        if self.enabled:
            self._handle = self.norm.register_forward_hook(self._keep)
        return self

    def _keep(self, _module: Any, _inputs: Any, output: torch.Tensor) -> None:
        self.states = output

    def __exit__(self, *_exc: object) -> None:
        if self._handle is not None:
            self._handle.remove()


class TargetLatents:
    """The latents of a batch's targets: those the data workers read from the cache (hits), and the
    rest encoded here with the decoder's VAE and written to the cache for the next run (misses)."""

    def __init__(self, cache: Any) -> None:
        self.cache = cache
        self.hits = 0
        self.misses = 0

    def stack(self, decoder: Decoder, targets: list[Any]) -> dict[str, torch.Tensor]:
        for target in targets:
            self.fill(decoder, target)
        return {key: torch.stack([t.latents[key] for t in targets]).to(decoder.device) for key in targets[0].latents}

    def fill(self, decoder: Decoder, target: Any) -> None:
        """Give `target` its latents: a hit keeps the cached ones; a miss encodes and caches them."""
        if target.latents is None:
            target.latents = {k: v.cpu() for k, v in decoder.encode(target.pixels).items()}
            self.cache.write(Path(target.cache_file), target.latents)
            self.misses += 1
        else:
            self.hits += 1

    def counts(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses}
