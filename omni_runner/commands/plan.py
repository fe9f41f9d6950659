"""`omni-run plan RECIPE`: what would run, without loading weights: stages, modules, mixture, memory."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from omni_runner.recipe.options import add_recipe_options

HELP = "Show the plan a recipe compiles to: stages, trainable/frozen modules, data mixture, memory estimate and decisions."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", metavar="RECIPE", help="recipe YAML file")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON (what plan.json holds)")
    add_recipe_options(parser)


def run(args: argparse.Namespace) -> int:
    from omni_runner.plan import compile_plan
    from omni_runner.recipe import RecipeError, load_recipe
    from omni_runner.run.prepare import measured_lengths

    try:
        recipe = load_recipe(args.recipe, overrides=args.overrides, capabilities=args.capabilities)
        plan = compile_plan(recipe, measured_lengths(recipe))
    except RecipeError as problem:
        print(problem.render(), file=sys.stderr)
        return 1
    payload = plan.to_json()
    print(json.dumps(payload, indent=2) if args.json else render(payload))
    return 0


def _count(parameters: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if parameters >= size:
            return f"{parameters / size:.2f} {unit}"
    return str(parameters)


def render(plan: dict[str, Any]) -> str:
    """A readable summary; `--json` has everything."""
    layout = plan["distributed"]
    devices = f"a {plan['vram_gb']:g} GB device"
    if layout["world_size"] > 1:
        devices = (f"{layout['world_size']} devices of {plan['vram_gb']:g} GB ({layout['strategy']}, {layout['processes_per_machine']} "
                   f"processes on each of {layout['num_machines']} machine(s); micro_batch and grad_accum are per process)")
    lines = [f"plan for {plan['name']}: {plan['total_steps']} steps on {devices}"]
    lines.append("models:")
    for slot, model in plan["models"].items():
        source = f"known table: {model['planned_from_table']}" if model["planned_from_table"] else "detected"
        lines.append(f"  {slot:<16} {model['model_type']} ({_count(model['parameters'] or 0)}, {model['quantization'] or 'unquantized'}; {source})")
    for number, stage in enumerate(plan["stages"], 1):
        memory = stage["memory"]
        lines.append("")
        lines.append(f"stage {number} '{stage['name']}': {stage['max_steps']} steps, lr {stage['lr']:g}")
        lines.append(f"  capabilities: {', '.join(stage['capabilities'])}")
        lines.append(
            f"  batch: micro_batch {stage['micro_batch']} x grad_accum {stage['grad_accum']}, seq_len {stage['seq_len']}, "
            f"gradient checkpointing {'on' if stage['gradient_checkpointing'] else 'off'}, "
            f"global batch {layout['global_batch'][stage['name']]}"
        )
        for kind, shape in (stage.get("generation") or {}).items():
            lines.append(f"  {kind} decoder shape: latent {shape['latent_side']}x{shape['latent_side']}, {shape['frames']} frame(s)")
        lines.append(f"  trains ({_count(stage['trainable_parameters'])} parameters):")
        lines += [f"    {g['module']:<26} {_count(g['parameters']):>9}  {g.get('how', '')}" for g in stage["trainable"]]
        lines.append("  frozen, on the device:")
        lines += [
            f"    {g['module']:<26} {_count(g['parameters']):>9}  {g.get('quantization') or ''}".rstrip()
            for g in stage["frozen"] if g["resident"]
        ]
        idle = [g["module"] for g in stage["frozen"] if not g["resident"]]
        if idle:
            lines.append(f"  not loaded: {', '.join(idle)}")
        breakdown = ", ".join(f"{k} {v:.2f}" for k, v in memory["breakdown"].items())
        lines.append(f"  memory: ~{memory['estimate_gb']:.1f} GB per device ({breakdown})")
        lines += [f"  decision: {d['what']} — {d['why']}" for d in stage["decisions"]]
        lines.append("  mixture:")
        for capability, entry in stage["mixture"].items():
            sets = ", ".join(d["name"] for d in entry["datasets"])
            lines.append(f"    {capability:<20} {entry['weight']:6.1%}  ~{entry['expected_samples']} samples  ({sets})")
    if plan["warnings"]:
        lines.append("")
        lines += [f"warning: {w}" for w in plan["warnings"]]
    return "\n".join(lines)
