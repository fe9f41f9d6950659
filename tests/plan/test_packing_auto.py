"""`training.packing: auto`: the decision rule on measured lengths, and what the plan says about it."""

from __future__ import annotations

from pathlib import Path

import pytest

from omni_runner.plan import compile_plan
from omni_runner.plan.packing import (
    decide_packing,
    packed_fill,
    packed_rows,
    padded_fill,
)
from omni_runner.recipe import load_recipe

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def test_samples_that_cannot_share_a_row_are_padded():
    lengths = [70 + (i * 7) % 23 for i in range(256)]  # ~80 tokens: two never fit 128
    choice = decide_packing(lengths, seq_len=128, micro_batch=32)
    assert not choice.pack
    assert choice.per_row == 1.0 and choice.packed_fill == pytest.approx(choice.padded_fill)


def test_short_even_samples_gain_too_little_to_pay_for_the_mask():
    lengths = [30 + i % 3 for i in range(256)]
    choice = decide_packing(lengths, seq_len=512, micro_batch=8)
    assert not choice.pack and choice.packed_fill > choice.padded_fill


def test_under_flash_attention_any_padding_saved_is_worth_packing():
    lengths = [30 + i % 3 for i in range(256)]
    choice = decide_packing(lengths, seq_len=512, micro_batch=8, varlen=True)
    assert choice.pack and choice.packed_fill == 1.0
    assert "varlen" in choice.decision(512)["why"]
    assert not decide_packing([64] * 256, seq_len=512, micro_batch=8, varlen=True).pack  # nothing to save


def test_mixed_lengths_that_share_rows_are_packed():
    lengths = [40 + (i * 97) % 400 for i in range(256)]
    choice = decide_packing(lengths, seq_len=512, micro_batch=8)
    assert choice.pack and choice.packed_fill > 1.1 * choice.padded_fill


def test_fills_count_real_tokens_against_the_padded_tensors():
    assert padded_fill([10, 30, 20, 20], micro_batch=2) == pytest.approx(80 / (2 * 30 + 2 * 20))
    # first-fit into 2 rows of 50: [30, 20] and [40]; 25 fits nowhere and opens the next micro-batch
    assert packed_rows([30, 40, 20, 25], seq_len=50, micro_batch=2) == [[50, 40], [25]]
    assert packed_fill([30, 40, 20, 25], seq_len=50, micro_batch=2) == pytest.approx(115 / (2 * 50 + 1 * 25))


def test_samples_longer_than_seq_len_are_left_out_as_the_trainer_skips_them():
    assert decide_packing([80] * 10 + [900], seq_len=128, micro_batch=4).samples == 10


def _plan(overrides, measure=None):
    recipe = load_recipe(RECIPES / "tiny_omni.yaml", overrides=["training.packing=auto", *overrides])
    return compile_plan(recipe, measure).to_json()["stages"][0]


def test_a_recipe_on_flash_attention_plans_varlen_packing():
    stage = _plan(["base_model.attn_implementation=flash_attention_2", "training.seq_len=512", "training.micro_batch=8"],
                  lambda capabilities: [30 + i % 3 for i in range(256)])
    assert stage["packing"] is True
    assert "flash-attention varlen row" in next(d for d in stage["decisions"] if "packing" in d["what"])["why"]


def test_the_plan_says_what_auto_decided_with_the_measured_numbers():
    stage = _plan(["training.seq_len=128", "training.micro_batch=32"], lambda capabilities: [80] * 256)
    assert stage["packing"] is False
    decision = next(d for d in stage["decisions"] if "packing" in d["what"])
    assert decision["what"] == "packing off (training.packing: auto)"
    assert "256 samples" in decision["why"] and "median 80 tokens" in decision["why"] and "seq_len 128" in decision["why"]


def test_without_measured_lengths_the_plan_packs_and_says_why():
    stage = _plan([])
    assert stage["packing"] is True
    assert any(d["what"] == "packing on (training.packing: auto, lengths not measured)" for d in stage["decisions"])


def test_packing_written_as_true_or_false_is_kept_without_a_decision():
    recipe = load_recipe(RECIPES / "tiny_omni.yaml", overrides=["training.packing=false"])
    stage = compile_plan(recipe, lambda capabilities: [80] * 256).to_json()["stages"][0]
    assert stage["packing"] is False and not any("packing" in d["what"] for d in stage["decisions"])


def test_omni_run_plan_measures_the_tiny_recipe_without_torch_or_transformers(_omni_runner_cache):
    import json
    import os
    import subprocess
    import sys

    from omni_runner.models.tiny import ensure_tiny_model

    ensure_tiny_model()  # its tokenizer files are what the plan counts with
    child = ("import json, sys\nimport omni_runner.cli as cli\nrc = cli.main(json.loads(sys.argv[1]))\n"
             "print('HEAVY=' + json.dumps([m for m in ('torch', 'transformers') if m in sys.modules]), file=sys.stderr)\n"
             "sys.exit(rc)\n")
    argv = ["plan", "--json", str(RECIPES / "tiny_omni.yaml"), "--set", "training.packing=auto"]
    done = subprocess.run([sys.executable, "-c", child, json.dumps(argv)], env=os.environ.copy(), capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stderr.rsplit("HEAVY=", 1)[1]) == []
    stage = json.loads(done.stdout)["stages"][0]
    decision = next(d for d in stage["decisions"] if d["what"].startswith("packing "))
    assert decision["what"] == f"packing {'on' if stage['packing'] else 'off'} (training.packing: auto)"
    assert "256 samples of the stage's mixture measured" in decision["why"]
