"""What a finished run leaves for its user: eval scores, `omni-run ls`, `omni-run chat`."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from omni_runner.eval import capability_for_format

pytestmark = pytest.mark.slow


def omni_run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "omni_runner.cli", *args], capture_output=True, text=True, timeout=300)


def test_eval_results_name_the_capability_metric_and_sample_count(finished_run):
    results = json.loads((finished_run.eval / "results.json").read_text())
    held_out = results["xlam-heldout"]
    assert held_out["capability"] == "tool-calling" and held_out["n"] == 2
    assert 0.0 <= held_out["tool_call_exact_match"] <= 1.0


def test_ls_lists_the_run_with_its_state_and_progress(finished_run):
    result = omni_run("ls", "--runs-dir", str(finished_run.path.parent))
    assert result.returncode == 0
    assert "finished" in result.stdout and "6/6" in result.stdout


def test_chat_answers_a_prompt_from_the_final_adapter(finished_run):
    result = omni_run("chat", str(finished_run.path), "--prompt", "What is the weather in Paris?", "--max-new-tokens", "4")
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("\n") and len(result.stdout) > 1  # a reply line (a 6-step model's words are few)


def test_chat_without_a_final_model_says_why(tmp_path):
    run = tmp_path / "unfinished"
    run.mkdir()
    (run / "plan.json").write_text("{}")
    result = omni_run("chat", str(run), "--prompt", "hi")
    assert result.returncode == 1 and "no final/ model yet" in result.stderr


def test_tool_calling_formats_are_scored_as_tool_calling():
    assert capability_for_format("xlam", {}) == "tool-calling"
    assert capability_for_format("hermes", {"tool-calling": {}}) == "tool-calling"


# `omni-run eval` on the finished run (in-process: the fixture already paid for torch).

def eval_json(capsys, *args: str) -> dict:
    from omni_runner.cli import main

    code = main(["eval", *args, "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def test_eval_compare_base_reports_base_tuned_and_difference_and_keeps_them_in_the_run(finished_run, capsys):
    from omni_runner.run.events import read_events

    report = eval_json(capsys, str(finished_run.path), "--suite", "function-calling", "--compare", "base",
                       "--max-samples", "2", "--max-new-tokens", "4")

    assert (report["suite"], report["step"]) == ("function-calling", 6)
    tuned, base = report["results"]["xlam-heldout"], report["base"]["xlam-heldout"]
    assert tuned["n"] == base["n"] == 2
    for metric in ("exact_match", "ast_match"):
        assert report["difference"]["xlam-heldout"][metric] == pytest.approx(tuned[metric] - base[metric])
    assert sum(tuned["failures"].values()) == round(2 * (1 - tuned["ast_match"]))  # every miss has its reason
    kept = json.loads((finished_run.eval / "function-calling.json").read_text())
    assert kept["results"]["xlam-heldout"]["exact_match"] == tuned["exact_match"]
    assert len(kept["results"]["xlam-heldout"]["samples"]) == 2  # the file keeps each scored reply
    event = [e for e in read_events(finished_run.events) if e["type"] == "eval"][-1]
    assert (event["suite"], event["dataset"], event["step"]) == ("function-calling", "xlam-heldout", 6)
    assert event["metrics"]["ast_match"] == tuned["ast_match"] and event["base_metrics"]["ast_match"] == base["ast_match"]


def test_eval_perplexity_suite_reports_each_capabilitys_held_out_loss(finished_run, capsys):
    report = eval_json(capsys, str(finished_run.path), "--suite", "perplexity", "--max-samples", "2")
    scored = report["results"]["tool-calling"]
    assert scored["n"] == 2 and scored["tokens"] > 0
    assert scored["perplexity"] == pytest.approx(math.exp(scored["loss"]), rel=1e-6)


def test_eval_of_a_checkpoint_prints_a_table_of_its_scores(finished_run, capsys):
    from omni_runner.cli import main

    code = main(["eval", str(finished_run.path), "--suite", "function-calling", "--checkpoint", "step-4",
                 "--max-samples", "1", "--max-new-tokens", "4"])
    out = capsys.readouterr().out
    assert code == 0
    assert "step 4" in out and "exact_match" in out and "ast_match" in out
    assert json.loads((finished_run.eval / "function-calling.json").read_text())["step"] == 4


TINY_TASKS = """\
task: tiny_colours
dataset_path: json
dataset_kwargs: {{data_files: {{test: {data}}}}}
test_split: test
output_type: multiple_choice
doc_to_text: "Q: {{{{question}}}}\\nA:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{answer}}}}"
metric_list: [{{metric: acc}}]
"""
TINY_GENERATION_TASK = """\
task: tiny_colours_said
dataset_path: json
dataset_kwargs: {{data_files: {{test: {data}}}}}
test_split: test
output_type: generate_until
doc_to_text: "Q: {{{{question}}}}\\nA:"
doc_to_target: "{{{{choices[answer]}}}}"
generation_kwargs: {{until: ["\\n"], max_gen_toks: 4}}
metric_list: [{{metric: exact_match}}]
"""
COLOURS = [{"question": "What colour is the sky?", "choices": ["blue", "green"], "answer": 0},
           {"question": "What colour is grass?", "choices": ["red", "green"], "answer": 1},
           {"question": "What colour is snow?", "choices": ["white", "black"], "answer": 0}]


def test_lm_eval_runs_local_task_files_against_the_tuned_model(finished_run, tmp_path, capsys):
    data = tmp_path / "colours.jsonl"
    data.write_text("".join(json.dumps(doc) + "\n" for doc in COLOURS))
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "colours.yaml").write_text(TINY_TASKS.format(data=data))
    (tmp_path / "tasks" / "colours_said.yaml").write_text(TINY_GENERATION_TASK.format(data=data))

    report = eval_json(capsys, str(finished_run.path), "--suite", "lm-eval", "--tasks", "tiny_colours,tiny_colours_said",
                       "--include", str(tmp_path / "tasks"), "--max-samples", "3")

    chosen, said = report["results"]["tiny_colours"], report["results"]["tiny_colours_said"]
    assert chosen["n"] == said["n"] == 3
    assert chosen["acc,none"] in (0.0, 1 / 3, 2 / 3, 1.0)
    assert said["exact_match,none"] in (0.0, 1 / 3, 2 / 3, 1.0)


def test_vqa_and_audio_score_local_media_records(finished_run, capsys):
    vqa = eval_json(capsys, str(finished_run.path), "--suite", "vqa", "--data", "builtin:tiny-media/vision_qa_heldout.json",
                    "--format", "sharegpt", "--max-samples", "2", "--max-new-tokens", "4")
    audio = eval_json(capsys, str(finished_run.path), "--suite", "audio", "--data", "builtin:tiny-media/audio_qa_heldout.jsonl",
                      "--format", "sharegpt", "--max-samples", "2", "--max-new-tokens", "4")

    shapes, beeps = vqa["results"]["vision_qa_heldout"], audio["results"]["audio_qa_heldout"]
    assert shapes["n"] == beeps["n"] == 2
    assert shapes["vqa_accuracy"] in (0.0, 0.5, 1.0) and beeps["accuracy"] in (0.0, 0.5, 1.0)


def test_a_suite_without_records_to_score_says_so_and_the_other_suites_are_kept(finished_run, capsys):
    from omni_runner.cli import main

    code = main(["eval", str(finished_run.path), "--suite", "talker,function-calling", "--max-samples", "1",
                 "--max-new-tokens", "2"])
    assert code == 1
    assert "no eval data set of the recipe is scored by a speech-output capability" in capsys.readouterr().err
    kept = json.loads((finished_run.eval / "function-calling.json").read_text())
    assert (kept["step"], kept["results"]["xlam-heldout"]["n"]) == (6, 1)
