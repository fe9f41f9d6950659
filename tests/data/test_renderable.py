"""Records an adapter reads but the chat template cannot render (or that would teach nothing) are bad
records with a reason, never a crash in the renderer: `check_renderable`, called by `adapt`.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omni_runner.data.adapters import adapt
from omni_runner.data.conversation import (
    Conversation,
    MediaTarget,
    Message,
    RecordError,
    check_renderable,
)
from omni_runner.data.render import render_sample

pytestmark = pytest.mark.timeout(60)

CALL = {"name": "clock", "arguments": {"city": "Lima"}}


def _openai(*turns: tuple[str, str]) -> dict:
    return {"messages": [{"role": role, "content": content} for role, content in turns]}


def test_an_empty_lone_assistant_turn_is_a_bad_record_not_a_traceback():
    with pytest.raises(RecordError, match=r"turn 1 \(assistant\): a reply needs a user turn before it"):
        adapt("openai", _openai(("assistant", "")))


def test_a_reply_after_only_a_system_prompt_is_refused():
    with pytest.raises(RecordError, match=r"turn 2 \(assistant\): a reply needs a user turn before it"):
        adapt("openai", _openai(("system", "Be brief."), ("assistant", "Hi.")))


def test_a_reply_without_content_or_tool_calls_is_refused():
    with pytest.raises(RecordError, match=r"turn 2 \(assistant\): a reply with no content and no tool calls"):
        adapt("openai", _openai(("user", "Hi"), ("assistant", "  ")))


def test_a_reply_that_only_calls_a_tool_is_fine():
    record = {"messages": [{"role": "user", "content": "Time in Lima?"},
                           {"role": "assistant", "content": None, "tool_calls": [
                               {"type": "function", "function": {"name": "clock", "arguments": json.dumps(CALL["arguments"])}}]}]}
    assert adapt("openai", record).messages[1].tool_calls == [CALL]


def test_two_replies_in_a_row_are_refused():
    with pytest.raises(RecordError, match=r"turn 3 \(assistant\): two replies in a row"):
        adapt("openai", _openai(("user", "Hi"), ("assistant", "Hello."), ("assistant", "Again.")))


def test_a_system_prompt_after_the_start_is_refused():
    with pytest.raises(RecordError, match=r"turn 3 \(system\): a system prompt may only be the first turn"):
        adapt("openai", _openai(("user", "Hi"), ("assistant", "Hello."), ("system", "Now be rude.")))


def test_a_tool_result_without_a_call_is_refused():
    with pytest.raises(RecordError, match=r"turn 2 \(tool\): a tool result with no tool call before it"):
        adapt("openai", _openai(("user", "Hi"), ("tool", "{}"), ("assistant", "Hello.")))


def test_a_sharegpt_record_that_starts_with_gpt_is_refused():
    record = {"conversations": [{"from": "gpt", "value": "Hello."}, {"from": "human", "value": "Hi"}]}
    with pytest.raises(RecordError, match=r"turn 1 \(assistant\): a reply needs a user turn before it"):
        adapt("sharegpt", record)


def test_a_generation_request_may_answer_with_an_empty_reply():
    conversation = adapt("image-caption", {"image": "cat.png", "caption": "a cat"})
    assert conversation.generation.messages[1].content == ""


def test_unchecked_a_lone_assistant_turn_crashes_the_renderer(tokenizer):
    """Why the check exists: this is the traceback `omni-run data check` used to show."""
    with pytest.raises(ValueError, match="empty conversation"):
        render_sample(Conversation([Message("assistant", "")]), tokenizer, "cot")


def test_unchecked_an_empty_reply_would_teach_the_model_to_say_nothing(tokenizer):
    rendered = render_sample(Conversation([Message("user", "Hi"), Message("assistant", "")]), tokenizer, "cot")
    assert tokenizer.decode([t for t, label in zip(rendered.input_ids, rendered.labels) if label != -100]) == "<|im_end|>"


TURNS = st.lists(
    st.sampled_from([
        Message("system", "Be brief."), Message("user", "Hi"), Message("assistant", "Hello."),
        Message("assistant", ""), Message("assistant", "", tool_calls=[CALL]), Message("tool", '{"t": 3}'),
    ]),
    min_size=1, max_size=6,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(messages=TURNS, generation=st.booleans())
def test_every_conversation_it_accepts_renders_with_trained_tokens(tokenizer, messages, generation):
    conversation = Conversation(messages, target=MediaTarget("image", "x.png") if generation else None)
    try:
        check_renderable(conversation)
    except RecordError:
        return
    assert render_sample(conversation, tokenizer, "tool-calling").trained_tokens > 0
