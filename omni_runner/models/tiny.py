"""The built-in tiny Qwen2.5-Omni: real transformers classes, random weights, built locally.

`base_model.path: builtin:tiny-qwen2.5-omni` names it. It is a complete Qwen2.5-Omni folder
(thinker with vision and audio towers, talker, token2wav, speaker table, processor), so the loading
code for the real 7B model loads it unchanged. It is small enough to learn the bundled text tasks on
two CPU cores in minutes, and it is deterministic: the same builder, bundled data and library versions
give bit-identical weights and tokenizer, so runs on different machines compare.

Public API:
- `TINY_MODEL_NAME` (`"tiny-qwen2.5-omni"`), `BUILDER_VERSION`.
- `build_tiny_model(out_dir) -> Path`: build into `out_dir` (written beside it, then renamed into
  place). Refuses to overwrite a non-empty folder that is not a tiny-model build.
- `ensure_tiny_model() -> Path`: the cached build under `$OMNI_RUNNER_CACHE/models/tiny-qwen2.5-omni/`,
  built on first use and rebuilt when the builder, the bundled data or the torch/transformers/tokenizers
  versions changed (the fingerprint in `STAMP_FILE`).
  Safe to call from several processes at once (a file lock serialises the build).
- `read_stamp(folder) -> dict | None`: what a tiny-model folder was built from.

The processor's tokenizer is trained on the built-in corpus plus every string of the bundled data
sets (`omni_runner/data/bundled/`, JSON/JSONL), so bundled tasks tokenise compactly.
"""

from __future__ import annotations

import hashlib
import json
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
from omni_runner.paths import BUILTIN_PREFIX, BUNDLED_DATA_DIR, resolve_model_path

TINY_MODEL_NAME = "tiny-qwen2.5-omni"
# Bump whenever the architecture, the corpus rules or anything else that changes the files changes.
BUILDER_VERSION = 4
STAMP_FILE = "omni_runner_tiny.json"
SEED = 1234
TOKENIZER_VOCAB_SIZE = 4096
SPEAKERS = ("Chelsie", "Ethan")  # the real checkpoint's speaker names; generate() defaults to Chelsie

TEXT_HIDDEN = 256
TEXT_HEADS = 4  # head_dim 64 → the three mrope sections must add up to 32
MROPE_SECTION = [8, 12, 12]
# Three of the four layers attend to the last 64 tokens only, the fourth to everything. A random model
# learns to read a tool call's argument values out of the query far sooner when most layers cannot
# spread their attention over the tool listing in the system turn (docs/data.md has the measurements).
# The real 7B checkpoint has no sliding-window layers; the same classes and training code serve both.
TEXT_LAYER_TYPES = ["sliding_attention", "sliding_attention", "sliding_attention", "full_attention"]
SLIDING_WINDOW = 64
TALKER_HIDDEN = 64
TALKER_CODEC_VOCAB = 512
MEL_DIM = 80
SPEAKER_EMBEDDING_DIM = 32
AUDIO_CONV_GAIN = 4.0  # see `_audible_audio_tower`


def _thinker_config(token_ids: dict[str, int], vocab_size: int) -> dict[str, Any]:
    return {
        "text_config": {
            "vocab_size": vocab_size,
            "hidden_size": TEXT_HIDDEN,
            "intermediate_size": 688,
            "num_hidden_layers": len(TEXT_LAYER_TYPES),
            "num_attention_heads": TEXT_HEADS,
            "num_key_value_heads": 2,
            "max_position_embeddings": 32768,
            "use_sliding_window": True,
            "sliding_window": SLIDING_WINDOW,
            "layer_types": TEXT_LAYER_TYPES,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": MROPE_SECTION},
            "tie_word_embeddings": False,
            "bos_token_id": token_ids["<|endoftext|>"],
            "eos_token_id": token_ids["<|im_end|>"],
            "pad_token_id": token_ids["<|endoftext|>"],
        },
        "vision_config": {
            "depth": 2,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_heads": 2,
            "out_hidden_size": TEXT_HIDDEN,
            "fullatt_block_indexes": [1],
        },
        "audio_config": {
            "encoder_layers": 2,
            "d_model": 64,
            "encoder_attention_heads": 2,
            "encoder_ffn_dim": 128,
            "output_dim": TEXT_HIDDEN,
            "num_mel_bins": 128,
        },
        **_media_token_ids(token_ids),
        "user_token_id": token_ids["user"],
        "bos_token_id": token_ids["<|endoftext|>"],
        "eos_token_id": token_ids["<|im_end|>"],
        "pad_token_id": token_ids["<|endoftext|>"],
    }


def _media_token_ids(token_ids: dict[str, int]) -> dict[str, int]:
    """The ids `get_rope_index` and the placeholder masks read, even for text-only input."""
    return {
        "audio_token_index": token_ids["<|AUDIO|>"],
        "image_token_index": token_ids["<|IMAGE|>"],
        "video_token_index": token_ids["<|VIDEO|>"],
        "audio_start_token_id": token_ids["<|audio_bos|>"],
        "audio_end_token_id": token_ids["<|audio_eos|>"],
        "vision_start_token_id": token_ids["<|vision_bos|>"],
        "vision_end_token_id": token_ids["<|vision_eos|>"],
    }


def _talker_config(token_ids: dict[str, int], reserved: dict[str, int]) -> dict[str, Any]:
    return {
        "vocab_size": TALKER_CODEC_VOCAB,
        "embedding_size": TEXT_HIDDEN,
        "hidden_size": TALKER_HIDDEN,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 32,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [4, 6, 6]},
        "tts_codec_pad_token_id": TALKER_CODEC_VOCAB - 4,
        "tts_codec_start_token_id": TALKER_CODEC_VOCAB - 3,
        "tts_codec_end_token_id": TALKER_CODEC_VOCAB - 2,
        "tts_codec_mask_token_id": TALKER_CODEC_VOCAB - 1,
        "tts_text_pad_token_id": reserved["tts_text_pad"],
        "tts_text_start_token_id": reserved["tts_text_start"],
        "tts_text_end_token_id": reserved["tts_text_end"],
        **_media_token_ids(token_ids),
    }


def _token2wav_config() -> dict[str, Any]:
    return {
        "dit_config": {
            "hidden_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "head_dim": 32,
            "emb_dim": 32,
            "num_embeds": TALKER_CODEC_VOCAB,
            "mel_dim": MEL_DIM,
            "enc_emb_dim": SPEAKER_EMBEDDING_DIM,
            "enc_dim": 32,
            "enc_channels": [32, 32, 32, 32, 96],
            "enc_attention_channels": 16,
            "enc_se_channels": 16,
            "look_ahead_layers": [1],
            "look_backward_layers": [0],
        },
        "bigvgan_config": {
            "mel_dim": MEL_DIM,
            # six 2x channel halvings must leave at least one channel
            "upsample_initial_channel": 64,
            "resblock_kernel_sizes": [3],
            "resblock_dilation_sizes": [[1, 3, 5]],
        },
    }


def _reserved_ids(tokenizer_length: int) -> dict[str, int]:
    """Thinker embedding rows past the tokenizer, as in the real model (151859+ are not tokens)."""
    names = ("tts_text_pad", "tts_text_start", "tts_text_end", *(f"speaker_{name}" for name in SPEAKERS))
    return {name: tokenizer_length + offset for offset, name in enumerate(names)}


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def tiny_processor(tokenizer: Any, processor_class: str = "Qwen2_5OmniProcessor", patch_size: int = 14) -> Any:
    """The tiny builds' processor: the family's own processor class over Qwen2-VL image and video
    processors and a Whisper feature extractor, with pixel budgets kept small for CPUs: at least
    4 x 4 and at most 16 x 16 patches (64 language-model tokens) per image or video frame pair."""
    import transformers
    from transformers import (
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
        WhisperFeatureExtractor,
    )

    from omni_runner.models.chat_template import CHAT_TEMPLATE

    pixels = {"shortest_edge": (4 * patch_size) ** 2, "longest_edge": (16 * patch_size) ** 2}
    return getattr(transformers, processor_class)(
        image_processor=Qwen2VLImageProcessor(size=pixels, patch_size=patch_size, temporal_patch_size=2, merge_size=2),
        video_processor=Qwen2VLVideoProcessor(size=pixels, patch_size=patch_size, temporal_patch_size=2, merge_size=2),
        feature_extractor=WhisperFeatureExtractor(feature_size=128, sampling_rate=16000, return_attention_mask=True),
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
    )


def corpus_fingerprint(corpus: list[str], builder: str | None = None) -> str:
    """Everything the files depend on: builder, seed, corpus, and the libraries that initialise and
    serialise the weights and train the tokenizer (another version may produce other bytes).
    `builder` names another builder and its version (a tiny base built on this tokenizer); the default
    is this module's."""
    libraries = " ".join(f"{name} {metadata.version(name)}" for name in ("torch", "transformers", "tokenizers"))
    digest = hashlib.sha256(f"{builder or f'builder {BUILDER_VERSION}'} seed {SEED} {libraries}".encode())
    for text in corpus:
        digest.update(text.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()


def _write_folder(folder: Path, corpus: list[str], fingerprint: str) -> None:
    import torch
    from transformers import (
        GenerationConfig,
        Qwen2_5OmniConfig,
        Qwen2_5OmniForConditionalGeneration,
    )

    from omni_runner.models.tokenizer import (
        NON_SPECIAL_ADDED_TOKENS,
        SPECIAL_TOKENS,
        train_tokenizer,
    )

    tokenizer = train_tokenizer(corpus, TOKENIZER_VOCAB_SIZE)
    token_ids = {
        token: tokenizer.convert_tokens_to_ids(token) for token in (*SPECIAL_TOKENS, *NON_SPECIAL_ADDED_TOKENS)
    }
    token_ids["user"] = tokenizer.convert_tokens_to_ids("user")
    reserved = _reserved_ids(len(tokenizer))
    vocab_size = _round_up(len(tokenizer) + len(reserved), 64)
    config = Qwen2_5OmniConfig(
        thinker_config=_thinker_config(token_ids, vocab_size),
        talker_config=_talker_config(token_ids, reserved),
        token2wav_config=_token2wav_config(),
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = Qwen2_5OmniForConditionalGeneration(config)
        speakers = {
            name: {
                "cond": torch.randn(1, SPEAKER_EMBEDDING_DIM),
                "ref_mel": torch.randn(1, 64, MEL_DIM),
                "bos_token": reserved[f"speaker_{name}"],
            }
            for name in SPEAKERS
        }
    _audible_audio_tower(model.thinker.model.audio_tower)
    model.generation_config = GenerationConfig(
        eos_token_id=[token_ids["<|im_end|>"], token_ids["<|endoftext|>"]],
        pad_token_id=token_ids["<|endoftext|>"],
        do_sample=False,
    )
    model.save_pretrained(folder)
    torch.save(speakers, folder / "spk_dict.pt")
    tiny_processor(tokenizer).save_pretrained(folder)
    stamp = {
        "name": TINY_MODEL_NAME,
        "builder_version": BUILDER_VERSION,
        "fingerprint": fingerprint,
        "seed": SEED,
        "tokenizer_length": len(tokenizer),
        "vocab_size": vocab_size,
        "parameters": _parameter_counts(model),
    }
    (folder / STAMP_FILE).write_text(json.dumps(stamp, indent=2) + "\n", encoding="utf-8")


def _audible_audio_tower(tower: Any) -> None:
    """Re-initialise the audio tower so what a random tower passes on depends on the clip.

    At transformers' init (normal, std 0.02) the convolutions' output is small beside the sinusoidal
    positions every clip shares, and the tower's output varies by about 1 % between clips: too little
    for a language model to learn to read in minutes. PyTorch's default init, convolutions four times
    larger, makes the clip's content about a quarter of it. Its own seeded generator leaves every other
    weight of the build unchanged.
    """
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED + 1)
        for module in tower.modules():
            if isinstance(module, (torch.nn.Linear, torch.nn.Conv1d)):
                module.reset_parameters()
        with torch.no_grad():
            for conv in (tower.conv1, tower.conv2):
                conv.weight.mul_(AUDIO_CONV_GAIN)


def _parameter_counts(model: Any) -> dict[str, int]:
    thinker = model.thinker.model
    parts = {
        "language_model": thinker.language_model,
        "lm_head": model.thinker.lm_head,
        "vision_tower": thinker.visual,
        "audio_tower": thinker.audio_tower,
        "talker": model.talker,
        "token2wav": model.token2wav,
    }
    return {name: sum(p.numel() for p in module.parameters()) for name, module in parts.items()}


def read_stamp(folder: Path) -> dict[str, Any] | None:
    """The build record of a tiny-model folder, or None when the folder is not a (complete) build."""
    return read_stamp_file(folder, STAMP_FILE)


def build_tiny_model(out_dir: Path) -> Path:
    """Build the tiny model into `out_dir`; the folder appears complete or not at all."""
    from omni_runner.models.tokenizer import training_corpus

    out_dir = build_target(out_dir, read_stamp, "tiny-model")
    corpus = training_corpus(BUNDLED_DATA_DIR)
    # The real checkpoint's talker config also names thinker ids past the talker vocabulary;
    # transformers warns about that on every build, so builds run quietly.
    with atomic_folder(out_dir) as staging, quiet_transformers():
        _write_folder(staging, corpus, corpus_fingerprint(corpus))
    return out_dir


def current_fingerprint() -> str:
    """What a fresh build would be stamped with (builder version, seed and training corpus)."""
    from omni_runner.models.tokenizer import training_corpus

    return corpus_fingerprint(training_corpus(BUNDLED_DATA_DIR))


def ensure_tiny_model() -> Path:
    """The cached tiny model, built (or rebuilt when its builder or the bundled data changed) on demand."""
    folder = resolve_model_path(BUILTIN_PREFIX + TINY_MODEL_NAME, Path.cwd())
    return ensure_built(folder, current_fingerprint(), read_stamp, build_tiny_model)
