"""What `omni-run data check` and `data preview` compute: every record prepared as training prepares it.

Each record is adapted, rendered and, when it has media, decoded and expanded through the base
model's processor (`SamplePreparer`, the trainer's own code), so token lengths include the media
tokens and a missing or corrupt file is a bad record (file:line and reason) that counts against
`max_bad_fraction` exactly as it would in training. Separate from the command module so the
trainer's start-up and tests can call it without argparse.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omni_runner.data.conversation import (
    BadRecord,
    Conversation,
    DataError,
    RecordError,
)
from omni_runner.data.external import ExternalFeatures
from omni_runner.data.generation import GenerationSamples, is_generation
from omni_runner.data.media import MEDIA_KINDS, media_info
from omni_runner.data.mixer import Draw
from omni_runner.data.multimodal import media_order
from omni_runner.data.packing import Sample
from omni_runner.data.render import Rendered, render_sample, template_for
from omni_runner.data.sources import DataSource, active_capabilities, build_sources
from omni_runner.data.stream import SamplePreparer, mixer_for


def _capability_of(recipe: dict[str, Any], capabilities: list[str] | None) -> dict[str, str]:
    """Each data set's (first) capability: it decides the template the data set is rendered with."""
    owner: dict[str, str] = {}
    for capability, spec in active_capabilities(recipe, capabilities).items():
        for name in spec.get("datasets", []):
            owner.setdefault(name, capability)
    return owner


def _spread(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    ordered = sorted(values)
    return {"min": ordered[0], "median": statistics.median(ordered), "max": ordered[-1]}


def _length_stats(lengths: list[int]) -> dict[str, float] | None:
    spread = _spread(lengths)
    if spread is None:
        return None
    ordered = sorted(lengths)
    return {**spread, "p95": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]}


def _resolutions(infos: list[dict[str, Any]]) -> dict[str, str]:
    """Smallest, median and largest "WxH" by pixel count (the median is a real file's size, the lower one)."""
    ordered = sorted((info["width"] * info["height"], info["width"], info["height"]) for info in infos)
    return {key: f"{ordered[index][1]}x{ordered[index][2]}"
            for key, index in (("min", 0), ("median", (len(ordered) - 1) // 2), ("max", -1))}


def _media_paths(conversation: Conversation) -> list[tuple[str, str]]:
    """(kind, path) for each medium in reading order, the order the processor expands them in."""
    paths = {"image": iter(conversation.images), "video": iter(conversation.videos), "audio": iter(conversation.audios)}
    return [(kind, next(paths[kind])) for kind in media_order(conversation)]


@dataclass
class _MediaTally:
    """The media facts of one data set's usable records (what training sees; unreadable files are bad
    records): header facts per file, and each video's frame count from its prepared sample."""

    infos: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {kind: [] for kind in MEDIA_KINDS})
    video_frames: list[int] = field(default_factory=list)

    def add(self, conversation: Conversation, sample: Sample, temporal_patch_size: int) -> None:
        for kind, path in _media_paths(conversation):
            self.infos[kind].append(media_info(kind, path))
        # The frames sampled at the data set's video_fps/video_max_frames; the processor groups
        # them `temporal_patch_size` to a grid step.
        grids = (sample.media or {}).get("video_grid_thw")
        if grids is not None:
            self.video_frames += [int(steps) * temporal_patch_size for steps in grids[:, 0]]

    def summary(self) -> dict[str, Any]:
        """Per kind present: count, and resolution / seconds / sample rates / frames / audio tracks."""
        summary: dict[str, Any] = {}
        for kind in MEDIA_KINDS:
            infos = self.infos[kind]
            if not infos:
                continue
            entry: dict[str, Any] = {"count": len(infos)}
            if kind in ("image", "video"):
                entry["resolution"] = _resolutions(infos)
            if kind in ("audio", "video"):
                entry["duration_s"] = _spread([round(info["duration_s"], 3) for info in infos])
            if kind == "audio":
                entry["sample_rates"] = sorted({info["sample_rate"] for info in infos})
            if kind == "video":
                entry["frames"] = _spread(self.video_frames)
                entry["with_audio"] = sum(1 for info in infos if info["has_audio"])
            summary[kind] = entry
        return summary


def _prepare_all(
    source: DataSource, capability: str, preparer: SamplePreparer, temporal_patch_size: int
) -> tuple[list[int], list[BadRecord], dict[str, Any]]:
    """Token lengths of the records that prepare, the bad ones, and the usable records' media statistics."""
    lengths, bad, tally = [], [], _MediaTally()
    for position in range(len(source)):
        try:
            sample = preparer.sample(Draw(capability, source.name, position, epoch=0))
            conversation = source.conversation(position)
            if conversation.target is not None:  # what an edit produces: a missing or broken file is a bad record
                media_info(conversation.target.kind, conversation.target.path)
        except RecordError as exc:
            bad.append(BadRecord(source.name, source.location(position), str(exc)))
        else:
            lengths.append(len(sample))
            tally.add(conversation, sample, temporal_patch_size)
    return lengths, bad, tally.summary()


def check_data(
    recipe: dict[str, Any], base_dir: Path, processor: Any, capabilities: list[str] | None = None,
    external: ExternalFeatures | None = None, generation: GenerationSamples | None = None,
) -> dict[str, Any]:
    """Counts, bad records with locations, token-length and media statistics, and the effective mixture."""
    seq_len = int((recipe.get("training") or {}).get("seq_len", 2048))
    sources = build_sources(recipe, base_dir, capabilities=capabilities, strict=False)
    owners = _capability_of(recipe, capabilities)
    preparer = SamplePreparer(sources, processor.tokenizer, seq_len, processor, external=external, generation=generation)
    temporal_patch_size = int(processor.video_processor.temporal_patch_size)
    datasets, all_bad, ok = {}, [], True
    for name, source in sources.items():
        lengths, prepare_bad, media = _prepare_all(source, owners[name], preparer, temporal_patch_size)
        bad = [*source.bad, *prepare_bad]
        checked = len(source.good) + len(source.bad)
        fraction = len(bad) / checked if checked else 1.0
        passes = bool(lengths) and fraction <= source.max_bad_fraction
        ok &= passes
        all_bad += bad
        datasets[name] = {
            "path": str(source.table.path),
            "format": source.format,
            "capability": owners[name],
            "records": source.total,
            "usable": len(lengths),
            "bad": len(bad),
            "bad_fraction": round(fraction, 4),
            "max_bad_fraction": source.max_bad_fraction,
            "ok": passes,
            "tokens": _length_stats(lengths),
            "media": media,
        }
    usable = {n: d["usable"] for n, d in datasets.items() if d["usable"]}
    mixture = mixer_for(recipe, {n: sources[n] for n in usable}, capabilities).mixture() if usable else {}
    return {
        "ok": ok,
        "seq_len": seq_len,
        "datasets": datasets,
        "bad_records": [b.to_json() for b in all_bad],
        "mixture": mixture,
    }


@dataclass
class PlacedMedium:
    """Where one medium's tokens sit in a sample's expanded token sequence."""

    kind: str  # "image" | "video" | "audio"
    number: int  # 1-based among the sample's media of this kind
    path: str  # relative to the data set's media root when under it
    info: dict[str, Any]  # media_info's header facts
    placeholder: str  # the token the rendered text holds once for this medium, e.g. "<|IMAGE|>"
    runs: list[tuple[str, int]]  # the tokens it expanded into, run by run: [("<|VIDEO|>", 16), ("<|AUDIO|>", 53)]
    start: int  # first token position
    end: int  # last token position (inclusive)

    @property
    def tokens(self) -> int:
        return self.end - self.start + 1


@dataclass
class Preview:
    """A sample as `data preview` shows it: the unexpanded rendering (with its trained character
    spans), the length after media expansion, and where each medium's tokens sit."""

    rendered: Rendered
    length: int
    media: list[PlacedMedium]


def _token_runs(ids: list[int], media_ids: set[int]) -> list[tuple[int, int]]:
    """(start, end inclusive) of each maximal run of media tokens; one per medium, since the
    template wraps every placeholder in begin/end tokens (a video's interleaved audio stays inside its run)."""
    runs: list[tuple[int, int]] = []
    for position, token in enumerate(ids):
        if token not in media_ids:
            continue
        if runs and runs[-1][1] == position - 1:
            runs[-1] = (runs[-1][0], position)
        else:
            runs.append((position, position))
    return runs


def _grouped(tokens: Iterable[str]) -> list[tuple[str, int]]:
    grouped: list[tuple[str, int]] = []
    for token in tokens:
        if grouped and grouped[-1][0] == token:
            grouped[-1] = (token, grouped[-1][1] + 1)
        else:
            grouped.append((token, 1))
    return grouped


def _shown_path(path: str, root: Path | None) -> str:
    if root is not None and Path(path).is_relative_to(root):
        return str(Path(path).relative_to(root))
    return path


def place_media(conversation: Conversation, input_ids: list[int], processor: Any, root: Path | None) -> list[PlacedMedium]:
    """Each medium of `conversation` with the positions of its tokens in the expanded `input_ids`."""
    placeholders = {"image": processor.image_token, "video": processor.video_token, "audio": processor.audio_token}
    tokenizer = processor.tokenizer
    media_ids = set(tokenizer.convert_tokens_to_ids(list(placeholders.values())))
    runs = _token_runs(input_ids, media_ids)
    paths = _media_paths(conversation)
    if len(runs) != len(paths):
        raise RecordError(f"{len(paths)} media, but {len(runs)} runs of media tokens after expansion; "
                          "does the chat template wrap each placeholder in begin/end tokens?")
    placed, numbers = [], dict.fromkeys(MEDIA_KINDS, 0)
    for (kind, path), (start, end) in zip(paths, runs):
        numbers[kind] += 1
        placed.append(PlacedMedium(
            kind, numbers[kind], _shown_path(path, root), media_info(kind, path), placeholders[kind],
            _grouped(tokenizer.convert_ids_to_tokens(input_ids[start:end + 1])), start, end))
    return placed


def preview_samples(
    recipe: dict[str, Any], base_dir: Path, processor: Any, capability: str, count: int,
    external: ExternalFeatures | None = None, generation: GenerationSamples | None = None,
) -> list[tuple[str, Preview | RecordError]]:
    """The first `count` records of the capability's data sets, prepared as for training (or the reason they are bad)."""
    spec = (recipe.get("capabilities") or {}).get(capability)
    if spec is None:
        known = ", ".join(recipe.get("capabilities") or {}) or "none"
        raise DataError(f"capability '{capability}' is not in the recipe (it has: {known})")
    seq_len = int((recipe.get("training") or {}).get("seq_len", 2048))
    sources = build_sources(recipe, base_dir, capabilities=[capability], strict=False)
    preparer = SamplePreparer(sources, processor.tokenizer, seq_len, processor, external=external, generation=generation)
    previews: list[tuple[str, Preview | RecordError]] = []
    for source in sources.values():
        for position in range(min(count - len(previews), len(source))):
            location = f"{source.name} {source.location(position)}"
            conversation = source.conversation(position)
            if is_generation(capability) and conversation.generation is not None:
                conversation = conversation.generation  # what the sample is made of: the request
            try:
                sample = preparer.sample(Draw(capability, source.name, position, epoch=0))
                # The sample's ids are expanded; the text and its trained spans are the unexpanded rendering's.
                rendered = render_sample(conversation, processor.tokenizer, template_for(capability))
                media = place_media(conversation, sample.input_ids, processor, source.media_root)
            except RecordError as exc:
                previews.append((location, exc))
            else:
                previews.append((location, Preview(rendered, len(sample), media)))
    return previews
