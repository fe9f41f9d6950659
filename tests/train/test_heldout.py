"""Held-out loss per capability (eval/heldout.py): the trainer's own loss on `eval.datasets`, computed
between steps without changing what training does next."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from omni_runner.eval.heldout import heldout_losses, summarise
from omni_runner.plain_yaml import read_plain_yaml
from omni_runner.run.prepare import prepare_run
from omni_runner.train.checkpoint import capture_rng_state

TINY = Path(__file__).resolve().parents[2] / "recipes" / "tiny_omni.yaml"


def test_the_loss_is_the_mean_over_reply_tokens_and_perplexity_its_exponential():
    summary = summarise({"nll": 6.0, "tokens": 4, "n": 2, "skipped": 1})
    assert summary == {"loss": 1.5, "perplexity": math.exp(1.5), "n": 2, "tokens": 4, "skipped": 1}


def test_a_capability_without_scored_tokens_has_no_loss():
    assert summarise({"nll": 0.0, "tokens": 0, "n": 0, "skipped": 3}) == {
        "loss": None, "perplexity": None, "n": 0, "tokens": 0, "skipped": 3}


@pytest.mark.slow
def test_held_out_loss_on_a_real_tiny_model_leaves_what_training_reads_unchanged(tmp_path):
    """Random generators, weights, gradients and each module's mode are what the next step depends on;
    tests/train/test_resume.py also compares, step by step, losses after an `eval.every_steps`
    evaluation (the reference run's) with those of a run that has none."""
    from omni_runner.models.load import load_for_training

    run = prepare_run(TINY, ["training.method=lora"], None, run_dir=tmp_path / "run")
    recipe = read_plain_yaml(run.recipe)
    loaded = load_for_training(recipe, run.path, "cpu")
    loaded.model.train()
    next(loaded.model.modules()).eval()  # a mixed set of modes must come back as it was, not all in train
    modes, rng = [m.training for m in loaded.model.modules()], capture_rng_state()
    weights = {n: p.detach().clone() for n, p in loaded.named_parameters() if p.requires_grad}

    losses = heldout_losses(loaded, recipe, run.path, max_samples=2)

    assert [m.training for m in loaded.model.modules()] == modes
    after = capture_rng_state()
    assert torch.equal(after["torch"], rng["torch"]) and after["python"] == rng["python"]
    assert all(torch.equal(p, weights[n]) and p.grad is None for n, p in loaded.named_parameters() if p.requires_grad)
    assert list(losses) == ["tool-calling"]
    assert losses["tool-calling"]["n"] == 2 and losses["tool-calling"]["tokens"] > 0
    assert losses["tool-calling"]["perplexity"] == pytest.approx(math.exp(losses["tool-calling"]["loss"]))
