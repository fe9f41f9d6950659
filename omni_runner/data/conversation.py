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


@dataclass
class Conversation:
    """A record in the common form: messages plus the tool catalogue and media references."""

    messages: list[Message]
    tools: list[dict[str, Any]] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    videos: list[str] = field(default_factory=list)
    audios: list[str] = field(default_factory=list)


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
