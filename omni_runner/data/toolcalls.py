"""Read the tool calls in a generated reply, and score them exactly against a record's expected calls.

Used to evaluate the tool-calling capability (the bundled held-out set, `eval_metric:
tool_call_exact_match`): the model's reply is parsed for `<tool_call>{json}</tool_call>` blocks and
compared, as parsed JSON, with the expected calls, ignoring call order and argument key order.
`read_tool_calls` also says why a reply holds no usable calls, which the function-calling suite
counts (omni_runner/eval/function_calling.py).
"""

from __future__ import annotations

import json
import re
from typing import Any

_BLOCK = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)

# Why a reply's calls cannot be scored (the function-calling suite counts each).
NO_CALL = "no_call"
BAD_JSON = "bad_json"
NOT_AN_OBJECT = "not_an_object"
MISSING_NAME = "missing_name"
ARGUMENTS_NOT_OBJECT = "arguments_not_object"


def read_tool_calls(text: str) -> tuple[list[dict[str, Any]] | None, str | None]:
    """(the calls in a generated reply as [{name, arguments}], None) or (None, why not): a reply with
    no `<tool_call>` block, a block that is not JSON (or never closed), not an object, without a string `name`, or with
    `arguments` that are not an object."""
    blocks = _BLOCK.findall(text)
    if not blocks:
        return None, BAD_JSON if "<tool_call>" in text else NO_CALL  # an opened block never closed
    calls = []
    for block in blocks:
        try:
            call = json.loads(block)
        except json.JSONDecodeError:
            return None, BAD_JSON
        if not isinstance(call, dict):
            return None, NOT_AN_OBJECT
        if not isinstance(call.get("name"), str) or not call["name"]:
            return None, MISSING_NAME
        arguments = call.get("arguments", {})
        if not isinstance(arguments, dict):
            return None, ARGUMENTS_NOT_OBJECT
        calls.append({"name": call["name"], "arguments": arguments})
    return calls, None


def parse_tool_calls(text: str) -> list[dict[str, Any]] | None:
    """The calls in a generated reply as [{name, arguments}] ([] without any), or None when a block
    cannot be read as a call."""
    calls, reason = read_tool_calls(text)
    return [] if reason == NO_CALL else calls


def _canonical(calls: list[dict[str, Any]]) -> list[str]:
    return sorted(json.dumps({"name": c["name"], "arguments": c["arguments"]}, sort_keys=True) for c in calls)


def calls_equal(calls: list[dict[str, Any]], expected: list[dict[str, Any]]) -> bool:
    """Exactly the expected calls: same names and argument values as JSON, in any order."""
    return _canonical(calls) == _canonical(expected)


def names_equal(calls: list[dict[str, Any]], expected: list[dict[str, Any]]) -> bool:
    """The expected functions, each as often as expected, in any order; arguments aside."""
    return sorted(c["name"] for c in calls) == sorted(str(c.get("name")) for c in expected)


def tool_call_names_match(generated: str, expected: list[dict[str, Any]]) -> bool:
    """True when the reply makes well-formed calls of exactly the expected functions, whatever their
    arguments: choosing the tool is learned before reading argument values out of the request."""
    calls = parse_tool_calls(generated)
    return bool(calls) and names_equal(calls, expected)


def tool_calls_match(generated: str, expected: list[dict[str, Any]]) -> bool:
    """True when the reply makes exactly the expected calls (same names and arguments, any order)."""
    calls = parse_tool_calls(generated)
    return calls is not None and calls_equal(calls, expected)
