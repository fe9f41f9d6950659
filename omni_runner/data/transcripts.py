"""The transcript cache: what `omni-run data prepare` transcribed, keyed by the audio file's content.

Speech-transcript records may come without text (audio scraped or recorded without a transcript).
`data prepare` transcribes their audio with the recipe's `encoders.asr` and appends the results to
`.omni-transcripts.jsonl` beside the data file (inside the folder for a `save_to_disk` folder); the
data sources (omni_runner/data/sources.py) consult it when they read a record that has no text.

Keying by the sha256 of the audio file's bytes, not by its path, means a re-run transcribes only
audio it has not seen, an edited file is transcribed again (its hash changed), and a moved or renamed
file keeps its transcript. Each line is one JSON object:
`{"sha256": "<hex>", "transcript": "...", "model": "<recogniser>", "audio": "<the record's path>"}`
(`model` and `audio` are for people; on a repeated hash the later line wins). Lines are appended per
batch, so an interrupted run keeps what it finished.

Public API:
- `TRANSCRIPTS_FILE`, `transcripts_path(data_path) -> Path`.
- `file_sha256(path) -> str`.
- `has_text(record) -> bool`, `reference_text(record) -> str | None`: a speech-transcript record's own text.
- `TranscriptCache.load(path)`, `.get(sha256)`, `.lookup(audio_path)`, `.append(entries)`, `len(cache)`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omni_runner.data.conversation import DataError

TRANSCRIPTS_FILE = ".omni-transcripts.jsonl"
# The fields a speech-transcript record's own text may be in, in the adapter's order of preference.
TEXT_FIELDS = ("transcript", "text")
_CHUNK = 1 << 20


def transcripts_path(data_path: Path) -> Path:
    """Where the transcripts of the data at `data_path` (a file, or a save_to_disk folder) are cached."""
    data_path = Path(data_path)
    return (data_path if data_path.is_dir() else data_path.parent) / TRANSCRIPTS_FILE


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def reference_text(record: Any) -> str | None:
    """The record's own transcript (`transcript`, else `text`) when it has a non-blank one."""
    if not isinstance(record, dict):
        return None
    for name in TEXT_FIELDS:
        value = record.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def has_text(record: Any) -> bool:
    return reference_text(record) is not None


@dataclass
class TranscriptCache:
    """The transcripts cached at `path`, by the sha256 of the audio they were made from."""

    path: Path
    entries: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> TranscriptCache:
        """The cache at `path` (empty when the file does not exist); a damaged line is a DataError at its line."""
        cache = cls(Path(path))
        try:
            lines = cache.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return cache
        except OSError as error:
            raise DataError(f"{cache.path}: cannot read the transcript cache ({error})") from None
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                cache.entries[str(entry["sha256"])] = str(entry["transcript"])
            except (ValueError, KeyError, TypeError):
                raise DataError(
                    f"{cache.path}:{number}: not a transcript entry ({{\"sha256\", \"transcript\"}} JSON); delete the "
                    "line (or the file) and run `omni-run data prepare RECIPE` again to redo what it held"
                ) from None
        return cache

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, sha256: str) -> str | None:
        return self.entries.get(sha256)

    def lookup(self, audio_path: str | Path) -> str | None:
        """The cached transcript of the audio file's current content; None when there is none or the file cannot be read."""
        if not self.entries:
            return None
        try:
            return self.get(file_sha256(audio_path))
        except OSError:
            return None

    def append(self, entries: list[dict[str, str]]) -> None:
        """Add entries (`sha256`, `transcript`, `model`, `audio`) to the file and to this cache."""
        if not entries:
            return
        text = "".join(json.dumps(entry, ensure_ascii=False) + "\n" for entry in entries)
        try:
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(text)
        except OSError as error:
            raise DataError(f"{self.path}: cannot write the transcript cache ({error}); make its folder writable") from None
        self.entries.update((entry["sha256"], entry["transcript"]) for entry in entries)
