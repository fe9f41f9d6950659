"""Rendering with the chat template: loss only on assistant tokens, capability templates, too-long records."""

from __future__ import annotations

import copy

import pytest

from omni_runner.data.conversation import Conversation, DataError, Message, RecordError
from omni_runner.data.render import IGNORE_INDEX, render_prompt, render_sample, split_reasoning
from omni_runner.data.toolcalls import tool_calls_match

CONVERSATION = Conversation(
    [
        Message("user", "Weather in Oslo?"),
        Message("assistant", "", tool_calls=[{"name": "get_weather", "arguments": {"city": "Oslo"}}]),
        Message("tool", '{"temp": 3}'),
        Message("assistant", "It is 3 degrees."),
    ],
    tools=[{"name": "get_weather", "description": "Weather.", "parameters": {"type": "object", "properties": {}}}],
)


def trained_text(tokenizer, rendered) -> str:
    return tokenizer.decode([t for t, label in zip(rendered.input_ids, rendered.labels) if label != IGNORE_INDEX])


def test_only_assistant_tokens_carry_labels(tokenizer):
    rendered = render_sample(CONVERSATION, tokenizer, "tool-calling")
    assert trained_text(tokenizer, rendered) == (
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call><|im_end|>'
        "It is 3 degrees.<|im_end|>"
    )
    assert all(label in (IGNORE_INDEX, token) for token, label in zip(rendered.input_ids, rendered.labels))


def test_mask_equals_the_templates_own_generation_mask(tokenizer):
    """The tiny model's template marks replies with {% generation %}; our template-agnostic mask agrees."""
    rendered = render_sample(CONVERSATION, tokenizer, "streaming")
    messages = [{"role": "user", "content": "Weather in Oslo?"},
                {"role": "assistant", "content": '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'},
                {"role": "tool", "content": '{"temp": 3}'}, {"role": "assistant", "content": "It is 3 degrees."}]
    reference = tokenizer.apply_chat_template(
        messages, tools=[{"type": "function", "function": CONVERSATION.tools[0]}],
        return_dict=True, return_assistant_tokens_mask=True)
    assert rendered.input_ids == list(reference["input_ids"])
    assert [label != IGNORE_INDEX for label in rendered.labels] == [bool(m) for m in reference["assistant_masks"]]


def test_thinking_template_wraps_reasoning_in_think_tags(tokenizer):
    conversation = Conversation([Message("user", "Is 9 odd?"), Message("assistant", "odd", reasoning="9 leaves 1.")])
    rendered = render_sample(conversation, tokenizer, "thinking")
    assert trained_text(tokenizer, rendered) == "<think>\n9 leaves 1.\n</think>\n\nodd<|im_end|>"
    assert split_reasoning("<think>\n9 leaves 1.\n</think>\n\nodd", "thinking") == ("9 leaves 1.", "odd")


def test_reasoning_template_writes_the_trace_then_the_answer(tokenizer):
    conversation = Conversation([Message("user", "2+3?"), Message("assistant", "5", reasoning="2 + 3 = 5.")])
    assert trained_text(tokenizer, render_sample(conversation, tokenizer, "reasoning")) == "2 + 3 = 5.\nAnswer: 5<|im_end|>"


def test_streaming_template_drops_reasoning(tokenizer):
    conversation = Conversation([Message("user", "2+3?"), Message("assistant", "5", reasoning="2 + 3 = 5.")])
    assert trained_text(tokenizer, render_sample(conversation, tokenizer, "streaming")) == "5<|im_end|>"


def test_record_longer_than_seq_len_is_a_bad_record(tokenizer):
    with pytest.raises(RecordError, match=r"\d+ tokens after rendering, more than training.seq_len = 20"):
        render_sample(CONVERSATION, tokenizer, "tool-calling", max_tokens=20)


def test_prompt_for_evaluation_ends_with_the_generation_prompt_and_scores_tool_calls(tokenizer):
    first_turn = Conversation(CONVERSATION.messages[:2], tools=CONVERSATION.tools)
    prompt, expected = render_prompt(first_turn, tokenizer, "tool-calling")
    assert prompt.endswith("Weather in Oslo?<|im_end|>\n<|im_start|>assistant\n")
    reply = '<tool_call>\n{"arguments": {"city": "Oslo"}, "name": "get_weather"}\n</tool_call>'
    assert tool_calls_match(reply, expected.messages[0].tool_calls)
    assert not tool_calls_match(reply.replace("Oslo", "Lima"), expected.messages[0].tool_calls)


@pytest.mark.parametrize("replies", [1, 2])
def test_a_template_that_is_not_prefix_stable_is_refused(tokenizer, replies):
    """A template whose rendering of the first turns is not the start of the whole (here: it opens with the
    number of messages) gives no way to find the replies' tokens, for the last reply as for earlier ones."""
    unstable = copy.copy(tokenizer)
    unstable.chat_template = ("{{ messages | length }}\n{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}"
                              "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    conversation = Conversation([Message("user", "Hi"), Message("assistant", "Hello.")] * replies)
    with pytest.raises(DataError, match="not prefix-stable"):
        render_sample(conversation, unstable, "chat")
