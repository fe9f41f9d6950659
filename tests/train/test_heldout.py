"""Held-out loss per capability (eval/heldout.py): the trainer's own loss on `eval.datasets`, computed
between steps without changing what training does next."""

from __future__ import annotations

import json
import math

import pytest
import torch

from conftest import prepare
from omni_runner.eval.heldout import summarise
from omni_runner.train.checkpoint import capture_rng_state
from omni_runner.train.loop import Trainer


def test_the_loss_is_the_mean_over_reply_tokens_and_perplexity_its_exponential():
    summary = summarise({"nll": 6.0, "tokens": 4, "n": 2, "skipped": 1})
    assert summary == {"loss": 1.5, "perplexity": math.exp(1.5), "n": 2, "tokens": 4, "skipped": 1}


def test_a_capability_without_scored_tokens_has_no_loss():
    assert summarise({"nll": 0.0, "tokens": 0, "n": 0, "skipped": 3}) == {
        "loss": None, "perplexity": None, "n": 0, "tokens": 0, "skipped": 3}


@pytest.mark.slow
def test_an_evaluation_between_steps_leaves_everything_the_next_step_reads_unchanged(tmp_path):
    """Random generators, data position, weights and module modes are what the next step depends on;
    tests/train/test_resume.py also compares, step by step, losses after an `eval.every_steps`
    evaluation (the reference run's) with those of a run that has none."""
    trainer = Trainer(prepare(tmp_path, "eval.max_samples=2", "eval.max_new_tokens=2"), resume=False)
    trainer.setup()
    try:
        trainer.train_step(trainer.stages[0])
        before = _state(trainer)
        trainer.evaluate(trainer.run.eval / "step-1")
        after = _state(trainer)
    finally:
        trainer.batches.stream.close()
        trainer.events.close()

    assert after["data"] == before["data"] and after["modes"] == before["modes"]
    for key in ("torch", "numpy"):
        assert torch.equal(after["rng"][key], before["rng"][key])
    assert after["rng"]["python"] == before["rng"]["python"]
    assert all(torch.equal(after["weights"][name], weight) for name, weight in before["weights"].items())
    heldout = json.loads((trainer.run.eval / "step-1" / "perplexity.json").read_text())
    assert list(heldout) == ["tool-calling"]
    assert heldout["tool-calling"]["n"] == 2 and heldout["tool-calling"]["tokens"] > 0
    assert heldout["tool-calling"]["perplexity"] == pytest.approx(math.exp(heldout["tool-calling"]["loss"]))


def _state(trainer: Trainer) -> dict:
    rng = capture_rng_state()
    return {
        "data": trainer.batches.state_dict(), "modes": [m.training for m in trainer.model.modules()],
        "rng": {"torch": rng["torch"], "numpy": rng["numpy"][1], "python": rng["python"]},
        "weights": {n: p.detach().clone() for n, p in trainer.loaded.named_parameters() if p.requires_grad},
    }
