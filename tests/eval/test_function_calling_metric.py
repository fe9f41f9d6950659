"""The function-calling suite's metric on hand-written replies: exact match, the BFCL-style AST match
(numbers by value, strings standardised, argument order ignored, calls matched as a set), and the
reason counted for every reply that misses."""

from __future__ import annotations

import json

from omni_runner.eval.function_calling import aggregate, score_reply

WEATHER = {"name": "get_weather", "arguments": {"city": "New York", "days": 3}}
TIME = {"name": "get_time", "arguments": {"zone": "UTC"}}


def reply(*calls: dict) -> str:
    return "\n".join(f"<tool_call>\n{json.dumps(call)}\n</tool_call>" for call in calls)


def test_the_expected_call_word_for_word_is_an_exact_and_an_ast_match():
    score = score_reply(reply(WEATHER), [WEATHER])
    assert (score.exact, score.ast, score.reason) == (True, True, None)


def test_numbers_agree_by_value_whatever_their_spelling():
    for days in ("3", 3.0, " 3 "):
        score = score_reply(reply({"name": "get_weather", "arguments": {"city": "New York", "days": days}}), [WEATHER])
        assert (score.exact, score.ast) == (False, True), days


def test_strings_agree_without_case_spaces_or_the_punctuation_bfcl_drops():
    said = {"name": "get_weather", "arguments": {"days": 3, "city": "new-york"}}
    assert score_reply(reply(said), [WEATHER]).ast


def test_argument_order_and_call_order_are_ignored():
    first = {"name": "get_weather", "arguments": {"days": 3, "city": "New York"}}
    score = score_reply(reply(TIME, first), [WEATHER, TIME])
    assert (score.exact, score.ast) == (True, True)


def test_calls_match_as_a_set_one_generated_call_for_each_expected_one():
    twice = score_reply(reply(WEATHER, WEATHER), [WEATHER, TIME])
    assert (twice.ast, twice.reason) == (False, "wrong_name")
    repeated = [WEATHER, {**WEATHER, "arguments": {"city": "Oslo", "days": 3}}]
    assert not score_reply(reply(WEATHER, WEATHER), repeated).ast
    assert score_reply(reply(repeated[1], WEATHER), repeated).ast


def test_each_kind_of_mismatch_is_named():
    cases = {
        "wrong_count": reply(WEATHER, TIME),
        "wrong_name": reply({**WEATHER, "name": "get_forecast"}),
        "missing_argument": reply({"name": "get_weather", "arguments": {"city": "New York"}}),
        "unexpected_argument": reply({"name": "get_weather", "arguments": {**WEATHER["arguments"], "unit": "C"}}),
        "wrong_type": reply({"name": "get_weather", "arguments": {"city": "New York", "days": [3]}}),
        "wrong_value": reply({"name": "get_weather", "arguments": {"city": "Boston", "days": 3}}),
    }
    for reason, text in cases.items():
        score = score_reply(text, [WEATHER])
        assert (score.exact, score.ast, score.reason) == (False, False, reason), reason


def test_malformed_calls_score_zero_with_their_reason():
    cases = {
        "no_call": "The weather in New York will be sunny.",
        "bad_json": '<tool_call>{"name": "get_weather", "arguments": {"city": </tool_call>',
        "not_an_object": "<tool_call>[1, 2]</tool_call>",
        "missing_name": '<tool_call>{"arguments": {"city": "New York", "days": 3}}</tool_call>',
        "arguments_not_object": '<tool_call>{"name": "get_weather", "arguments": "New York, 3"}</tool_call>',
    }
    for reason, text in cases.items():
        score = score_reply(text, [WEATHER])
        assert (score.exact, score.ast, score.reason) == (False, False, reason), reason
    unterminated = score_reply('<tool_call>{"name": "get_weather", "arguments": {"city": "New York", "days": 3}}', [WEATHER])
    assert unterminated.reason == "bad_json"


def test_a_data_set_reports_the_three_rates_and_counts_failures_by_reason():
    scores = [score_reply(reply(WEATHER), [WEATHER]),
              score_reply(reply({**WEATHER, "arguments": {"city": "New York", "days": "3"}}), [WEATHER]),
              score_reply(reply({**WEATHER, "arguments": {"city": "Oslo", "days": 3}}), [WEATHER]),
              score_reply("no idea", [WEATHER])]
    assert aggregate(scores) == {"exact_match": 0.25, "ast_match": 0.5, "name_match": 0.75, "n": 4,
                                 "failures": {"no_call": 1, "wrong_value": 1}}
    assert aggregate([]) == {"exact_match": None, "ast_match": None, "name_match": None, "n": 0, "failures": {}}


def test_a_name_match_needs_well_formed_calls_of_exactly_the_expected_functions():
    other = {"name": "get_time", "arguments": {"city": "New York"}}
    assert score_reply(reply({**WEATHER, "arguments": {}}), [WEATHER]).names
    assert not score_reply(reply(other), [WEATHER]).names
    assert not score_reply(reply(WEATHER) + reply(WEATHER), [WEATHER]).names  # called twice
    assert not score_reply('<tool_call>{"name": "get_weather", "arguments": ', [WEATHER]).names
