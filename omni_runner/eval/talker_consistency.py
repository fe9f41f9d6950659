"""Talker consistency: does the frozen talker still understand the tuned thinker?

Qwen's speech tokenizer is unreleased, so no target audio can be turned into codec tokens, and the
speech reply has no ground truth. What can be measured is drift: the talker was trained on the
ORIGINAL thinker's hidden states, and tuning the thinker moves them. The original model (base thinker
+ base talker) says each held-out reply greedily; those codec tokens are the targets. The metric is the
talker's codec cross-entropy on them when it reads the TUNED thinker (`talker_consistency`); the
original model's own cross-entropy on its own greedy tokens is the floor (`talker_consistency_floor`).
The gap is how far the speech reply has drifted from what the base model would say.

The targets depend only on the base model and the prompts, so they are made once per run and cached
in `RUN/speech_targets.json` (keyed by prompt and reply). The original thinker is free when the run
has not trained yet (the trainer makes every target at step 0), or behind peft's `disable_adapter()`
with LoRA; a full fine-tune that lost its cache reloads the base thinker for the time it takes.

Public API:
- `SpokenPrompt`, `spoken_prompts(loaded, source, capability, limit)`: a data set's prompts and replies.
- `speaking_capability(name) -> bool`: whether a capability replies in speech (`audio_out`).
- `CodecTargets(path, max_codec_tokens, speaker)`: the cache; `.fill(prompts, original)`, `.get(key)`.
- `original_model(loaded, talker, pristine)`: context manager yielding the (thinker, talker) of the base.
- `TalkerConsistency.for_recipe(loaded, recipe, recipe_dir, cache)`: the metric on the recipe's
  speech-output eval sets (None without any); `.prepare(loaded, pristine)`, `.score(loaded)`.
- `speech_settings(recipe) -> (max_codec_tokens, speaker)`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omni_runner.capabilities import CAPABILITIES
from omni_runner.data.conversation import RecordError
from omni_runner.data.render import assistant_text, template_for

TARGETS_FILE = "speech_targets.json"
DEFAULT_MAX_CODEC_TOKENS = 1024
CONSISTENCY = "talker_consistency"
FLOOR = "talker_consistency_floor"


def speaking_capability(name: str | None) -> bool:
    return name in CAPABILITIES and "audio_out" in CAPABILITIES[name].requires


def speech_settings(recipe: dict[str, Any]) -> tuple[int, str]:
    """`decoders.speech.max_codec_tokens` and `.speaker` (schema defaults when the section is absent)."""
    from omni_runner.models.speech import DEFAULT_SPEAKER

    speech = (recipe.get("decoders") or {}).get("speech") or {}
    return int(speech.get("max_codec_tokens", DEFAULT_MAX_CODEC_TOKENS)), str(speech.get("speaker", DEFAULT_SPEAKER))


@dataclass
class SpokenPrompt:
    """One prompt (tokenised, with its media tensors) and the reply to speak after it."""

    key: str
    inputs: dict[str, Any]
    reply_ids: list[int]
    use_audio_in_video: bool


def spoken_prompts(loaded: Any, source: Any, capability: str | None, limit: int) -> list[SpokenPrompt]:
    """The first `limit` records of a (scanned) data set whose last reply is text, as prompts to speak;
    records whose media cannot be read (evaluation reports them) or go through external encoders are
    left out."""
    from omni_runner.data.external import EXTERNAL_KEYS
    from omni_runner.eval import record_prompt

    template = template_for(capability or "")
    prompts = []
    for position in range(min(len(source), limit)):
        try:
            inputs, reply = record_prompt(loaded, source, position, template)
        except RecordError:
            continue
        if any(key in inputs for key in EXTERNAL_KEYS):
            continue  # the talker reads thinker states of the base model's own media only (docs/speech.md)
        text = assistant_text(reply, template)
        if not isinstance(text, str) or not text.strip():
            continue
        reply_ids = loaded.tokenizer(text, add_special_tokens=False)["input_ids"]
        digest = hashlib.sha256(json.dumps([source.location(position), inputs["input_ids"][0].tolist(), reply_ids]).encode())
        prompts.append(SpokenPrompt(digest.hexdigest()[:20], dict(inputs), reply_ids,
                                    bool(source.conversation(position).videos) and source.media.use_audio_in_video))
    return prompts


class CodecTargets:
    """The original model's greedy codec tokens for each prompt and its own loss on them (the floor),
    cached in a JSON file (`path` None: in memory only)."""

    def __init__(self, path: Path | None, max_codec_tokens: int, speaker: str) -> None:
        self.path = Path(path) if path is not None else None
        self.max_codec_tokens = max_codec_tokens
        self.speaker = speaker
        self.entries: dict[str, dict[str, Any]] = {}
        if self.path is not None and self.path.is_file():
            stored = json.loads(self.path.read_text())
            if stored.get("max_codec_tokens") == max_codec_tokens and stored.get("speaker") == speaker:
                self.entries = stored["targets"]

    def get(self, key: str) -> dict[str, Any] | None:
        """`{"codes": [...], "loss_sum": x}` (codes empty when the original model said nothing)."""
        return self.entries.get(key)

    def missing(self, prompts: list[SpokenPrompt]) -> list[SpokenPrompt]:
        return [prompt for prompt in prompts if prompt.key not in self.entries]

    def fill(self, prompts: list[SpokenPrompt], thinker: Any, talker: Any, speaker_bos: int) -> None:
        """Make the missing targets with the ORIGINAL `thinker` and `talker`, then save the cache."""
        import torch

        from omni_runner.models.speech import (
            codec_losses,
            condition_talker,
            greedy_codes,
        )

        todo = self.missing(prompts)
        if not todo:
            return
        with torch.random.fork_rng(devices=[]), torch.no_grad():  # the run's random streams stay untouched
            for prompt in todo:
                conditioning = condition_talker(thinker, prompt.inputs, prompt.reply_ids, talker.config, speaker_bos)
                codes = greedy_codes(talker, conditioning, self.max_codec_tokens, prompt.use_audio_in_video)
                loss = float(codec_losses(talker, conditioning, codes, prompt.use_audio_in_video).sum()) if codes else 0.0
                self.entries[prompt.key] = {"codes": codes, "loss_sum": loss}
        self._save()

    def _save(self) -> None:
        if self.path is None:
            return
        data = {"max_codec_tokens": self.max_codec_tokens, "speaker": self.speaker, "targets": self.entries}
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(data) + "\n")
        os.replace(temporary, self.path)


@contextmanager
def original_model(loaded: Any, talker: Any, pristine: bool) -> Iterator[tuple[Any, Any]]:
    """The base model's thinker and talker. `pristine`: nothing has trained yet, so they are the loaded
    ones. Otherwise LoRA adapters are switched off (peft's `disable_adapter()`), and a fully fine-tuned
    thinker is reloaded from the base folder while the block runs (one more thinker in memory)."""
    from contextlib import ExitStack

    from omni_runner.models.load import LORA_METHODS, load_thinker

    if pristine:
        yield loaded.thinker, talker
        return
    with ExitStack() as stack:
        if hasattr(talker, "disable_adapter"):
            stack.enter_context(talker.disable_adapter())
        if loaded.method in LORA_METHODS:
            stack.enter_context(loaded.model.disable_adapter())
            yield loaded.thinker, talker
        else:
            yield load_thinker(loaded.model_dir, dtype=loaded.dtype, device=loaded.device), talker


def mean_codec_loss(loaded: Any, talker: Any, prompts: list[SpokenPrompt], targets: CodecTargets,
                    speaker_bos: int) -> tuple[float | None, float | None, int]:
    """(talker loss per codec token reading the current thinker, the original model's floor, prompts scored)."""
    import torch

    from omni_runner.models.speech import codec_losses, condition_talker

    total, floor, tokens, scored = 0.0, 0.0, 0, 0
    for prompt in prompts:
        entry = targets.get(prompt.key)
        if not entry or not entry["codes"]:
            continue
        with torch.no_grad():
            conditioning = condition_talker(loaded.thinker, prompt.inputs, prompt.reply_ids, talker.config, speaker_bos)
            total += float(codec_losses(talker, conditioning, entry["codes"], prompt.use_audio_in_video).sum())
        floor += entry["loss_sum"]
        tokens += len(entry["codes"])
        scored += 1
    if not tokens:
        return None, None, 0
    return total / tokens, floor / tokens, scored


class TalkerConsistency:
    """The consistency metric on the recipe's eval data sets of speech-output capabilities."""

    def __init__(self, talker: Any, speaker_bos: int, targets: CodecTargets, prompts: dict[str, list[SpokenPrompt]]) -> None:
        self.talker = talker
        self.speaker_bos = speaker_bos
        self.targets = targets
        self.prompts = prompts

    @classmethod
    def for_recipe(cls, loaded: Any, recipe: dict[str, Any], recipe_dir: Path, targets: CodecTargets,
                   talker: Any = None) -> TalkerConsistency | None:
        """None when no eval data set is scored by a speech-output capability. `talker`: the run's own
        (a realign stage's, with its adapter); otherwise the base folder's talker is loaded, frozen."""
        from omni_runner.data.sources import open_source
        from omni_runner.eval import capability_for_format, record_needs
        from omni_runner.models.speech import load_talker, read_speakers, speaker_entry

        settings = recipe["eval"]
        prompts = {}
        for name in settings.get("datasets") or []:
            source = open_source(name, recipe["datasets"][name], Path(recipe_dir))
            source.scan(int(settings["max_samples"]))
            capability = capability_for_format(source.format, recipe.get("capabilities") or {}, record_needs(source))
            if speaking_capability(capability):
                prompts[name] = spoken_prompts(loaded, source, capability, int(settings["max_samples"]))
        if not prompts:
            return None
        if talker is None:
            talker = load_talker(loaded.model_dir, loaded.dtype, loaded.device).requires_grad_(False)
        bos = speaker_entry(read_speakers(loaded.model_dir), targets.speaker)["bos_token"]
        return cls(talker, int(bos), targets, prompts)

    def prepare(self, loaded: Any, pristine: bool) -> None:
        """Make (or read back) the original model's targets for every prompt."""
        everything = [prompt for prompts in self.prompts.values() for prompt in prompts]
        if self.targets.missing(everything):
            with original_model(loaded, self.talker, pristine) as (thinker, talker):
                self.targets.fill(everything, thinker, talker, self.speaker_bos)

    def score(self, loaded: Any) -> dict[str, dict[str, Any]]:
        """Per data set: `talker_consistency`, `talker_consistency_floor`, `talker_consistency_n`."""
        self.prepare(loaded, pristine=False)
        was_training = self.talker.training
        self.talker.eval()
        try:
            results = {}
            for name, prompts in self.prompts.items():
                loss, floor, scored = mean_codec_loss(loaded, self.talker, prompts, self.targets, self.speaker_bos)
                results[name] = {CONSISTENCY: loss, FLOOR: floor, f"{CONSISTENCY}_n": scored}
            return results
        finally:
            self.talker.train(was_training)
