"""What each rank takes from a checkpoint: its own shard's position, or the furthest one on another world size."""

from __future__ import annotations

from omni_runner.train.checkpoint import CheckpointContents, rank_share


def _position(draws: int) -> dict:
    return {"mixer": {"seed": 1, "draws": draws, "cursors": {}}, "unrenderable": {}, "seen": {}, "seen_by_dataset": {}}


def _checkpoint(world_size: int, draws: list[int]) -> CheckpointContents:
    state = {"progress": {"data": _position(draws[0])}}
    if world_size > 1:
        state.update(world_size=world_size, rank_data=[_position(d) for d in draws])
    return CheckpointContents(weights={}, optimizer={}, scheduler={}, scaler=None, rng={"rank": 0},
                              trainer_state=state, rank_rng=[{"rank": r} for r in range(world_size)] if world_size > 1 else [])


def test_one_process_resumes_its_position_and_generators():
    share = rank_share(_checkpoint(1, [7]), 0, 1)
    assert (share.data["mixer"]["draws"], share.rng, share.note) == (7, {"rank": 0}, None)


def test_each_rank_of_the_same_world_size_resumes_its_own_shard_exactly():
    checkpoint = _checkpoint(2, [9, 10])
    assert [rank_share(checkpoint, r, 2).data["mixer"]["draws"] for r in (0, 1)] == [9, 10]
    assert [rank_share(checkpoint, r, 2).rng for r in (0, 1)] == [{"rank": 0}, {"rank": 1}]
    assert rank_share(checkpoint, 1, 2).note is None


def test_another_world_size_continues_every_rank_from_the_furthest_position_and_says_so():
    checkpoint = _checkpoint(2, [9, 10])
    shares = [rank_share(checkpoint, r, 3) for r in range(3)]
    assert {s.data["mixer"]["draws"] for s in shares} == {10}
    assert all(s.rng is None for s in shares)
    assert "written by 2 process(es) and this run has 3" in shares[0].note
    assert rank_share(_checkpoint(1, [5]), 1, 2).data["mixer"]["draws"] == 5
