"""The NaN/Inf guard and `training.nan_policy`: a step with a non-finite loss is skipped without touching
the weights; `after` of them in a row stop the run with advice, or roll it back to the last good
checkpoint with a lower learning rate, and training goes on.

Non-finite values are produced the way they appear in real runs: a trainable weight that has become NaN,
inside the real trainer's real loop.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from conftest import SMALL, TINY
from omni_runner.run.events import read_events
from omni_runner.run.prepare import prepare_run
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
    """Set-up trainers for short tiny runs (4 steps of one short `cot` sample, a checkpoint every 2)."""
    made: list[Trainer] = []

    def make(*overrides: str, poison_when: Callable[[Trainer], bool]) -> PoisonedTrainer:
        run = prepare_run(TINY, [*SMALL, "training.max_steps=4", "training.seq_len=96", *overrides], ["cot"],
                          run_dir=tmp_path_factory.mktemp("nan") / "run")
        trainer = PoisonedTrainer(run, poison_when)
        trainer.setup()
        made.append(trainer)
        return trainer

    yield make
    for trainer in made:  # restore the signal handlers train() installed; close the socket
        trainer.controller.close("failed", "test over")


def warnings(trainer: Trainer, source: str) -> list[dict]:
    return [e for e in read_events(trainer.run.events) if e["type"] == "warning" and e["source"] == source]


@pytest.fixture(scope="module")
def rolled_back(make_trainer):
    """Steps 1-2 fine, a checkpoint at 2; the weight turns NaN before step 3 (once): steps 3 and 4 are
    skipped, the run rolls back to step 2 and trains steps 3 and 4 again."""
    trainer = make_trainer("training.nan_policy.action=rollback", "training.nan_policy.after=2",
                           poison_when=lambda t: t.progress.step == 2 and t.progress.rollbacks == 0)
    return trainer, trainer.train()


@pytest.fixture(scope="module")
def stopped_without_checkpoint(make_trainer):
    """The weight is NaN from the first step on, with the default action (stop) after 2 such steps."""
    trainer = make_trainer("training.nan_policy.after=2", poison_when=lambda t: t.progress.step == 0)
    with pytest.raises(NonFiniteLossAbort) as stopped:
        trainer.train()
    return trainer, str(stopped.value)


def test_a_non_finite_step_is_skipped_without_touching_the_other_weights(stopped_without_checkpoint):
    trainer, _ = stopped_without_checkpoint
    (_, first), (_, second) = trainer.step_inputs
    poisoned = [name for name, value in first.items() if value.isnan().any()]
    assert len(poisoned) == 1
    for name, value in second.items():
        assert name in poisoned or value.equal(first[name]), f"{name} changed during a skipped step"
    assert (trainer.progress.skipped_steps, trainer.progress.skipped_in_a_row) == (2, 2)
    assert "skipped" in warnings(trainer, "nan_guard")[-1]["message"]


def test_stop_says_what_happened_and_what_to_try(stopped_without_checkpoint):
    _, message = stopped_without_checkpoint
    assert message.startswith("2 steps in a row (steps 1-2) had a non-finite loss or gradient norm")
    assert "there is no checkpoint from step 0 or before to roll back to" in message
    assert "training.lr" in message and "training.nan_policy.action: rollback" in message
    assert "controller.checkpoint.every_steps" in message


def test_a_rollback_restores_the_checkpoint_lowers_the_lr_and_the_run_finishes(rolled_back):
    trainer, outcome = rolled_back
    assert outcome == "finished" and trainer.progress.step == 4
    rollback = warnings(trainer, "nan_policy")[0]
    assert rollback["checkpoint"].endswith("step-2") and (rollback["rollbacks"], rollback["lr_scale"]) == (1, 0.5)
    assert "steps 3-4" in rollback["message"]
    # The first step after the rollback starts from step 2's saved weights, not the poisoned ones.
    kept = trainer.checkpoints_at_poison["step-2"].weights
    step_2_again = [weights for step, weights in trainer.step_inputs if step == 2][1]
    for name, value in step_2_again.items():
        assert value.equal(kept[name].to(value.dtype)), name
    # Every step after the rollback uses half the learning rate the first attempt had at that step.
    lrs = [(e["step"], e["lr"]) for e in read_events(trainer.run.events) if e["type"] == "step"]
    assert [step for step, _ in lrs] == [1, 2, 3, 3, 4]
    assert lrs[3][1] == pytest.approx(lrs[2][1] * 0.5)
    assert all(value.isfinite().all() for value in trainable(trainer).values())


def test_the_rollback_is_saved_so_a_later_resume_keeps_the_lower_lr_and_the_count(rolled_back):
    trainer, _ = rolled_back
    saved = ckpt.load_checkpoint(trainer.run.checkpoints / "step-2").trainer_state
    assert saved["reason"] == "rollback"
    assert (saved["progress"]["rollbacks"], saved["progress"]["lr_scale"]) == (1, 0.5)
    assert ckpt.find_resumable(trainer.run.path) == trainer.run.checkpoints / "step-4"
    resumed = ckpt.load_checkpoint(trainer.run.checkpoints / "step-4").trainer_state["progress"]
    assert (resumed["rollbacks"], resumed["lr_scale"]) == (1, 0.5)


def test_skip_data_continues_after_the_batches_that_produced_the_nans(rolled_back):
    trainer, _ = rolled_back
    before = trainer.checkpoints_at_poison["step-2"].trainer_state["progress"]["data"]
    after = ckpt.load_checkpoint(trainer.run.checkpoints / "step-2").trainer_state["progress"]["data"]
    assert sum(after["seen"].values()) > sum(before["seen"].values())  # steps 3-4's samples are not replayed


def test_the_rollback_cap_stops_the_run_naming_the_last_good_checkpoint(make_trainer):
    trainer = make_trainer("training.nan_policy.action=rollback", "training.nan_policy.after=1",
                           "training.nan_policy.max_rollbacks=1", poison_when=lambda t: t.progress.step == 2)
    with pytest.raises(NonFiniteLossAbort) as stopped:
        trainer.train()
    message = str(stopped.value)
    assert message.startswith("1 step in a row (step 3)")
    assert "it was rolled back 1 of at most 1 times (training.nan_policy.max_rollbacks)" in message
    assert f"the last good checkpoint is {trainer.run.checkpoints / 'step-2'}" in message
    assert "omni-run resume" in message and len(warnings(trainer, "nan_policy")) == 1
