"""Each rank of a multi-process run reads its own shard of the one mixer stream."""

from __future__ import annotations

import json
from pathlib import Path

from test_packing import RECIPE

from omni_runner.data.sources import build_sources
from omni_runner.data.stream import MicroBatches, SampleStream, mixer_for


def _stream(tokenizer, shard: tuple[int, int] = (0, 1)) -> MicroBatches:
    sources = build_sources(RECIPE, Path("."))
    return MicroBatches(SampleStream(sources, mixer_for(RECIPE, sources), tokenizer, 512, shard=shard), 1, 512, False)


def _locations(batches: MicroBatches, count: int) -> list[str]:
    return [next(batches)[0][0].location for _ in range(count)]


def test_two_ranks_take_alternate_draws_of_the_single_process_stream(tokenizer):
    single = _locations(_stream(tokenizer), 8)
    assert _locations(_stream(tokenizer, (0, 2)), 4) == single[0::2]
    assert _locations(_stream(tokenizer, (1, 2)), 4) == single[1::2]


def test_a_rank_resumes_its_own_shard_from_its_state(tokenizer):
    uninterrupted = _stream(tokenizer, (1, 2))
    _locations(uninterrupted, 3)
    state = json.loads(json.dumps(uninterrupted.state_dict()))
    resumed = _stream(tokenizer, (1, 2))
    resumed.load_state_dict(state)
    assert _locations(resumed, 3) == _locations(uninterrupted, 3)


def test_the_data_report_counts_every_ranks_samples(tokenizer):
    ranks = [_stream(tokenizer, (rank, 2)) for rank in range(2)]
    for batches in ranks:
        _locations(batches, 3)
    report = ranks[0].stream.report([ranks[1].state_dict()])
    assert sum(report["seen"].values()) == 6
    assert sum(report["seen_by_dataset"].values()) == 6
