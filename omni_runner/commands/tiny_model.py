"""`omni-run tiny-model OUT_DIR`: build the deterministic tiny Qwen2.5-Omni into a folder.

The same model that `base_model.path: builtin:tiny-qwen2.5-omni` builds into the cache, placed where
the user wants it (to inspect it, ship it, or point a recipe at it). `--model` builds one of the tiny
encoders instead: `tiny-siglip2` (`encoders.vision`), `tiny-whisper` (`encoders.audio`) or
`tiny-parakeet` (`encoders.asr`), each from its real transformers classes with random weights.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

HELP = "Build the tiny, randomly initialised Qwen2.5-Omni model (with its processor) into a folder."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out_dir", metavar="OUT_DIR", type=Path, help="folder to create (must be new or empty)")
    parser.add_argument("--model", choices=("tiny-qwen2.5-omni", "tiny-siglip2", "tiny-whisper", "tiny-parakeet"),
                        default="tiny-qwen2.5-omni",
                        help="which tiny model to build (default: the Qwen2.5-Omni base model)")


def run(args: argparse.Namespace) -> int:
    from omni_runner.models.hf_env import offline_hub

    offline_hub()
    build, read_stamp = _builder(args.model)
    try:
        folder = build(args.out_dir)
    except FileExistsError as error:
        print(f"error: {error}")
        return 1
    stamp = read_stamp(folder) or {}
    print(f"Built {stamp.get('name')} (builder v{stamp.get('builder_version')}, seed {stamp.get('seed')}) in {folder}")
    for line in _notes(args.model, stamp):
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
    from omni_runner.models import tiny_encoders

    return partial(tiny_encoders.build_tiny_encoder, name), tiny_encoders.read_stamp


def _notes(name: str, stamp: dict[str, Any]) -> list[str]:
    if name == "tiny-qwen2.5-omni":
        return [f"tokenizer: {stamp.get('tokenizer_length')} tokens (byte-level BPE)",
                f"thinker vocabulary: {stamp.get('vocab_size')} rows"]
    if name == "tiny-parakeet":
        return [f"Parakeet TDT, random weights: its transcripts are gibberish; vocabulary {stamp.get('vocab_size')} tokens"]
    return ["random weights: the features it passes on mean nothing until a projector learns to read them"]
