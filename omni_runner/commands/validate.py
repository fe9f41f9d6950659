"""`omni-run validate FILE...`: check recipes and report every problem with file:line:col.

Exit status: 0 when every recipe is valid (warnings allowed), 1 when one is not, 2 for usage
errors (argparse). `--format github` prints workflow annotations, so a CI job marks the lines.
"""

from __future__ import annotations

import argparse
import json

from omni_runner.recipe import Diagnostic, RecipeError, load_recipe
from omni_runner.recipe.errors import ERROR, WARNING
from omni_runner.recipe.options import add_recipe_options

HELP = "Check recipes against the schema and the planner; report every problem with file:line:col and a hint."

EXIT_VALID = 0
EXIT_INVALID = 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="recipe YAML files")
    parser.add_argument(
        "--format",
        choices=("human", "json", "github"),
        default="human",
        help="human (compiler style, default), json, or github (workflow annotations)",
    )
    add_recipe_options(parser)


def run(args: argparse.Namespace) -> int:
    results = [_check(path, args.overrides, args.capabilities) for path in args.files]
    render = {"human": _human, "json": _json, "github": _github}[args.format]
    print(render(results), end="")
    return EXIT_VALID if all(valid for _, valid, _ in results) else EXIT_INVALID


def _check(path: str, overrides: list[str], capabilities: list[str] | None) -> tuple[str, bool, list[Diagnostic]]:
    try:
        recipe = load_recipe(path, overrides=overrides, capabilities=capabilities)
    except RecipeError as exc:
        return path, False, exc.diagnostics
    refused = plan_refusals(recipe)
    return path, not refused, [*refused, *recipe.warnings]


def plan_refusals(recipe) -> list[Diagnostic]:
    """Everything `omni-run plan` (and so a run) would refuse, each at its line: blocked capabilities,
    parts the trainer does not train (omni_runner/plan/support.py), groups without a gradient, memory.

    Models are read from their config files or the known-architecture table (no weights, no torch). A
    model that cannot be resolved at all is left to `omni-run plan`, which says why; here, without
    weights on the machine (CI), that must not turn a missing-path warning into an error.
    """
    from omni_runner.plan import compile_plan
    from omni_runner.plan.models import resolve_models

    models, problems = resolve_models(recipe)
    if "base_model" not in models or any(d.severity == ERROR for d in problems):
        return []
    try:
        compile_plan(recipe)
    except RecipeError as refused:
        return [d for d in refused.diagnostics if d.severity == ERROR]
    return []


def _counts(results: list[tuple[str, bool, list[Diagnostic]]]) -> tuple[int, int]:
    diagnostics = _unique(results)
    return sum(d.severity == ERROR for d in diagnostics), sum(d.severity == WARNING for d in diagnostics)


def _unique(results: list[tuple[str, bool, list[Diagnostic]]]) -> list[Diagnostic]:
    """Each problem once, even when several recipes inherit it from the same parent file."""
    return list(dict.fromkeys(d for _, _, found in results for d in found))


def _human(results: list[tuple[str, bool, list[Diagnostic]]]) -> str:
    lines = [d.render() for d in _unique(results)]
    errors, warnings = _counts(results)
    invalid = sum(not valid for _, valid, _ in results)
    recipes = f"{len(results)} recipe{'s' if len(results) != 1 else ''}"
    verdict = f"{invalid} invalid" if invalid else "all valid"
    lines.append(f"{recipes} checked, {verdict}: {errors} error{'s' if errors != 1 else ''}, "
                 f"{warnings} warning{'s' if warnings != 1 else ''}")
    return "\n".join(lines) + "\n"


def _json(results: list[tuple[str, bool, list[Diagnostic]]]) -> str:
    errors, warnings = _counts(results)
    payload = {
        "valid": all(valid for _, valid, _ in results),
        "errors": errors,
        "warnings": warnings,
        "files": [
            {"file": path, "valid": valid, "diagnostics": [d.to_json() for d in found]}
            for path, valid, found in results
        ],
    }
    return json.dumps(payload, indent=2) + "\n"


def _github(results: list[tuple[str, bool, list[Diagnostic]]]) -> str:
    """GitHub Actions workflow commands: `::error file=F,line=L,col=C::message`."""
    lines = []
    for path, _, found in results:
        for d in found:
            message = d.message + (f" ({d.field})" if d.field else "") + (f"\n{d.hint}" if d.hint else "")
            loc = d.location
            where = (f"file={_property(str(loc.file))},line={loc.line},col={loc.col}" if loc
                     else f"file={_property(path)}")
            lines.append(f"::{d.severity} {where},title=omni-run validate::{_data(message)}")
    return "".join(line + "\n" for line in dict.fromkeys(lines))


def _data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _property(text: str) -> str:
    return _data(text).replace(":", "%3A").replace(",", "%2C")
