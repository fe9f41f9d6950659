"""The tiny SD3 and SVD decoders are real diffusers pipelines: their denoisers take latents of their
VAEs' shape, the VAEs round-trip 32 x 32 pictures, the folders load as the real pipeline classes, and
`omni-run tiny-model --kind` builds the same bytes as the cache."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import pytest
import torch

from omni_runner.models.load import ModelLoadError
from omni_runner.models.tiny_decoders import (
    IMAGE_SIDE,
    LATENT_CHANNELS,
    LATENT_SIDE,
    VIDEO_FRAMES,
    absent_components,
    resolve_decoder_dir,
)


def _pipeline(folder: Path):
    from diffusers import DiffusionPipeline

    return DiffusionPipeline.from_pretrained(folder, **absent_components(folder))


@pytest.fixture(scope="module")
def sd3(tiny_sd3_dir):
    return _pipeline(tiny_sd3_dir)


@pytest.fixture(scope="module")
def svd(tiny_svd_dir):
    return _pipeline(tiny_svd_dir)


def _pictures(count: int) -> torch.Tensor:
    return torch.rand(count, 3, IMAGE_SIDE, IMAGE_SIDE, generator=torch.Generator().manual_seed(0)) * 2 - 1


def test_folders_load_as_the_real_pipeline_classes_without_their_text_and_image_encoders(sd3, svd, tiny_sd3_dir, tiny_svd_dir):
    from diffusers import StableDiffusion3Pipeline, StableVideoDiffusionPipeline

    assert isinstance(sd3, StableDiffusion3Pipeline) and isinstance(svd, StableVideoDiffusionPipeline)
    assert set(absent_components(tiny_sd3_dir)) == {"text_encoder", "text_encoder_2", "text_encoder_3", "tokenizer", "tokenizer_2",
                                                    "tokenizer_3", "image_encoder", "feature_extractor"}
    assert set(absent_components(tiny_svd_dir)) == {"image_encoder", "feature_extractor"}


def test_sd3_transformer_denoises_latents_of_its_vae(sd3):
    with torch.no_grad():
        latents = sd3.vae.encode(_pictures(2)).latent_dist.sample()
        prediction = sd3.transformer(
            hidden_states=latents, timestep=torch.tensor([500.0, 20.0]),
            encoder_hidden_states=torch.randn(2, 7, sd3.transformer.config.joint_attention_dim),
            pooled_projections=torch.randn(2, sd3.transformer.config.pooled_projection_dim),
        ).sample
    assert latents.shape == (2, LATENT_CHANNELS, LATENT_SIDE, LATENT_SIDE)
    assert prediction.shape == latents.shape and torch.isfinite(prediction).all()


def test_sd3_vae_round_trips_a_32_pixel_picture(sd3):
    with torch.no_grad():
        latents = sd3.vae.encode(_pictures(1)).latent_dist.mode()
        decoded = sd3.vae.decode(latents).sample
    assert decoded.shape == (1, 3, IMAGE_SIDE, IMAGE_SIDE) and torch.isfinite(decoded).all()


def test_svd_unet_denoises_frames_beside_the_conditioning_latents(svd):
    unet = svd.unet
    noisy = torch.randn(1, VIDEO_FRAMES, LATENT_CHANNELS, LATENT_SIDE, LATENT_SIDE)
    conditioning = torch.randn_like(noisy)  # the first frame's latents, repeated: SVD's 8 input channels
    with torch.no_grad():
        prediction = unet(torch.cat([noisy, conditioning], dim=2), torch.tensor([0.5]),
                          encoder_hidden_states=torch.randn(1, 1, unet.config.cross_attention_dim),
                          added_time_ids=torch.tensor([[6.0, 127.0, 0.02]])).sample
    assert prediction.shape == noisy.shape and torch.isfinite(prediction).all()


def test_svd_temporal_vae_round_trips_a_clip_of_32_pixel_frames(svd):
    with torch.no_grad():
        latents = svd.vae.encode(_pictures(VIDEO_FRAMES)).latent_dist.mode()
        decoded = svd.vae.decode(latents, num_frames=VIDEO_FRAMES).sample
    assert latents.shape == (VIDEO_FRAMES, LATENT_CHANNELS, LATENT_SIDE, LATENT_SIDE)
    assert decoded.shape == (VIDEO_FRAMES, 3, IMAGE_SIDE, IMAGE_SIDE) and torch.isfinite(decoded).all()


def test_schedulers_carry_the_real_checkpoints_settings(sd3, svd):
    assert type(sd3.scheduler).__name__ == "FlowMatchEulerDiscreteScheduler" and sd3.scheduler.config.shift == 3.0
    config = svd.scheduler.config
    assert type(svd.scheduler).__name__ == "EulerDiscreteScheduler"
    assert (config.prediction_type, config.use_karras_sigmas, config.sigma_min, config.sigma_max) == ("v_prediction", True, 0.002, 700.0)
    assert (config.timestep_spacing, config.steps_offset, config.beta_schedule) == ("leading", 1, "scaled_linear")


def test_model_index_names_the_real_pipeline_and_nulls_what_it_leaves_out(tiny_sd3_dir):
    index = json.loads((tiny_sd3_dir / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusion3Pipeline"
    assert index["text_encoder_3"] == [None, None] and index["transformer"] == ["diffusers", "SD3Transformer2DModel"]


@pytest.mark.parametrize("kind", ["sd3", "svd"])
def test_tiny_model_kind_builds_the_cached_decoder_bit_for_bit(kind, tiny_sd3_dir, tiny_svd_dir, tmp_path):
    from omni_runner.commands import tiny_model as command

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    assert command.run(parser.parse_args([str(tmp_path / kind), "--kind", kind])) == 0
    cached = {"sd3": tiny_sd3_dir, "svd": tiny_svd_dir}[kind]

    def digests(folder: Path) -> dict[str, str]:
        return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(folder.rglob("*.safetensors"))}

    assert digests(tmp_path / kind) == digests(cached) and len(digests(cached)) == 2


def test_kind_names_the_same_models_as_model_and_not_both():
    from omni_runner.commands import tiny_model as command

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    for name in command.TINY_MODELS:
        args = parser.parse_args(["out", "--kind", name.removeprefix("tiny-")])
        assert command.TINY_PREFIX + args.kind == name
    with pytest.raises(SystemExit):
        parser.parse_args(["out", "--kind", "sd3", "--model", "tiny-svd"])


def test_resolve_decoder_dir_builds_builtins_and_refuses_unknown_ones(tiny_sd3_dir, tmp_path):
    assert resolve_decoder_dir("builtin:tiny-sd3", tmp_path) == tiny_sd3_dir
    assert resolve_decoder_dir("decoders/sd3", tmp_path) == tmp_path / "decoders" / "sd3"
    with pytest.raises(ModelLoadError, match="builtin:tiny-sd3, builtin:tiny-svd"):
        resolve_decoder_dir("builtin:tiny-flux", tmp_path)
