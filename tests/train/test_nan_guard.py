"""The NaN/Inf guard and `training.nan_policy`: a step with a non-finite loss is skipped without touching
the weights; `after` of them in a row stop the run with advice, or roll it back to the last good
checkpoint with a lower learning rate, and training goes on.

Non-finite values are produced the way they appear in real runs: a trainable weight that has become NaN,
inside the real trainer's real loop.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from conftest import prepare
from omni_runner.run.events import read_events
from omni_runner.train import checkpoint as ckpt
from omni_runner.train.loop import NonFiniteLossAbort, Trainer

pytestmark = pytest.mark.slow


def poison(trainer: Trainer) -> str:
    """Turn the first trainable weight into NaN, as a diverged update would; returns its name."""
    name, weight = next((n, p) for n, p in trainer.model.named_parameters() if p.requires_grad)
    weight.data.fill_(float("nan"))
    return name


def trainable(trainer: Trainer) -> dict:
    return {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}


class PoisonedTrainer(Trainer):
    """The real trainer, whose trainable weight turns NaN right before each step `poison_when` picks
    (as a diverged update would leave it); it keeps each step's input weights and, at the first
    poisoning, the checkpoints then on disk."""

    def __init__(self, run, poison_when: Callable[[Trainer], bool]) -> None:
        super().__init__(run, resume=False)
        self.poison_when = poison_when
        self.step_inputs: list[tuple[int, dict]] = []
        self.checkpoints_at_poison: dict[str, ckpt.CheckpointContents] | None = None

    def train_step(self, stage):
        if self.poison_when(self):
            if self.checkpoints_at_poison is None:
                self.checkpoints_at_poison = {p.name: ckpt.load_checkpoint(p) for p in ckpt.list_checkpoints(self.run.checkpoints)}
            poison(self)
        self.step_inputs.append((self.progress.step, trainable(self)))
        return super().train_step(stage)


@pytest.fixture(scope="module")
def make_trainer(tmp_path_factory):
    """Set-up trainers for the tiny recipe (6 steps, a checkpoint every 2, nan_policy.after 2)."""
    made: list[Trainer] = []

    def make(*overrides: str, poison_when: Callable[[Trainer], bool] = lambda trainer: False) -> PoisonedTrainer:
        run = prepare(tmp_path_factory.mktemp("nan"), "training.nan_policy.after=2", *overrides)
        trainer = PoisonedTrainer(run, poison_when)
        trainer.setup()
        made.append(trainer)
        return trainer

    yield make
    for trainer in made:  # restore the signal handlers train() installed; close the socket
        trainer.controller.close("failed", "test over")


@pytest.fixture(scope="module")
def rolled_back(make_trainer):
    """Steps 1-3 fine, a checkpoint at 2; the weight turns NaN before step 4 (once): steps 4 and 5 are
    skipped, and the run rolls back to step 2."""
    trainer = make_trainer("training.nan_policy.action=rollback",
                           poison_when=lambda t: t.progress.step == 3 and t.progress.rollbacks == 0)
    return trainer, trainer.train()


def warnings(trainer: Trainer, source: str) -> list[dict]:
    return [e for e in read_events(trainer.run.events) if e["type"] == "warning" and e["source"] == source]


def test_a_non_finite_step_is_skipped_without_touching_the_weights(make_trainer):
    trainer = make_trainer()  # poisoned by hand, one step
    before = trainable(trainer)
    poisoned = poison(trainer)
    trainer.train_step(trainer.stages[0])
    assert (trainer.progress.skipped_steps, trainer.progress.skipped_in_a_row) == (1, 1)
    for name, parameter in trainer.model.named_parameters():
        if parameter.requires_grad and name != poisoned:
            assert parameter.detach().equal(before[name]), f"{name} changed during a skipped step"
    assert "skipped" in warnings(trainer, "nan_guard")[-1]["message"]


def test_a_rollback_restores_the_checkpoint_lowers_the_lr_and_the_run_finishes(rolled_back):
    trainer, outcome = rolled_back
    assert outcome == "finished" and trainer.progress.step == 6
    rollback = warnings(trainer, "nan_policy")[0]
    assert rollback["checkpoint"].endswith("step-2") and (rollback["rollbacks"], rollback["lr_scale"]) == (1, 0.5)
    assert "steps 4-5" in rollback["message"]
    # The first step after the rollback starts from step 2's saved weights, not the poisoned ones.
    kept = trainer.checkpoints_at_poison["step-2"].weights
    step_2_again = [weights for step, weights in trainer.step_inputs if step == 2][1]
    for name, value in step_2_again.items():
        assert value.equal(kept[name].to(value.dtype)), name
    # Every step after the rollback uses half the learning rate the first attempt used at that step.
    lrs = [(e["step"], e["lr"]) for e in read_events(trainer.run.events) if e["type"] == "step"]
    first, again = dict(lrs[:3]), dict(lrs[4:])
    assert [step for step, _ in lrs] == [1, 2, 3, 4, 3, 4, 5, 6]
    assert again[3] == pytest.approx(first[3] * 0.5)
    assert all(value.isfinite().all() for value in trainable(trainer).values())


def test_the_rollback_is_saved_so_a_later_resume_keeps_the_lower_lr_and_the_count(rolled_back):
    trainer, _ = rolled_back
    saved = ckpt.load_checkpoint(trainer.run.checkpoints / "step-2").trainer_state
    assert saved["reason"] == "rollback"
    assert (saved["progress"]["rollbacks"], saved["progress"]["lr_scale"]) == (1, 0.5)
    assert ckpt.find_resumable(trainer.run.path) == trainer.run.checkpoints / "step-6"
    resumed = ckpt.load_checkpoint(trainer.run.checkpoints / "step-6").trainer_state["progress"]
    assert (resumed["rollbacks"], resumed["lr_scale"]) == (1, 0.5)


def test_skip_data_continues_after_the_batches_that_produced_the_nans(rolled_back):
    trainer, _ = rolled_back
    before = trainer.checkpoints_at_poison["step-2"].trainer_state["progress"]["data"]
    after = ckpt.load_checkpoint(trainer.run.checkpoints / "step-2").trainer_state["progress"]["data"]
    assert sum(after["seen"].values()) > sum(before["seen"].values())  # steps 3-5's samples are not replayed


def test_the_rollback_cap_stops_the_run_with_what_happened_and_what_to_try(make_trainer):
    trainer = make_trainer("training.nan_policy.action=rollback", "training.nan_policy.max_rollbacks=1",
                           poison_when=lambda t: t.progress.step == 2)
    with pytest.raises(NonFiniteLossAbort) as stopped:
        trainer.train()
    message = str(stopped.value)
    assert "it was rolled back 1 of at most 1 times (training.nan_policy.max_rollbacks)" in message
    assert "the last good checkpoint is" in message and "step-2" in message and "training.lr" in message
    assert len(warnings(trainer, "nan_policy")) == 1


def test_with_nothing_to_roll_back_to_the_run_stops_clearly(make_trainer):
    trainer = make_trainer("training.nan_policy.action=rollback", poison_when=lambda t: t.progress.step == 0)
    with pytest.raises(NonFiniteLossAbort, match="there is no checkpoint from step 0 or before to roll back to"):
        trainer.train()


def test_action_stop_names_the_last_good_checkpoint_and_the_rollback_option(make_trainer):
    trainer = make_trainer(poison_when=lambda t: t.progress.step == 2)
    with pytest.raises(NonFiniteLossAbort) as stopped:
        trainer.train()
    message = str(stopped.value)
    assert message.startswith("2 steps in a row (steps 3-4) had a non-finite loss or gradient norm")
    assert "the last good checkpoint is" in message and message.count("step-2") == 1
    assert "training.nan_policy.action: rollback" in message and "omni-run resume" in message
