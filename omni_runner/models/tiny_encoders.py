"""The built-in tiny external encoders: SigLIP2 (vision) and Whisper (audio), real classes, random weights.

`encoders.vision.path: builtin:tiny-siglip2` and `encoders.audio.path: builtin:tiny-whisper` name them.
Each is a folder in the layout of the real checkpoint family (config, safetensors, the image processor
or feature extractor), so `omni_runner/models/encoders.py` loads them with the code that loads
SigLIP2-so400m and Whisper-large-v3-turbo. Both are deterministic (fixed seed, no tokenizer to train)
and built on first use into `$OMNI_RUNNER_CACHE/models/NAME/`, rebuilt when the builder or the
torch/transformers versions change.

Public API:
- `TINY_ENCODERS`: the built-in names (`tiny-siglip2`, `tiny-whisper`).
- `build_tiny_encoder(name, out_dir) -> Path`, `ensure_tiny_encoder(name) -> Path`, `read_stamp(folder)`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from omni_runner.models.folders import (
    atomic_folder,
    build_target,
    ensure_built,
    read_stamp_file,
)
from omni_runner.models.hf_env import quiet_transformers
from omni_runner.paths import BUILTIN_PREFIX, resolve_model_path

BUILDER_VERSION = 1
STAMP_FILE = "omni_runner_tiny.json"
SEED = 4321
SIGLIP2_PATCH = 16
SIGLIP2_MAX_PATCHES = 64  # an 8 x 8 grid of 16-pixel patches at most: 128 x 128 pixels
MEL_BINS = 128  # as Whisper-large-v3(-turbo)


def _write_siglip2(folder: Path) -> dict[str, int]:
    from transformers import (
        Siglip2ImageProcessor,
        Siglip2VisionConfig,
        Siglip2VisionModel,
    )

    config = Siglip2VisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                                 num_patches=SIGLIP2_MAX_PATCHES, patch_size=SIGLIP2_PATCH)
    model = Siglip2VisionModel(config)
    model.save_pretrained(folder)
    Siglip2ImageProcessor(patch_size=SIGLIP2_PATCH, max_num_patches=SIGLIP2_MAX_PATCHES).save_pretrained(folder)
    return {"vision_tower": sum(p.numel() for p in model.parameters())}


def _write_whisper(folder: Path) -> dict[str, int]:
    from transformers import (
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
    )

    # The decoder is there because real Whisper checkpoints have one; the encoder path never loads it.
    config = WhisperConfig(vocab_size=64, num_mel_bins=MEL_BINS, d_model=64, encoder_layers=2, encoder_attention_heads=2,
                           encoder_ffn_dim=128, decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=128,
                           max_target_positions=64, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                           decoder_start_token_id=1)
    model = WhisperForConditionalGeneration(config)
    model.save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=MEL_BINS).save_pretrained(folder)
    encoder = model.get_encoder()
    return {"audio_tower": sum(p.numel() for p in encoder.parameters()),
            "text_decoder": sum(p.numel() for p in model.model.decoder.parameters())}


_BUILDERS: dict[str, Callable[[Path], dict[str, int]]] = {"tiny-siglip2": _write_siglip2, "tiny-whisper": _write_whisper}
TINY_ENCODERS = tuple(_BUILDERS)


def _fingerprint(name: str) -> str:
    libraries = " ".join(f"{lib} {metadata.version(lib)}" for lib in ("torch", "transformers"))
    return hashlib.sha256(f"{name} builder {BUILDER_VERSION} seed {SEED} {libraries}".encode()).hexdigest()


def read_stamp(folder: Path) -> dict[str, Any] | None:
    return read_stamp_file(folder, STAMP_FILE)


def build_tiny_encoder(name: str, out_dir: Path) -> Path:
    """Build the tiny encoder `name` into `out_dir`; the folder appears complete or not at all."""
    import torch

    out_dir = build_target(out_dir, read_stamp, "tiny-model")
    with atomic_folder(out_dir) as staging, quiet_transformers(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        parameters = _BUILDERS[name](staging)
        stamp = {"name": name, "builder_version": BUILDER_VERSION, "fingerprint": _fingerprint(name), "seed": SEED,
                 "parameters": parameters}
        (staging / STAMP_FILE).write_text(json.dumps(stamp, indent=2) + "\n", encoding="utf-8")
    return out_dir


def ensure_tiny_encoder(name: str) -> Path:
    """The cached build of `name`, built on first use (or when its builder changed)."""
    folder = resolve_model_path(BUILTIN_PREFIX + name, Path.cwd())
    return ensure_built(folder, _fingerprint(name), read_stamp, lambda out: build_tiny_encoder(name, out))
