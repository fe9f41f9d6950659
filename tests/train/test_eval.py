"""Evaluation: each eval data set scored with its capability's metric, the scores kept in `eval/results.json`
and every scored sample in `eval/<name>.samples.jsonl`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from omni_runner.data.conversation import Message
from omni_runner.data.render import assistant_text, template_for
from omni_runner.data.sources import open_source
from omni_runner.eval import evaluate, reply_matches
from omni_runner.plain_yaml import read_plain_yaml
from omni_runner.run.prepare import prepare_run

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "recipes" / "tiny_omni.yaml"
EXACT = "tool_call_exact_match"


def held_out_replies(count: int) -> list[Message]:
    spec = {"path": "builtin:tool-calling/xlam_heldout.jsonl", "format": "xlam"}
    source = open_source("xlam-heldout", spec, REPO)
    source.scan(count)
    return [source.conversation(i).messages[-1] for i in range(count)]


def test_a_reply_calling_the_expected_tools_scores_as_a_hit():
    template = template_for("tool-calling")
    for reply in held_out_replies(4):
        assert reply_matches(EXACT, str(assistant_text(reply, template)), reply)


def test_a_call_with_a_different_argument_value_is_a_miss():
    reply = held_out_replies(1)[0]
    call = reply.tool_calls[0]
    changed = {**call, "arguments": {key: f"{value}-other" for key, value in call["arguments"].items()}}
    assert not reply_matches(EXACT, f"<tool_call>{json.dumps(changed)}</tool_call>", reply)


def test_the_right_functions_with_other_argument_values_are_a_name_match_only():
    reply = held_out_replies(1)[0]
    changed = [{**call, "arguments": {key: f"{value}-other" for key, value in call["arguments"].items()}}
               for call in reply.tool_calls]
    generated = "".join(f"<tool_call>{json.dumps(call)}</tool_call>" for call in changed)
    assert reply_matches("tool_call_name_match", generated, reply)
    assert not reply_matches(EXACT, generated, reply)


def test_prose_or_broken_json_instead_of_a_call_is_a_miss():
    reply = held_out_replies(1)[0]
    assert not reply_matches(EXACT, "I would call the calendar for you.", reply)
    assert not reply_matches(EXACT, '<tool_call>{"name": "add_event", </tool_call>', reply)


@pytest.mark.slow
def test_evaluate_scores_the_held_out_set_on_a_real_tiny_model_and_writes_results(tmp_path):
    from omni_runner.models.load import load_for_training

    run = prepare_run(TINY, ["eval.max_samples=2", "eval.max_new_tokens=4"], None, run_dir=tmp_path / "run")
    recipe = read_plain_yaml(run.recipe)
    loaded = load_for_training(recipe, run.path, "cpu")

    results = evaluate(loaded, recipe, run.path, eval_dir=run.eval)

    held_out = results["xlam-heldout"]
    assert held_out["capability"] == "tool-calling" and held_out["n"] == 2
    assert held_out[EXACT] in (0.0, 0.5, 1.0)  # two samples: a fraction of hits
    assert json.loads((run.eval / "results.json").read_text()) == results
    samples = [json.loads(line) for line in (run.eval / "xlam-heldout.samples.jsonl").read_text().splitlines()]
    assert [s["index"] for s in samples] == [0, 1]
    assert sum(s["match"] for s in samples) / 2 == held_out[EXACT]
    assert all(s["expected"].startswith("<tool_call>") for s in samples)
