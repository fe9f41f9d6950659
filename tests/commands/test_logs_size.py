"""`omni-run logs` on a huge events.jsonl: the last lines by default, read backwards from the end in
bounded memory and time; `--from-start` streams every event a chunk at a time, losing none at the seams."""

from __future__ import annotations

import argparse
import json
import time
import tracemalloc
from pathlib import Path

import pytest

from omni_runner.commands import logs
from omni_runner.run.tail import start_of_last_lines

pytestmark = pytest.mark.timeout(60)


def step_line(step: int) -> bytes:
    return json.dumps({"t": 1790000000 + step, "type": "step", "step": step, "loss": 1.0 / step}).encode() + b"\n"


def telemetry_line(step: int) -> bytes:
    return json.dumps({"t": 1790000000 + step, "type": "telemetry", "gpus": [], "note": "x" * 60}).encode() + b"\n"


def make_run(tmp_path: Path, steps: int, filler_bytes: int = 0) -> Path:
    """A run folder whose events.jsonl holds `filler_bytes` of telemetry lines, then `steps` steps each
    after a telemetry line."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "plan.json").write_text("{}")
    with open(run / "events.jsonl", "wb") as out:
        filler = telemetry_line(0) * 100_000
        out.writelines(filler for _ in range(filler_bytes // len(filler)))
        out.write(b"".join(telemetry_line(step) + step_line(step) for step in range(1, steps + 1)))
    return run


def run_logs(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="omni-run logs")
    logs.add_arguments(parser)
    return logs.run(parser.parse_args(list(argv)))


def printed_steps(output: str) -> list[int]:
    return [json.loads(line)["step"] for line in output.splitlines()]


def test_a_huge_events_file_prints_its_last_lines_in_bounded_memory_and_time(tmp_path, capsys):
    run = make_run(tmp_path, 1_000, filler_bytes=150_000_000)  # about 1.5 million lines
    assert (run / "events.jsonl").stat().st_size > 140_000_000
    tracemalloc.start()
    started = time.monotonic()
    try:
        assert run_logs(str(run), "--json", "--lines", "400") == 0
        elapsed, (_, peak) = time.monotonic() - started, tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    captured = capsys.readouterr()
    assert printed_steps(captured.out) == list(range(801, 1_001))  # 400 lines: 200 steps and their telemetry
    assert "earlier events not shown: from the last 400 lines" in captured.err and "--from-start" in captured.err
    assert elapsed < 5.0  # reading and parsing the whole file takes over 10 s
    assert peak < logs.READ_CHUNK_BYTES + 2_000_000  # one read buffer, not the 150 MB file


def test_from_start_reads_every_event_a_chunk_at_a_time(tmp_path, capsys, monkeypatch):
    run = make_run(tmp_path, 2_000)
    monkeypatch.setattr(logs, "READ_CHUNK_BYTES", 1_000)  # seams inside lines, hundreds of them
    assert run_logs(str(run), "--json", "--from-start") == 0
    captured = capsys.readouterr()
    assert printed_steps(captured.out) == list(range(1, 2_001))
    assert captured.err == ""


def test_a_run_shorter_than_the_default_prints_everything_without_a_note(tmp_path, capsys):
    run = make_run(tmp_path, 50)
    assert run_logs(str(run), "--json") == 0
    captured = capsys.readouterr()
    assert printed_steps(captured.out) == list(range(1, 51)) and captured.err == ""


@pytest.mark.parametrize("content", [b"", b"a\n", b"a\nb\nc\n", b"a\nb\nc", b"\n\n\n", b"ab\ncdef\ng\n" * 300],
                         ids=["empty", "one", "three", "no-final-newline", "blank-lines", "many"])
def test_start_of_last_lines_matches_splitting_the_whole_file(tmp_path, content):
    path = tmp_path / "f"
    path.write_bytes(content)
    lines = content.splitlines(keepends=True)
    for count in (0, 1, 2, 3, 899, 900, 1000):
        for block in (1, 4, 65536):
            assert content[start_of_last_lines(path, count, 1 << 30, block):] == b"".join(lines[-count:] if count else [])


def test_start_of_last_lines_never_reads_back_more_than_its_window(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x" * 100 + b"\n" + b"y" * 50 + b"\n")
    assert start_of_last_lines(path, 5, max_bytes=60) == 101  # the first whole line inside the window
