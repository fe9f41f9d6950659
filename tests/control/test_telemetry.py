"""Telemetry sources: simulation files, no GPU, throttle-reason names."""

from __future__ import annotations

from omni_runner.control.telemetry import (
    NoGpuSource, SimulatedGpuSource, TelemetrySampler, decode_throttle_reasons, open_gpu_source,
)


def test_a_simulation_file_is_chosen_when_the_environment_names_one(tmp_path):
    source = open_gpu_source({"OMNI_RUNNER_SIMULATED_GPU": str(tmp_path / "gpu.json")})
    assert isinstance(source, SimulatedGpuSource)


def test_an_unreadable_simulation_file_reports_no_gpus_with_a_note(tmp_path):
    (tmp_path / "gpu.json").write_text("{broken")
    gpus, note = SimulatedGpuSource(tmp_path / "gpu.json").sample()
    assert gpus == [] and "unreadable" in note


def test_without_a_gpu_the_sample_says_so_instead_of_failing():
    sampler = TelemetrySampler(1.0, emit=lambda reading: None, source=NoGpuSource("no GPU (test machine)"))
    reading = sampler.sample_once()
    assert (reading["source"], reading["gpus"], reading["note"]) == ("none", [], "no GPU (test machine)")


def test_this_machine_without_nvidia_driver_gets_the_no_gpu_source():
    source = open_gpu_source({})
    assert source.name in ("none", "nvml")  # "nvml" only where a driver and GPU exist


def test_throttle_reason_bits_are_named():
    assert decode_throttle_reasons(0x4 | 0x40) == ["sw_power_cap", "hw_thermal_slowdown"]
