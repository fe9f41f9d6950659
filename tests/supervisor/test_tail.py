"""The incremental events reader: only new bytes, partial lines kept, corrupt lines counted."""

from __future__ import annotations

import json

from omni_runner.run.tail import EventTail


def _line(step: int) -> bytes:
    return (json.dumps({"t": 1.0, "type": "step", "step": step}) + "\n").encode()


def test_reads_only_what_was_appended_since_the_last_call(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_bytes(_line(1))
    tail = EventTail(path)
    assert [e["step"] for e in tail.read_new().events] == [1]
    with open(path, "ab") as handle:
        handle.write(_line(2))
    assert [e["step"] for e in tail.read_new().events] == [2]
    assert tail.read_new().events == []


def test_a_partial_last_line_waits_for_its_end(tmp_path):
    path = tmp_path / "events.jsonl"
    whole = _line(7)
    path.write_bytes(whole[:10])
    tail = EventTail(path)
    assert tail.read_new().events == []
    with open(path, "ab") as handle:
        handle.write(whole[10:])
    assert [e["step"] for e in tail.read_new().events] == [7]


def test_corrupt_lines_are_counted_and_skipped(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_bytes(_line(1) + b"{not json\n" + b'["no type"]\n' + _line(2))
    batch = EventTail(path).read_new()
    assert [e["step"] for e in batch.events] == [1, 2]
    assert batch.corrupt == 2


def test_a_truncated_or_replaced_file_is_read_again_from_the_start(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_bytes(_line(1) + _line(2))
    tail = EventTail(path)
    tail.read_new()
    path.write_bytes(_line(9))
    batch = tail.read_new()
    assert batch.restarted and [e["step"] for e in batch.events] == [9]


def test_a_missing_file_yields_nothing_yet(tmp_path):
    assert EventTail(tmp_path / "events.jsonl").read_new().events == []
