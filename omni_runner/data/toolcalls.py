"""Score generated tool calls against a record's expected calls: exact match on names and arguments.

Used to evaluate the tool-calling capability (the bundled held-out set, `eval_metric:
tool_call_exact_match`): the model's reply is parsed for `<tool_call>{json}</tool_call>` blocks and
compared, as parsed JSON, with the expected calls, ignoring call order and argument key order.
"""

from __future__ import annotations

import json
import re
from typing import Any

_BLOCK = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)


def parse_tool_calls(text: str) -> list[dict[str, Any]] | None:
    """The calls in a generated reply as [{name, arguments}], or None when any block is not valid JSON."""
    calls = []
    for block in _BLOCK.findall(text):
        try:
            call = json.loads(block)
        except json.JSONDecodeError:
            return None
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            return None
        calls.append({"name": call["name"], "arguments": call.get("arguments", {})})
    return calls


def _canonical(calls: list[dict[str, Any]]) -> list[str]:
    return sorted(json.dumps({"name": c["name"], "arguments": c["arguments"]}, sort_keys=True) for c in calls)


def tool_calls_match(generated: str, expected: list[dict[str, Any]]) -> bool:
    """True when the reply makes exactly the expected calls (same names and arguments, any order)."""
    calls = parse_tool_calls(generated)
    return calls is not None and _canonical(calls) == _canonical(expected)
