"""The `talker_realign` objective: a stage whose `train` is `[talker]` brings the talker back in line
with the tuned thinker, by self-distillation.

There is no speech target to learn from (Qwen's speech tokenizer is unreleased), but there is a
teacher: the ORIGINAL model (base thinker + base talker) saying the stage's replies. Its greedy codec
tokens are the targets; the student is the talker with LoRA adapters reading the TUNED thinker, which
stays frozen. The loss is the codec cross-entropy of the targets (token-weighted over the step), the
same loss the `talker_consistency` metric reports, so realign drives that metric back towards the
original model's floor.

The stage's replies are the records of its capabilities' data sets (each rendered as evaluation
renders a prompt), `micro_batch x grad_accum x max_steps x processes` of them at most; their targets are
made with the original model before the run trains (cached with the evaluation targets in
`RUN/speech_targets.json`). Step `s` takes the next `micro_batch x grad_accum x processes` prompts of
that fixed list, cyclically, so a resumed stage continues exactly where it stopped.

Under several processes rank 0 alone makes the targets and hands them to the others, and each rank
takes every `world_size`-th prompt of the step. Every rank knows the whole step's codec tokens, so the
losses are normalised by the step's total and the averaged adapter gradients equal one process's.

Public API:
- `is_realign_stage(stage) -> bool`.
- `TalkerRealign.for_stage(loaded, recipe, recipe_dir, stage, targets, world_size)`;
  `.prepare(loaded, pristine)`; `.keep_spoken()`;
  `.backward(loaded, stage_step, prompts_per_step, scale, autocast, ranks) -> (mean loss, codec tokens, prompts)`.
- `RunSpeech.for_run(loaded, recipe, run_dir, stages, pristine, ranks)`.
- The talker adapter's weights reach checkpoints as `talker.*` through `LoadedModel.named_parameters`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omni_runner.eval.talker_consistency import (
    CodecTargets,
    SpokenPrompt,
    original_model,
    spoken_prompts,
)

if TYPE_CHECKING:
    from omni_runner.train.ranks import Ranks


def is_realign_stage(stage: dict[str, Any]) -> bool:
    return "talker" in (stage.get("train") or ())


class RealignError(RuntimeError):
    """A realign stage that cannot train; the message says why and what to do."""


class TalkerRealign:
    """A realign stage's prompts, their original-model targets, and its loss."""

    def __init__(self, speaker_bos: int, targets: CodecTargets, pool: list[SpokenPrompt], stage_name: str) -> None:
        self.speaker_bos = speaker_bos
        self.targets = targets
        self.pool = pool
        self.stage_name = stage_name

    @classmethod
    def for_stage(cls, loaded: Any, recipe: dict[str, Any], recipe_dir: Path, stage: dict[str, Any],
                  targets: CodecTargets, world_size: int = 1) -> TalkerRealign:
        from omni_runner.data.sources import open_source
        from omni_runner.models.speech import read_speakers, speaker_entry

        wanted = int(stage["micro_batch"]) * int(stage["grad_accum"]) * int(stage["max_steps"]) * world_size
        capabilities = recipe.get("capabilities") or {}
        datasets = [(name, capability) for capability in stage["capabilities"]
                    for name in (capabilities.get(capability) or {}).get("datasets") or ()]
        pool: list[SpokenPrompt] = []
        for name, capability in datasets:
            share = -(-wanted // len(datasets))
            source = open_source(name, recipe["datasets"][name], Path(recipe_dir))
            source.scan(share)
            pool += spoken_prompts(loaded, source, capability, share)
        if not pool:
            raise RealignError(f"stage {stage['name']!r} realigns the talker, but its capabilities' data sets hold "
                               "no record with a text reply to speak")
        bos = speaker_entry(read_speakers(loaded.model_dir), targets.speaker)["bos_token"]
        return cls(int(bos), targets, pool, stage["name"])

    def prepare(self, loaded: Any, pristine: bool) -> None:
        """Make (or read back) the original model's codec tokens for every prompt of the stage."""
        if self.targets.missing(self.pool):
            with original_model(loaded, loaded.talker, pristine) as (thinker, talker):
                self.targets.fill(self.pool, thinker, talker, self.speaker_bos)

    def keep_spoken(self) -> None:
        """Keep the prompts the original talker said something for (once their targets are made)."""
        self.pool = [prompt for prompt in self.pool if self.targets.get(prompt.key)["codes"]]
        if not self.pool:
            raise RealignError(f"stage {self.stage_name!r}: the original talker ends every reply at once (no codec "
                               "tokens), so there is nothing to distil")

    def backward(self, loaded: Any, stage_step: int, prompts_per_step: int, scale: Callable[[Any], Any],
                 autocast: Callable[[], Any], ranks: Ranks) -> tuple[float, int, int]:
        """Back-propagate this rank's share of one optimizer step's codec loss into the talker adapter
        (token-weighted over the whole step's prompts, on all ranks); return the step's mean loss per codec
        token, its codec tokens and its prompts. `prompts_per_step` is one rank's.

        The gradients are averaged over the ranks afterwards (`Ranks.average_gradients`), so each rank's
        loss is multiplied by the world size to make that average the step's sum."""
        import torch

        from omni_runner.models.speech import codec_losses, condition_talker

        per_step = prompts_per_step * ranks.world_size
        start = stage_step * per_step
        chosen = [self.pool[(start + offset) % len(self.pool)] for offset in range(per_step)]
        tokens = sum(len(self.targets.get(prompt.key)["codes"]) for prompt in chosen)
        total = 0.0
        for prompt in chosen[ranks.rank::ranks.world_size]:
            with torch.no_grad():  # the thinker is frozen in this stage: only the talker adapter learns
                conditioning = condition_talker(loaded.thinker, prompt.inputs, prompt.reply_ids,
                                                loaded.talker.config, self.speaker_bos)
            with autocast():
                losses = codec_losses(loaded.talker, conditioning, self.targets.get(prompt.key)["codes"],
                                      prompt.use_audio_in_video)
            scale(losses.sum() * ranks.world_size / tokens).backward()
            total += float(losses.detach().sum())
        total = float(ranks.sum(torch.tensor([total], dtype=torch.float64)))
        return total / tokens, tokens, per_step


class RunSpeech:
    """A run's speech-output work: the consistency metric (None without speech eval sets) and each
    realign stage's objective (by stage index), sharing one targets cache in the run folder."""

    def __init__(self, consistency: Any, realign: dict[int, TalkerRealign]) -> None:
        self.consistency = consistency
        self.realign = realign

    @classmethod
    def for_run(cls, loaded: Any, recipe: dict[str, Any], run_dir: Path, stages: list[dict[str, Any]],
                pristine: bool, ranks: Ranks) -> RunSpeech:
        """Build both and make every target now: `pristine` (nothing trained yet) means the loaded model
        is the original, so no second copy of it is ever needed. The consistency metric only where the
        run evaluates (`eval.at_end` or `eval.every_steps`), and there only on the ranks that evaluate
        (rank 0, or every rank of a split model): its targets cost the original talker a generation per
        eval prompt, minutes on a CPU, and a later `omni-run eval` makes any it lacks. Rank 0 alone makes
        the targets and hands them to the other ranks, which neither repeat that work nor write the cache."""
        from omni_runner.eval.talker_consistency import (
            TARGETS_FILE,
            TalkerConsistency,
            speech_settings,
        )

        targets = CodecTargets(Path(run_dir) / TARGETS_FILE, *speech_settings(recipe))
        evaluates = bool(recipe["eval"]["at_end"]) or int(recipe["eval"]["every_steps"]) > 0
        consistency = (TalkerConsistency.for_recipe(loaded, recipe, run_dir, targets, talker=loaded.talker)
                       if evaluates and (ranks.is_main or ranks.sharded) else None)
        realign = {index: TalkerRealign.for_stage(loaded, recipe, run_dir, stage, targets, ranks.world_size)
                   for index, stage in enumerate(stages) if is_realign_stage(stage)}
        if ranks.is_main:
            for speech in (consistency, *realign.values()):
                if speech is not None:
                    speech.prepare(loaded, pristine)
        targets.entries = ranks.broadcast(targets.entries)
        for objective in realign.values():
            objective.keep_spoken()
        return cls(consistency, realign)
