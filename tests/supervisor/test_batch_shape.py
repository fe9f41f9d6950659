"""The micro-batch shapes `training.auto_micro_batch` lowers: the arithmetic, and their record in the run folder."""

from __future__ import annotations

import pytest

from omni_runner.run.batch_shape import (
    SHAPES_FILE,
    BatchShapeError,
    read_batch_shapes,
    smaller_shape,
    stage_at_step,
    with_batch_shapes,
    write_batch_shape,
)


@pytest.mark.parametrize(("shape", "smaller"), [
    ((8, 1), (4, 2)), ((2, 3), (1, 6)), ((6, 2), (3, 4)), ((3, 2), (1, 6)), ((9, 1), (3, 3)), ((1, 8), None),
])
def test_the_micro_batch_halves_as_near_as_keeps_the_global_batch_exact(shape, smaller):
    assert smaller_shape(*shape) == smaller
    if smaller:
        assert smaller[0] * smaller[1] == shape[0] * shape[1]


def test_the_stage_of_a_step_counts_completed_steps():
    stages = [{"max_steps": 3}, {"max_steps": 2}]
    assert [stage_at_step(stages, step) for step in range(6)] == [0, 0, 0, 1, 1, 1]


def test_a_recorded_shape_replaces_only_its_stages_plan(tmp_path):
    write_batch_shape(tmp_path, 1, 2, 8)
    stages = [{"name": "a", "micro_batch": 4, "grad_accum": 4}, {"name": "b", "micro_batch": 4, "grad_accum": 4}]
    assert with_batch_shapes(stages, read_batch_shapes(tmp_path)) == [
        {"name": "a", "micro_batch": 4, "grad_accum": 4}, {"name": "b", "micro_batch": 2, "grad_accum": 8}]
    assert read_batch_shapes(tmp_path / "elsewhere") == {}


@pytest.mark.parametrize("content", ["{not json", '{"stages": [1, 2]}', '["stages"]', '{"stages": {"0": {}}}'])
def test_an_unreadable_record_is_an_error_saying_how_to_recover(tmp_path, content):
    (tmp_path / SHAPES_FILE).write_text(content)
    with pytest.raises(BatchShapeError, match="delete it to train with the plan's micro-batches"):
        read_batch_shapes(tmp_path)
