"""Cooldowns on schedule and on heat, driven through a real process.

The GPU here is a simulation (OMNI_RUNNER_SIMULATED_GPU): a JSON file the test rewrites to "heat"
and "cool" the card, re-read by the telemetry thread at every sample.
"""

from __future__ import annotations

import json
import time

from run_watch import events_of, status_of, wait_for
from omni_runner.control.client import send_command


def simulate(path, *celsius: float) -> None:
    path.write_text(json.dumps({"gpus": [{"temperature_c": c, "utilization_pct": 99} for c in celsius]}))


def test_a_simulated_hot_gpu_cools_with_reason_thermal_and_resumes_below_the_threshold(harness, tmp_path):
    gpu = tmp_path / "gpu.json"
    simulate(gpu, 60)
    process = harness(env={"OMNI_RUNNER_SIMULATED_GPU": str(gpu)})
    simulate(gpu, 88)
    wait_for(lambda: status_of(process.run_dir)["state"] == "cooling", what="cooling")
    cooling = events_of(process.run_dir, "state")[-1]
    assert (cooling["reason"], cooling["detail"]) == ("thermal", "GPU 0 at 88 °C, limit 83 °C")
    simulate(gpu, 70)
    wait_for(lambda: status_of(process.run_dir)["state"] == "running", what="running again")


def test_a_scheduled_cooldown_happens_at_the_configured_step(harness):
    process = harness(cooldown={"every_steps": 5, "seconds": 1})
    wait_for(lambda: any(e["to"] == "cooling" for e in events_of(process.run_dir, "state")), what="a cooldown")
    cooling = next(e for e in events_of(process.run_dir, "state") if e["to"] == "cooling")
    assert (cooling["step"], cooling["reason"]) == (5, "scheduled")
    wait_for(lambda: status_of(process.run_dir)["step"] > 5, what="training after the cooldown")


def test_the_end_of_a_cooldown_says_how_long_it_lasted(harness):
    process = harness(cooldown={"every_steps": 5, "seconds": 1})
    wait_for(lambda: status_of(process.run_dir)["step"] > 5, what="training after the cooldown")
    ended = next(e for e in events_of(process.run_dir, "state") if e["from"] == "cooling")
    assert (ended["to"], ended["detail"]) == ("running", "after 1 s cooling")
    assert 1.0 <= ended["seconds"] < 5.0


def test_a_pause_taken_during_a_cooldown_outlasts_it(harness):
    process = harness(cooldown={"every_steps": 5, "seconds": 1})
    wait_for(lambda: status_of(process.run_dir)["state"] == "cooling", what="cooling")
    send_command(process.run_dir, "pause")
    wait_for(lambda: status_of(process.run_dir)["state"] == "paused", what="paused")
    time.sleep(1.5)  # longer than the cooldown
    assert status_of(process.run_dir)["state"] == "paused"
    assert status_of(process.run_dir)["step"] == 5


def test_telemetry_events_carry_the_simulated_readings(harness, tmp_path):
    gpu = tmp_path / "gpu.json"
    simulate(gpu, 61, 62)
    process = harness(env={"OMNI_RUNNER_SIMULATED_GPU": str(gpu)})
    event = wait_for(lambda: events_of(process.run_dir, "telemetry"), what="telemetry")[-1]
    assert event["source"] == "simulated"
    assert [g["temperature_c"] for g in event["gpus"]] == [61, 62]
    assert event["ram_total_mb"] > 0
