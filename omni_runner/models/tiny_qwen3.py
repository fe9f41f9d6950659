"""The built-in tiny Qwen3-Omni: transformers' Qwen3-Omni-MoE classes, shrunk, random weights, built locally.

`base_model.path: builtin:tiny-qwen3-omni` names it. It is a Qwen3-Omni folder (`qwen3_omni_moe`:
a mixture-of-experts thinker with its vision tower, deepstack mergers and audio tower, and the
processor) in which every size is small: four experts, two routed per token. It has no talker and no
code2wav (`enable_audio_output: false`), since the trainer does not train or speak with them for
Qwen3-Omni (plan refuses it). It shares the tiny Qwen2.5-Omni's locally trained tokenizer and chat
template, so the same bundled data and media tokenise the same way; the processor reads its
placeholder tokens (`<|IMAGE|>`, ...) from that tokenizer, which is how the real Qwen3-Omni
processor finds its own (`<|image_pad|>`, ...).

Deterministic like the tiny Qwen2.5-Omni: the same builder version, bundled data and library versions
give the same files (the stamp's fingerprint), and the cached build is rebuilt when any of them changes.

Public API: `NAME`, `BUILDER_VERSION`, `build_tiny_qwen3_omni(out_dir) -> Path`,
`ensure_tiny_qwen3_omni() -> Path`, `read_stamp(folder) -> dict | None`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omni_runner.models.folders import (
    atomic_folder,
    build_target,
    ensure_built,
    read_stamp_file,
)
from omni_runner.models.hf_env import quiet_transformers
from omni_runner.paths import BUILTIN_PREFIX, BUNDLED_DATA_DIR, resolve_model_path

NAME = "tiny-qwen3-omni"
BUILDER_VERSION = 1
STAMP_FILE = "omni_runner_tiny.json"
SEED = 4321

TEXT_HIDDEN = 128
TEXT_HEADS = 4  # head_dim 32: the interleaved mrope sections add up to 16
MROPE_SECTION = [6, 5, 5]
EXPERTS = 4
EXPERTS_PER_TOKEN = 2
PATCH_SIZE = 16  # Qwen3-Omni's vision tower reads 16 x 16 patches (Qwen2.5-Omni: 14 x 14)


def _thinker_config(token_ids: dict[str, int], vocab_size: int) -> dict[str, Any]:
    return {
        "text_config": {
            "vocab_size": vocab_size,
            "hidden_size": TEXT_HIDDEN,
            "intermediate_size": 256,
            "moe_intermediate_size": 64,
            "num_experts": EXPERTS,
            "num_experts_per_tok": EXPERTS_PER_TOKEN,
            "num_hidden_layers": 2,
            "num_attention_heads": TEXT_HEADS,
            "num_key_value_heads": 2,
            "max_position_embeddings": 32768,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": MROPE_SECTION,
                                "interleaved": True, "mrope_interleaved": True},
            "bos_token_id": token_ids["<|endoftext|>"],
            "eos_token_id": token_ids["<|im_end|>"],
            "pad_token_id": token_ids["<|endoftext|>"],
        },
        "vision_config": {
            "depth": 2,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_heads": 2,
            "patch_size": PATCH_SIZE,
            "out_hidden_size": TEXT_HIDDEN,
            "num_position_embeddings": 256,  # a 16 x 16 grid of learned positions, resampled per image
            "deepstack_visual_indexes": [0],  # one deepstack merger, added to the first language-model layer
        },
        "audio_config": {
            "encoder_layers": 2,
            "d_model": 64,
            "encoder_attention_heads": 2,
            "encoder_ffn_dim": 128,
            "output_dim": TEXT_HIDDEN,
            "num_mel_bins": 128,
            "downsample_hidden_size": 32,
        },
        "audio_token_id": token_ids["<|AUDIO|>"],
        "image_token_id": token_ids["<|IMAGE|>"],
        "video_token_id": token_ids["<|VIDEO|>"],
        "audio_start_token_id": token_ids["<|audio_bos|>"],
        "audio_end_token_id": token_ids["<|audio_eos|>"],
        "vision_start_token_id": token_ids["<|vision_bos|>"],
        "vision_end_token_id": token_ids["<|vision_eos|>"],
        "user_token_id": token_ids["user"],
    }


def _write_folder(folder: Path, corpus: list[str], fingerprint: str) -> None:
    import torch
    from transformers import (
        GenerationConfig,
        Qwen3OmniMoeConfig,
        Qwen3OmniMoeForConditionalGeneration,
    )

    from omni_runner.models.tiny import TOKENIZER_VOCAB_SIZE, tiny_processor
    from omni_runner.models.tokenizer import (
        NON_SPECIAL_ADDED_TOKENS,
        SPECIAL_TOKENS,
        train_tokenizer,
    )

    tokenizer = train_tokenizer(corpus, TOKENIZER_VOCAB_SIZE)
    token_ids = {token: tokenizer.convert_tokens_to_ids(token) for token in (*SPECIAL_TOKENS, *NON_SPECIAL_ADDED_TOKENS)}
    token_ids["user"] = tokenizer.convert_tokens_to_ids("user")
    vocab_size = -(-len(tokenizer) // 64) * 64
    config = Qwen3OmniMoeConfig(
        thinker_config=_thinker_config(token_ids, vocab_size),
        enable_audio_output=False,
        im_start_token_id=token_ids["<|im_start|>"],
        im_end_token_id=token_ids["<|im_end|>"],
        user_token_id=token_ids["user"],
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = Qwen3OmniMoeForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        eos_token_id=[token_ids["<|im_end|>"], token_ids["<|endoftext|>"]],
        pad_token_id=token_ids["<|endoftext|>"],
        do_sample=False,
    )
    model.save_pretrained(folder)
    tiny_processor(tokenizer, "Qwen3OmniMoeProcessor", PATCH_SIZE).save_pretrained(folder)
    thinker = model.thinker.model
    parts = {"language_model": thinker.language_model, "lm_head": model.thinker.lm_head,
             "vision_tower": thinker.visual, "audio_tower": thinker.audio_tower}
    stamp = {
        "name": NAME,
        "builder_version": BUILDER_VERSION,
        "fingerprint": fingerprint,
        "seed": SEED,
        "tokenizer_length": len(tokenizer),
        "vocab_size": vocab_size,
        "parameters": {part: sum(p.numel() for p in module.parameters()) for part, module in parts.items()},
    }
    (folder / STAMP_FILE).write_text(json.dumps(stamp, indent=2) + "\n", encoding="utf-8")


def read_stamp(folder: Path) -> dict[str, Any] | None:
    """The build record of a tiny Qwen3-Omni folder, or None when the folder is not one (complete)."""
    stamp = read_stamp_file(folder, STAMP_FILE)
    return stamp if stamp is not None and stamp.get("name") == NAME else None


def _fingerprint(corpus: list[str]) -> str:
    from omni_runner.models.tiny import corpus_fingerprint

    return corpus_fingerprint(corpus, builder=f"{NAME} builder {BUILDER_VERSION} seed {SEED}")


def build_tiny_qwen3_omni(out_dir: Path) -> Path:
    """Build the tiny Qwen3-Omni into `out_dir`; the folder appears complete or not at all."""
    from omni_runner.models.tokenizer import training_corpus

    out_dir = build_target(out_dir, read_stamp, NAME)
    corpus = training_corpus(BUNDLED_DATA_DIR)
    with atomic_folder(out_dir) as staging, quiet_transformers():
        _write_folder(staging, corpus, _fingerprint(corpus))
    return out_dir


def ensure_tiny_qwen3_omni() -> Path:
    """The cached tiny Qwen3-Omni, built (or rebuilt when its builder or the bundled data changed) on demand."""
    from omni_runner.models.tokenizer import training_corpus

    folder = resolve_model_path(BUILTIN_PREFIX + NAME, Path.cwd())
    return ensure_built(folder, _fingerprint(training_corpus(BUNDLED_DATA_DIR)), read_stamp, build_tiny_qwen3_omni)
