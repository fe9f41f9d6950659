"""The `function-calling` suite: exact match and a BFCL-style AST match of the tool calls a model makes
on held-out xLAM/Hermes records.

- `exact_match`: the reply's `<tool_call>` blocks are exactly the expected calls as JSON (any order).
- `ast_match`: as the Berkeley Function-Calling Leaderboard's AST checker compares them: the same
  function names, the same argument names (in any order), and values equal after normalisation
  (`values_agree`): numbers by value whatever their spelling ("3", 3 and 3.0 agree), strings without
  case, spaces and the punctuation BFCL drops (`, . / - _ * ^`), lists in order, objects by key;
  several calls are matched as a set (each expected call to a different generated one).

A reply whose calls cannot be read (no `<tool_call>` block, a block that is not JSON, no `name`,
`arguments` that are not an object) scores zero on both, and the reason is counted in `failures`
beside the AST mismatches (`wrong_count`, `wrong_name`, `missing_argument`, `unexpected_argument`,
`wrong_type`, `wrong_value`). Everything down to `score_reply` is pure; `run` does the model I/O.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from omni_runner.data.toolcalls import calls_equal, names_equal, read_tool_calls

TOOL_CALL_FORMATS = ("xlam", "hermes")
WRONG_COUNT = "wrong_count"
WRONG_NAME = "wrong_name"
MISSING_ARGUMENT = "missing_argument"
UNEXPECTED_ARGUMENT = "unexpected_argument"
WRONG_TYPE = "wrong_type"
WRONG_VALUE = "wrong_value"

_BFCL_DROPPED = re.compile(r"[ ,./\-_*^]")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def normalise_value(value: Any) -> Any:
    """A value as BFCL compares it: numbers (and strings spelling one) as floats, other strings
    standardised, lists and objects element by element; booleans and null as they are."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if _NUMBER.fullmatch(text):
            return float(text)
        return _BFCL_DROPPED.sub("", text).lower().replace("'", '"')
    if isinstance(value, list):
        return [normalise_value(item) for item in value]
    if isinstance(value, dict):
        return {key: normalise_value(item) for key, item in value.items()}
    return value


def _kind(value: Any) -> str:
    return "bool" if isinstance(value, bool) else type(value).__name__


def values_agree(generated: Any, expected: Any) -> bool:
    return normalise_value(generated) == normalise_value(expected)


def call_mismatch(call: dict[str, Any], expected: dict[str, Any]) -> str | None:
    """Why one generated call is not the expected one (None when it is, by the AST rules)."""
    if call["name"] != expected["name"]:
        return WRONG_NAME
    arguments, wanted = call["arguments"], expected["arguments"]
    if set(wanted) - set(arguments):
        return MISSING_ARGUMENT
    if set(arguments) - set(wanted):
        return UNEXPECTED_ARGUMENT
    for key, value in wanted.items():
        got, want = normalise_value(arguments[key]), normalise_value(value)
        if got != want:
            return WRONG_TYPE if _kind(got) != _kind(want) else WRONG_VALUE
    return None


def calls_mismatch(calls: list[dict[str, Any]], expected: list[dict[str, Any]]) -> str | None:
    """Why a set of generated calls is not the expected set (None when each expected call matches a
    different generated one): the count, else the first expected call's mismatch with the generated
    calls of its name (`wrong_name` when none has it)."""
    if len(calls) != len(expected):
        return WRONG_COUNT
    if _perfect_matching(calls, expected):
        return None
    for want in expected:
        same_name = [call for call in calls if call["name"] == want["name"]]
        if not same_name:
            return WRONG_NAME
        reasons = [call_mismatch(call, want) for call in same_name]
        if None not in reasons:
            return reasons[0]
    return WRONG_VALUE  # every call matches some expected one, but not one each (a call said twice)


def _perfect_matching(calls: list[dict[str, Any]], expected: list[dict[str, Any]]) -> bool:
    """Whether each expected call can take a different matching generated call (backtracking: calls
    per reply are few)."""
    def assign(index: int, used: frozenset[int]) -> bool:
        if index == len(expected):
            return True
        return any(assign(index + 1, used | {j}) for j, call in enumerate(calls)
                   if j not in used and call_mismatch(call, expected[index]) is None)

    return assign(0, frozenset())


@dataclass(frozen=True)
class CallScore:
    exact: bool
    ast: bool
    reason: str | None  # why not an AST match (a malformed reply's reason, or the mismatch)
    names: bool = False  # well-formed calls of exactly the expected functions, arguments aside


def score_reply(generated: str, expected: list[dict[str, Any]]) -> CallScore:
    """One generated reply against the record's expected calls."""
    calls, malformed = read_tool_calls(generated)
    if calls is None:
        return CallScore(False, False, malformed)
    reason = calls_mismatch(calls, expected)
    return CallScore(calls_equal(calls, expected), reason is None, reason, bool(calls) and names_equal(calls, expected))


def aggregate(scores: list[CallScore]) -> dict[str, Any]:
    """A data set's metrics: the three match rates, records scored, and failures counted by reason."""
    n = len(scores)
    failures = Counter(score.reason for score in scores if score.reason is not None)
    return {"exact_match": sum(s.exact for s in scores) / n if n else None,
            "ast_match": sum(s.ast for s in scores) / n if n else None,
            "name_match": sum(s.names for s in scores) / n if n else None,
            "n": n, "failures": dict(sorted(failures.items()))}


def _holds_tool_calls(source: Any) -> bool:
    return source.format in TOOL_CALL_FORMATS or bool(source.conversation(0).messages[-1].tool_calls)


def run(context: Any) -> dict[str, dict[str, Any]]:
    from omni_runner.eval.records import answers, eval_sources

    results = {}
    for source in eval_sources(context, _holds_tool_calls, "tool-calling records (xlam or hermes)"):
        scores, samples, skipped = [], [], []
        for answer in answers(context, source, skipped):
            score = score_reply(answer.generated, answer.expected.tool_calls or [])
            scores.append(score)
            samples.append({"location": answer.location, "generated": answer.generated,
                            "exact": score.exact, "ast": score.ast, "reason": score.reason})
        results[source.name] = {**aggregate(scores), "samples": samples, **({"skipped": skipped} if skipped else {})}
    return results
