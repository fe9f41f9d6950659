"""`omni-run data prepare`: transcribe the recipe's speech records that lack text, and score the recogniser.

For every speech-transcript data set the recipe's capabilities use, each record without a
transcript has its audio transcribed by `encoders.asr` (in batches) unless the transcript cache
(omni_runner/data/transcripts.py) already holds that audio's content. Records that do have a
transcript are references: the first `score` of them (in file order, so runs compare) are
transcribed too, and the word error rate of those transcripts against the references is reported
(jiwer, after lower-casing and removing punctuation, since recognisers punctuate and data sets
differ). Their transcripts are cached like the others, so a re-run transcribes nothing it has seen.

Separate from the command module so tests and the trainer's tooling can call it without argparse.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omni_runner.data.conversation import RecordError
from omni_runner.data.media import MediaError, load_audio
from omni_runner.data.sources import DataSource, open_source, used_datasets
from omni_runner.data.transcripts import file_sha256, reference_text

if TYPE_CHECKING:
    from omni_runner.models.asr import SpeechRecognizer

SPEECH_FORMAT = "speech-transcript"
DEFAULT_SCORE_SAMPLE = 16
DEFAULT_BATCH_SIZE = 8
SHOWN_EXAMPLES = 3


@dataclass
class _Audio:
    """One audio file to transcribe: its content hash, where it is, and how the record named it."""

    sha256: str
    path: str
    reference: str


@dataclass
class _Survey:
    """What one data set needs: audio without text, reference audio to score, and unreadable files."""

    records: int = 0
    without_text: int = 0
    from_cache: int = 0
    pending: dict[str, _Audio] = field(default_factory=dict)  # by sha256: one transcription per content
    scored: list[tuple[str, str]] = field(default_factory=list)  # (sha256, reference transcript)
    failures: list[dict[str, str]] = field(default_factory=list)  # {location, reason}


def speech_datasets(recipe: dict[str, Any]) -> list[str]:
    """The speech-transcript data sets the recipe's active capabilities use, in recipe order."""
    declared = recipe.get("datasets") or {}
    return [name for name in used_datasets(recipe) if (declared.get(name) or {}).get("format") == SPEECH_FORMAT]


def prepare_transcripts(
    recipe: dict[str, Any],
    base_dir: Path,
    load_recognizer: Callable[[], SpeechRecognizer],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    score: int = DEFAULT_SCORE_SAMPLE,
) -> dict[str, Any]:
    """Transcribe and score every speech data set of `recipe`; the report `data prepare` prints.

    `load_recognizer` is called once, and only when some audio is not in the cache yet.
    """
    recognizers: list[SpeechRecognizer] = []

    def recognizer() -> SpeechRecognizer:
        if not recognizers:
            recognizers.append(load_recognizer())
        return recognizers[0]

    datasets = {}
    for name in speech_datasets(recipe):
        source = open_source(name, recipe["datasets"][name], base_dir)
        survey = _survey(source, score)
        transcribed = _transcribe(source, survey, recognizer, batch_size) if survey.pending else 0
        datasets[name] = _dataset_report(source, survey, transcribed)
    return {"datasets": datasets, "ok": all(not d["failures"] for d in datasets.values())}


def _survey(source: DataSource, score: int) -> _Survey:
    assert source.transcripts is not None  # open_source gives every speech-transcript set its cache
    cache, survey = source.transcripts, _Survey()
    for index in range(len(source.table)):
        try:
            record = source.table.record(index)
        except RecordError:
            continue  # a bad line is `data check`'s to report; it has no audio to transcribe
        audio = record.get("audio") if isinstance(record, dict) else None
        if not isinstance(audio, str) or not audio:
            continue
        survey.records += 1
        reference = reference_text(record)
        if reference is None:
            survey.without_text += 1
        elif len(survey.scored) >= score:
            continue
        path = source.media_path(audio)
        try:
            sha256 = file_sha256(path)
        except OSError as error:
            survey.failures.append({"location": source.table.location(index), "reason": f"audio {path} cannot be read ({error.strerror or error})"})
            continue
        if reference is not None:
            survey.scored.append((sha256, reference))
        if cache.get(sha256) is None:
            survey.pending.setdefault(sha256, _Audio(sha256, path, audio))
        elif reference is None:
            survey.from_cache += 1
    return survey


def _transcribe(source: DataSource, survey: _Survey, recognizer: Callable[[], SpeechRecognizer], batch_size: int) -> int:
    """Transcribe the pending audio in batches, appending each batch to the cache; the number transcribed."""
    assert source.transcripts is not None
    model = recognizer()
    pending = list(survey.pending.values())
    done = 0
    for start in range(0, len(pending), batch_size):
        batch, waveforms = [], []
        for audio in pending[start:start + batch_size]:
            try:
                waveforms.append(load_audio(audio.path, model.sampling_rate))
                batch.append(audio)
            except MediaError as error:
                survey.failures.append({"location": audio.path, "reason": str(error)})
        if not batch:
            continue
        texts = model.transcribe(waveforms)
        source.transcripts.append([
            {"sha256": audio.sha256, "transcript": text, "model": model.name, "audio": audio.reference}
            for audio, text in zip(batch, texts)
        ])
        done += len(batch)
    return done


def word_error_rate(references: list[str], hypotheses: list[str]) -> float:
    """Corpus WER (word edits over reference words) after lower-casing and removing punctuation."""
    import jiwer

    normalise = jiwer.Compose([
        jiwer.ToLowerCase(), jiwer.RemovePunctuation(), jiwer.RemoveMultipleSpaces(), jiwer.Strip(),
        jiwer.ReduceToListOfListOfWords(),
    ])
    return float(jiwer.wer(references, hypotheses, reference_transform=normalise, hypothesis_transform=normalise))


def _dataset_report(source: DataSource, survey: _Survey, transcribed: int) -> dict[str, Any]:
    assert source.transcripts is not None
    pairs = [(reference, source.transcripts.get(sha256)) for sha256, reference in survey.scored]
    pairs = [(reference, hypothesis) for reference, hypothesis in pairs if hypothesis is not None]
    return {
        "format": source.format,
        "path": str(source.table.path),
        "cache": str(source.transcripts.path),
        "records": survey.records,
        "without_text": survey.without_text,
        "from_cache": survey.from_cache,
        "transcribed": transcribed,
        "scored": len(pairs),
        "wer": word_error_rate([r for r, _ in pairs], [h for _, h in pairs]) if pairs else None,
        "examples": [{"reference": r, "transcript": h} for r, h in pairs[:SHOWN_EXAMPLES]],
        "failures": survey.failures,
    }
