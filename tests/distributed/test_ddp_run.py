"""Two trainer processes under `accelerate launch` (gloo on CPU), steered and broken as a user would, and two
"machines" of one process each meeting over TCP on this host (`omni-run join`).

One real run of the tiny recipe with `distributed.num_processes=2` is paused with SIGUSR1 to rank 0,
checkpointed with SIGUSR2 while paused, resumed, and then loses rank 1 to `kill -9`; with
`controller.restarts: 1` the supervisor restarts both ranks from the checkpoint. A one-process run
with the same global batch (grad_accum 2 instead of two ranks of 1) is the reference.

Tolerance: without packing each optimizer step sees exactly the same samples in both runs, so the
only differences are float32 summation orders (gradients summed across two ranks by the all-reduce
instead of accumulated in one process, and one thread per rank instead of two). Those move the loss
in the 8th significant digit; 1e-5 relative leaves room for a few steps of drift, while a wrong
shard, a missing gradient average or a double-counted token changes the loss in the 2nd or 3rd.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from run_watch import events_of, status_of, wait_for
from trainer_processes import STEPS, omni_run, train, trained

from omni_runner.run.rundir import RunDir

pytestmark = pytest.mark.slow

TOLERANCE = 1e-5


def simulated_gpu(path: Path, celsius: float) -> dict[str, str]:
    """A SIMULATED GPU at `celsius` (control/telemetry.py re-reads the file at every sample): no GPU here."""
    path.write_text(json.dumps({"gpus": [{"index": 0, "temperature_c": celsius}]}))
    return {"OMNI_RUNNER_SIMULATED_GPU": str(path)}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[int, float]:
    """One process, grad_accum 2: the same global batch as two ranks of grad_accum 1."""
    run = trained(tmp_path_factory.mktemp("one-process") / "run", "training.grad_accum=2")
    return {e["step"]: e["loss"] for e in events_of(run, "step")}


@pytest.fixture(scope="module")
def steered(tmp_path_factory) -> dict:
    """The two-process run, paused, checkpointed, resumed and broken; what was seen on the way."""
    run = RunDir(tmp_path_factory.mktemp("two-processes") / "run")
    process = train(run.path, "training.grad_accum=1", "distributed.num_processes=2", "controller.restarts=1")
    seen: dict = {"run": run}
    try:
        wait_for(lambda: (status_of(run.path).get("step") or 0) >= 2 and status_of(run.path).get("state") == "running", 240, "step 2")
        rank0 = status_of(run.path)["pid"]
        os.kill(rank0, signal.SIGUSR1)
        wait_for(lambda: status_of(run.path).get("state") == "paused", 240, "the pause")
        time.sleep(1.5)  # both ranks would have taken a step or two by now
        seen["paused"] = (status_of(run.path)["step"], status_of(run.path / "ranks" / "rank-1")["step"])
        os.kill(rank0, signal.SIGUSR2)
        seen["checkpoint"] = wait_for(lambda: events_of(run, "checkpoint"), 240, "the SIGUSR2 checkpoint")
        seen["paused_after"] = (status_of(run.path)["step"], status_of(run.path / "ranks" / "rank-1")["step"])
        os.kill(rank0, signal.SIGUSR1)
        resumed_at = seen["paused"][0]
        wait_for(lambda: any(e["step"] > resumed_at for e in events_of(run, "step")), 240, "a step after the pause")
        rank1 = status_of(run.path)["ranks"][1]["pid"]
        seen["losses_before_kill"] = {e["step"]: e["loss"] for e in events_of(run, "step")}
        os.kill(rank1, signal.SIGKILL)
        assert process.wait(timeout=600) == 0, run.trainer_log.read_text()[-3000:]
    finally:
        if process.poll() is None:
            process.kill()
    return seen


def test_two_trainer_processes_start_under_the_launcher_and_say_so(steered):
    run = steered["run"]
    start = events_of(run, "run_start")[0]
    assert start["world_size"] == 2
    assert [r["rank"] for r in start["ranks"]] == [0, 1]
    assert all(r["pid"] and r["host"] for r in start["ranks"])
    assert json.loads((run.path / "accelerate.json").read_text())["num_processes"] == 2


def test_sigusr1_to_rank_0_pauses_both_ranks_at_the_same_step(steered):
    assert steered["paused"][0] == steered["paused"][1]
    assert steered["paused_after"] == steered["paused"]  # neither rank moved while paused


def test_sigusr2_while_paused_writes_one_checkpoint_at_that_step(steered):
    [checkpoint] = steered["checkpoint"]
    assert checkpoint["reason"] == "signal"
    assert checkpoint["step"] == steered["paused"][0]


def test_a_killed_rank_is_named_and_both_ranks_restart_from_the_checkpoint_to_the_end(steered):
    run = steered["run"]
    [crash, finish] = events_of(run, "exit")
    assert (crash["rank"], crash["cause"], crash["signal"], crash["will_restart"]) == (1, "killed", "SIGKILL", True)
    assert "Rank 1 on " in crash["explanation"]
    assert events_of(run, "run_start")[1]["resumed_from"].endswith(f"step-{steered['paused'][0]}")
    assert finish["cause"] == "ok"
    assert status_of(run.path)["state"] == "finished"
    assert status_of(run.path)["step"] == STEPS


def test_steps_taken_again_after_the_restart_equal_the_first_attempt_exactly(steered):
    run = steered["run"]
    first = steered["losses_before_kill"]
    again = {}
    restarted = events_of(run, "run_start")[1]["t"]
    for e in events_of(run, "step"):
        if e["t"] > restarted:
            again[e["step"]] = e["loss"]
    overlap = sorted(set(first) & set(again))
    assert overlap, (first, again)
    assert [again[s] for s in overlap] == [first[s] for s in overlap]


def test_losses_match_one_process_with_the_same_global_batch(steered, reference):
    two = {e["step"]: e["loss"] for e in events_of(steered["run"], "step")}
    assert sorted(two) == sorted(reference) == list(range(1, STEPS + 1))
    assert all(abs(two[s] - reference[s]) <= TOLERANCE * abs(reference[s]) for s in reference), (two, reference)


def test_two_machines_meet_at_machine_0s_address_cool_down_for_either_and_train_like_one_process(tmp_path, reference):
    """Machine 1's (simulated) GPU runs hot: rank 0, on machine 0, pauses the whole run until it cools."""
    from omni_runner.run.launcher import free_port

    run = RunDir(tmp_path / "run")
    hot = tmp_path / "machine-1-gpu.json"
    joined = omni_run(tmp_path / "join.log", "join", str(run.path), "--machine-rank", "1", "--wait", "120",
                      env=simulated_gpu(hot, 90.0))
    started = train(run.path, "training.grad_accum=1", "distributed.num_processes=2", "distributed.num_machines=2",
                    "distributed.main_process_ip=127.0.0.1", f"distributed.main_process_port={free_port()}",
                    "controller.telemetry.interval_s=0.2", "controller.thermal.enabled=true", env=simulated_gpu(tmp_path / "machine-0-gpu.json", 50.0))
    try:
        cooling = wait_for(lambda: [e for e in events_of(run, "state") if e["to"] == "cooling"], 240, "the thermal pause")
        simulated_gpu(hot, 60.0)
        assert started.wait(timeout=600) == 0, run.trainer_log.read_text()[-3000:]
        assert joined.wait(timeout=60) == 0, (run.path / "nodes" / "machine-1" / "trainer.log").read_text()[-3000:]
    finally:
        for process in (started, joined):
            if process.poll() is None:
                process.kill()
    assert cooling[0]["reason"] == "thermal" and "GPU 0 on machine 1" in cooling[0]["detail"]
    assert {e.get("machine_rank") for e in events_of(run, "telemetry")} == {0, 1}
    start = events_of(run, "run_start")[0]
    assert (start["world_size"], [r["machine_rank"] for r in start["ranks"]]) == (2, [0, 1])
    assert json.loads((run.path / "accelerate-machine-1.json").read_text())["machine_rank"] == 1
    assert [e.get("machine_rank", 0) for e in events_of(run, "exit")] in ([0, 1], [1, 0])
    two = {e["step"]: e["loss"] for e in events_of(run, "step")}
    assert all(abs(two[s] - reference[s]) <= TOLERANCE * abs(reference[s]) for s in reference), (two, reference)
