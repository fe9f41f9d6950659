"""Real signals to a real process steered by the Controller (the harness loop, no model)."""

from __future__ import annotations

import signal
import time

from run_watch import events_of, status_of, wait_for


def test_sigusr1_pauses_within_two_seconds_and_steps_stop_advancing(harness):
    process = harness()
    process.send_signal(signal.SIGUSR1)
    wait_for(lambda: status_of(process.run_dir)["state"] == "paused", timeout=2, what="paused")
    step = status_of(process.run_dir)["step"]
    time.sleep(2)
    assert status_of(process.run_dir)["step"] == step


def test_a_second_sigusr1_resumes_and_steps_advance(harness):
    process = harness()
    process.send_signal(signal.SIGUSR1)
    wait_for(lambda: status_of(process.run_dir)["state"] == "paused", what="paused")
    step = status_of(process.run_dir)["step"]
    process.send_signal(signal.SIGUSR1)
    wait_for(lambda: status_of(process.run_dir)["state"] == "running", what="running")
    wait_for(lambda: status_of(process.run_dir)["step"] > step, what="a step after resuming")


def test_sigusr2_writes_a_checkpoint_and_training_continues(harness):
    process = harness()
    process.send_signal(signal.SIGUSR2)
    event = wait_for(lambda: events_of(process.run_dir, "checkpoint"), what="a checkpoint event")[0]
    assert event["reason"] == "signal"
    step = event["step"]
    wait_for(lambda: status_of(process.run_dir)["step"] > step, what="a step after the checkpoint")
    assert status_of(process.run_dir)["last_checkpoint"]["path"] == event["path"]


def test_sigterm_checkpoints_and_exits_zero_as_stopped(harness):
    process = harness()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0
    assert [e["reason"] for e in events_of(process.run_dir, "checkpoint")] == ["stop"]
    assert status_of(process.run_dir)["state"] == "stopped"


def test_a_second_stop_signal_stops_at_once_without_a_checkpoint(harness):
    process = harness(step_seconds=5.0)  # the first SIGINT waits for this long step to end
    process.send_signal(signal.SIGINT)
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=10) != 0
    assert events_of(process.run_dir, "checkpoint") == []


def test_two_sigterms_within_a_second_are_one_graceful_stop(harness):
    process = harness(step_seconds=2.0)  # a job scheduler's SIGTERM and the supervisor's copy of it
    process.send_signal(signal.SIGTERM)
    time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0
    assert [e["reason"] for e in events_of(process.run_dir, "checkpoint")] == ["stop"]


def test_each_transition_is_an_event_with_from_to_and_reason(harness):
    process = harness()
    # The harness counts its first step before the controller's first boundary moves it to running.
    wait_for(lambda: status_of(process.run_dir)["state"] == "running", what="the run to be running")
    process.send_signal(signal.SIGUSR1)
    wait_for(lambda: events_of(process.run_dir, "state")[-1]["to"] == "paused", what="a pause event")
    pause = events_of(process.run_dir, "state")[-1]
    assert (pause["from"], pause["to"], pause["reason"]) == ("running", "paused", "user")
