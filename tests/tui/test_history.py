"""Opening a big events file: a recent window first, the older step history merged in after."""

from __future__ import annotations

import json

from omni_tui.source import RunSource
from omni_tui.state import MAX_POINTS, RunView

from omni_runner.run.rundir import RunDir
from omni_runner.run.tail import EventTail, recent_start_offset, scan_step_events


def write_events(path, steps: int) -> None:
    with open(path, "w") as out:
        out.write(json.dumps({"t": 0, "type": "run_start", "step": 0, "name": "big", "total_steps": steps}) + "\n")
        for step in range(1, steps + 1):
            out.write(json.dumps({"t": step, "type": "step", "step": step, "loss": float(step),
                                  "capability_losses": {"cot": float(step)}}, separators=(",", ":")) + "\n")
            out.write(json.dumps({"t": step, "type": "telemetry", "step": step, "gpus": []}, separators=(",", ":")) + "\n")


def test_recent_window_starts_on_a_whole_line(tmp_path):
    path = tmp_path / "events.jsonl"
    write_events(path, 2000)
    offset = recent_start_offset(path, 10_000)
    batch = EventTail(path, start_offset=offset).read_new()
    assert offset > 0 and batch.corrupt == 0 and batch.events[-1]["step"] == 2000


def test_scan_reads_only_step_events_before_the_window(tmp_path):
    path = tmp_path / "events.jsonl"
    write_events(path, 100)
    offset = recent_start_offset(path, 2_000)
    scanned = list(scan_step_events(path, offset, chunk_bytes=333))
    assert {e["type"] for e in scanned} == {"step"}
    window = EventTail(path, start_offset=offset).read_new().events
    first_step_in_window = next(e["step"] for e in window if e["type"] == "step")
    assert [e["step"] for e in scanned] == list(range(1, first_step_in_window))


def test_whole_history_is_bounded_and_in_step_order_after_the_merge(tmp_path):
    (tmp_path / "plan.json").write_text("{}")
    write_events(tmp_path / "events.jsonl", 20_000)
    source = RunSource(RunDir(tmp_path), window_bytes=50_000)
    view = source.apply_new(source.fresh_view(), source.tail.read_new())
    recent_points = len(view.loss_history)
    view.merge_older(source.older_history())
    steps = view.loss_history.steps
    assert len(steps) < MAX_POINTS and len(steps) > recent_points
    assert steps == sorted(steps) and steps[0] < 50 and steps[-1] > 19_900
    assert view.started_t == 0 and view.step == 20_000
    assert view.capability_history["cot"].steps == sorted(view.capability_history["cot"].steps)


def test_a_small_file_needs_no_background_scan(tmp_path):
    (tmp_path / "plan.json").write_text("{}")
    write_events(tmp_path / "events.jsonl", 10)
    assert RunSource(RunDir(tmp_path)).older_history() is None
    assert isinstance(RunSource(RunDir(tmp_path)).fresh_view(), RunView)


async def test_dashboard_paints_the_recent_window_then_merges_the_older_history(tmp_path):
    from omni_tui.app import OmniTUI

    (tmp_path / "plan.json").write_text("{}")
    write_events(tmp_path / "events.jsonl", 20_000)  # about 2.6 MB: more than the first window
    app = OmniTUI(run=RunDir(tmp_path), clock=lambda: 30_000.0, follow=False)
    async with app.run_test() as pilot:
        screen = app.screen
        assert not screen.history_complete and screen.view.loss_history.steps[0] > 1_000
        for _ in range(100):
            await pilot.pause(0.1)
            if screen.history_complete:
                break
        assert screen.history_complete and screen.view.loss_history.steps[0] < 50
