"""The recipe's `datasets:` section opened and scanned: one `DataSource` per named data set.

Scanning adapts every record once, up front, so bad records are found, counted and located before
training starts, and a data set that is mostly broken stops the run at once with a clear message
(not hours later). The good records' indices are kept; records are re-read and re-adapted on demand
rather than held in memory, so large memory-mapped data sets stay cheap.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from omni_runner.data.adapters import adapt
from omni_runner.data.conversation import (
    BadRecord,
    Conversation,
    DataError,
    RecordError,
)
from omni_runner.data.multimodal import MediaSettings
from omni_runner.data.readers import RecordTable, open_table
from omni_runner.data.transcripts import TranscriptCache, has_text, transcripts_path
from omni_runner.paths import cache_dir, is_generated_data, resolve_data_path

DEFAULT_MAX_BAD_FRACTION = 0.05
SHOWN_BAD_RECORDS = 5


@dataclass
class DataSource:
    """One named data set: its table, format, the indices of its good records and its bad records."""

    name: str
    format: str
    table: RecordTable
    max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION
    media_root: Path | None = None
    media: MediaSettings = field(default_factory=MediaSettings)
    good: list[int] = field(default_factory=list)
    bad: list[BadRecord] = field(default_factory=list)
    # Speech-transcript sets: `omni-run data prepare`'s transcripts, and those that fill records without text.
    transcripts: TranscriptCache | None = None
    filled: dict[int, str] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return len(self.table)

    def __len__(self) -> int:
        return len(self.good)

    def conversation(self, position: int) -> Conversation:
        """The `position`-th good record as a Conversation, relative media paths made absolute (its
        generation target and its generation request's too)."""
        return self._resolved(adapt(self.format, self.record(self.good[position])))

    def _resolved(self, conversation: Conversation) -> Conversation:
        for kind in ("images", "videos", "audios"):
            setattr(conversation, kind, [self.media_path(ref) for ref in getattr(conversation, kind)])
        if conversation.target is not None:
            conversation.target = replace(conversation.target, path=self.media_path(conversation.target.path))
        if conversation.generation is not None:
            conversation.generation = self._resolved(conversation.generation)
        return conversation

    def media_path(self, reference: str) -> str:
        """A record's media reference resolved against the media root (absolute paths and URLs stay as they are)."""
        return reference if self.media_root is None else _under(self.media_root, reference)

    def record(self, index: int) -> Any:
        """The raw record at `index`, its transcript taken from the transcript cache when it has none."""
        return self._with_transcript(index, self.table.record(index))

    def _with_transcript(self, index: int, record: Any) -> Any:
        return {**record, "transcript": self.filled[index]} if index in self.filled else record

    def location(self, position: int) -> str:
        return self.table.location(self.good[position])

    def scan(self, max_samples: int | None = None) -> None:
        """Adapt every record, keeping good indices (up to `max_samples`) and recording bad ones."""
        self.good, self.bad = [], []
        for index in range(len(self.table)):
            if max_samples is not None and len(self.good) >= max_samples:
                break
            try:
                record = self.table.record(index)
                self._remember_transcript(index, record)
                adapt(self.format, self._with_transcript(index, record))
            except RecordError as exc:
                self.bad.append(BadRecord(self.name, self.table.location(index), str(exc)))
            else:
                self.good.append(index)

    def _remember_transcript(self, index: int, record: Any) -> None:
        """Remember the cached transcript of a record that has no text of its own (hashing its audio once, here)."""
        if self.transcripts is None:
            return
        audio = record.get("audio") if isinstance(record, dict) else None
        if isinstance(audio, str) and audio and not has_text(record):
            text = self.transcripts.lookup(self.media_path(audio))
            if text is not None:
                self.filled[index] = text

    def check_bad_fraction(self, extra_bad: list[BadRecord] = ()) -> None:
        """Raise DataError when bad records (scan + `extra_bad`, e.g. too long) pass max_bad_fraction."""
        bad = [*self.bad, *extra_bad]
        checked = len(self.good) + len(self.bad)
        if checked and len(bad) / checked > self.max_bad_fraction:
            raise DataError(too_many_bad_message(self.name, bad, checked, self.max_bad_fraction))
        if not self.good:
            raise DataError(f"dataset '{self.name}': no usable records in {self.table.path}")


def _under(root: Path, reference: str) -> str:
    """A media reference resolved against the media root (absolute paths and URLs stay as they are)."""
    return reference if "://" in reference or Path(reference).is_absolute() else str(root / reference)


def too_many_bad_message(name: str, bad: list[BadRecord], checked: int, limit: float) -> str:
    shown = "\n".join(f"  {b.location}: {b.reason}" for b in bad[:SHOWN_BAD_RECORDS])
    more = f"\n  ... and {len(bad) - SHOWN_BAD_RECORDS} more" if len(bad) > SHOWN_BAD_RECORDS else ""
    return (
        f"dataset '{name}': {len(bad)} of {checked} records are bad ({len(bad) / checked:.1%}), "
        f"more than datasets.{name}.max_bad_fraction = {limit:g}\n{shown}{more}\n"
        f"Fix the records, or raise datasets.{name}.max_bad_fraction to skip them "
        f"(`omni-run data check RECIPE` lists them all)."
    )


def open_source(name: str, spec: dict[str, Any], base_dir: Path) -> DataSource:
    """Open (not yet scan) the data set `name` described by its recipe entry `spec`."""
    if is_generated_data(str(spec["path"])):
        from omni_runner.data.bundled.media import ensure_media_data

        ensure_media_data()
    path = resolve_data_path(str(spec["path"]), base_dir)
    table = open_table(
        path,
        split=spec.get("split") or "train",
        streaming=spec.get("streaming", "auto"),
        cache_dir=cache_dir() / "datasets",
    )
    limit = spec.get("max_bad_fraction")
    media_root = spec.get("media_root")
    speech = spec["format"] == "speech-transcript"
    return DataSource(
        name=name,
        format=spec["format"],
        table=table,
        max_bad_fraction=DEFAULT_MAX_BAD_FRACTION if limit is None else float(limit),
        media_root=resolve_data_path(str(media_root), base_dir) if media_root else (path if path.is_dir() else path.parent),
        media=MediaSettings.from_spec(spec),
        transcripts=TranscriptCache.load(transcripts_path(path)) if speech else None,
    )


def active_capabilities(recipe: dict[str, Any], capabilities: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """The recipe's capabilities that draw data: enabled, weight > 0, and in `capabilities` if given
    (a stage's subset)."""
    return {
        name: spec
        for name, spec in (recipe.get("capabilities") or {}).items()
        if (capabilities is None or name in capabilities)
        and spec.get("enabled", True)
        and float(spec.get("weight", 1.0)) > 0
    }


def used_datasets(recipe: dict[str, Any], capabilities: list[str] | None = None) -> list[str]:
    """Names of the data sets the active capabilities draw from, in recipe order."""
    names: list[str] = []
    for spec in active_capabilities(recipe, capabilities).values():
        names += [n for n in spec.get("datasets", []) if n not in names]
    return names


def build_sources(
    recipe: dict[str, Any], base_dir: Path, *, capabilities: list[str] | None = None, strict: bool = True
) -> dict[str, DataSource]:
    """Open and scan every data set the recipe's capabilities use.

    With `strict` (training), a data set whose bad fraction passes its `max_bad_fraction` raises
    DataError; without it (`data check`), everything is returned so all problems can be listed.
    """
    declared = recipe.get("datasets") or {}
    sources = {}
    for name in used_datasets(recipe, capabilities):
        if name not in declared:
            raise DataError(f"capabilities use dataset '{name}', which is not declared under datasets:")
        spec = declared[name]
        source = open_source(name, spec, base_dir)
        source.scan(spec.get("max_samples"))
        if strict:
            source.check_bad_fraction()
        sources[name] = source
    return sources
