"""`omni-run eval` says what is wrong before loading anything: an unknown suite, a target that is
not there, a checkpoint the run does not have, a suite whose inputs the model cannot take; and the
pieces of its report (the difference per metric, the TUI's line for an eval event)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from omni_runner.cli import main
from omni_runner.eval.results import difference, table_rows
from omni_runner.eval.suites import SUITES, Suite
from omni_runner.run.progress import format_eval

RECIPE = "base_model: {path: builtin:tiny-qwen2.5-omni}\neval: {datasets: [], max_samples: 2, max_new_tokens: 4}\n"


def make_run(root: Path, *checkpoints: int, final: bool = False) -> Path:
    run = root / "runs" / "tiny-20261202-010000"
    run.mkdir(parents=True)
    (run / "plan.json").write_text("{}")
    (run / "recipe.yaml").write_text(RECIPE)
    for step in checkpoints:
        (run / "checkpoints" / f"step-{step}").mkdir(parents=True)
    if final:
        (run / "final").mkdir()
    return run


def eval_error(capsys, *args: str) -> str:
    assert main(["eval", *args]) == 1
    return capsys.readouterr().err


def test_an_unknown_suite_is_named_with_the_known_ones(tmp_path, capsys):
    err = eval_error(capsys, str(make_run(tmp_path, final=True)), "--suite", "function-calling,mmlu")
    assert "unknown suite 'mmlu'" in err
    assert all(name in err for name in SUITES)


def test_a_missing_target_says_what_a_target_is(tmp_path, capsys):
    err = eval_error(capsys, str(tmp_path / "nowhere"), "--suite", "function-calling", "--runs-dir", str(tmp_path))
    assert "no run" in err and "model folder" in err


def test_a_checkpoint_the_run_does_not_have_lists_those_it_has(tmp_path, capsys):
    run = make_run(tmp_path, 2, 4)
    err = eval_error(capsys, str(run), "--suite", "function-calling", "--checkpoint", "step-7")
    assert "no checkpoint step-7" in err and "step-2, step-4" in err


def test_a_run_without_final_points_at_its_checkpoints(tmp_path, capsys):
    err = eval_error(capsys, str(make_run(tmp_path, 2)), "--suite", "function-calling")
    assert "no final/" in err and "--checkpoint" in err and "step-2" in err


def test_a_suite_whose_inputs_the_model_cannot_take_is_refused_before_loading(tmp_path, capsys):
    text_only = tmp_path / "qwen2"
    text_only.mkdir()
    (text_only / "config.json").write_text(json.dumps({"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"],
                                                        "hidden_size": 64, "num_hidden_layers": 2, "vocab_size": 100}))
    err = eval_error(capsys, str(text_only), "--suite", "vqa,talker")
    assert "suite vqa needs image_in" in err and "suite talker needs audio_out" in err


def test_generation_is_refused_for_a_run_that_trained_no_image_decoder(tmp_path, capsys):
    from omni_runner.models.tiny import ensure_tiny_model

    run = make_run(tmp_path, final=True)
    (run / "final" / "config.json").write_text((ensure_tiny_model() / "config.json").read_text())
    err = eval_error(capsys, str(run), "--suite", "generation")
    assert "suite generation needs image_out" in err and "decoders.image" in err


def test_data_needs_its_format(tmp_path, capsys):
    err = eval_error(capsys, str(tmp_path), "--suite", "function-calling", "--data", "x.jsonl")
    assert "--data and --format go together" in err


def test_compare_base_needs_a_run(tmp_path, capsys):
    from omni_runner.models.tiny import ensure_tiny_model

    err = eval_error(capsys, str(ensure_tiny_model()), "--suite", "function-calling", "--compare", "base")
    assert "--compare base needs a run" in err


def test_the_difference_is_tuned_minus_base_for_each_metric_both_computed():
    base = {"xlam": {"exact_match": 0.25, "ast_match": 0.5, "n": 4}, "gen": {"clip_score": None, "n": 0}}
    tuned = {"xlam": {"exact_match": 0.75, "ast_match": 0.5, "n": 4, "failures": {"no_call": 1}},
             "gen": {"clip_score": None, "n": 0, "note": "not computed"}}
    assert difference(base, tuned) == {"xlam": {"exact_match": 0.5, "ast_match": 0.0}, "gen": {"clip_score": None}}
    report = {"results": tuned, "base": base, "difference": difference(base, tuned)}
    assert table_rows(report)[0] == ("xlam", "exact_match", "4", 0.25, 0.75, 0.5)


def test_an_eval_event_of_a_suite_reads_with_its_suite_and_base_scores():
    event = {"type": "eval", "dataset": "xlam-heldout", "capability": None, "suite": "function-calling",
             "metrics": {"ast_match": 0.75, "clip_score": None}, "base_metrics": {"ast_match": 0.25}}
    assert format_eval(event) == "function-calling xlam-heldout: ast_match 0.750 (base 0.250), clip_score not computed"


def test_every_registered_suite_names_a_module_with_a_run_function():
    import importlib

    for suite in SUITES.values():
        assert isinstance(suite, Suite)
        assert callable(importlib.import_module(suite.module).run), suite.name


def test_the_trained_parts_the_refusals_read_are_those_the_models_save():
    from omni_runner.eval.target import ENCODERS_PART, GENERATION_PART
    from omni_runner.models import encoders, generation

    assert (ENCODERS_PART, GENERATION_PART) == (encoders.PART_NAME, generation.PART_NAME)


@pytest.fixture(autouse=True)
def _no_runs_in_the_checkout(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
