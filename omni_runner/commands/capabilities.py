"""`omni-run capabilities [RECIPE]`: the capability registry, and which ones a recipe's models can support."""

from __future__ import annotations

import argparse
import json
import sys

from omni_runner.recipe.options import add_recipe_options

HELP = ("List the capabilities, their modality gates and whether the trainer trains them yet; "
        "with a recipe, mark each available or blocked.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", nargs="?", metavar="RECIPE", help="recipe whose models decide what is available")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    add_recipe_options(parser)


def run(args: argparse.Namespace) -> int:
    from omni_runner.capabilities import CAPABILITIES
    from omni_runner.plan.support import UNTRAINED_CAPABILITIES

    if args.recipe is None:
        rows = [
            {
                "name": c.name,
                "category": c.category,
                "requires": sorted(c.requires, key=_modality_order),
                "formats": list(c.formats),
                "template": c.template,
                "loss_on": c.loss_on,
                "eval_metric": c.eval_metric,
                "summary": c.summary,
                "trains": c.name not in UNTRAINED_CAPABILITIES,
                "not_trained_because": UNTRAINED_CAPABILITIES[c.name].missing if c.name in UNTRAINED_CAPABILITIES else None,
            }
            for c in CAPABILITIES.values()
        ]
        print(json.dumps(rows, indent=2) if args.json else _registry_table(rows))
        return 0
    return _with_recipe(args)


def _modality_order(modality: str) -> int:
    from omni_runner.capabilities import MODALITIES

    return MODALITIES.index(modality)


def _registry_table(rows: list[dict]) -> str:
    lines = [f"{'category':<11} {'capability':<20} {'requires':<62} {'template':<20} {'eval metric':<28} trains"]
    for row in rows:
        trains = "yes" if row["trains"] else "not yet"
        lines.append(f"{row['category']:<11} {row['name']:<20} {', '.join(row['requires']):<62} {row['template']:<20} {row['eval_metric']:<28} {trains}")
    untrained = [f"  {row['name']}: {row['not_trained_because']}" for row in rows if not row["trains"]]
    if untrained:
        lines += ["", "not trained yet:", *untrained]
    return "\n".join(lines)


def _with_recipe(args: argparse.Namespace) -> int:
    from omni_runner.capabilities import PROVIDERS
    from omni_runner.capabilities import enabled_capabilities
    from omni_runner.plan.gate import capability_statuses, modality_sources
    from omni_runner.plan.models import resolve_models
    from omni_runner.plan.support import UNTRAINED_CAPABILITIES
    from omni_runner.recipe import RecipeError, load_recipe
    from omni_runner.recipe.errors import ERROR

    try:
        recipe = load_recipe(args.recipe, overrides=args.overrides, capabilities=args.capabilities)
    except RecipeError as problem:
        print(problem.render(), file=sys.stderr)
        return 1
    models, diagnostics = resolve_models(recipe)
    errors = [d for d in diagnostics if d.severity == ERROR]
    if errors:
        print(RecipeError(errors).render(), file=sys.stderr)
        return 1
    sources = modality_sources(models)
    statuses = capability_statuses(sources)
    requested = set(enabled_capabilities(recipe.data))
    if args.json:
        payload = {
            "modalities": sources,
            "capabilities": [{**s.to_json(), "requested": s.name in requested, "trains": s.name not in UNTRAINED_CAPABILITIES}
                             for s in statuses],
        }
        print(json.dumps(payload, indent=2))
        return 0
    lines = ["modalities: " + ", ".join(f"{m} ({slot})" for m, slot in sources.items()), ""]
    for status in statuses:
        asked = " *" if status.name in requested else ""
        if status.name in UNTRAINED_CAPABILITIES:
            lines += [f"{status.category:<11} {status.name + asked:<22} NOT TRAINED YET",
                      f"{'':<35}{UNTRAINED_CAPABILITIES[status.name].missing}"]
            continue
        lines.append(f"{status.category:<11} {status.name + asked:<22} {'available' if status.available else 'BLOCKED'}")
        for modality in status.missing:
            provider = PROVIDERS[modality]
            lines.append(f"{'':<35}missing {modality}: add {provider.section} ({provider.what})")
    lines += ["", "* requested by the recipe"]
    print("\n".join(lines))
    return 0
