"""Telemetry sources: simulation files, no GPU, throttle-reason names."""

from __future__ import annotations

from pathlib import Path

import pytest

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


@pytest.mark.skipif(Path("/dev/nvidia0").exists(), reason="this machine has an NVIDIA GPU")
def test_without_an_nvidia_driver_the_real_nvml_path_gives_the_no_gpu_source_with_a_reason():
    source = open_gpu_source({})
    gpus, note = source.sample()
    assert (source.name, gpus) == ("none", [])
    assert "GPU" in note or "nvidia-ml-py" in note


def test_throttle_reason_bits_are_named():
    assert decode_throttle_reasons(0x4 | 0x40) == ["sw_power_cap", "hw_thermal_slowdown"]


@pytest.mark.skipif(not Path("/dev/nvidia0").exists(), reason="needs an NVIDIA GPU and driver")
def test_with_a_gpu_nvml_gives_every_reading_per_card():
    source = open_gpu_source({})
    gpus, _ = source.sample()
    assert source.name == "nvml" and gpus
    assert set(gpus[0]) >= {"temperature_c", "utilization_pct", "memory_used_mb", "memory_total_mb", "power_w",
                            "power_limit_w", "sm_clock_mhz", "throttle_reasons"}
    assert isinstance(gpus[0]["temperature_c"], int) and isinstance(gpus[0]["throttle_reasons"], list)
