"""The one conversation form every dataset format is turned into, and the bad-record vocabulary.

Adapters (`adapters.py`) produce `Conversation`s; the renderer (`render.py`) turns them into
token ids and labels. Keeping this form small and plain (lists, dicts, strings) lets it be
printed by `omni-run data preview`, compared in tests and rendered by any chat template.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ROLES = ("system", "user", "assistant", "tool")


@dataclass
class Message:
    """One turn. `content` is plain text or a list of parts ({"type": "text"|"image"|"video"|"audio", ...}).

    `reasoning` holds an assistant's thought process apart from its answer, so the capability
    template decides how it is shown (`<think>` for thinking, a visible trace for reasoning).
    `tool_calls` holds structured calls ({"name", "arguments": dict}), never pre-rendered text.
    """

    role: str
    content: str | list[dict[str, Any]]
    reasoning: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


@dataclass(frozen=True)
class MediaTarget:
    """A medium the model learns to produce: `kind` "image" or "video", `path` to the file."""

    kind: str
    path: str


@dataclass
class Conversation:
    """A record in the common form: messages plus the tool catalogue and media references.

    A generation request (a user turn with the prompt, or the source image and the edit instruction,
    then an assistant turn with the generation chain of thought or "") carries what it produces in
    `target`; its text trains with the LM loss and the target through the decoder's own loss.
    `generation` is the record read as such a request, for the generation capabilities, beside its
    understanding form (a caption record trains vision-qa as itself and image-generation as its
    `generation`); None when the record cannot be one.
    """

    messages: list[Message]
    tools: list[dict[str, Any]] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    videos: list[str] = field(default_factory=list)
    audios: list[str] = field(default_factory=list)
    target: MediaTarget | None = None
    generation: Conversation | None = None


class RecordError(ValueError):
    """A record that cannot become a training sample; the message is the reason shown to the user."""


@dataclass(frozen=True)
class BadRecord:
    """A skipped record: which dataset, where in which file (`file:line`, `file row N`), and why."""

    dataset: str
    location: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"dataset": self.dataset, "location": self.location, "reason": self.reason}


class DataError(Exception):
    """A data problem that stops the run (too many bad records, unreadable file); str() is the message."""


def check_renderable(conversation: Conversation) -> None:
    """Raise RecordError unless the chat template (Qwen2.5-Omni's ChatML) can render the conversation
    and it teaches something, so a bad record is counted with its file:line instead of crashing the
    renderer mid-run. What rendering needs: a system prompt only as the first turn; a user turn before
    the first reply (the reply's tokens are located by rendering what precedes it); a user or tool turn
    between two replies; tool results only after a reply that calls tools; and every reply carrying
    content or tool calls, except a generation request's (it may be "", the target is what it produces).
    """
    messages = conversation.messages
    if not any(m.role == "assistant" for m in messages):
        raise RecordError("no assistant turn to learn from")
    previous: Message | None = None
    for number, message in enumerate(messages, start=1):
        turn = f"turn {number} ({message.role})"
        if message.role == "system" and previous is not None:
            raise RecordError(f"{turn}: a system prompt may only be the first turn")
        if message.role == "assistant":
            if previous is None or previous.role == "system":
                raise RecordError(f"{turn}: a reply needs a user turn before it")
            if previous.role == "assistant":
                raise RecordError(f"{turn}: two replies in a row; a user or tool turn must come between")
            if conversation.target is None and not message.tool_calls and not _has_content(message.content):
                raise RecordError(f"{turn}: a reply with no content and no tool calls")
        if message.role == "tool" and not (
            previous is not None and (previous.role == "tool" or (previous.role == "assistant" and previous.tool_calls))
        ):
            raise RecordError(f"{turn}: a tool result with no tool call before it")
        previous = message


def _has_content(content: str | list[dict[str, Any]]) -> bool:
    if isinstance(content, str):
        return bool(content.strip())
    return any(part.get("type") != "text" or str(part.get("text") or "").strip() for part in content)
