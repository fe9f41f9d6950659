"""Evaluation of a trained model on the recipe's `eval.datasets`, with each capability's metric.

    results = evaluate(loaded, recipe_data, recipe_dir, eval_dir=RUN/eval)
    # {"xlam-heldout": {"capability": "tool-calling", "tool_call_exact_match": 0.85, "n": 20}}

`loaded` is a `LoadedModel` (training or inference), `recipe_data` the resolved recipe (its `eval`
section: `datasets`, `max_samples`, `max_new_tokens`; `at_end`/`every_steps` are the caller's to act
on), `recipe_dir` the folder relative data paths start from. Results are keyed by data set name, so
two sets of one capability stay apart; `eval_dir/results.json` holds the same object, and
`eval_dir/<name>.samples.jsonl` each scored sample (`index`, `generated`, `expected`, `match`) so a low
score can be read rather than guessed at. Emitting the `eval` events is the training loop's job (one
per data set: `capability`, `metrics`).

Each data set is scored with the default metric of the capability that uses its format (the registry in
`omni_runner/capabilities.py`): greedy generation from the prompt (everything before the last assistant
reply, rendered with that capability's template), compared with the reply the record holds.

- `tool_call_exact_match`: the `<tool_call>` blocks parse as JSON and name the same functions with the
  same arguments (any order).
- `answer_exact_match`: the generated reply equals the expected one, whitespace-normalised.
- beside `tool_call_exact_match`, `tool_call_name_match`: the reply's well-formed calls name exactly
  the expected functions, whatever their arguments.

Data sets of speech-output capabilities (`audio_out`) also get `talker_consistency` and
`talker_consistency_floor` when the caller passes a `TalkerConsistency` (the trainer does): the talker's
codec loss on the original model's own speech, reading the tuned thinker (docs/speech.md).

A capability scored by perplexity (streaming) gets its figure from the held-out loss (eval/heldout.py,
`perplexity.json`), which the trainer computes beside these; CLIP scores of generated images need a
reference model and are left to `omni-run eval --suite generation --clip PATH`, with that said here.

`omni-run eval` (commands/eval.py) runs the suites beside this module on a finished run, a checkpoint
or a model folder: the registry is `suites.py`, one module per suite (docs/evaluation.md); they score
records through `answer_record` like this evaluation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omni_runner.capabilities import CAPABILITIES
from omni_runner.data.conversation import Message, RecordError
from omni_runner.data.multimodal import media_order
from omni_runner.data.render import assistant_text, render_prompt, template_for
from omni_runner.data.sources import open_source
from omni_runner.data.toolcalls import tool_call_names_match, tool_calls_match
from omni_runner.models.export import generate_ids, prompt_inputs

SUPPORTED_METRICS = ("tool_call_exact_match", "answer_exact_match")
# Reported beside a capability's metric: whether a tool call names the right functions, so a model that
# chooses the right tool for an unseen request before it reads the argument values out of it shows so.
SECONDARY_METRICS = {"tool_call_exact_match": "tool_call_name_match"}
RESULTS_FILE = "results.json"
SAMPLES_SUFFIX = ".samples.jsonl"
END_OF_TURN = "<|im_end|>"


_MEDIA_INPUTS = {"image": "image_in", "video": "video_in", "audio": "audio_in"}


def capability_for_format(fmt: str, recipe_capabilities: dict[str, Any], needs: frozenset[str] = frozenset()) -> str | None:
    """The capability whose metric scores a data set of this format whose records need the input
    modalities `needs` (an image record needs image_in): among the capabilities that accept the format
    and take those inputs, the recipe's own first, then the one asking for the fewest other inputs."""
    accepting = [c for c in CAPABILITIES.values() if fmt in c.formats and needs <= c.requires]
    accepting.sort(key=lambda c: (c.name not in recipe_capabilities, len(c.requires & set(_MEDIA_INPUTS.values()))))
    return accepting[0].name if accepting else None


def record_needs(source: Any) -> frozenset[str]:
    """The input modalities the data set's first usable record carries (its media kinds)."""
    if not len(source):
        return frozenset()
    conversation = source.conversation(0)
    kinds = set(media_order(conversation))
    if "video" in kinds and source.media.use_audio_in_video:
        kinds.add("audio")
    return frozenset(_MEDIA_INPUTS[kind] for kind in kinds)


def evaluate(loaded: Any, recipe_data: dict[str, Any], recipe_dir: Path, eval_dir: Path | None = None,
             consistency: Any = None) -> dict[str, dict[str, Any]]:
    """Score every data set in `eval.datasets`; write `eval_dir/results.json` when given. With a
    `TalkerConsistency` (eval/talker_consistency.py), its data sets also get the talker-consistency loss."""
    settings = recipe_data["eval"]
    results, samples = {}, {}
    for name in settings.get("datasets") or []:
        source = open_source(name, recipe_data["datasets"][name], Path(recipe_dir))
        source.scan(int(settings["max_samples"]))
        capability = capability_for_format(source.format, recipe_data.get("capabilities") or {}, record_needs(source))
        results[name], samples[name] = score_dataset(loaded, source, capability, int(settings["max_new_tokens"]))
    if consistency is not None:
        for name, metrics in consistency.score(loaded).items():
            results[name].update(metrics)
    if eval_dir is not None:
        _write_results(Path(eval_dir), results, samples)
    return results


def _write_results(eval_dir: Path, results: dict[str, dict[str, Any]], samples: dict[str, list[dict[str, Any]]]) -> None:
    eval_dir.mkdir(parents=True, exist_ok=True)
    (eval_dir / RESULTS_FILE).write_text(json.dumps(results, indent=2) + "\n")
    for name, scored in samples.items():
        lines = "".join(json.dumps(sample, ensure_ascii=False) + "\n" for sample in scored)
        (eval_dir / f"{name}{SAMPLES_SUFFIX}").write_text(lines)


def score_dataset(loaded: Any, source: Any, capability: str | None, max_new_tokens: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The (scanned) data set's score and every scored sample (generated and expected replies, hit or miss)."""
    metric = CAPABILITIES[capability].eval_metric if capability in CAPABILITIES else None
    if metric == "perplexity":
        return {"capability": capability, "metric": metric, "n": 0,
                "note": "scored by the held-out loss, without generating: see perplexity.json beside this file"}, []
    if metric not in SUPPORTED_METRICS:
        return {"capability": capability, "metric": metric, "n": 0,
                "note": f"{metric} needs a reference model: omni-run eval --suite generation --clip PATH scores it"}, []
    template = template_for(capability)
    secondary = SECONDARY_METRICS.get(metric)
    samples, skipped = [], []
    for position in range(len(source)):
        try:
            generated, reply = answer_record(loaded, source, position, template, max_new_tokens)
        except RecordError as exc:
            skipped.append({"location": source.location(position), "reason": str(exc)})
            continue
        sample = {"index": position, "generated": generated, "expected": str(assistant_text(reply, template)),
                  "match": reply_matches(metric, generated, reply)}
        if secondary:
            sample[secondary] = reply_matches(secondary, generated, reply)
        samples.append(sample)
    hits = sum(sample["match"] for sample in samples)
    result = {"capability": capability, metric: hits / len(samples) if samples else None, "n": len(samples)}
    if secondary:
        result[secondary] = sum(sample[secondary] for sample in samples) / len(samples) if samples else None
    if skipped:
        result["skipped"] = skipped
    return result, samples


def record_prompt(loaded: Any, source: Any, position: int, template: str) -> tuple[dict[str, Any], Message]:
    """A record's prompt (everything before its last assistant reply) rendered and tokenised with its
    media tensors (through the run's external encoders where it has them), and that reply;
    RecordError when its media cannot be read."""
    conversation = source.conversation(position)
    prompt, expected = render_prompt(conversation, loaded.tokenizer, template)
    inputs = prompt_inputs(loaded.model, loaded.processor, conversation, prompt, source.media, loaded.external)
    return inputs, expected.messages[-1]


def answer_record(loaded: Any, source: Any, position: int, template: str, max_new_tokens: int) -> tuple[str, Message]:
    """The model's greedy reply to a record's prompt and the reply the record holds; RecordError when
    its media cannot be read. The `omni-run eval` suites score records through this too."""
    conversation = source.conversation(position)
    inputs, reply = record_prompt(loaded, source, position, template)
    generated = generate_reply(loaded, inputs, max_new_tokens,
                               use_audio_in_video=bool(conversation.videos) and source.media.use_audio_in_video)
    return generated, reply


def reply_matches(metric: str, generated: str, reply: Message) -> bool:
    """Whether one generated reply scores under `metric` against the record's expected reply (pure)."""
    if metric == "tool_call_exact_match":
        return tool_calls_match(generated, reply.tool_calls or [])
    if metric == "tool_call_name_match":
        return tool_call_names_match(generated, reply.tool_calls or [])
    return _normalise(generated) == _normalise(reply.content if isinstance(reply.content, str) else "")


def generate_reply(loaded: Any, inputs: dict[str, Any], max_new_tokens: int, *, use_audio_in_video: bool = False) -> str:
    """Greedy continuation of a rendered prompt's `prompt_inputs`, up to the end-of-turn token."""
    extra = {"use_audio_in_video": True} if use_audio_in_video else {}
    ids = generate_ids(loaded.model, inputs, max_new_tokens, loaded.external,
                       pad_token_id=loaded.tokenizer.pad_token_id, **extra)
    # Special tokens stay: `<tool_call>` is one; the reply ends at the end-of-turn token.
    return loaded.tokenizer.decode(ids, skip_special_tokens=False).split(END_OF_TURN)[0]


def _normalise(text: str) -> str:
    return " ".join(text.split())
