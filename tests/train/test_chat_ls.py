"""`omni-run ls` over real run folders (healthy, corrupt, missing status) and `omni-run chat` on a saved `final/`."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from omni_runner.cli import main
from omni_runner.run.status import write_json_atomic


def omni_run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "omni_runner.cli", *args], input=stdin, capture_output=True, check=False,
                          text=True, timeout=300)


def make_run(runs: Path, name: str, status: dict | str | None) -> Path:
    run = runs / name
    run.mkdir(parents=True)
    (run / "plan.json").write_text("{}")
    if isinstance(status, dict):
        write_json_atomic(run / "status.json", status)
    elif isinstance(status, str):
        (run / "status.json").write_text(status)
    return run


def finished(**fields) -> dict:
    return {"name": "tiny", "state": "finished", "step": 40, "total_steps": 40, "loss": 1.23456,
            "pid": None, "supervisor_pid": None, "updated_at": time.time() - 3 * 3600, **fields}


def test_ls_shows_state_progress_loss_and_age_of_each_run(tmp_path):
    make_run(tmp_path, "tiny-20261127-010000", finished())

    result = omni_run("ls", "--runs-dir", str(tmp_path))

    assert result.returncode == 0, result.stderr
    header, row = result.stdout.splitlines()
    assert header.split() == ["RUN", "STATE", "STEP", "LOSS", "AGE"]
    assert row.split() == ["tiny-20261127-010000", "finished", "40/40", "1.2346", "3h"]


def test_ls_lists_runs_whose_status_is_corrupt_or_missing_as_unknown(tmp_path):
    make_run(tmp_path, "a-corrupt", '{"state": "runn')
    make_run(tmp_path, "b-missing", None)

    result = omni_run("ls", "--runs-dir", str(tmp_path), "--json")

    assert result.returncode == 0, result.stderr
    rows = {row["run"]: row for row in map(json.loads, result.stdout.splitlines())}
    assert {name: row["state"] for name, row in rows.items()} == {"a-corrupt": "unknown", "b-missing": "unknown"}
    assert all(row["step"] is None and row["loss"] is None for row in rows.values())


def test_ls_reads_a_status_that_is_a_json_list_or_binary_as_unknown(tmp_path):
    make_run(tmp_path, "a-list", "[1, 2, 3]")
    (make_run(tmp_path, "b-binary", None) / "status.json").write_bytes(b"\x00\xff\xfe\x89PNG")

    result = omni_run("ls", "--runs-dir", str(tmp_path), "--json")

    assert result.returncode == 0, result.stderr
    assert {row["run"]: row["state"] for row in map(json.loads, result.stdout.splitlines())} == {
        "a-list": "unknown", "b-binary": "unknown"}


@pytest.mark.parametrize("pid", [10**30, -1, 0, True, "123", [1]], ids=["huge", "minus-one", "zero", "bool", "string", "list"])
def test_ls_treats_an_impossible_pid_in_a_corrupt_status_as_no_process(tmp_path, pid):
    """-1 once reached kill(), which succeeds for "every process", so the run looked alive."""
    make_run(tmp_path, "tiny", finished(state="running", pid=pid, supervisor_pid=pid))

    result = omni_run("ls", "--runs-dir", str(tmp_path), "--json")

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["state"] == "stale (running)"


def test_ls_marks_an_active_run_whose_processes_are_gone_as_stale(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    make_run(tmp_path, "killed", finished(state="running", step=7, pid=gone.pid, supervisor_pid=None))
    make_run(tmp_path, "live", finished(state="running", step=3, pid=os.getpid()))

    result = omni_run("ls", "--runs-dir", str(tmp_path), "--json")

    states = {row["run"]: row["state"] for row in map(json.loads, result.stdout.splitlines())}
    assert states == {"killed": "stale (running)", "live": "running"}


def test_ls_without_runs_says_how_to_start_one(tmp_path):
    result = omni_run("ls", "--runs-dir", str(tmp_path / "none"))
    assert result.returncode == 0 and "no runs in" in result.stdout and "omni-run RECIPE.yaml" in result.stdout


def test_chat_on_an_unknown_run_says_where_it_looked(tmp_path):
    result = omni_run("chat", "nosuchrun", "--runs-dir", str(tmp_path), "--prompt", "hi")
    assert result.returncode == 1 and "no run 'nosuchrun'" in result.stderr and "Traceback" not in result.stderr


def test_chat_with_a_tools_file_that_is_not_json_points_at_the_spot(tmp_path):
    tools = tmp_path / "tools.json"
    tools.write_text('[{"name": "get_weather",\n  "description": oops}]')
    result = omni_run("chat", "any-run", "--runs-dir", str(tmp_path), "--tools", str(tools), "--prompt", "hi")
    assert result.returncode == 1 and f"{tools}:2:18: not valid JSON" in result.stderr
    assert "Traceback" not in result.stderr


def test_chat_with_a_tools_file_that_lists_no_functions_says_what_it_takes(tmp_path):
    tools = tmp_path / "tools.json"
    tools.write_text('{"get_weather": {}}')
    result = omni_run("chat", "any-run", "--runs-dir", str(tmp_path), "--tools", str(tools), "--prompt", "hi")
    assert result.returncode == 1 and "--tools takes a JSON list like" in result.stderr


@pytest.fixture(scope="module")
def run_with_final(tmp_path_factory) -> Path:
    """A run folder whose `final/` is a LoRA adapter saved from a freshly loaded tiny model (no training)."""
    from omni_runner.models.export import save_final
    from omni_runner.models.load import load_for_training

    run = make_run(tmp_path_factory.mktemp("runs"), "tiny-final", finished())
    recipe = {
        "base_model": {"path": "builtin:tiny-qwen2.5-omni", "quantization": "auto", "dtype": "auto",
                       "attn_implementation": "auto", "trust_remote_code": False},
        "training": {"method": "lora", "gradient_checkpointing": "auto",
                     "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}},
        "stages": [],
        "hardware": {"device": "cpu"},
    }
    save_final(load_for_training(recipe, run, "cpu"), run / "final")
    return run


@pytest.mark.slow
def test_chat_answers_one_prompt_from_a_saved_final_adapter(run_with_final, capsys):
    # In-process (the fixture already paid for torch); the CLI's subprocess path is covered by the tests above.
    code = main(["chat", str(run_with_final), "--prompt", "Schedule concert for 2026-08-08.", "--max-new-tokens", "4"])
    assert code == 0
    assert capsys.readouterr().out.count("\n") == 1


@pytest.mark.slow
def test_chat_without_prompt_answers_each_stdin_line_until_end_of_input(run_with_final, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("hello\n\nwhat is the weather in Paris?\n"))
    code = main(["chat", "tiny-final", "--runs-dir", str(run_with_final.parent), "--max-new-tokens", "3"])
    assert code == 0
    out = capsys.readouterr().out
    assert "you>" not in out  # not a terminal: bare replies, one per non-empty line
    assert out.count("\n") == 2


@pytest.mark.slow
def test_chat_offers_the_tools_of_a_tools_file(run_with_final, tmp_path, capsys):
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps([{"name": "get_weather", "description": "Weather now.",
                                  "parameters": {"city": {"type": "str", "description": "City name."}}}]))
    code = main(["chat", str(run_with_final), "--tools", str(tools), "--prompt", "Weather in Oslo?", "--max-new-tokens", "4"])
    assert code == 0 and capsys.readouterr().out.count("\n") == 1


def test_ls_marks_a_trainer_whose_supervisor_died_as_running_without_supervisor(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    make_run(tmp_path, "orphan", finished(state="running", step=3, pid=os.getpid(), supervisor_pid=gone.pid))

    result = omni_run("ls", "--runs-dir", str(tmp_path), "--json")

    assert json.loads(result.stdout)["state"] == "running (no supervisor)"
