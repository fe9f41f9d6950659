"""External encoders: the tokens the data side makes room for are the tokens the projector produces,
for the tiny SigLIP2 (images, video frames), a fixed-size SigLIP, the tiny CLIP (its penultimate patch
states, without the class token) and the tiny Whisper (clips longer than its 30 s window); and the
projectors survive `final/`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from omni_runner.models.encoders import ExternalEncoders, build_encoder, load_projectors, save_projectors
from omni_runner.models.load import ModelLoadError

LM_WIDTH = 32


@pytest.fixture(scope="session")
def siglip2_dir(_omni_runner_cache: Path) -> Path:
    from omni_runner.models.tiny_encoders import ensure_tiny_encoder

    return ensure_tiny_encoder("tiny-siglip2")


@pytest.fixture(scope="session")
def clip_dir(_omni_runner_cache: Path) -> Path:
    from omni_runner.models.tiny_encoders import ensure_tiny_encoder

    return ensure_tiny_encoder("tiny-clip")


@pytest.fixture(scope="session")
def whisper_dir(_omni_runner_cache: Path) -> Path:
    from omni_runner.models.tiny_encoders import ensure_tiny_encoder

    return ensure_tiny_encoder("tiny-whisper")


def _encoder(slot: str, folder: Path, pool: int = 1, **settings):
    torch.manual_seed(0)
    return build_encoder(slot, {"path": str(folder), "folder": str(folder), "pool": pool, **settings}, LM_WIDTH, torch.device("cpu"), torch.float32)


def _picture(width: int, height: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(width).integers(0, 255, (height, width, 3), dtype=np.uint8))


@pytest.mark.parametrize("pool", [1, 4, 9])
def test_siglip2_images_become_as_many_projected_tokens_as_their_placeholders_hold(siglip2_dir, pool):
    encoder = _encoder("vision", siglip2_dir, pool)
    tensors, tokens = encoder.inputs.encode([_picture(120, 40), _picture(56, 56)])  # uneven grids pool with a remainder
    projected = encoder(tensors)
    assert projected.shape == (tokens, LM_WIDTH)


def test_video_frames_each_go_through_the_vision_encoder(siglip2_dir):
    encoder = _encoder("vision", siglip2_dir, 4)
    frames = np.zeros((4, 56, 56, 3), dtype=np.uint8)
    _, one = encoder.inputs.encode([frames[0]])
    _, four = encoder.inputs.encode(list(frames))
    assert four == 4 * one


def test_a_fixed_resolution_siglip_checkpoint_is_read_on_its_patch_grid(tmp_path):
    from transformers import SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel

    config = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                image_size=64, patch_size=16)
    SiglipVisionModel(config).save_pretrained(tmp_path)
    SiglipImageProcessor(size={"height": 64, "width": 64}).save_pretrained(tmp_path)
    encoder = _encoder("vision", tmp_path, 4)
    tensors, tokens = encoder.inputs.encode([_picture(100, 30)])
    assert tokens == 4  # a 4 x 4 patch grid, 2 x 2 pooled
    assert encoder(tensors).shape == (4, LM_WIDTH)


def test_clip_hands_the_projector_its_penultimate_patch_states_without_the_class_token(clip_dir):
    encoder = _encoder("vision", clip_dir, 4)
    tensors, tokens = encoder.inputs.encode([_picture(100, 30), _picture(64, 64)])  # center-cropped to 64 x 64
    assert tokens == 2 * 4  # a 4 x 4 patch grid each, 2 x 2 pooled
    states = encoder.encoder(pixel_values=tensors["external_pixel_values"], output_hidden_states=True).hidden_states[-2]
    patches = states[:, 1:].reshape(2, 4, 4, -1).permute(0, 3, 1, 2)
    pooled = torch.nn.functional.avg_pool2d(patches, 2).flatten(2).transpose(1, 2).reshape(tokens, -1)
    torch.testing.assert_close(encoder(tensors), encoder.projector(pooled))


def test_whisper_reads_a_long_clip_in_30_second_windows(whisper_dir):
    encoder = _encoder("audio", whisper_dir, 4)
    clip = np.random.default_rng(0).normal(0, 0.1, 16000 * 40).astype(np.float32)
    tensors, tokens = encoder.inputs.encode(clip)
    assert tensors["external_audio_frames"].tolist() == [1500, 500]  # 30 s + 10 s of 20 ms frames
    assert tokens == 375 + 125
    assert encoder(tensors).shape == (tokens, LM_WIDTH)


def test_a_vision_pool_that_is_not_a_square_is_refused(siglip2_dir):
    with pytest.raises(ModelLoadError, match="square"):
        _encoder("vision", siglip2_dir, 2)


def test_a_folder_of_another_model_family_is_refused_with_what_loads(tmp_path, whisper_dir):
    with pytest.raises(ModelLoadError, match=r"holds a 'whisper' model.*siglip2"):
        _encoder("vision", whisper_dir)


def test_projectors_saved_beside_a_final_model_load_back_bitwise(siglip2_dir, whisper_dir, tmp_path):
    encoders = ExternalEncoders(_encoder("vision", siglip2_dir, 4), _encoder("audio", whisper_dir, 2, projector_type="linear"))
    with torch.no_grad():
        for parameter in encoders.parameters():
            parameter.add_(torch.randn_like(parameter))  # as if trained
    save_projectors(encoders, tmp_path)
    loaded = load_projectors(tmp_path, LM_WIDTH, torch.device("cpu"), torch.float32)
    saved, restored = encoders.projector_state(), loaded.projector_state()
    assert saved.keys() == restored.keys() and all(torch.equal(saved[k], restored[k]) for k in saved)
    assert loaded.audio.pool == 2 and isinstance(loaded.audio.projector.layers[0], torch.nn.Linear)


def test_a_final_folder_without_external_encoders_has_none(tmp_path):
    assert load_projectors(tmp_path, LM_WIDTH, torch.device("cpu"), torch.float32) is None


@pytest.mark.parametrize("name", ["tiny-siglip2", "tiny-clip", "tiny-whisper"])
def test_tiny_model_command_builds_the_cached_encoder_bit_for_bit(name, siglip2_dir, clip_dir, whisper_dir, tmp_path):
    import argparse
    import hashlib

    from omni_runner.commands import tiny_model as command

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    assert command.run(parser.parse_args([str(tmp_path / name), "--model", name])) == 0
    cached = {"tiny-siglip2": siglip2_dir, "tiny-clip": clip_dir, "tiny-whisper": whisper_dir}[name]
    digest = lambda folder: hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()  # noqa: E731
    assert digest(tmp_path / name) == digest(cached)
