"""`omni-run tiny-model OUT_DIR`: build the deterministic tiny Qwen2.5-Omni into a folder.

The same model that `base_model.path: builtin:tiny-qwen2.5-omni` builds into the cache, placed where
the user wants it (to inspect it, ship it, or point a recipe at it). `--model tiny-parakeet` builds
the tiny Parakeet speech recogniser of `encoders.asr.path: builtin:tiny-parakeet` instead.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "Build the tiny, randomly initialised Qwen2.5-Omni model (with its processor) into a folder."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out_dir", metavar="OUT_DIR", type=Path, help="folder to create (must be new or empty)")
    parser.add_argument("--model", choices=("tiny-qwen2.5-omni", "tiny-parakeet"), default="tiny-qwen2.5-omni",
                        help="which tiny model to build (default: the Qwen2.5-Omni base model)")


def run(args: argparse.Namespace) -> int:
    from omni_runner.models.hf_env import offline_hub

    offline_hub()
    if args.model == "tiny-parakeet":
        return _build_asr(args.out_dir)
    from omni_runner.models.tiny import build_tiny_model, read_stamp

    try:
        folder = build_tiny_model(args.out_dir)
    except FileExistsError as error:
        print(f"error: {error}")
        return 1
    stamp = read_stamp(folder) or {}
    print(f"Built {stamp.get('name')} (builder v{stamp.get('builder_version')}, seed {stamp.get('seed')}) in {folder}")
    print(f"  tokenizer: {stamp.get('tokenizer_length')} tokens (byte-level BPE)")
    print(f"  thinker vocabulary: {stamp.get('vocab_size')} rows")
    parameters = stamp.get("parameters", {})
    width = max(map(len, parameters), default=0)
    for part, count in parameters.items():
        print(f"  {part:<{width}}  {count:>10,} parameters")
    print(f"  {'total':<{width}}  {sum(parameters.values()):>10,} parameters")
    return 0


def _build_asr(out_dir: Path) -> int:
    from omni_runner.models.tiny_asr import build_tiny_asr, read_stamp

    try:
        folder = build_tiny_asr(out_dir)
    except FileExistsError as error:
        print(f"error: {error}")
        return 1
    stamp = read_stamp(folder) or {}
    print(f"Built {stamp.get('name')} (builder v{stamp.get('builder_version')}, seed {stamp.get('seed')}) in {folder}")
    print(f"  Parakeet TDT, random weights: its transcripts are gibberish; vocabulary {stamp.get('vocab_size')} tokens")
    for part, count in stamp.get("parameters", {}).items():
        print(f"  {part:<17}  {count:>10,} parameters")
    return 0
