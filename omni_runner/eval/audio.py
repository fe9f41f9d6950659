"""The `audio` suite: word error rate of transcriptions and accuracy of answers about audio, on local
records.

- Transcription records (format `speech-transcript`: an audio file and its transcript; the prompt is
  "Transcribe the audio."): corpus WER with jiwer, after lower-casing and removing punctuation
  (`data.transcribe.word_error_rate`, the figure `omni-run data prepare` reports for its recogniser).
- Other records that carry audio and no video (audio QA: "How many beeps do you hear?" -> "two"):
  accuracy, the reply equal to the record's answer after the VQA answer normalisation
  (`vqa.normalise_answer`: case, punctuation, articles, number words).

`audio_accuracy` is pure; `run` does the model I/O.
"""

from __future__ import annotations

from typing import Any

from omni_runner.eval.vqa import normalise_answer

TRANSCRIPT_FORMAT = "speech-transcript"


def audio_accuracy(answers: list[str], references: list[str]) -> float | None:
    """The fraction of answers equal to their reference after normalisation (None for no records)."""
    if len(answers) != len(references):
        raise ValueError("one reference per answer")
    if not answers:
        return None
    return sum(normalise_answer(a) == normalise_answer(r) for a, r in zip(answers, references)) / len(answers)


def _audio_records(source: Any) -> bool:
    conversation = source.conversation(0)
    return bool(conversation.audios) and not conversation.videos


def run(context: Any) -> dict[str, dict[str, Any]]:
    from omni_runner.data.transcribe import word_error_rate
    from omni_runner.eval.records import answers, eval_sources

    results = {}
    for source in eval_sources(context, _audio_records, "audio records (transcriptions or audio QA)"):
        generated, references, samples, skipped = [], [], [], []
        for answer in answers(context, source, skipped):
            expected = answer.expected.content if isinstance(answer.expected.content, str) else ""
            generated.append(answer.generated)
            references.append(expected)
            samples.append({"location": answer.location, "generated": answer.generated, "expected": expected})
        if source.format == TRANSCRIPT_FORMAT:
            metric = {"wer": word_error_rate(references, generated) if references else None}
        else:
            metric = {"accuracy": audio_accuracy(generated, references)}
        results[source.name] = {**metric, "n": len(generated), "samples": samples,
                                **({"skipped": skipped} if skipped else {})}
    return results
