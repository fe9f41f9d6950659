"""Turn run events into lines a person reads: the live progress of `omni-run RECIPE` and `omni-run logs`.

Three renderings of the same events: on a terminal one status line that updates in place (with
state changes, warnings and checkpoints printed above it), plain lines for logs and pipes, and the
events themselves as JSON lines for machines.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable
from typing import Any, TextIO

MODES = ("tty", "plain", "json")


def format_duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds < 0:
        return "--"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _number(value: Any, spec: str) -> str:
    return format(value, spec) if isinstance(value, (int, float)) else str(value)


def format_step(event: dict[str, Any]) -> str:
    total = event.get("total_steps")
    parts = [f"step {event.get('step')}/{total}" if total else f"step {event.get('step')}"]
    if "loss" in event:
        parts.append(f"loss {_number(event['loss'], '.4f')}")
    if "tokens_per_s" in event:
        parts.append(f"{_number(event['tokens_per_s'], ',.0f')} tok/s")
    if "lr" in event:
        parts.append(f"lr {_number(event['lr'], '.2e')}")
    parts.append(f"ETA {format_duration(event.get('eta_s'))}")
    return "  ".join(parts)


def format_event(event: dict[str, Any]) -> str | None:
    """One human line for an event, or None for events too frequent to list (telemetry)."""
    kind = event.get("type")
    if kind == "step":
        return format_step(event)
    if kind == "state":
        detail = f" ({event['detail']})" if event.get("detail") else ""
        return f"state {event.get('from')} → {event.get('to')}: {event.get('reason')}{detail}"
    if kind == "checkpoint":
        return f"checkpoint {event.get('path')} ({event.get('reason')}, {_number(event.get('seconds', 0), '.1f')} s)"
    if kind in ("warning", "error"):
        return f"{kind}: {event.get('message')}"
    if kind == "eval":
        return f"eval {format_eval(event)}"
    if kind == "run_start":
        resumed = f", resumed from {event['resumed_from']}" if event.get("resumed_from") else ""
        return f"run {event.get('name')} started: {event.get('total_steps')} steps{resumed}"
    if kind == "run_end":
        detail = f" ({event['detail']})" if event.get("detail") else ""
        return f"run {event.get('state')}: {event.get('reason')}{detail}"
    if kind == "exit":
        suggestion = f"\n  → {event['suggestion']}" if event.get("suggestion") else ""
        return f"trainer exit [{event.get('cause')}]: {event.get('explanation')}{suggestion}"
    if kind == "restart":
        shape = (f" with micro_batch {event['micro_batch']}, grad_accum {event.get('grad_accum')}"
                 if event.get("micro_batch") else "")
        return (f"restarting (attempt {event.get('attempt')}) from {event.get('checkpoint') or 'the newest valid checkpoint'}"
                f"{shape}")
    if kind == "data":
        skipped = sum((event.get("skipped") or {}).values())
        return f"data: {skipped} bad records skipped" if skipped else None
    return None


def stamp(event: dict[str, Any]) -> str:
    return time.strftime("%H:%M:%S", time.localtime(event.get("t", 0)))


class ProgressPrinter:
    """Prints events as they arrive, in one of MODES."""

    def __init__(self, mode: str, stream: TextIO = sys.stdout) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.mode = mode
        self.stream = stream
        self._status_line = ""

    def feed(self, events: Iterable[dict[str, Any]]) -> None:
        for event in events:
            if self.mode == "json":
                self._write(json.dumps(event) + "\n")
                continue
            line = format_event(event)
            if line is None:
                continue
            if self.mode == "tty" and event.get("type") == "step":
                self._status_line = line
                self._write("\r\x1b[2K" + line)
            else:
                self._write(("\r\x1b[2K" if self.mode == "tty" else "") + f"{stamp(event)} {line}\n")
                if self.mode == "tty" and self._status_line:
                    self._write(self._status_line)
        self.stream.flush()

    def close(self) -> None:
        if self.mode == "tty" and self._status_line:
            self._write("\n")
            self._status_line = ""
        self.stream.flush()

    def _write(self, text: str) -> None:
        self.stream.write(text)


def format_eval(event: dict[str, Any]) -> str:
    """`xlam-heldout (tool-calling): tool_call_exact_match 0.700, n 100` for an `eval` event; an
    `omni-run eval` suite's reads `function-calling xlam-heldout: ast_match 0.700 (base 0.100)`. Runs from
    before the `dataset` field named the data set in `capability`; their events read as before."""
    dataset, capability = event.get("dataset"), event.get("capability")
    subject = str(capability or "") if dataset is None else (f"{dataset} ({capability})" if capability else str(dataset))
    if event.get("suite"):
        subject = f"{event['suite']} {subject}"
    base = event.get("base_metrics") or {}

    def shown(value: Any) -> str:
        return f"{value:.3f}" if isinstance(value, float) else ("not computed" if value is None else str(value))

    metrics = ", ".join(f"{k} {shown(v)}" + (f" (base {shown(base[k])})" if k in base else "")
                        for k, v in (event.get("metrics") or {}).items())
    return f"{subject}: {metrics}"
