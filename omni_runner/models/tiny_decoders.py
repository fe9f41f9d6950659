"""The built-in tiny diffusion decoders: SD3 (images) and SVD (videos), real diffusers classes, random weights.

`decoders.image.path: builtin:tiny-sd3` and `decoders.video.path: builtin:tiny-svd` name them. Each is
a diffusers pipeline folder in the layout of the real checkpoint (`model_index.json` naming the real
pipeline class, one subfolder per component written by `save_pretrained`), so the code that drives
stable-diffusion-3-medium and stable-video-diffusion-img2vid-xt-1-1 drives them too, on a CPU in
seconds. What the generation path never runs is left out and recorded as `[null, null]` in
`model_index.json`: SD3's three text encoders and tokenizers (the language model's query states
replace them) and SVD's CLIP image encoder and feature extractor (the connector replaces them); load
with those components passed as None (`absent_components(folder)` lists them).

Sizes: SD3 is an MMDiT of 2 layers x 32 wide on 8 x 8 latents of 4 channels, its VAE scales 32 x 32
pictures down by 4; SVD is a 2-level spatio-temporal UNet (32, 64 channels) on 4 frames of 8 x 8
latents, its temporal VAE also scales by 4 (channels 32 wide: its decoder's group norm has 32 groups).
The schedulers are the real checkpoints' settings. Both are deterministic (fixed seed) and built on
first use into `$OMNI_RUNNER_CACHE/models/NAME/`, rebuilt when the builder or the torch/diffusers
versions change.

Public API:
- `TINY_DECODERS`: the built-in names (`tiny-sd3`, `tiny-svd`).
- `build_tiny_decoder(name, out_dir) -> Path`, `ensure_tiny_decoder(name) -> Path`, `read_stamp(folder)`.
- `resolve_decoder_dir(path_value, recipe_dir) -> Path`: a `decoders.*.path` on disk, the built-in
  tiny decoders built on first use.
- `absent_components(folder) -> dict[str, None]`: the components `model_index.json` leaves out, as the
  keyword arguments that let `Pipeline.from_pretrained(folder, **...)` load without them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omni_runner.models.folders import TinyFamily
from omni_runner.models.hf_env import quiet_diffusers

BUILDER_VERSION = 1
STAMP_FILE = "omni_runner_tiny.json"
SEED = 4321
IMAGE_SIDE = 32  # pixels the tiny VAEs take; latents are IMAGE_SIDE // 4 on a side
LATENT_SIDE = 8
LATENT_CHANNELS = 4
VIDEO_FRAMES = 4

# stabilityai/stable-video-diffusion-img2vid-xt(-1-1)'s scheduler/scheduler_config.json: EDM sigmas
# (Karras, 0.002 to 700) with v-prediction on the scaled-linear beta table.
SVD_SCHEDULER = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "prediction_type": "v_prediction",
    "interpolation_type": "linear",
    "use_karras_sigmas": True,
    "sigma_min": 0.002,
    "sigma_max": 700.0,
    "timestep_spacing": "leading",
    "timestep_type": "continuous",
    "steps_offset": 1,
}


def _count(module: Any) -> int:
    return sum(p.numel() for p in module.parameters())


def _write_sd3(folder: Path) -> dict[str, int]:
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )

    transformer = SD3Transformer2DModel(
        sample_size=LATENT_SIDE, patch_size=2, in_channels=LATENT_CHANNELS, out_channels=LATENT_CHANNELS,
        num_layers=2, attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
        caption_projection_dim=32, pooled_projection_dim=32, pos_embed_max_size=16,
    )
    # The shift and scale of SD3's own VAE, so latents are normalised as the real pipeline does it.
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3, block_out_channels=(16, 32, 32), layers_per_block=1,
        latent_channels=LATENT_CHANNELS, norm_num_groups=8, sample_size=IMAGE_SIDE,
        shift_factor=0.0609, scaling_factor=1.5035,
    )
    pipeline = StableDiffusion3Pipeline(
        transformer=transformer, vae=vae, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        text_encoder=None, tokenizer=None, text_encoder_2=None, tokenizer_2=None, text_encoder_3=None, tokenizer_3=None,
    )
    pipeline.save_pretrained(folder)
    return {"transformer": _count(transformer), "vae": _count(vae)}


def _write_svd(folder: Path) -> dict[str, int]:
    from diffusers import (
        AutoencoderKLTemporalDecoder,
        EulerDiscreteScheduler,
        StableVideoDiffusionPipeline,
        UNetSpatioTemporalConditionModel,
    )

    # in_channels 8: the noisy latents and the conditioning frame's latents, concatenated (SVD's layout);
    # 3 added time ids (fps, motion bucket, noise augmentation) of 8 each make the 24-wide class embedding.
    unet = UNetSpatioTemporalConditionModel(
        sample_size=LATENT_SIDE, in_channels=2 * LATENT_CHANNELS, out_channels=LATENT_CHANNELS,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"), block_out_channels=(32, 64),
        addition_time_embed_dim=8, projection_class_embeddings_input_dim=24, layers_per_block=1,
        cross_attention_dim=32, transformer_layers_per_block=1, num_attention_heads=(2, 4), num_frames=VIDEO_FRAMES,
    )
    vae = AutoencoderKLTemporalDecoder(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 3,
        block_out_channels=(32, 32, 32), layers_per_block=1, latent_channels=LATENT_CHANNELS, sample_size=IMAGE_SIDE,
    )
    pipeline = StableVideoDiffusionPipeline(
        vae=vae, unet=unet, scheduler=EulerDiscreteScheduler(**SVD_SCHEDULER), image_encoder=None, feature_extractor=None,
    )
    pipeline.save_pretrained(folder)
    return {"unet": _count(unet), "vae": _count(vae)}


TINY_DECODER_FAMILY = TinyFamily({"tiny-sd3": _write_sd3, "tiny-svd": _write_svd},
                     ("torch", "diffusers"), BUILDER_VERSION, SEED, STAMP_FILE, quiet_diffusers)
TINY_DECODERS = TINY_DECODER_FAMILY.names
read_stamp = TINY_DECODER_FAMILY.read_stamp
build_tiny_decoder = TINY_DECODER_FAMILY.build
ensure_tiny_decoder = TINY_DECODER_FAMILY.ensure


def resolve_decoder_dir(path_value: str, recipe_dir: Path) -> Path:
    """A decoder path on disk; the built-in tiny decoders are built on first use."""
    return TINY_DECODER_FAMILY.resolve(path_value, recipe_dir, "decoder")


def absent_components(folder: Path) -> dict[str, None]:
    """The pipeline components `folder/model_index.json` records as `[null, null]`, each mapped to None."""
    index = json.loads((Path(folder) / "model_index.json").read_text(encoding="utf-8"))
    return {name: None for name, spec in index.items()
            if not name.startswith("_") and isinstance(spec, list) and spec[-1] is None}
