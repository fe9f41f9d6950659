"""The built-in tiny external encoders: SigLIP2 and CLIP (vision), Whisper (audio), real classes, random weights.

`encoders.vision.path: builtin:tiny-siglip2` (or `builtin:tiny-clip`) and `encoders.audio.path:
builtin:tiny-whisper` name them. Each is a folder in the layout of the real checkpoint family (config,
safetensors, the image processor or feature extractor), so `omni_runner/models/encoders.py` loads them
with the code that loads SigLIP2-so400m, CLIP ViT-L/14-336 and Whisper-large-v3-turbo. The tiny CLIP is a
whole `CLIPModel` with its text tower and a byte-level tokenizer (every byte a token, no merges), so it
also scores images against prompts (`omni-run eval --clip`). All are deterministic (fixed seed, nothing
trained) and built on first use into `$OMNI_RUNNER_CACHE/models/NAME/`, rebuilt when the builder or the
torch/transformers versions change.

Public API:
- `TINY_ENCODERS`: the built-in names (`tiny-siglip2`, `tiny-clip`, `tiny-whisper`).
- `build_tiny_encoder(name, out_dir) -> Path`, `ensure_tiny_encoder(name) -> Path`, `read_stamp(folder)`.
"""

from __future__ import annotations

from pathlib import Path

from omni_runner.models.folders import TinyFamily
from omni_runner.models.hf_env import quiet_transformers

BUILDER_VERSION = 1
STAMP_FILE = "omni_runner_tiny.json"
SEED = 4321
SIGLIP2_PATCH = 16
SIGLIP2_MAX_PATCHES = 64  # an 8 x 8 grid of 16-pixel patches at most: 128 x 128 pixels
MEL_BINS = 128  # as Whisper-large-v3(-turbo)
CLIP_SIDE, CLIP_PATCH = 64, 16  # a 4 x 4 grid of 16-pixel patches after the class token


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


def _write_clip(folder: Path) -> dict[str, int]:
    from tokenizers import pre_tokenizers
    from transformers import (
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        CLIPProcessor,
        CLIPTokenizer,
    )

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokens = ["<|startoftext|>", "<|endoftext|>", *alphabet, *(char + "</w>" for char in alphabet)]
    tokenizer = CLIPTokenizer(vocab={token: index for index, token in enumerate(tokens)}, merges=[])
    text = {"vocab_size": len(tokens), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 2, "max_position_embeddings": 77, "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1}
    vision = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
              "image_size": CLIP_SIDE, "patch_size": CLIP_PATCH}
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=32))
    model.save_pretrained(folder)
    images = CLIPImageProcessor(size={"shortest_edge": CLIP_SIDE}, crop_size={"height": CLIP_SIDE, "width": CLIP_SIDE})
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(folder)
    return {"vision_tower": sum(p.numel() for p in model.vision_model.parameters()),
            "text_tower": sum(p.numel() for p in model.text_model.parameters())}


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


TINY_ENCODER_FAMILY = TinyFamily({"tiny-siglip2": _write_siglip2, "tiny-clip": _write_clip, "tiny-whisper": _write_whisper},
                     ("torch", "transformers"), BUILDER_VERSION, SEED, STAMP_FILE, quiet_transformers)
TINY_ENCODERS = TINY_ENCODER_FAMILY.names
read_stamp = TINY_ENCODER_FAMILY.read_stamp
build_tiny_encoder = TINY_ENCODER_FAMILY.build
ensure_tiny_encoder = TINY_ENCODER_FAMILY.ensure
