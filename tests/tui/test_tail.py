"""The incremental events reader: only new bytes, whole lines, corrupt lines counted, restarts noticed."""

from __future__ import annotations

import json
import os

from omni_runner.run.tail import MAX_LINE_BYTES, EventTail, first_event


def line(step: int) -> bytes:
    return (json.dumps({"t": step, "type": "step", "step": step}) + "\n").encode()


def test_a_missing_file_reads_as_nothing_yet(tmp_path):
    batch = EventTail(tmp_path / "events.jsonl").read_new()
    assert batch.events == [] and batch.corrupt == 0 and not batch.restarted


def test_each_read_returns_only_what_was_appended_since_the_last(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_bytes(line(1) + line(2))
    tail = EventTail(path)
    assert [e["step"] for e in tail.read_new().events] == [1, 2]
    assert tail.read_new().events == []
    with open(path, "ab") as out:
        out.write(line(3))
    assert [e["step"] for e in tail.read_new().events] == [3]
    assert tail.offset == path.stat().st_size


def test_a_partial_last_line_waits_for_the_rest_of_it(tmp_path):
    path = tmp_path / "events.jsonl"
    whole = line(2)
    path.write_bytes(line(1) + whole[:7])
    tail = EventTail(path)
    first = tail.read_new()
    assert [e["step"] for e in first.events] == [1] and first.corrupt == 0
    with open(path, "ab") as out:
        out.write(whole[7:])
    assert [e["step"] for e in tail.read_new().events] == [2]


def test_corrupt_lines_are_skipped_and_counted(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_bytes(line(1) + b"{not json\n" + b"[1, 2]\n" + b'{"no_type": 1}\n' + b"\n" + line(2))
    tail = EventTail(path)
    batch = tail.read_new()
    assert [e["step"] for e in batch.events] == [1, 2]
    assert batch.corrupt == 3 and tail.corrupt_total == 3


def test_binary_garbage_lines_are_skipped_and_counted(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_bytes(line(1) + b"\x00\xff\xfe\x89PNG\r\n" + b"\x00" * 64 + b"\n" + line(2))
    batch = EventTail(path).read_new()
    assert [e["step"] for e in batch.events] == [1, 2] and batch.corrupt == 2


def test_an_overlong_line_is_counted_once_and_skipped_not_buffered(tmp_path):
    """A crash can leave a run of NUL bytes with no newline; the reader must not hold it all."""
    path = tmp_path / "events.jsonl"
    path.write_bytes(line(1) + b"\x00" * (3 * MAX_LINE_BYTES) + b"\n" + line(2))
    tail = EventTail(path)
    steps, corrupt = [], 0
    while tail.offset < path.stat().st_size:
        batch = tail.read_new(max_bytes=MAX_LINE_BYTES // 2)
        steps += [e["step"] for e in batch.events]
        corrupt += batch.corrupt
        assert len(tail._partial) <= MAX_LINE_BYTES
    assert steps == [1, 2] and corrupt == 1


def test_a_truncated_file_is_read_again_from_the_start(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_bytes(line(1) + line(2) + line(3))
    tail = EventTail(path)
    tail.read_new()
    path.write_bytes(line(7))
    batch = tail.read_new()
    assert batch.restarted and [e["step"] for e in batch.events] == [7]


def test_a_replaced_file_is_noticed_by_its_inode_even_when_it_is_longer(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_bytes(line(1))
    tail = EventTail(path)
    tail.read_new()
    replacement = tmp_path / "events.jsonl.new"
    replacement.write_bytes(line(10) + line(11) + line(12))
    os.replace(replacement, path)
    batch = tail.read_new()
    assert batch.restarted and [e["step"] for e in batch.events] == [10, 11, 12]


def test_max_bytes_bounds_one_read_and_the_rest_comes_next_time(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(line(step) for step in range(1, 101)))
    tail = EventTail(path)
    steps: list[int] = []
    while (batch := tail.read_new(max_bytes=500)).events:
        steps += [e["step"] for e in batch.events]
    assert steps == list(range(1, 101))


def test_first_event_reads_only_the_first_line(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_bytes(line(1) + b"{broken")
    assert first_event(path) == {"t": 1, "type": "step", "step": 1}
    assert first_event(tmp_path / "missing.jsonl") is None
