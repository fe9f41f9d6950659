"""What rank 0 tells the other ranks at a step boundary, and how they act on it (the order, not the transport:
tests/distributed runs it over real processes)."""

from __future__ import annotations

from dataclasses import dataclass, field

from omni_runner.control.across_ranks import HEARTBEAT_S, SharedBoundary
from omni_runner.train.ranks import Ranks


@dataclass(frozen=True)
class ScriptedRanks(Ranks):
    """Rank 1 of 2 whose broadcasts deliver `orders` one by one; rank 0's broadcasts are recorded."""

    orders: list = field(default_factory=list)
    sent: list = field(default_factory=list)

    def broadcast(self, value):
        if self.rank == 0:
            self.sent.append(value)
            return value
        return self.orders.pop(0)


def test_a_follower_saves_on_each_checkpoint_order_ignores_heartbeats_and_continues():
    saved = []
    ranks = ScriptedRanks(rank=1, world_size=2, orders=[("checkpoint", "signal"), "wait", "wait", "continue"])
    assert SharedBoundary(ranks, controller=None).at_step_boundary(4, saved.append) is True
    assert saved == ["signal"]
    assert ranks.orders == []


def test_a_follower_stops_when_told_to():
    ranks = ScriptedRanks(rank=1, world_size=2, orders=[("checkpoint", "stop"), "stop"])
    saved = []
    assert SharedBoundary(ranks, controller=None).at_step_boundary(4, saved.append) is False
    assert saved == ["stop"]


def test_rank_0_sends_a_heartbeat_at_most_once_a_minute_while_it_waits():
    now = [0.0]
    ranks = ScriptedRanks(rank=0, world_size=2)
    boundary = SharedBoundary(ranks, controller=None, clock=lambda: now[0])
    for t in (1.0, HEARTBEAT_S - 1, HEARTBEAT_S, HEARTBEAT_S + 1, 2 * HEARTBEAT_S):
        now[0] = t
        boundary._heartbeat()
    assert ranks.sent == ["wait", "wait"]
