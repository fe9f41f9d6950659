"""`omni-run eval TARGET --suite NAME[,NAME] [--compare base] [--checkpoint step-N] [--json]`: score a
run's final model (or a checkpoint of it, or any model folder) on evaluation suites, and with
`--compare base` the recipe's base model on the same records, base, tuned and the difference side by
side. A run keeps each suite's results in `RUN/eval/<suite>.json` and appends an `eval` event per
data set to its `events.jsonl`. The suites are listed in `omni_runner/eval/suites.py`
(docs/evaluation.md); one whose inputs the model cannot take is refused before anything loads.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

from omni_runner.capabilities import DATASET_FORMATS
from omni_runner.commands.run_options import add_runs_dir_option
from omni_runner.paths import BUILTIN_PREFIX, is_builtin

TINY_CLIP = f"{BUILTIN_PREFIX}tiny-clip"

HELP = "Score a run's model (or a model folder) on evaluation suites, optionally against its base model."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from omni_runner.eval.suites import SUITES

    parser.add_argument("target", metavar="TARGET", help="a run folder or name (its final/ model), or a model folder")
    parser.add_argument("--suite", required=True, metavar="NAME[,NAME]", help=f"suites to run: {', '.join(SUITES)}")
    parser.add_argument("--compare", choices=["base"], default=None,
                        help="also score the recipe's base model and print base, tuned and the difference")
    parser.add_argument("--checkpoint", metavar="step-N", default=None, help="score this checkpoint of the run instead of final/")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--data", metavar="PATH", default=None,
                        help="score the records of this file (or builtin: data) instead of the recipe's eval data sets (with --format)")
    parser.add_argument("--format", choices=DATASET_FORMATS, default=None, help="the format of --data's records")
    parser.add_argument("--max-samples", type=int, default=None, help="records per data set (default: the recipe's eval.max_samples, else 16)")
    parser.add_argument("--max-new-tokens", type=int, default=None,
                        help="reply length limit (default: the recipe's eval.max_new_tokens, else 64)")
    parser.add_argument("--tasks", metavar="NAME[,NAME]", default=None, help="lm-eval: the tasks (or groups) to run")
    parser.add_argument("--include", metavar="DIR", action="append", default=[],
                        help="lm-eval: a folder of task YAML files (repeatable); with it, only these tasks are indexed")
    parser.add_argument("--num-fewshot", type=int, default=None, help="lm-eval: few-shot examples per prompt (default: the task's)")
    parser.add_argument("--clip", metavar="PATH", default=None,
                        help=f"generation: a local CLIP model folder to score images with ({TINY_CLIP}: the tiny random one)")
    parser.add_argument("--steps", type=int, default=28, help="generation: denoising steps per image (default 28)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N or mps (default: the best available)")
    add_runs_dir_option(parser)


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def run(args: argparse.Namespace) -> int:
    from omni_runner.eval.suites import SuiteError, parse_suites, refusal
    from omni_runner.eval.target import TargetError, modalities, resolve_target

    if (args.data is None) != (args.format is None):
        return _fail("--data and --format go together: the file's records and their format")
    if args.data is not None and not is_builtin(args.data) and not Path(args.data).exists():
        return _fail(f"--data {args.data}: no such file or folder")
    if args.clip is not None and args.clip != TINY_CLIP and not Path(args.clip).is_dir():
        return _fail(f"--clip {args.clip}: no such folder (give a local CLIP model folder, e.g. a download of "
                     f"openai/clip-vit-base-patch32, or {TINY_CLIP})")
    try:
        suites = parse_suites(args.suite)
        target = resolve_target(args.target, args.checkpoint, args.runs_dir)
        what = f"the model {target.describe()}"
        refusals = [refusal(suite, modalities(target), what) for suite in suites]
        if args.compare:
            base = modalities(target, base=True)
            refusals += [refusal(suite, base, "the base model") for suite in suites]
    except (SuiteError, TargetError) as exc:
        return _fail(str(exc))
    refused = [reason for reason in refusals if reason]
    if refused:
        for reason in refused:
            print(f"error: {reason}", file=sys.stderr)
        return 1

    from omni_runner.models.load import ModelLoadError

    failed: dict[str, str] = {}
    # With --json, standard output holds the one JSON document: what the libraries print while the
    # models load and run (DeepSpeed's accelerator notice, say) goes to standard error.
    chatter = contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext()
    try:
        with chatter:
            reports = _evaluate(args, suites, target, failed)
    except (TargetError, ModelLoadError) as exc:
        return _fail(str(exc))
    _show(reports, args.json)
    for name, reason in failed.items():
        print(f"error: suite {name}: {reason}", file=sys.stderr)
    return 1 if failed else 0


def _clip_folder(clip: str | None) -> str | None:
    """`--clip` as a folder: the tiny CLIP is built into the cache on first use."""
    if clip != TINY_CLIP:
        return clip
    from omni_runner.models.tiny_encoders import ensure_tiny_encoder

    return str(ensure_tiny_encoder(TINY_CLIP.removeprefix(BUILTIN_PREFIX)))


def _context_settings(args: argparse.Namespace, recipe: dict[str, Any] | None) -> dict[str, Any]:
    settings = (recipe or {}).get("eval") or {}
    return {
        "max_samples": args.max_samples or int(settings.get("max_samples") or 16),
        "max_new_tokens": args.max_new_tokens or int(settings.get("max_new_tokens") or 64),
        "data": (args.data, args.format) if args.data else None,
    }


def _evaluate(args: argparse.Namespace, suites: list[Any], target: Any, failed: dict[str, str]) -> list[dict[str, Any]]:
    """Each suite on the target, then (one model in memory at a time) on the base; the reports kept.
    A suite that cannot run (no records to score, a task without data) goes to `failed` with the
    reason; the others still run and are kept."""
    import gc

    from omni_runner.eval.results import emit_events, suite_report, write_suite
    from omni_runner.eval.suites import SuiteContext, SuiteError, run_suite
    from omni_runner.eval.target import load_base, load_target

    options = {"tasks": args.tasks, "include": args.include, "num_fewshot": args.num_fewshot, "clip": _clip_folder(args.clip),
               "steps": args.steps, "model_path": target.model_path, "load_base": lambda: load_base(target, args.device)}
    settings = _context_settings(args, target.recipe)

    def score(loaded: Any, chosen: list[Any], is_base: bool) -> dict[str, dict[str, dict[str, Any]]]:
        context = SuiteContext(loaded, target.recipe, target.recipe_dir, target.run.path if target.run else None,
                               **settings, options={**options, "is_base": is_base})
        scored = {}
        for suite in chosen:
            try:
                scored[suite.name] = run_suite(suite, context)
            except SuiteError as exc:
                failed[suite.name] = f"{exc} (on the base model)" if is_base else str(exc)
        return scored

    decoders = any(suite.name == "generation" for suite in suites)
    loaded = load_target(target, args.device, decoders=decoders)
    tuned = score(loaded, suites, is_base=False)
    del loaded
    gc.collect()
    scored = [suite for suite in suites if suite.name in tuned]
    base = score(load_base(target, args.device), scored, is_base=True) if args.compare and scored else {}

    reports = []
    for suite in scored:
        report = suite_report(suite.name, target.describe(), target.step, tuned[suite.name], base.get(suite.name))
        if target.run is not None:
            report["file"] = str(write_suite(target.run.eval, report))
            emit_events(target.run.events, report)
        reports.append(report)
    return reports


def _show(reports: list[dict[str, Any]], as_json: bool) -> None:
    from omni_runner.eval.results import without_details

    if not reports:
        return
    if as_json:
        trimmed = [without_details(report) for report in reports]
        print(json.dumps(trimmed[0] if len(trimmed) == 1 else {"suites": trimmed}, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    from omni_runner.eval.results import table_rows

    console = Console()
    for report in reports:
        compared = "base" in report
        table = Table(title=f"{report['suite']}: {report['target']}" + (f", step {report['step']}" if report["step"] else ""))
        for column in ("data set", "metric", "n", *(("base", "tuned", "difference") if compared else ("value",))):
            table.add_column(column, justify="left" if column in ("data set", "metric") else "right")
        for name, metric, n, before, value, change in table_rows(report):
            values = (before, value, change) if compared else (value,)
            table.add_row(name, metric, n, *(_shown(v, signed=(compared and i == 2)) for i, v in enumerate(values)))
        console.print(table)
        for name, entry in report["results"].items():
            for key in ("note", "failures", "skipped"):
                if entry.get(key):
                    console.print(f"  {name} {key}: {entry[key] if key != 'skipped' else len(entry[key])}", markup=False)
        console.print(f"  results: {report['file']}" if report.get("file")
                      else "  results not kept: a model folder has no run folder (--json prints them)", markup=False)


def _shown(value: float | None, *, signed: bool = False) -> str:
    if value is None:
        return "not computed"
    return f"{value:+.3f}" if signed else f"{value:.3f}"
