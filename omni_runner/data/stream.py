"""Training samples in mixer order, grouped into micro-batches, with a resumable position.

`SampleStream` draws (capability, data set, record) from the Mixer, renders the record with the
capability's template and yields `Sample`s. A record that fails to render (too long for
`training.seq_len`, nothing to learn) is skipped, remembered (so later epochs skip it without
rendering it again) and counted against the data set's `max_bad_fraction`.

`MicroBatches` groups samples into micro-batches: packed (first-fit into `micro_batch` rows of at
most `seq_len` tokens) or padded (one sample per row). Its `state_dict()` at a batch boundary is
exactly what a checkpoint needs: the sample that did not fit is drawn again after a resume.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from omni_runner.data.conversation import BadRecord, RecordError
from omni_runner.data.mixer import Mixer
from omni_runner.data.packing import Sample, first_fit
from omni_runner.data.render import render_sample, template_for
from omni_runner.data.sources import DataSource, active_capabilities

SHOWN_BAD_RECORDS = 20


def mixer_for(recipe: dict[str, Any], sources: dict[str, DataSource], capabilities: list[str] | None = None) -> Mixer:
    """The Mixer over the recipe's enabled capabilities (optionally a subset) and the scanned sources."""
    weights, datasets = {}, {}
    for capability, spec in active_capabilities(recipe, capabilities).items():
        weights[capability] = float(spec.get("weight", 1.0))
        datasets[capability] = [n for n in spec.get("datasets", []) if n in sources]
    seed = int((recipe.get("training") or {}).get("seed", 42))
    return Mixer(weights, datasets, {n: len(s) for n, s in sources.items()}, seed)


class SampleStream:
    """An endless, deterministic stream of rendered samples."""

    def __init__(self, sources: dict[str, DataSource], mixer: Mixer, tokenizer: Any, seq_len: int) -> None:
        self.sources = sources
        self.mixer = mixer
        self.tokenizer = tokenizer
        self.seq_len = seq_len
        self.unrenderable: dict[str, dict[int, BadRecord]] = {name: {} for name in sources}
        self.seen: dict[str, int] = {}

    def __iter__(self) -> Iterator[Sample]:
        return self

    def __next__(self) -> Sample:
        while True:
            draw = self.mixer.next()
            source = self.sources[draw.dataset]
            skipped = self.unrenderable[draw.dataset]
            if draw.position in skipped:
                continue
            try:
                rendered = render_sample(
                    source.conversation(draw.position),
                    self.tokenizer,
                    template_for(draw.capability),
                    max_tokens=self.seq_len,
                )
            except RecordError as exc:
                skipped[draw.position] = BadRecord(draw.dataset, source.location(draw.position), str(exc))
                source.check_bad_fraction(list(skipped.values()))
                continue
            self.seen[draw.capability] = self.seen.get(draw.capability, 0) + 1
            return Sample(
                rendered.input_ids, rendered.labels, draw.capability, draw.dataset, source.location(draw.position)
            )

    def report(self) -> dict[str, Any]:
        """The `data` event's fields: skipped counts per data set, the first bad records, samples seen."""
        bad = [b for source in self.sources.values() for b in source.bad]
        bad += [b for records in self.unrenderable.values() for b in records.values()]
        return {
            "skipped": {n: len(s.bad) + len(self.unrenderable[n]) for n, s in self.sources.items()},
            "bad_records": [b.to_json() for b in bad[:SHOWN_BAD_RECORDS]],
            "seen": dict(self.seen),
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "mixer": self.mixer.state_dict(),
            "unrenderable": {n: [[p, records[p].reason] for p in sorted(records)] for n, records in self.unrenderable.items()},
            "seen": dict(self.seen),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mixer.load_state_dict(state["mixer"])
        self.seen = dict(state.get("seen", {}))
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
