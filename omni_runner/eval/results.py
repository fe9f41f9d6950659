"""What `omni-run eval` keeps and shows: each suite's results (tuned, and base with `--compare base`),
the difference per metric, `RUN/eval/<suite>.json`, and one `eval` event per data set in the run's
`events.jsonl` (the TUI's log and `omni-run logs` show them).

A suite result maps each data set (or lm-eval task) to its entry; an entry's metrics are its float
values (None: not computed, with a `note` saying why); `n` counts the records scored, and other keys
(`failures`, `samples`, `skipped`) are details kept in the file. Pure, except `write_suite` and
`emit_events`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

EVENT_SOURCE = "omni-run eval"
_DETAILS = ("samples",)  # kept in the file, left out of --json and events: one line per record


def metrics_of(entry: dict[str, Any]) -> dict[str, float | None]:
    """An entry's metrics: its float (or not computed: None) values, `n` and counts aside."""
    return {key: value for key, value in entry.items()
            if key != "n" and (value is None or (isinstance(value, float) and not isinstance(value, bool)))}


def difference(base: dict[str, dict[str, Any]], tuned: dict[str, dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Tuned minus base for every metric both have (None where either was not computed)."""
    result = {}
    for name, entry in tuned.items():
        before = metrics_of(base.get(name, {}))
        result[name] = {metric: (value - before[metric] if value is not None and before.get(metric) is not None else None)
                        for metric, value in metrics_of(entry).items() if metric in before}
    return result


def suite_report(suite: str, target: str, step: int | None, tuned: dict[str, dict[str, Any]],
                 base: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The whole result of one suite: what `RUN/eval/<suite>.json` holds."""
    report: dict[str, Any] = {"suite": suite, "target": target, "step": step, "results": tuned}
    if base is not None:
        report["base"] = base
        report["difference"] = difference(base, tuned)
    return report


def without_details(report: dict[str, Any]) -> dict[str, Any]:
    """The report without per-record samples (what `--json` prints)."""
    def trimmed(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {name: {k: v for k, v in entry.items() if k not in _DETAILS} for name, entry in results.items()}

    return {key: trimmed(value) if key in ("results", "base") else value for key, value in report.items()}


def table_rows(report: dict[str, Any]) -> list[tuple[str, str, str, float | None, float | None, float | None]]:
    """(data set, metric, n, base, tuned, difference) for each metric; base and difference None
    without a comparison."""
    rows = []
    base = report.get("base") or {}
    for name, entry in report["results"].items():
        change = (report.get("difference") or {}).get(name, {})
        for metric, value in metrics_of(entry).items():
            before = metrics_of(base.get(name, {})).get(metric)
            rows.append((name, metric, str(entry.get("n", "")), before, value, change.get(metric)))
    return rows


def write_suite(eval_dir: Path, report: dict[str, Any]) -> Path:
    eval_dir.mkdir(parents=True, exist_ok=True)
    path = eval_dir / f"{report['suite']}.json"
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    temporary.replace(path)
    return path


def emit_events(events_path: Path, report: dict[str, Any]) -> None:
    """One `eval` event per data set: its metrics, the base's with a comparison, the suite's name."""
    from omni_runner.run.events import EventLog

    base = report.get("base")
    with EventLog(events_path) as log:
        for name, entry in report["results"].items():
            extra = {"base_metrics": metrics_of(base.get(name, {}))} if base is not None else {}
            log.emit("eval", report["step"] or 0, dataset=name, capability=None, suite=report["suite"],
                     metrics=metrics_of(entry), source=EVENT_SOURCE, **extra)
