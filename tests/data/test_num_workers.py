"""`training.num_workers`: how many processes prepare samples ahead of the step."""

from __future__ import annotations

import pytest

from omni_runner.data.stream import MAX_AUTO_WORKERS, resolve_num_workers


@pytest.mark.parametrize("written", [0, 1, 6])
def test_a_number_is_taken_as_written_on_any_device(written: int) -> None:
    assert resolve_num_workers(written, "cpu", 16) == written
    assert resolve_num_workers(written, "cuda", 2) == written


def test_auto_prepares_on_the_training_thread_on_cpu() -> None:
    assert resolve_num_workers("auto", "cpu", 64) == 0


@pytest.mark.parametrize(("cores", "processes", "workers"), [
    (2, 1, 1),   # one core for the step, one for a worker
    (4, 1, 3),
    (8, 4, 1),   # four training processes share the machine's cores
    (4, 4, 0),   # a core each: no room for a worker
    (1, 1, 0),
])
def test_auto_on_a_gpu_uses_the_cores_beyond_the_training_process(cores: int, processes: int, workers: int) -> None:
    assert resolve_num_workers("auto", "cuda", cores, processes) == workers


def test_auto_starts_at_most_a_few_workers_on_a_big_machine() -> None:
    assert resolve_num_workers("auto", "cuda", 128) == MAX_AUTO_WORKERS
