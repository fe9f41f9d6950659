"""Training samples in mixer order, grouped into micro-batches, with a resumable position.

`SampleStream` draws (capability, data set, record) from the Mixer and has a `SamplePreparer` turn
each draw into a `Sample`: adapt the record, render it with the capability's template, and for
media records decode the files and expand their placeholders through the model's processor. With
`num_workers` > 0 the preparing runs in DataLoader worker processes, ahead of the step, while the
draws stay in this process and in order, so the stream (and its resume position: the mixer state
after the last sample handed out) is the same with or without workers. A record that fails to
prepare (too long for `training.seq_len`, nothing to learn, unreadable media) is skipped,
remembered (so later epochs skip it without preparing it again) and counted against the data set's
`max_bad_fraction`.

`MicroBatches` groups samples into micro-batches: packed (first-fit into `micro_batch` rows of at
most `seq_len` tokens) or padded (one sample per row). Its `state_dict()` at a batch boundary is
exactly what a checkpoint needs: the sample that did not fit is drawn again after a resume.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from omni_runner.data.conversation import BadRecord, DataError, RecordError
from omni_runner.data.external import ExternalFeatures, encode_sample_media
from omni_runner.data.generation import GenerationSamples, is_generation
from omni_runner.data.mixer import Draw, Mixer
from omni_runner.data.multimodal import has_media
from omni_runner.data.packing import Sample, first_fit
from omni_runner.data.render import render_sample, template_for
from omni_runner.data.sources import DataSource, active_capabilities

SHOWN_BAD_RECORDS = 20
# Samples each worker prepares ahead of the step.
PREFETCH_PER_WORKER = 4
# The most worker processes `num_workers: auto` starts for a training process. Each holds a copy of the
# tokenizer and processor; a video with its audio track takes about 0.1 s to prepare on one core, so four
# prepare about 40 such samples a second.
MAX_AUTO_WORKERS = 4


def resolve_num_workers(requested: int | str, device_type: str, cores: int, processes_per_machine: int = 1) -> int:
    """`training.num_workers` for a process training on `device_type` with `cores` CPU cores shared by
    `processes_per_machine` training processes. A number is taken as written. `auto` prepares samples on
    the training thread on CPU (and any device but a CUDA GPU), where the step itself keeps every core
    busy and a worker only takes one from it (docs/performance.md); on a GPU, where a step takes
    milliseconds and rendering or decoding on the training thread would leave the card idle, it starts a
    worker for each of this process's cores beyond its own, at most MAX_AUTO_WORKERS."""
    if requested != "auto":
        return int(requested)
    if device_type != "cuda":
        return 0
    return max(0, min(MAX_AUTO_WORKERS, cores // max(1, processes_per_machine) - 1))


def mixer_for(recipe: dict[str, Any], sources: dict[str, DataSource], capabilities: list[str] | None = None) -> Mixer:
    """The Mixer over the recipe's enabled capabilities (optionally a subset) and the scanned sources."""
    weights, datasets = {}, {}
    for capability, spec in active_capabilities(recipe, capabilities).items():
        weights[capability] = float(spec.get("weight", 1.0))
        datasets[capability] = [n for n in spec.get("datasets", []) if n in sources]
    seed = int((recipe.get("training") or {}).get("seed", 42))
    return Mixer(weights, datasets, {n: len(s) for n, s in sources.items()}, seed)


@dataclass
class Prepared:
    """One draw's outcome: its sample, or why its record was skipped; with the mixer state after it."""

    draw: Draw
    mixer_state: dict[str, Any]
    sample: Sample | None = None
    reason: str | None = None


class SamplePreparer:
    """Turns a draw into a Sample; DataLoader workers (forked from the trainer) each run a copy."""

    def __init__(
        self, sources: dict[str, DataSource], tokenizer: Any, seq_len: int, processor: Any = None, thinker: Any = None,
        external: ExternalFeatures | None = None, generation: GenerationSamples | None = None,
        load_processor: Callable[[], Any] | None = None,
    ) -> None:
        self.sources = sources
        self.tokenizer = tokenizer
        self.seq_len = seq_len
        self.processor = processor
        self.load_processor = load_processor  # without `processor`: loads it when the first media record comes
        self.thinker = thinker  # its `get_rope_index` gives media samples their positions (config only, no weights)
        self.external = external  # media for the external encoders, when the recipe has any
        self.generation = generation  # targets and queries for the generation capabilities, when the recipe has decoders

    def sample(self, draw: Draw) -> Sample:
        """The draw's sample; RecordError (with the reason) when its record cannot become one."""
        source = self.sources[draw.dataset]
        conversation = source.conversation(draw.position)
        target = None
        if is_generation(draw.capability):
            if self.generation is None:
                raise DataError(f"capability '{draw.capability}' needs its decoder, and none was given to prepare its targets")
            conversation = self.generation.request(conversation, draw.capability)
            target = self.generation.target(conversation, source.media.video_fps)
        media = has_media(conversation)
        rendered = render_sample(conversation, self.tokenizer, template_for(draw.capability),
                                 max_tokens=None if media or target else self.seq_len)
        input_ids, labels, tensors, positions, with_track = rendered.input_ids, rendered.labels, None, None, False
        if media:
            if self.processor is None and self.load_processor is not None:
                self.processor = self.load_processor()
            if self.processor is None:
                raise DataError(f"dataset '{draw.dataset}' has media, but no processor was given to prepare them")
            with_track = bool(conversation.videos and source.media.use_audio_in_video)
            input_ids, labels, tensors, positions = encode_sample_media(conversation, rendered, self.processor, source.media,
                                                                        self.thinker, self.external)
        if target is not None:
            input_ids, labels, positions = self.generation.with_queries(input_ids, labels, positions, target.queries)
        if len(input_ids) > self.seq_len:
            what = " with its media" if media else ""
            what += f" and {target.queries} generation queries" if target is not None else ""
            raise RecordError(f"{len(input_ids)} tokens after rendering{what}, more than training.seq_len = {self.seq_len}")
        return Sample(input_ids, labels, draw.capability, draw.dataset, source.location(draw.position),
                      media=tensors, use_audio_in_video=with_track, positions=positions, generation=target)

    def __call__(self, item: tuple[Draw, dict[str, Any]]) -> Prepared:
        draw, mixer_state = item
        try:
            return Prepared(draw, mixer_state, sample=self.sample(draw))
        except RecordError as exc:
            return Prepared(draw, mixer_state, reason=str(exc))


class _PreparedDataset:
    """Map-style view for DataLoader: the "index" is a (draw, mixer state) pair from `_Draws`."""

    def __init__(self, preparer: SamplePreparer) -> None:
        self.preparer = preparer

    def __getitem__(self, item: tuple[Draw, dict[str, Any]]) -> Prepared:
        return self.preparer(item)


class _Draws:
    """DataLoader's sampler: the stream's draws, iterated in this process, in order."""

    def __init__(self, stream: SampleStream) -> None:
        self.stream = stream

    def __iter__(self) -> Iterator[tuple[Draw, dict[str, Any]]]:
        return self.stream.draws()


def _unbatched(prepared: Prepared) -> Prepared:
    return prepared


def _one_thread_per_worker(_worker_id: int) -> None:
    import torch

    torch.set_num_threads(1)  # workers decode and tokenise; the training step owns the cores


class SampleStream:
    """An endless, deterministic stream of prepared samples."""

    def __init__(
        self, sources: dict[str, DataSource], mixer: Mixer, tokenizer: Any, seq_len: int,
        *, processor: Any = None, thinker: Any = None, num_workers: int = 0, external: ExternalFeatures | None = None,
        generation: GenerationSamples | None = None, shard: tuple[int, int] = (0, 1),
        load_processor: Callable[[], Any] | None = None,
    ) -> None:
        self.sources = sources
        self.mixer = mixer
        self.shard = shard  # (rank, world size): this rank takes the mixer's draws number rank, rank + world, ...
        self.preparer = SamplePreparer(sources, tokenizer, seq_len, processor, thinker, external, generation, load_processor)
        self.num_workers = num_workers
        self.unrenderable: dict[str, dict[int, BadRecord]] = {name: {} for name in sources}
        self.seen: dict[str, int] = {}
        self.seen_by_dataset: dict[str, int] = {}
        self._position = mixer.state_dict()  # the mixer state after the last sample handed out
        self._prepared: Iterator[Prepared] | None = None

    def __iter__(self) -> Iterator[Sample]:
        return self

    def draws(self) -> Iterator[tuple[Draw, dict[str, Any]]]:
        """This rank's draws from the mixer's current state, skipping records already known to be unusable.

        Sharding by draw number keeps one global order: the ranks of a step together see the samples a
        single process with the same global batch would see, and each rank's position is the mixer state.
        """
        rank, world = self.shard
        while True:
            number = self.mixer.draws
            draw = self.mixer.next()
            if number % world == rank and draw.position not in self.unrenderable[draw.dataset]:
                yield draw, self.mixer.state_dict()

    def _start(self) -> Iterator[Prepared]:
        if self.num_workers == 0:
            return (self.preparer(item) for item in self.draws())
        from torch.utils.data import DataLoader

        loader = DataLoader(
            _PreparedDataset(self.preparer), sampler=_Draws(self), batch_size=None, collate_fn=_unbatched,
            num_workers=self.num_workers, prefetch_factor=PREFETCH_PER_WORKER,
            worker_init_fn=_one_thread_per_worker, multiprocessing_context="fork",
        )
        return iter(loader)

    def __next__(self) -> Sample:
        if self._prepared is None:
            self._prepared = self._start()
        while True:
            prepared = next(self._prepared)
            self._position = prepared.mixer_state
            draw = prepared.draw
            if prepared.sample is None:
                source = self.sources[draw.dataset]
                skipped = self.unrenderable[draw.dataset]
                skipped[draw.position] = BadRecord(draw.dataset, source.location(draw.position), str(prepared.reason))
                source.check_bad_fraction(list(skipped.values()))
                continue
            self.seen[draw.capability] = self.seen.get(draw.capability, 0) + 1
            self.seen_by_dataset[draw.dataset] = self.seen_by_dataset.get(draw.dataset, 0) + 1
            return prepared.sample

    def close(self) -> None:
        """Stop the worker processes (a new stage or a resume starts new ones)."""
        self._prepared = None

    def report(self, other_ranks: list[dict[str, Any]] = ()) -> dict[str, Any]:
        """The `data` event's fields: skipped counts per data set, the first bad records, samples seen
        (per capability and per data set). `other_ranks`: the other ranks' `state_dict()`s, whose
        shards' skipped records and samples count too (records bad on disk every rank finds alike)."""
        bad = [b for source in self.sources.values() for b in source.bad]
        bad += [b for records in self.unrenderable.values() for b in records.values()]
        bad += [BadRecord(name, self.sources[name].location(position), reason) for state in other_ranks
                for name, records in state["unrenderable"].items() if name in self.sources for position, reason in records]
        seen, seen_by_dataset = Counter(self.seen), Counter(self.seen_by_dataset)
        for state in other_ranks:
            seen.update(state["seen"])
            seen_by_dataset.update(state["seen_by_dataset"])
        unrenderable = Counter({n: len(records) for n, records in self.unrenderable.items()})
        for state in other_ranks:
            unrenderable.update({n: len(records) for n, records in state["unrenderable"].items()})
        return {
            "skipped": {n: len(s.bad) + unrenderable[n] for n, s in self.sources.items()},
            "bad_records": [b.to_json() for b in bad[:SHOWN_BAD_RECORDS]],
            "seen": dict(seen),
            "seen_by_dataset": dict(seen_by_dataset),
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "mixer": copy.deepcopy(self._position),
            "unrenderable": {n: [[p, records[p].reason] for p in sorted(records)] for n, records in self.unrenderable.items()},
            "seen": dict(self.seen),
            "seen_by_dataset": dict(self.seen_by_dataset),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.close()
        self.mixer.load_state_dict(state["mixer"])
        self._position = self.mixer.state_dict()
        self.seen = dict(state.get("seen", {}))
        self.seen_by_dataset = dict(state.get("seen_by_dataset", {}))
        for name, records in state.get("unrenderable", {}).items():
            if name in self.sources:
                location = self.sources[name].location
                self.unrenderable[name] = {p: BadRecord(name, location(p), reason) for p, reason in records}


class MicroBatches:
    """Micro-batches of samples: `packing=True` gives up to `micro_batch` packed rows (each a list of
    samples), `packing=False` gives `micro_batch` rows of one sample each."""

    def __init__(self, stream: SampleStream, micro_batch: int, seq_len: int, packing: bool) -> None:
        self.stream = stream
        self.micro_batch = micro_batch
        self.seq_len = seq_len
        self.packing = packing
        self._pending: Sample | None = None
        self._state_before_pending: dict[str, Any] | None = None

    def __iter__(self) -> Iterator[list[list[Sample]]]:
        return self

    def _draw(self) -> Sample:
        if self._pending is not None:
            sample, self._pending, self._state_before_pending = self._pending, None, None
            return sample
        return next(self.stream)

    def __next__(self) -> list[list[Sample]]:
        if not self.packing:
            return [[self._draw()] for _ in range(self.micro_batch)]
        samples: list[Sample] = []
        rows: list[list[int]] = []
        while True:
            state_before = self._state_before_pending if self._pending is not None else copy.deepcopy(self.stream.state_dict())
            sample = self._draw()
            candidate, placed = first_fit([len(s) for s in [*samples, sample]], self.seq_len, self.micro_batch)
            if placed <= len(samples):
                self._pending, self._state_before_pending = sample, state_before
                return [[samples[i] for i in row] for row in rows]
            samples.append(sample)
            rows = candidate

    def state_dict(self) -> dict[str, Any]:
        """The stream position at this batch boundary (before any sample drawn but not yet batched)."""
        return copy.deepcopy(self._state_before_pending if self._pending is not None else self.stream.state_dict())

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._pending, self._state_before_pending = None, None
        self.stream.load_state_dict(state)
