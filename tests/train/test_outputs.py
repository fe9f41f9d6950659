"""What a finished run leaves for its user: eval scores, `omni-run ls`, `omni-run chat`."""

from __future__ import annotations

import json
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
