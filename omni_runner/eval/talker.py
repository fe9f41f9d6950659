"""The `talker` suite: talker consistency (eval/talker_consistency.py) on the recipe's eval data sets of
speech-output capabilities: the talker's codec loss on the original model's own speech when it reads
the evaluated thinker (`talker_consistency`), beside the original model's loss on it
(`talker_consistency_floor`). The original model's codec targets come from the run's cache
(`RUN/speech_targets.json`, made by the trainer) or, for prompts it lacks, from the base model loaded
for the purpose. A talker_realign stage's adapter (`final/talker_adapter/`) sits on the talker scored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omni_runner.eval.suites import SuiteError


def _scored_talker(loaded: Any, folder: Path) -> Any:
    """The talker the evaluated model speaks with: the run's own (a checkpoint of a realign stage), else
    the model folder's, with the realign adapter beside a final model."""
    from omni_runner.models.export import TALKER_ADAPTER_DIR
    from omni_runner.models.speech import load_talker

    if loaded.talker is not None:
        return loaded.talker
    adapter = folder / TALKER_ADAPTER_DIR
    return load_talker(loaded.model_dir, loaded.dtype, loaded.device,
                       adapter_dir=adapter if adapter.is_dir() else None).requires_grad_(False)


def run(context: Any) -> dict[str, dict[str, Any]]:
    from omni_runner.eval.talker_consistency import (
        CONSISTENCY,
        FLOOR,
        TARGETS_FILE,
        CodecTargets,
        TalkerConsistency,
        speech_settings,
    )
    from omni_runner.models.speech import load_talker

    if context.recipe is None or context.data is not None:
        raise SuiteError("the talker suite scores a run's eval data sets of speech-output capabilities "
                         "(podcast, tri-streaming) against the targets its base model says: name a run, without --data")
    loaded, is_base = context.loaded, bool(context.options.get("is_base"))
    cache = Path(context.run_dir) / TARGETS_FILE if context.run_dir is not None else None
    targets = CodecTargets(cache, *speech_settings(context.recipe))
    talker = (load_talker(loaded.model_dir, loaded.dtype, loaded.device).requires_grad_(False) if is_base
              else _scored_talker(loaded, Path(context.options.get("model_path") or loaded.model_dir)))
    consistency = TalkerConsistency.for_recipe(loaded, context.recipe, context.recipe_dir, targets, talker=talker)
    if consistency is None:
        raise SuiteError("no eval data set of the recipe is scored by a speech-output capability (podcast, "
                         "tri-streaming): the talker has nothing to say; add one to eval.datasets")
    everything = [prompt for prompts in consistency.prompts.values() for prompt in prompts]
    if targets.missing(everything):
        if is_base:
            consistency.prepare(loaded, pristine=True)
        else:
            base = context.options["load_base"]()
            original = TalkerConsistency(load_talker(base.model_dir, base.dtype, base.device).requires_grad_(False),
                                         consistency.speaker_bos, targets, consistency.prompts)
            original.prepare(base, pristine=True)
            del base, original
    scored = consistency.score(loaded)
    return {name: {CONSISTENCY: m[CONSISTENCY], FLOOR: m[FLOOR], "n": m[f"{CONSISTENCY}_n"]} for name, m in scored.items()}
