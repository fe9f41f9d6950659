"""The `vqa` suite: VQAv2-style accuracy of short answers about images, on local image QA records.

Answers are normalised as the official VQA evaluation does (`normalise_answer`): lower case,
punctuation removed (a comma between digits joins them, a full stop only when not a decimal point),
number words written as digits, articles dropped, common contractions given their apostrophe.
A record with several reference answers (VQAv2's ten human answers: a raw `answers` field of strings
or of `{"answer": ...}` objects) scores min(#references equal to the reply / 3, 1); a record with one
reference (its assistant reply) scores 1 or 0. Everything but `run` is pure.
"""

from __future__ import annotations

import re
from typing import Any

_PUNCTUATION = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",",
                "?", "!"]
_PERIOD_STRIP = re.compile(r"(?<!\d)(\.)(?!\d)")
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)")
_NUMBER_WORDS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
                 "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
_ARTICLES = {"a", "an", "the"}
_CONTRACTIONS = {"aint": "ain't", "arent": "aren't", "cant": "can't", "couldnt": "couldn't", "didnt": "didn't",
                 "doesnt": "doesn't", "dont": "don't", "hadnt": "hadn't", "hasnt": "hasn't", "havent": "haven't",
                 "hes": "he's", "im": "i'm", "isnt": "isn't", "itll": "it'll", "ive": "i've", "lets": "let's",
                 "shouldnt": "shouldn't", "thats": "that's", "theres": "there's", "theyre": "they're",
                 "wasnt": "wasn't", "werent": "weren't", "whats": "what's", "wont": "won't", "wouldnt": "wouldn't",
                 "youre": "you're", "youve": "you've"}
# Records with several human answers keep them in one of these raw fields (VQAv2: `answers`).
REFERENCE_FIELDS = ("answers", "references")


def _strip_punctuation(text: str) -> str:
    out = text
    for mark in _PUNCTUATION:
        if f"{mark} " in text or f" {mark}" in text or _COMMA_STRIP.search(text):
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return _PERIOD_STRIP.sub("", out)


def normalise_answer(text: str) -> str:
    """An answer as the VQA evaluation compares it."""
    text = " ".join(text.replace("\n", " ").replace("\t", " ").strip().split())
    words = []
    for word in _strip_punctuation(text.lower()).split():
        word = _NUMBER_WORDS.get(word, word)
        if word not in _ARTICLES:
            words.append(_CONTRACTIONS.get(word, word))
    return " ".join(words)


def vqa_accuracy(answer: str, references: list[str]) -> float:
    """One reply's score: with several references min(#agreeing / 3, 1), with one 1.0 or 0.0."""
    if not references:
        raise ValueError("a VQA record needs at least one reference answer")
    given = normalise_answer(answer)
    agreeing = sum(normalise_answer(reference) == given for reference in references)
    return float(agreeing > 0) if len(references) == 1 else min(agreeing / 3, 1.0)


def reference_answers(raw: Any, reply: str) -> list[str]:
    """The record's human answers (`answers`: strings or `{"answer": ...}`), else its one reply."""
    if isinstance(raw, dict):
        for name in REFERENCE_FIELDS:
            listed = raw.get(name)
            if isinstance(listed, list) and listed:
                answers = [item.get("answer") if isinstance(item, dict) else item for item in listed]
                strings = [answer for answer in answers if isinstance(answer, str)]
                if strings:
                    return strings
    return [reply]


def _image_questions(source: Any) -> bool:
    conversation = source.conversation(0)
    return bool(conversation.images) and not conversation.videos and not conversation.audios


def run(context: Any) -> dict[str, dict[str, Any]]:
    from omni_runner.eval.records import answers, eval_sources

    results = {}
    for source in eval_sources(context, _image_questions, "image question-answer records"):
        scores, samples, skipped = [], [], []
        for answer in answers(context, source, skipped):
            expected = answer.expected.content if isinstance(answer.expected.content, str) else ""
            references = reference_answers(answer.raw, expected)
            score = vqa_accuracy(answer.generated, references)
            scores.append(score)
            samples.append({"location": answer.location, "generated": answer.generated, "references": references,
                            "score": score})
        results[source.name] = {"vqa_accuracy": sum(scores) / len(scores) if scores else None, "n": len(scores),
                                "samples": samples, **({"skipped": skipped} if skipped else {})}
    return results
