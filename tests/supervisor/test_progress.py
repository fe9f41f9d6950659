"""The progress lines `omni-run RECIPE` and `omni-run logs` print for events."""

from __future__ import annotations

import io
import json

from omni_runner.run.progress import ProgressPrinter, format_event

STEP = {"t": 0.0, "type": "step", "step": 12, "total_steps": 40, "loss": 1.23456, "tokens_per_s": 1534.2,
        "lr": 1e-4, "eta_s": 95}


def test_a_step_line_shows_step_total_loss_throughput_and_eta():
    assert format_event(STEP) == "step 12/40  loss 1.2346  1,534 tok/s  lr 1.00e-04  ETA 1m35s"


def test_state_changes_carry_their_reason_and_detail():
    event = {"type": "state", "step": 5, "from": "running", "to": "cooling", "reason": "thermal",
             "detail": "GPU 0 at 88 °C, limit 83 °C"}
    assert format_event(event) == "state running → cooling: thermal (GPU 0 at 88 °C, limit 83 °C)"


def test_an_eval_line_names_the_data_set_and_the_capability_that_scored_it():
    event = {"type": "eval", "step": 200, "dataset": "xlam-heldout", "capability": "tool-calling",
             "metrics": {"tool_call_exact_match": 0.7, "n": 100}}
    assert format_event(event) == "eval xlam-heldout (tool-calling): tool_call_exact_match 0.700, n 100"


def test_an_eval_event_from_an_older_run_still_reads():
    event = {"type": "eval", "step": 40, "capability": "xlam-heldout", "metrics": {"n": 3}}
    assert format_event(event) == "eval xlam-heldout: n 3"


def test_telemetry_is_too_frequent_to_print():
    assert format_event({"type": "telemetry", "step": 1}) is None


def test_plain_mode_prints_one_line_per_event_without_terminal_codes():
    out = io.StringIO()
    ProgressPrinter("plain", out).feed([STEP, STEP])
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "\x1b" not in out.getvalue()


def test_json_mode_prints_the_events_themselves():
    out = io.StringIO()
    ProgressPrinter("json", out).feed([STEP])
    assert json.loads(out.getvalue()) == STEP


def test_tty_mode_rewrites_one_status_line_in_place():
    out = io.StringIO()
    printer = ProgressPrinter("tty", out)
    printer.feed([STEP, {**STEP, "step": 13}])
    assert out.getvalue().count("\r\x1b[2K") == 2 and "\n" not in out.getvalue()
