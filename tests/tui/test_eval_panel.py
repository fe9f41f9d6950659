"""The eval panel: the latest held-out loss per capability and each data set's metric, once the run has evaluated."""

from __future__ import annotations

import shutil
from pathlib import Path

from omni_tui.state import RunView
from omni_tui.widgets.evals import EvalPanel, metrics_text

from omni_runner.run.rundir import RunDir
from tests.tui.conftest import FIXTURES, dashboard_app

EVALS = (
    '{"t":1790000038,"type":"eval","step":18,"suite":"perplexity","capability":"tool-calling",'
    '"metrics":{"loss":0.8421,"perplexity":2.3213,"n":16,"tokens":1204}}\n'
    '{"t":1790000039,"type":"eval","step":18,"dataset":"xlam-heldout","capability":"tool-calling",'
    '"metrics":{"tool_call_exact_match":0.5,"n":16}}\n'
)


def test_the_latest_result_of_each_subject_is_kept():
    view = RunView()
    for step, loss in ((10, 1.5), (20, 0.75)):
        view.apply({"type": "eval", "step": step, "suite": "perplexity", "capability": "cot", "metrics": {"loss": loss}})
    view.apply({"type": "eval", "step": 20, "dataset": "held", "capability": "cot", "metrics": {"answer_exact_match": 0.25}})
    assert {subject: (r.step, r.metrics) for subject, r in view.evals.items()} == {
        "perplexity cot": (20, {"loss": 0.75}), "held (cot)": (20, {"answer_exact_match": 0.25})}


def test_metrics_show_numbers_and_leave_out_notes_and_token_counts():
    assert metrics_text({"loss": 0.84213, "perplexity": None, "n": 16, "tokens": 99, "note": "x"}) == \
        "loss 0.8421  perplexity —  n 16"


async def test_the_panel_appears_when_the_first_evaluation_arrives(recorded_run):
    run = recorded_run("running")
    app = dashboard_app(run, follow=True)
    async with app.run_test(size=(160, 48)) as pilot:
        panel = app.screen.query_one(EvalPanel)
        assert not panel.display
        with open(run.events, "a") as out:
            out.write(EVALS)
        for _ in range(50):  # new numbers are repainted within REPAINT_SECONDS
            await pilot.pause(0.1)
            if panel.display:
                break
        assert panel.display
        assert panel.text.splitlines() == [
            "[b]perplexity tool-calling[/b] loss 0.8421  perplexity 2.321  n 16 [dim]step 18[/dim]",
            "[b]xlam-heldout (tool-calling)[/b] tool_call_exact_match 0.5  n 16 [dim]step 18[/dim]",
        ]


def test_dashboard_with_eval_results_snapshot(snap_compare, tmp_path: Path):
    run = tmp_path / "run"
    shutil.copytree(FIXTURES / "running", run)
    with open(run / "events.jsonl", "a") as out:
        out.write(EVALS)
    assert snap_compare(dashboard_app(RunDir(run)), terminal_size=(160, 48))
