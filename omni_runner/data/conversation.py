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
