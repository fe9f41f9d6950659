"""Render a Conversation with the base model's chat template into token ids and loss labels.

Labels are -100 everywhere except the assistant's replies (their content and the closing end-of-turn
token, so the model learns to stop). The assistant spans are found with the template itself: the text
rendered up to the generation prompt before a reply and the text rendered through that reply bracket
it. That works for any prefix-stable chat template (ChatML, Qwen2.5-Omni's, the tiny model's),
without relying on `{% generation %}` markers that real checkpoints' templates do not have.

Per-capability templates (the registry's `template` field) decide how a reply is written:
- `thinking`: the reasoning goes inside `<think>...</think>` before the answer;
- `reasoning`: the reasoning is written out, then `Answer: ...` on its own line;
- every other template (`tool-calling`, `streaming`, ...): the reply as is; tool calls are
  `<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>` blocks.
Tools go to the template's `tools` argument (the system turn lists them); a template that does not
know `tools` gets the same list appended to the system turn instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from omni_runner.capabilities import CAPABILITIES
from omni_runner.data.conversation import Conversation, DataError, Message, RecordError

IGNORE_INDEX = -100
ANSWER_PREFIX = "Answer: "


@dataclass
class Rendered:
    """A rendered sample: token ids, labels (-100 = no loss), the text and its trained character spans."""

    input_ids: list[int]
    labels: list[int]
    text: str
    trained_spans: list[tuple[int, int]]

    @property
    def trained_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


def template_for(capability: str) -> str:
    """The registry's template name for a capability (unknown names render plainly)."""
    entry = CAPABILITIES.get(capability)
    return entry.template if entry else capability


def format_tool_call(call: dict[str, Any]) -> str:
    return "<tool_call>\n" + json.dumps({"name": call["name"], "arguments": call["arguments"]}, ensure_ascii=False) + "\n</tool_call>"


def assistant_text(message: Message, template: str) -> str | list[dict[str, Any]]:
    """The assistant reply as the capability template writes it."""
    content = message.content
    if isinstance(content, str):
        if message.reasoning and template == "thinking":
            content = f"<think>\n{message.reasoning}\n</think>\n\n{content}"
        elif message.reasoning and template == "reasoning":
            content = f"{message.reasoning}\n{ANSWER_PREFIX}{content}"
        if message.tool_calls:
            calls = "\n".join(format_tool_call(c) for c in message.tool_calls)
            content = f"{content}\n{calls}" if content else calls
    return content


def split_reasoning(text: str, template: str) -> tuple[str | None, str]:
    """Inverse of `assistant_text` for generated replies: (reasoning, answer), for answer scoring."""
    if template == "thinking" and "</think>" in text:
        thought, _, answer = text.partition("</think>")
        return thought.replace("<think>", "").strip(), answer.strip()
    if template == "reasoning" and ANSWER_PREFIX in text:
        thought, _, answer = text.rpartition(ANSWER_PREFIX)
        return thought.strip(), answer.strip()
    return None, text.strip()


def template_messages(conversation: Conversation, template: str) -> list[dict[str, Any]]:
    """Plain dict messages for `apply_chat_template`."""
    messages = []
    for message in conversation.messages:
        content = assistant_text(message, template) if message.role == "assistant" else message.content
        messages.append({"role": message.role, "content": content})
    return messages


def tools_argument(tokenizer: Any, functions: list[dict[str, Any]] | None, messages: list[dict[str, Any]]) -> Any:
    """The chat template's `tools` argument for templates that take one; otherwise None, with the
    listing appended to the system turn of `messages` (mutated), so a prompt lists tools the same way
    in training, evaluation and `omni-run chat`."""
    if not functions:
        return None
    tools = [{"type": "function", "function": tool} for tool in functions]
    if "tools" in (tokenizer.chat_template or ""):
        return tools
    listing = "Available functions:\n<tools>\n" + "\n".join(json.dumps(t["function"]) for t in tools) + "\n</tools>"
    if messages and messages[0]["role"] == "system" and isinstance(messages[0]["content"], str):
        messages[0] = {"role": "system", "content": messages[0]["content"] + "\n\n" + listing}
    else:
        messages.insert(0, {"role": "system", "content": listing})
    return None


def _render_text(tokenizer: Any, messages: list[dict[str, Any]], tools: Any, generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(
        messages, tools=tools, tokenize=False, add_generation_prompt=generation_prompt
    )


def _trained_spans(tokenizer: Any, messages: list[dict[str, Any]], tools: Any, full: str) -> list[tuple[int, int]]:
    spans = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = _render_text(tokenizer, messages[:index], tools, True)
        last = index == len(messages) - 1  # through the last message is the whole rendering
        through = full if last else _render_text(tokenizer, messages[: index + 1], tools, False)
        if not (through.startswith(before) and full.startswith(through)):
            raise DataError(
                "the chat template is not prefix-stable (rendering a conversation's first turns does not "
                "give the start of the whole rendering), so assistant tokens cannot be located; "
                "use a ChatML-style template"
            )
        end = len(through.rstrip("\n"))
        if end > len(before):
            spans.append((len(before), end))
    return spans


def render_sample(
    conversation: Conversation, tokenizer: Any, template: str, *, max_tokens: int | None = None
) -> Rendered:
    """Token ids and labels for one conversation; RecordError when it is too long or trains nothing."""
    messages = template_messages(conversation, template)
    tools = tools_argument(tokenizer, conversation.tools, messages)
    full = _render_text(tokenizer, messages, tools, False)
    spans = _trained_spans(tokenizer, messages, tools, full)
    encoded = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    input_ids = list(encoded["input_ids"])
    if max_tokens is not None and len(input_ids) > max_tokens:
        raise RecordError(f"{len(input_ids)} tokens after rendering, more than training.seq_len = {max_tokens}")
    labels = [IGNORE_INDEX] * len(input_ids)
    span_index = 0
    for position, (start, _end) in enumerate(encoded["offset_mapping"]):
        while span_index < len(spans) and start >= spans[span_index][1]:
            span_index += 1
        if span_index < len(spans) and spans[span_index][0] <= start:
            labels[position] = input_ids[position]
    rendered = Rendered(input_ids, labels, full, spans)
    if rendered.trained_tokens == 0:
        raise RecordError("no assistant tokens after rendering")
    return rendered


def render_prompt(conversation: Conversation, tokenizer: Any, template: str) -> tuple[str, Conversation]:
    """The prompt up to the last assistant reply (with the generation prompt), and that reply's record,
    for evaluation: generate from the prompt, compare with the reply."""
    last = max(i for i, m in enumerate(conversation.messages) if m.role == "assistant")
    prompt_part = Conversation(conversation.messages[:last], tools=conversation.tools)
    messages = template_messages(prompt_part, template)
    tools = tools_argument(tokenizer, prompt_part.tools, messages)
    expected = Conversation([conversation.messages[last]], tools=conversation.tools)
    return _render_text(tokenizer, messages, tools, True), expected
