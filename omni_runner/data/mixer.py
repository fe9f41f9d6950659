"""The seeded, resumable data mixer: which capability, which data set, which record comes next.

Each draw picks a capability with probability proportional to its recipe weight, then one of that
capability's data sets uniformly, then that data set's next record in its current epoch order.
Every data set cycles through its own records; each epoch has a fresh order, a permutation seeded by
(seed, data set, epoch). Randomness is derived from (seed, draw number) instead of a running
generator, so the whole state is a small JSON dict (draw count and one cursor per data set) and
resuming from it reproduces exactly the same sequence. Pure Python: no torch, no I/O.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Draw:
    capability: str
    dataset: str
    position: int  # index into the data set's good records
    epoch: int


class Mixer:
    """Deterministic weighted sampling over capabilities and their data sets.

    `weights`: capability -> weight (> 0); `datasets`: capability -> data set names;
    `sizes`: data set name -> number of usable records.
    """

    def __init__(
        self, weights: dict[str, float], datasets: dict[str, list[str]], sizes: dict[str, int], seed: int
    ) -> None:
        self.capabilities = [c for c in weights if weights[c] > 0 and datasets.get(c)]
        if not self.capabilities:
            raise ValueError("no capability with a positive weight and at least one data set")
        self.weights = [float(weights[c]) for c in self.capabilities]
        self.datasets = {c: list(datasets[c]) for c in self.capabilities}
        self.sizes = dict(sizes)
        for capability in self.capabilities:
            for name in self.datasets[capability]:
                if self.sizes.get(name, 0) <= 0:
                    raise ValueError(f"data set '{name}' of capability '{capability}' has no records")
        self.seed = seed
        self.draws = 0
        self.cursors: dict[str, list[int]] = {n: [0, 0] for c in self.capabilities for n in self.datasets[c]}
        self._orders: dict[str, tuple[int, list[int]]] = {}

    def _order(self, name: str, epoch: int) -> list[int]:
        cached = self._orders.get(name)
        if cached is None or cached[0] != epoch:
            order = list(range(self.sizes[name]))
            random.Random(f"{self.seed}/{name}/{epoch}").shuffle(order)
            self._orders[name] = cached = (epoch, order)
        return cached[1]

    def next(self) -> Draw:
        rng = random.Random(f"{self.seed}/draw/{self.draws}")
        capability = rng.choices(self.capabilities, weights=self.weights)[0]
        name = rng.choice(self.datasets[capability])
        epoch, offset = self.cursors[name]
        position = self._order(name, epoch)[offset]
        offset += 1
        self.cursors[name] = [epoch + 1, 0] if offset >= self.sizes[name] else [epoch, offset]
        self.draws += 1
        return Draw(capability, name, position, epoch)

    def mixture(self) -> dict[str, dict[str, Any]]:
        """The effective mixture: each capability's probability and its data sets' shares of all draws."""
        total = sum(self.weights)
        return {
            capability: {
                "probability": weight / total,
                "datasets": {n: weight / total / len(self.datasets[capability]) for n in self.datasets[capability]},
            }
            for capability, weight in zip(self.capabilities, self.weights)
        }

    def state_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "draws": self.draws, "cursors": {n: list(c) for n, c in self.cursors.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["seed"] != self.seed:
            raise ValueError(f"mixer state was saved with seed {state['seed']}, this run uses {self.seed}")
        unknown = set(self.cursors) - set(state["cursors"])
        if unknown:
            raise ValueError(f"mixer state has no position for data set(s) {', '.join(sorted(unknown))}")
        self.draws = int(state["draws"])
        self.cursors = {n: [int(e), int(o)] for n, (e, o) in state["cursors"].items() if n in self.cursors}
