"""`omni-run join RUN --machine-rank K`: what it says when there is nothing to join (the joining itself runs in
tests/distributed/test_ddp_run.py)."""

from __future__ import annotations

import json

from omni_runner.cli import main


def test_a_run_folder_machine_0_never_prepares_is_an_error_saying_what_to_do(tmp_path, capsys):
    assert main(["join", str(tmp_path / "run"), "--machine-rank", "1", "--wait", "0.2"]) == 1
    err = capsys.readouterr().err
    assert "did not appear within 0.2 s" in err and "start the run on machine 0 first" in err


def test_a_machine_rank_outside_the_runs_machines_is_refused(tmp_path, capsys):
    (tmp_path / "plan.json").write_text(json.dumps({"distributed": {"world_size": 2, "num_machines": 2}}))
    assert main(["join", str(tmp_path), "--machine-rank", "2", "--wait", "0"]) == 1
    assert "machines 1 to 1 join" in capsys.readouterr().err
