"""`omni-run tiny-model OUT_DIR`: build the deterministic tiny Qwen2.5-Omni into a folder.

The same model that `base_model.path: builtin:tiny-qwen2.5-omni` builds into the cache, placed where
the user wants it (to inspect it, ship it, or point a recipe at it). `--model tiny-qwen3-omni` builds the
tiny Qwen3-Omni (mixture-of-experts thinker) base instead; `--model` also builds one of the tiny encoders: `tiny-siglip2` or `tiny-clip` (`encoders.vision`; the tiny CLIP
also scores images for `omni-run eval --clip`), `tiny-whisper` (`encoders.audio`) or
`tiny-parakeet` (`encoders.asr`), each from its real transformers classes with random weights; or one
of the tiny decoders: `tiny-sd3` (`decoders.image`) or `tiny-svd` (`decoders.video`), diffusers
pipeline folders from the real diffusers classes with random weights. `--kind sd3` is `--model tiny-sd3`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from omni_runner.models.tiny_decoders import TINY_DECODERS

HELP = "Build the tiny, randomly initialised Qwen2.5-Omni model (with its processor) into a folder."


TINY_MODELS = ("tiny-qwen2.5-omni", "tiny-qwen3-omni", "tiny-siglip2", "tiny-clip", "tiny-whisper", "tiny-parakeet", "tiny-sd3", "tiny-svd")
TINY_PREFIX = "tiny-"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out_dir", metavar="OUT_DIR", type=Path, help="folder to create (must be new or empty)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--model", choices=TINY_MODELS, default="tiny-qwen2.5-omni",
                       help="which tiny model to build (default: the Qwen2.5-Omni base model)")
    which.add_argument("--kind", choices=tuple(name.removeprefix(TINY_PREFIX) for name in TINY_MODELS),
                       help="the same choice without the tiny- prefix: --kind sd3 is --model tiny-sd3")


def run(args: argparse.Namespace) -> int:
    from omni_runner.models.hf_env import offline_hub

    offline_hub()
    name = TINY_PREFIX + args.kind if args.kind else args.model
    build, read_stamp = _builder(name)
    try:
        folder = build(args.out_dir)
    except FileExistsError as error:
        print(f"error: {error}")
        return 1
    stamp = read_stamp(folder) or {}
    print(f"Built {stamp.get('name')} (builder v{stamp.get('builder_version')}, seed {stamp.get('seed')}) in {folder}")
    for line in _notes(name, stamp):
        print(f"  {line}")
    parameters = stamp.get("parameters", {})
    width = max(map(len, [*parameters, "total"]))
    for part, count in parameters.items():
        print(f"  {part:<{width}}  {count:>10,} parameters")
    print(f"  {'total':<{width}}  {sum(parameters.values()):>10,} parameters")
    return 0


def _builder(name: str) -> tuple[Callable[[Path], Path], Callable[[Path], dict[str, Any] | None]]:
    """The build function and stamp reader of the tiny model `name`."""
    if name == "tiny-parakeet":
        from omni_runner.models import tiny_asr

        return tiny_asr.build_tiny_asr, tiny_asr.read_stamp
    if name == "tiny-qwen2.5-omni":
        from omni_runner.models import tiny

        return tiny.build_tiny_model, tiny.read_stamp
    if name == "tiny-qwen3-omni":
        from omni_runner.models import tiny_qwen3

        return tiny_qwen3.build_tiny_qwen3_omni, tiny_qwen3.read_stamp
    if name in TINY_DECODERS:
        from omni_runner.models import tiny_decoders

        return partial(tiny_decoders.build_tiny_decoder, name), tiny_decoders.read_stamp
    from omni_runner.models import tiny_encoders

    return partial(tiny_encoders.build_tiny_encoder, name), tiny_encoders.read_stamp


def _notes(name: str, stamp: dict[str, Any]) -> list[str]:
    if name == "tiny-qwen3-omni":
        from omni_runner.models.tiny_qwen3 import EXPERTS, EXPERTS_PER_TOKEN

        return [f"Qwen3-Omni-MoE thinker: {EXPERTS} experts, {EXPERTS_PER_TOKEN} routed per token; no talker",
                f"tokenizer: the tiny Qwen2.5-Omni's ({stamp.get('tokenizer_length')} tokens)",
                f"thinker vocabulary: {stamp.get('vocab_size')} rows"]
    if name == "tiny-qwen2.5-omni":
        return [f"tokenizer: {stamp.get('tokenizer_length')} tokens (byte-level BPE)",
                f"thinker vocabulary: {stamp.get('vocab_size')} rows"]
    if name == "tiny-parakeet":
        return [f"Parakeet TDT, random weights: its transcripts are gibberish; vocabulary {stamp.get('vocab_size')} tokens"]
    if name in TINY_DECODERS:
        return ["diffusers pipeline, random weights: it draws noise until a connector and training teach it",
                "the components model_index.json records as null load as None (text or image encoders)"]
    return ["random weights: the features it passes on mean nothing until a projector learns to read them"]
