"""The quick start's held-out score before training: the base the trained model is compared with.

Loads the recipe's base model untrained (the tiny model's random weights for recipes/tiny_omni.yaml)
exactly as the trainer does, and scores the recipe's `eval.datasets` with the trainer's end-of-run
evaluation (`omni_runner.eval.evaluate`). With `--run RUN` it also prints that run's end-of-run scores
(`RUN/eval/results.json`) and the difference. docs/experiments/2026-12-02-quickstart-skill.md has the figures.

    python benchmarks/quickstart_base_score.py [--recipe recipes/tiny_omni.yaml] [--run runs/tiny-omni-...]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def base_scores(recipe: Path) -> dict[str, dict]:
    from omni_runner.eval import evaluate
    from omni_runner.models.load import load_for_training
    from omni_runner.plain_yaml import read_plain_yaml
    from omni_runner.run.prepare import prepare_run

    with tempfile.TemporaryDirectory() as tmp:
        run = prepare_run(recipe, [], None, run_dir=Path(tmp) / "run")
        resolved = read_plain_yaml(run.recipe)
        loaded = load_for_training(resolved, run.path, "cpu")
        return evaluate(loaded, resolved, run.path, eval_dir=run.eval)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=REPO / "recipes" / "tiny_omni.yaml")
    parser.add_argument("--run", type=Path, help="a finished run of the recipe: print its scores beside the base")
    args = parser.parse_args()
    base = base_scores(args.recipe)
    tuned = json.loads((args.run / "eval" / "results.json").read_text()) if args.run else {}
    for name, metrics in base.items():
        for metric, value in metrics.items():
            if isinstance(value, float):
                line = f"{name} {metric}: base {value:.3f}"
                if name in tuned:
                    line += f", tuned {tuned[name][metric]:.3f}, difference {tuned[name][metric] - value:+.3f}"
                print(f"{line} (n {metrics['n']})")


if __name__ == "__main__":
    main()
