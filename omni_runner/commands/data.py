"""`omni-run data check RECIPE` and `omni-run data preview RECIPE --capability C -n N`.

`check` reads, adapts and renders every record the recipe's capabilities use and reports counts,
bad records with their locations, token-length statistics and the effective mixture; it exits 1
when a data set passes its `max_bad_fraction`. `preview` shows rendered samples with the trained
(assistant) tokens made visible: highlighted on a terminal, `[[...]]` otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from omni_runner.recipe.options import add_recipe_options

HELP = "Check a recipe's data (counts, bad records, token lengths, mixture) or preview rendered samples."

TRAINED_START, TRAINED_END = "[[", "]]"
HIGHLIGHT_START, HIGHLIGHT_END = "\x1b[1;32m", "\x1b[0m"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = actions.add_parser("check", help="read and render every record; report problems and statistics")
    preview = actions.add_parser("preview", help="show rendered samples with the loss mask visible")
    for sub in (check, preview):
        sub.add_argument("recipe", metavar="RECIPE", type=Path, help="recipe YAML file")
        add_recipe_options(sub)
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    preview.add_argument("--capability", required=True, help="capability whose samples to show")
    preview.add_argument("-n", type=int, default=3, help="number of samples (default 3)")


def _marked(text: str, spans: list[tuple[int, int]], start: str, end: str) -> str:
    pieces, last = [], 0
    for a, b in spans:
        pieces += [text[last:a], start, text[a:b], end]
        last = b
    return "".join(pieces) + text[last:]


def _print_check(report: dict[str, Any]) -> None:
    print(f"seq_len {report['seq_len']}")
    for name, info in report["datasets"].items():
        tokens = info["tokens"]
        lengths = (f"tokens min {tokens['min']} median {tokens['median']:g} p95 {tokens['p95']} max {tokens['max']}"
                   if tokens else "no usable records")
        verdict = "ok" if info["ok"] else f"TOO MANY BAD (limit {info['max_bad_fraction']:g})"
        print(f"{name} ({info['format']}, {info['capability']}): {info['usable']}/{info['records']} usable, "
              f"{info['bad']} bad ({info['bad_fraction']:.1%}) {verdict}")
        print(f"  {info['path']}")
        print(f"  {lengths}")
    if report["bad_records"]:
        print("bad records:")
        for bad in report["bad_records"]:
            print(f"  {bad['dataset']}: {bad['location']}: {bad['reason']}")
    print("mixture (share of draws):")
    for capability, entry in report["mixture"].items():
        shares = ", ".join(f"{n} {p:.1%}" for n, p in entry["datasets"].items())
        print(f"  {capability} {entry['probability']:.1%}: {shares}")


def run(args: argparse.Namespace) -> int:
    from omni_runner.data.conversation import DataError
    from omni_runner.recipe import RecipeError, load_recipe

    try:
        recipe = load_recipe(args.recipe, overrides=args.overrides, capabilities=args.capabilities)
        from omni_runner.models.hf_env import offline_hub

        offline_hub()
        from omni_runner.data.check import check_data, load_tokenizer, preview_samples

        base_dir = Path(recipe.source).parent
        tokenizer = load_tokenizer(recipe.data, base_dir)
        if args.action == "check":
            report = check_data(recipe.data, base_dir, tokenizer)
            if args.json:
                print(json.dumps(report, indent=2))
            else:
                _print_check(report)
            return 0 if report["ok"] else 1
        tty = sys.stdout.isatty()
        start, end = (HIGHLIGHT_START, HIGHLIGHT_END) if tty else (TRAINED_START, TRAINED_END)
        for location, sample in preview_samples(recipe.data, base_dir, tokenizer, args.capability, args.n):
            print(f"--- {location}")
            if isinstance(sample, Exception):
                print(f"(bad record: {sample})")
            else:
                print(_marked(sample.text, sample.trained_spans, start, end))
                print(f"({len(sample.input_ids)} tokens, {sample.trained_tokens} trained)")
        return 0
    except (RecipeError, DataError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
