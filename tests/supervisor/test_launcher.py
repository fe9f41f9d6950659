"""Starting one trainer or several, and reading which rank failed from the launcher's own report."""

from __future__ import annotations

import json
import sys

from omni_runner.run.launcher import (
    first_rank_failure,
    launch_config,
    rank_lines,
    trainer_command,
    world_size,
)
from omni_runner.run.rundir import RunDir
from omni_runner.run.supervisor import classify_launch_exit

# The end of a real trainer.log after `kill -9` of rank 1 (torch's elastic launcher, as accelerate runs it).
LAUNCHER_REPORT = """\
[rank0]:[W1202 06:25:53 reducer.cpp:1529] Warning: find_unused_parameters=True was specified
[rank1]: Traceback (most recent call last):
[rank1]: RuntimeError: a rank-1 problem
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
omni_runner.train FAILED
------------------------------------------------------------
Failures:
[1]:
  time      : 2026-12-02_06:19:05
  host      : node-a
  rank      : 0 (local_rank: 0)
  exitcode  : -15 (pid: 24818)  (SIGTERM)
  error_file: <N/A>
  traceback : Signal 15 (SIGTERM) received by PID 24818
------------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-12-02_06:19:05
  host      : node-b
  rank      : 1 (local_rank: 1)
  exitcode  : -9 (pid: 24819)  (SIGKILL)
  error_file: <N/A>
  traceback : Signal 9 (SIGKILL) received by PID 24819
============================================================
"""


def test_one_process_runs_the_trainer_module_directly(tmp_path):
    run = RunDir(tmp_path)
    assert trainer_command(run, {}, resume=True) == [sys.executable, "-m", "omni_runner.train", str(tmp_path), "--resume"]
    assert not (tmp_path / "accelerate.json").exists()


def test_several_processes_run_under_accelerate_launch_with_a_config_in_the_run_folder(tmp_path):
    run = RunDir(tmp_path)
    command = trainer_command(run, {"distributed": {"world_size": 2}}, resume=False)
    assert command[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert command[-3:] == ["-m", "omni_runner.train", str(tmp_path)]
    config = json.loads((tmp_path / "accelerate.json").read_text())
    assert (config["num_processes"], config["num_machines"], config["distributed_type"]) == (2, 1, "MULTI_GPU")
    assert 0 < config["main_process_port"] < 65536


def test_the_world_size_is_one_unless_the_plan_says_more():
    assert [world_size(p) for p in ({}, {"distributed": None}, {"distributed": {"world_size": 4}})] == [1, 1, 4]
    assert launch_config({"distributed": {"world_size": 4}}, 29511)["main_process_port"] == 29511


def test_the_root_cause_names_the_rank_that_failed_first_with_its_host_pid_and_signal():
    failure = first_rank_failure(LAUNCHER_REPORT)
    assert (failure.rank, failure.host, failure.pid, failure.exit_code) == (1, "node-b", 24819, -9)


def test_a_log_without_a_launcher_report_has_no_rank_failure():
    assert first_rank_failure("Traceback (most recent call last):\nValueError: x\n") is None


def test_a_ranks_own_lines_are_picked_out_of_the_shared_log():
    assert rank_lines(LAUNCHER_REPORT, 1) == "Traceback (most recent call last):\nRuntimeError: a rank-1 problem"


def test_the_exit_of_a_group_is_the_failed_ranks_own_cause_named_with_rank_and_host():
    report = classify_launch_exit(1, "running", LAUNCHER_REPORT, {"stages": []})
    assert (report.cause, report.signal, report.rank, report.host) == ("killed", "SIGKILL", 1, "node-b")
    assert report.explanation.startswith("Rank 1 on node-b, pid 24819 failed first, and the launcher stopped the other ranks.")
    assert report.to_event()["rank"] == 1


def test_a_rank_that_raised_is_explained_by_its_own_last_error_line():
    report = classify_launch_exit(1, "running", LAUNCHER_REPORT.replace("exitcode  : -9 (pid: 24819)  (SIGKILL)",
                                                                        "exitcode  : 1 (pid: 24819)"), {"stages": []})
    assert report.cause == "error"
    assert report.explanation.endswith("RuntimeError: a rank-1 problem")


def test_ranks_that_stopped_cleanly_under_a_signalled_launcher_are_a_clean_stop():
    tail = "[rank0]: checkpoint written\ntorch.distributed.elastic.multiprocessing.api.SignalException: Process 7 got signal: 15\n"
    assert classify_launch_exit(1, "stopped", tail, {"stages": []}).cause == "stopped"
    assert classify_launch_exit(1, "running", tail, {"stages": []}).cause == "error"


def test_several_machines_meet_at_machine_0s_address_which_a_scheduler_may_name_at_each_start():
    plan = {"distributed": {"world_size": 4, "num_machines": 2, "main_process_ip": "10.0.0.1", "main_process_port": 29600}}
    config = launch_config(plan, 40000, machine_rank=1)
    assert (config["num_machines"], config["machine_rank"], config["main_process_ip"], config["main_process_port"]) == (
        2, 1, "10.0.0.1", 29600)
    assert launch_config(plan, 40000, 1, main_ip="node-a")["main_process_ip"] == "node-a"
