"""The built-in tiny Parakeet TDT speech recogniser: real transformers classes, random weights, built locally.

`encoders.asr.path: builtin:tiny-parakeet` names it. It is a complete Hugging Face Parakeet TDT folder
(`ParakeetForTDT`: FastConformer encoder, LSTM prediction network, joint network with a duration head;
`ParakeetProcessor` with its feature extractor and tokenizer), so `omni-run data prepare` loads and
runs it exactly as it runs a converted nvidia/parakeet-tdt checkpoint. Its weights are random, so its
transcripts are gibberish and their word error rate is high: it exists to exercise transcription,
the transcript cache and the scoring end to end on CPU, not to recognise speech.

Deterministic: the same builder, seed and torch/transformers/tokenizers versions give the same files.

Public API:
- `TINY_ASR_NAME` (`"tiny-parakeet"`), `BUILDER_VERSION`, `STAMP_FILE`.
- `build_tiny_asr(out_dir) -> Path`: build into `out_dir` (written beside it, then renamed into place).
  Refuses to overwrite a non-empty folder that is not a tiny-parakeet build.
- `ensure_tiny_asr() -> Path`: the cached build under `$OMNI_RUNNER_CACHE/models/tiny-parakeet/`, built on
  first use and rebuilt when its fingerprint changes; safe to call from several processes at once.
- `read_stamp(folder) -> dict | None`: what a tiny-parakeet folder was built from.
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
from omni_runner.paths import BUILTIN_PREFIX, resolve_model_path

TINY_ASR_NAME = "tiny-parakeet"
# Bump whenever the architecture, the tokenizer corpus or anything else that changes the files changes.
BUILDER_VERSION = 1
STAMP_FILE = "omni_runner_tiny_asr.json"
SEED = 4321
TOKENIZER_VOCAB_SIZE = 256
BLANK_TOKEN, PAD_TOKEN, UNK_TOKEN = "<blank>", "<pad>", "<unk>"
DURATIONS = (0, 1, 2, 3, 4)  # as nvidia/parakeet-tdt-0.6b-v2: how many encoder frames an emission spans
ZERO_DURATION_BIAS = -8.0  # see `_always_advance`
SAMPLING_RATE, MEL_BINS = 16000, 80

# Text the tokenizer learns its pieces from: the words of the bundled tone "speech" and a few sentences.
_CORPUS = (
    "the cat sees a red ball",
    "the dog runs home now",
    "we play today",
    "good morning friend",
    "transcribe the audio and score the words",
    "a quick brown fox jumps over the lazy dog",
    "speech recognition turns sound into text",
)


def _corpus() -> list[str]:
    from omni_runner.data.bundled.media import SPEECH_WORDS

    return [*_CORPUS, " ".join(SPEECH_WORDS)]


def _fingerprint(corpus: list[str]) -> str:
    libraries = " ".join(f"{name} {metadata.version(name)}" for name in ("torch", "transformers", "tokenizers"))
    digest = hashlib.sha256(f"builder {BUILDER_VERSION} seed {SEED} {libraries}".encode())
    for text in corpus:
        digest.update(text.encode("utf-8") + b"\0")
    return digest.hexdigest()


def _tokenizer(corpus: list[str]) -> Any:
    """A SentencePiece-like BPE (word-initial `▁` pieces) with `<unk>`, `<pad>` first and `<blank>` last,
    the layout of a converted Parakeet TDT vocabulary (blank is the id after the last piece)."""
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        trainers,
    )
    from transformers import ParakeetTokenizer

    backend = Tokenizer(models.BPE(unk_token=UNK_TOKEN))
    backend.normalizer = normalizers.NFKC()
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=TOKENIZER_VOCAB_SIZE, special_tokens=[UNK_TOKEN, PAD_TOKEN], show_progress=False)
    backend.train_from_iterator(corpus, trainer)
    backend.add_special_tokens([BLANK_TOKEN])
    return ParakeetTokenizer(tokenizer_object=backend, unk_token=UNK_TOKEN, pad_token=PAD_TOKEN)


def _config(vocab_size: int, blank_id: int, pad_id: int) -> Any:
    from transformers import ParakeetTDTConfig

    return ParakeetTDTConfig(
        vocab_size=vocab_size,
        blank_token_id=blank_id,
        pad_token_id=pad_id,
        decoder_hidden_size=64,
        num_decoder_layers=1,
        durations=list(DURATIONS),
        encoder_config={
            "hidden_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "intermediate_size": 128,
            "subsampling_conv_channels": 32,
            "num_mel_bins": MEL_BINS,
        },
    )


def _always_advance(model: Any) -> None:
    """Lower the duration head's bias for duration 0, so every emission moves to a later encoder frame.

    A random duration head picks 0 for about one emission in five; after a token of duration 0 the
    decoder stays on its frame, and a random model then repeats that token until the length limit
    (ten per encoder frame), which makes slow, long gibberish. A trained model learns when to stay.
    """
    import torch

    with torch.no_grad():
        model.joint.head.bias[model.config.vocab_size + DURATIONS.index(0)] = ZERO_DURATION_BIAS


def _write_folder(folder: Path, corpus: list[str], fingerprint: str) -> None:
    import torch
    from transformers import (
        GenerationConfig,
        ParakeetFeatureExtractor,
        ParakeetForTDT,
        ParakeetProcessor,
    )

    tokenizer = _tokenizer(corpus)
    blank_id = tokenizer.convert_tokens_to_ids(BLANK_TOKEN)
    config = _config(len(tokenizer), blank_id, tokenizer.pad_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = ParakeetForTDT(config).eval()
    _always_advance(model)
    model.generation_config = GenerationConfig(decoder_start_token_id=blank_id, pad_token_id=tokenizer.pad_token_id)
    model.save_pretrained(folder)
    processor = ParakeetProcessor(
        feature_extractor=ParakeetFeatureExtractor(feature_size=MEL_BINS, sampling_rate=SAMPLING_RATE),
        tokenizer=tokenizer,
        blank_token=BLANK_TOKEN,
        decoder_type="tdt",
    )
    processor.save_pretrained(folder)
    stamp = {
        "name": TINY_ASR_NAME,
        "builder_version": BUILDER_VERSION,
        "fingerprint": fingerprint,
        "seed": SEED,
        "vocab_size": len(tokenizer),
        "parameters": {
            "encoder": sum(p.numel() for p in model.encoder.parameters()),
            "decoder_and_joint": sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in model.encoder.parameters()),
        },
    }
    (folder / STAMP_FILE).write_text(json.dumps(stamp, indent=2) + "\n", encoding="utf-8")


def read_stamp(folder: Path) -> dict[str, Any] | None:
    """The build record of a tiny-parakeet folder, or None when the folder is not a (complete) build."""
    return read_stamp_file(folder, STAMP_FILE)


def build_tiny_asr(out_dir: Path) -> Path:
    """Build the tiny Parakeet into `out_dir`; the folder appears complete or not at all."""
    out_dir = build_target(out_dir, read_stamp, TINY_ASR_NAME)
    corpus = _corpus()
    with atomic_folder(out_dir) as staging, quiet_transformers():
        _write_folder(staging, corpus, _fingerprint(corpus))
    return out_dir


def ensure_tiny_asr() -> Path:
    """The cached tiny Parakeet, built (or rebuilt when its builder or libraries changed) on demand."""
    folder = resolve_model_path(BUILTIN_PREFIX + TINY_ASR_NAME, Path.cwd())
    return ensure_built(folder, _fingerprint(_corpus()), read_stamp, build_tiny_asr)
