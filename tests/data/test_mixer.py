"""The mixer: deterministic, weights respected, exact resume from a small JSON state."""

from __future__ import annotations

import json
from collections import Counter

from omni_runner.data.mixer import Mixer


def make(seed: int = 7) -> Mixer:
    return Mixer(
        weights={"tool-calling": 3.0, "cot": 1.0},
        datasets={"tool-calling": ["xlam", "hermes"], "cot": ["cot"]},
        sizes={"xlam": 50, "hermes": 20, "cot": 30},
        seed=seed,
    )


def test_same_seed_gives_the_same_sequence_and_another_seed_does_not():
    assert [make().next() for _ in range(300)] == [make().next() for _ in range(300)]
    assert [make().next() for _ in range(300)] != [make(8).next() for _ in range(300)]


def test_capability_weights_and_uniform_datasets_are_respected():
    mixer = make()
    draws = [mixer.next() for _ in range(8000)]
    capabilities = Counter(d.capability for d in draws)
    assert abs(capabilities["tool-calling"] / 8000 - 0.75) < 0.02
    datasets = Counter(d.dataset for d in draws)
    assert abs(datasets["xlam"] / 8000 - 0.375) < 0.02 and abs(datasets["hermes"] / 8000 - 0.375) < 0.02


def test_each_epoch_visits_every_record_once_in_a_new_order():
    mixer = make()
    positions: dict[int, list[int]] = {0: [], 1: []}
    while len(positions[1]) < 20:
        draw = mixer.next()
        if draw.dataset == "hermes":
            positions[draw.epoch].append(draw.position)
    assert sorted(positions[0]) == sorted(positions[1]) == list(range(20))
    assert positions[0] != positions[1]


def test_resuming_from_a_saved_state_reproduces_the_rest_exactly():
    uninterrupted = make()
    expected = [uninterrupted.next() for _ in range(500)]
    first = make()
    for _ in range(123):
        first.next()
    state = json.loads(json.dumps(first.state_dict()))
    resumed = make()
    resumed.load_state_dict(state)
    assert [resumed.next() for _ in range(377)] == expected[123:]
    assert len(json.dumps(state)) < 300


def test_effective_mixture_lists_probabilities_per_capability_and_dataset():
    mixture = make().mixture()
    assert mixture["tool-calling"] == {"probability": 0.75, "datasets": {"xlam": 0.375, "hermes": 0.375}}
    assert mixture["cot"]["probability"] == 0.25
