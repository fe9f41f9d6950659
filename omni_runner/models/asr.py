"""`encoders.asr`: load the recipe's speech recogniser and transcribe audio with it.

The recogniser runs in `omni-run data prepare`, never in the training forward: its transcripts fill
speech-transcript records that have none (omni_runner/data/transcripts.py). A Hugging Face Parakeet
folder (`ParakeetForTDT`, `ParakeetForRNNT` or `ParakeetForCTC` with its `ParakeetProcessor`, as
transformers' NeMo conversion writes it) loads with transformers alone. A `.nemo` archive needs NVIDIA
NeMo, which is the optional `nemo` extra; without it the error names the extra and the conversion.

Public API:
- `AsrLoadError`: an ASR path or setting that cannot be used; the message says what to do.
- `NEMO_INSTALL`: the install line for the NeMo extra.
- `resolve_asr_path(value, recipe_dir) -> Path`: `builtin:tiny-parakeet` (built on first use) or a path.
- `load_asr(path, kind="parakeet", device="cpu") -> SpeechRecognizer`.
- `SpeechRecognizer`: `.name`, `.sampling_rate`, `.transcribe(waveforms) -> list[str]` (mono float32
  arrays at `.sampling_rate`, one transcript each, in order).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from omni_runner.paths import (
    BUILTIN_PREFIX,
    builtin_name,
    is_builtin,
    resolve_model_path,
)

NEMO_INSTALL = "pip install 'omni-runner[nemo]'"
# Hugging Face Parakeet model types and the transformers class that runs each.
_PARAKEET_CLASSES = {"parakeet_tdt": "ParakeetForTDT", "parakeet_rnnt": "ParakeetForRNNT", "parakeet_ctc": "ParakeetForCTC"}


class AsrLoadError(Exception):
    """An ASR path or setting that cannot be used; the message says what to do."""


def resolve_asr_path(value: str, recipe_dir: Path) -> Path:
    """`encoders.asr.path` on disk: the built-in tiny Parakeet is built into the cache on first use."""
    if is_builtin(value):
        from omni_runner.models.tiny_asr import TINY_ASR_NAME, ensure_tiny_asr

        if builtin_name(value) != TINY_ASR_NAME:
            raise AsrLoadError(f"encoders.asr.path: unknown built-in model {value!r}; the built-in speech recogniser is "
                               f"{BUILTIN_PREFIX}{TINY_ASR_NAME}.")
        return ensure_tiny_asr()
    return resolve_model_path(value, recipe_dir)


@dataclass
class SpeechRecognizer:
    """A loaded recogniser; `transcribe` runs one batch (the caller chooses the batch size)."""

    name: str
    sampling_rate: int
    _model: Any
    _processor: Any | None = None  # None for a NeMo model, which prepares its own features

    def transcribe(self, waveforms: list[np.ndarray]) -> list[str]:
        if self._processor is None:
            return _transcribe_nemo(self._model, waveforms)
        return _transcribe_hf(self._model, self._processor, waveforms, self.sampling_rate)


def load_asr(path: Path, kind: str = "parakeet", device: str = "cpu") -> SpeechRecognizer:
    """The recogniser at `path`: a Hugging Face Parakeet folder, or a `.nemo` file (or a folder holding one)."""
    if kind != "parakeet":
        raise AsrLoadError(f"encoders.asr.kind {kind!r}: data prepare transcribes with Parakeet models only; "
                           "use a Parakeet folder or .nemo file with kind: parakeet")
    path = Path(path)
    if path.suffix == ".nemo":
        return _load_nemo(path, device)
    archives = sorted(path.glob("*.nemo")) if path.is_dir() and not (path / "config.json").exists() else []
    return _load_nemo(archives[0], device) if len(archives) == 1 else _load_hf(path, device)


def _load_hf(folder: Path, device: str) -> SpeechRecognizer:
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AsrLoadError(f"encoders.asr.path {folder}: no config.json, so not a Hugging Face model folder; "
                           "point it at a converted Parakeet folder or a .nemo file") from None
    except (OSError, ValueError) as error:
        raise AsrLoadError(f"encoders.asr.path {folder}/config.json cannot be read: {error}") from None
    model_type = config.get("model_type")
    if model_type not in _PARAKEET_CLASSES:
        raise AsrLoadError(f"encoders.asr.path {folder} holds a {model_type!r} model; data prepare runs Parakeet "
                           f"models ({', '.join(_PARAKEET_CLASSES)})")
    import transformers

    from omni_runner.models.hf_env import quiet_transformers

    with quiet_transformers():
        try:
            processor = transformers.AutoProcessor.from_pretrained(folder, local_files_only=True)
            model = getattr(transformers, _PARAKEET_CLASSES[model_type]).from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError) as error:
            raise AsrLoadError(f"encoders.asr.path {folder} cannot be loaded: {error}") from None
    return SpeechRecognizer(folder.name, int(processor.feature_extractor.sampling_rate), model.to(device).eval(), processor)


def _transcribe_hf(model: Any, processor: Any, waveforms: list[np.ndarray], sampling_rate: int) -> list[str]:
    import torch

    inputs = processor(waveforms, sampling_rate=sampling_rate).to(model.device)
    config = model.config
    extra: dict[str, Any] = {}
    if hasattr(config, "durations"):
        # A TDT joint network's logits are the tokens followed by the durations; generate's greedy
        # step takes the argmax over the whole row, so the duration entries are kept out of it.
        extra["suppress_tokens"] = list(range(config.vocab_size, config.vocab_size + len(config.durations)))
    with torch.no_grad(), warnings.catch_warnings():
        # Parakeet's generation sizes its output from the encoder length; the generic default-length warning does not apply.
        warnings.filterwarnings("ignore", message="Using the model-agnostic default `max_length`")
        output = model.generate(**inputs, **extra)
    sequences = output.sequences if hasattr(output, "sequences") else output
    rows = [[int(t) for t in row] for row in sequences]
    if getattr(output, "durations", None) is not None:
        rows = _within_own_audio(model, inputs["attention_mask"], rows, output.durations)
    dropped = {getattr(config, "blank_token_id", None), processor.tokenizer.pad_token_id}
    kept = [[t for t in row if t not in dropped] for row in rows]
    return [text.strip() for text in processor.batch_decode(kept, skip_special_tokens=True)]


def _within_own_audio(model: Any, attention_mask: Any, rows: list[list[int]], durations: Any) -> list[list[int]]:
    """Each row's tokens emitted at encoder frames of its own audio.

    A transducer batch decodes until every clip's frames are used up, and a clip that finished early
    keeps emitting tokens at its last frame meanwhile (generate has no end-of-sequence token to pad
    with); those would make a clip's transcript depend on the longer clips beside it.
    """
    frames = model.encoder._get_subsampling_output_length(attention_mask.sum(-1)).tolist()
    starts = (durations.cumsum(dim=-1) - durations).tolist()  # the frame each step's token was emitted at
    return [[t for t, at in zip(row, start) if at < length] for row, start, length in zip(rows, starts, frames)]


def _load_nemo(archive: Path, device: str) -> SpeechRecognizer:
    try:
        from nemo.collections.asr.models import ASRModel
    except ImportError:
        raise AsrLoadError(
            f"encoders.asr.path {archive} is a NeMo checkpoint, and reading it needs NVIDIA NeMo, which is not "
            f"installed: {NEMO_INSTALL}, or convert it to a Hugging Face folder (transformers' Parakeet "
            "convert_nemo_to_hf script) and point encoders.asr.path at that folder"
        ) from None
    model = ASRModel.restore_from(restore_path=str(archive), map_location=device)
    return SpeechRecognizer(archive.stem, int(model.cfg.preprocessor.sample_rate), model.eval())


def _transcribe_nemo(model: Any, waveforms: list[np.ndarray]) -> list[str]:
    hypotheses = model.transcribe(waveforms, batch_size=len(waveforms), verbose=False)
    if isinstance(hypotheses, tuple):  # (best, all) when the decoder keeps n-best lists
        hypotheses = hypotheses[0]
    return [str(getattr(h, "text", h)).strip() for h in hypotheses]
