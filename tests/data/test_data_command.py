"""`omni-run data check` and `data preview` on a real recipe file with a broken data file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from omni_runner.commands import data as data_command

RECIPE = """\
name: data-check
base_model:
  path: builtin:tiny-qwen2.5-omni
datasets:
  tools: {path: builtin:tool-calling/xlam_heldout.jsonl, format: xlam}
  chat: {path: chat.jsonl, format: alpaca, max_bad_fraction: 0.5}
capabilities:
  tool-calling: {weight: 3, datasets: [tools]}
  streaming: {weight: 1, datasets: [chat]}
training:
  max_steps: 10
  seq_len: 512
"""
CHAT_LINES = [
    '{"instruction": "Say hi.", "input": "", "output": "Hi!"}',
    '{"instruction": "Say hi.", "outp',
    '{"instruction": "Name a colour.", "output": "Blue."}',
]


@pytest.fixture
def recipe(tmp_path: Path, tokenizer) -> Path:
    (tmp_path / "chat.jsonl").write_text("\n".join(CHAT_LINES) + "\n")
    path = tmp_path / "recipe.yaml"
    path.write_text(RECIPE)
    return path


def run_data(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="omni-run data")
    data_command.add_arguments(parser)
    return data_command.run(parser.parse_args(list(argv)))


def test_check_reports_counts_bad_records_lengths_and_mixture_as_json(recipe, capsys):
    assert run_data("check", str(recipe), "--json") == 0
    report = json.loads(capsys.readouterr().out)
    chat = report["datasets"]["chat"]
    assert (chat["records"], chat["usable"], chat["bad"]) == (3, 2, 1)
    assert report["bad_records"] == [
        {"dataset": "chat", "location": "chat.jsonl:2", "reason": "line is not valid JSON (Unterminated string starting, column 28)"}
    ]
    assert set(report["datasets"]["tools"]["tokens"]) == {"min", "median", "p95", "max"}
    assert report["mixture"]["tool-calling"]["probability"] == 0.75


def test_check_fails_when_a_dataset_passes_its_max_bad_fraction(recipe, capsys):
    assert run_data("check", str(recipe), "--set", "datasets.chat.max_bad_fraction=0.1") == 1
    output = capsys.readouterr().out
    assert "chat (alpaca, streaming): 2/3 usable, 1 bad (33.3%) TOO MANY BAD (limit 0.1)" in output
    assert "chat: chat.jsonl:2: line is not valid JSON" in output


def test_preview_brackets_the_trained_tokens_when_not_a_terminal(recipe, capsys):
    assert run_data("preview", str(recipe), "--capability", "streaming", "-n", "2") == 0
    output = capsys.readouterr().out
    assert "--- chat chat.jsonl:1" in output
    assert "<|im_start|>user\nSay hi.<|im_end|>\n<|im_start|>assistant\n[[Hi!<|im_end|>]]" in output
    assert "\x1b[" not in output


def test_preview_of_a_capability_not_in_the_recipe_is_a_clear_error(recipe, capsys):
    assert run_data("preview", str(recipe), "--capability", "thinking") == 1
    assert "capability 'thinking' is not in the recipe (it has: tool-calling, streaming)" in capsys.readouterr().err


def test_check_of_a_capability_subset_reads_only_its_datasets(recipe, capsys):
    assert run_data("check", str(recipe), "--json", "--capabilities", "streaming") == 0
    report = json.loads(capsys.readouterr().out)
    assert list(report["datasets"]) == ["chat"] and list(report["mixture"]) == ["streaming"]
