"""The `perplexity` suite of `omni-run eval`: each capability's held-out loss and perplexity, computed
exactly as the trainer computes them at `eval.every_steps` (eval/heldout.py), so the two agree.

Its data are the recipe's `eval.datasets`, or the file given with `--data PATH --format F`; results
are keyed by the capability whose template and loss scored them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omni_runner.eval.suites import SuiteContext, SuiteError

# The sequence length for `--data` on a model folder, which has no recipe to say it.
DEFAULT_SEQ_LEN = 2048


def run(context: SuiteContext) -> dict[str, dict[str, Any]]:
    from omni_runner.eval.heldout import heldout_losses

    recipe, recipe_dir = _scored_recipe(context)
    results = heldout_losses(context.loaded, recipe, recipe_dir, context.max_samples)
    if not results:
        raise SuiteError("no eval data set holds records a language-model capability trains on (generation "
                         "requests are scored by the generation suite); add one to eval.datasets, or give --data PATH --format F")
    return results


def _scored_recipe(context: SuiteContext) -> tuple[dict[str, Any], Path]:
    """The recipe whose `eval.datasets` are scored: the run's, or one naming only the `--data` file."""
    if context.data is None:
        if context.recipe is None:
            raise SuiteError("a model folder has no recipe to name its held-out data: give it with --data PATH --format F")
        return context.recipe, context.recipe_dir
    path, fmt = context.data
    name = Path(path).stem
    seq_len = ((context.recipe or {}).get("training") or {}).get("seq_len", DEFAULT_SEQ_LEN)
    recipe = {"datasets": {name: {"path": path, "format": fmt}}, "eval": {"datasets": [name]},
              "capabilities": (context.recipe or {}).get("capabilities") or {}, "training": {"seq_len": seq_len}}
    return recipe, Path.cwd()
