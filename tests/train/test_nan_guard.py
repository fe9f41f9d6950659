"""The NaN/Inf guard: a step with a non-finite loss is skipped and counted, and too many fail the run.

Non-finite values are produced the way they appear in real runs: a weight that has become NaN.
"""

from __future__ import annotations

import pytest

from conftest import prepare
from omni_runner.run.events import read_events
from omni_runner.train.loop import NonFiniteLossAbort, Trainer

pytestmark = pytest.mark.slow


@pytest.fixture
def poisoned_trainer(tmp_path):
    run = prepare(tmp_path, "training.max_skipped_steps=1")
    trainer = Trainer(run, resume=False)
    trainer.setup()
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    name, weight = next((n, p) for n, p in trainer.model.named_parameters() if p.requires_grad)
    weight.data.fill_(float("nan"))
    return trainer, before, name


def test_a_non_finite_step_is_skipped_without_touching_the_weights(poisoned_trainer):
    trainer, before, poisoned = poisoned_trainer
    trainer.train_step(trainer.stages[0])
    assert trainer.progress.skipped_steps == 1
    for name, parameter in trainer.model.named_parameters():
        if parameter.requires_grad and name != poisoned:
            assert parameter.detach().equal(before[name]), f"{name} changed during a skipped step"
    warning = [e for e in read_events(trainer.run.events) if e["type"] == "warning"][-1]
    assert warning["source"] == "nan_guard" and "skipped" in warning["message"]


def test_more_skipped_steps_than_allowed_abort_the_run(poisoned_trainer):
    trainer, _, _ = poisoned_trainer
    trainer.train_step(trainer.stages[0])
    with pytest.raises(NonFiniteLossAbort, match="2 steps had a non-finite loss"):
        trainer.train_step(trainer.stages[0])
