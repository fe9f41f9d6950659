"""The restart budget belongs to the run: kept across `omni-run resume`, granted anew only on request."""

from __future__ import annotations

import pytest

from omni_runner.run.rundir import RunDir
from omni_runner.run.supervisor import restart_budget, spent_budget

KILLED = {"cause": "killed", "explanation": "The trainer was killed with SIGKILL."}


@pytest.fixture
def run(tmp_path) -> RunDir:
    (tmp_path / "recipe.yaml").write_text("name: r\ncontroller:\n  restarts: 2\n")
    return RunDir(tmp_path)


def test_a_new_run_takes_its_budget_from_the_recipe(run):
    assert restart_budget(run, {}) == 2


def test_a_resumed_run_keeps_the_budget_it_recorded_not_a_fresh_one(run):
    assert restart_budget(run, {"restarts": 2, "restart_budget": 2}) == 2


def test_a_grant_allows_that_many_more_restarts_than_already_used(run):
    assert restart_budget(run, {"restarts": 2, "restart_budget": 2}, granted=3) == 5
    assert restart_budget(run, {"restarts": 2, "restart_budget": 2}, granted=0) == 2


def test_a_run_that_failed_after_using_every_restart_has_spent_its_budget():
    message = spent_budget({"state": "failed", "restarts": 2, "restart_budget": 2, "last_exit": KILLED})
    assert message == ("it used all 2 of its 2 automatic restart(s) (controller.restarts) and failed again; "
                       "last failure [killed]: The trainer was killed with SIGKILL.")


@pytest.mark.parametrize("status", [
    {"state": "failed", "restarts": 1, "restart_budget": 2},  # restarts left
    {"state": "failed", "restarts": 0, "restart_budget": 0},  # no automatic restarts asked for
    {"state": "stopped", "restarts": 2, "restart_budget": 2},  # the user stopped it
    {"state": "failed", "restarts": "2", "restart_budget": [2]},  # a corrupt status counts nothing
])
def test_a_budget_is_not_spent_while_restarts_remain_none_were_asked_for_or_the_run_did_not_fail(status):
    assert spent_budget(status) is None
