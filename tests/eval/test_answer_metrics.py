"""The vqa, audio and generation suites' metrics on hand-computed cases: VQAv2 answer normalisation
and accuracy, audio QA accuracy and transcription WER, and the CLIP score."""

from __future__ import annotations

import math

import pytest

from omni_runner.data.transcribe import word_error_rate
from omni_runner.eval.audio import audio_accuracy
from omni_runner.eval.generation import clip_score
from omni_runner.eval.vqa import normalise_answer, reference_answers, vqa_accuracy


def test_answers_are_normalised_as_the_vqa_evaluation_does():
    assert normalise_answer("The Two dogs.") == "2 dogs"
    assert normalise_answer("  a  red\tball! ") == "red ball"
    assert normalise_answer("1,000") == "1000"  # a comma between digits joins them
    assert normalise_answer("3.5") == "3.5"  # a decimal point stays
    assert normalise_answer("dont know") == "don't know"
    assert normalise_answer("red, blue") == "red blue"


def test_with_several_references_accuracy_is_agreeing_humans_over_three_capped_at_one():
    humans = ["2", "two", "2", "3", "3", "3", "4", "2 ", "3", "3"]
    assert vqa_accuracy("two", humans) == 1.0  # four humans said 2
    assert vqa_accuracy("4", humans) == pytest.approx(1 / 3)
    assert vqa_accuracy("5", humans) == 0.0
    assert vqa_accuracy("Three.", ["3", "three", "4"]) == pytest.approx(2 / 3)


def test_with_one_reference_a_normalised_match_scores_one():
    assert vqa_accuracy("A circle.", ["circle"]) == 1.0
    assert vqa_accuracy("square", ["circle"]) == 0.0
    assert vqa_accuracy("", ["circle"]) == 0.0


def test_reference_answers_come_from_vqav2_answers_else_the_reply():
    raw = {"answers": [{"answer": "red", "answer_confidence": "yes"}, {"answer": "dark red"}]}
    assert reference_answers(raw, "red") == ["red", "dark red"]
    assert reference_answers({"answers": ["blue", "navy"]}, "x") == ["blue", "navy"]
    assert reference_answers({"conversations": []}, "green") == ["green"]


def test_audio_qa_accuracy_is_the_fraction_of_normalised_matches():
    assert audio_accuracy(["Two.", "high", "low"], ["two", "high", "high"]) == pytest.approx(2 / 3)
    assert audio_accuracy([], []) is None


def test_transcription_wer_counts_word_edits_over_reference_words_ignoring_case_and_punctuation():
    # "the cat sat" -> "The cat!" (1 deletion), "on the mat" -> "on a mat" (1 substitution): 2 / 6
    assert word_error_rate(["the cat sat", "on the mat"], ["The cat!", "on a mat"]) == pytest.approx(2 / 6)
    assert word_error_rate(["hello world"], [""]) == 1.0  # a silent model deletes every word


def test_clip_score_is_a_hundred_times_the_positive_cosine():
    assert clip_score([1.0, 0.0], [1.0, 0.0]) == 100.0
    assert clip_score([1.0, 1.0], [1.0, 0.0]) == pytest.approx(100 / math.sqrt(2))
    assert clip_score([1.0, 0.0], [-1.0, 0.0]) == 0.0  # opposed: clipped at zero
    with pytest.raises(ValueError):
        clip_score([0.0, 0.0], [1.0, 0.0])
