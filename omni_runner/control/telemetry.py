"""GPU and host readings, sampled in a background thread and written as `telemetry` events.

Sources, in order: a simulation file when `OMNI_RUNNER_SIMULATED_GPU` names one (for tests and demos:
a JSON file `{"gpus": [{"index": 0, "temperature_c": 88, ...}]}` re-read at every sample, so editing it
"heats" the card), else NVML through nvidia-ml-py, else a clear "no GPU" state. Sampling never runs
in the step loop, and a failing sample is reported, never raised into training.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SIMULATION_ENV = "OMNI_RUNNER_SIMULATED_GPU"

# NVML clocks-event (throttle) reason bits, named as users see them in nvidia-smi.
_THROTTLE_REASONS = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}


def decode_throttle_reasons(mask: int) -> list[str]:
    return [name for bit, name in _THROTTLE_REASONS.items() if mask & bit]


class SimulatedGpuSource:
    """Reads per-GPU readings from a JSON file at every sample: a simulation, not a measurement."""

    name = "simulated"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def sample(self) -> tuple[list[dict[str, Any]], str | None]:
        try:
            data = json.loads(self.path.read_text())
            gpus = data["gpus"] if isinstance(data, dict) else data
            if not isinstance(gpus, list):
                raise TypeError("'gpus' is not a list")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return [], f"simulated GPU file {self.path} unreadable: {exc}"
        readings = []
        for position, gpu in enumerate(gpus):
            if isinstance(gpu, dict):
                readings.append({"index": position, "name": "Simulated GPU", **gpu})
        return readings, f"simulated readings from {self.path}"


class NvmlSource:
    """Live readings through NVML (nvidia-ml-py's `pynvml`)."""

    name = "nvml"

    def __init__(self, pynvml: Any) -> None:
        self._nvml = pynvml
        self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]

    def sample(self) -> tuple[list[dict[str, Any]], str | None]:
        nvml = self._nvml
        readings = []
        for index, handle in enumerate(self._handles):
            reading: dict[str, Any] = {"index": index}
            probes: dict[str, Callable[[], Any]] = {
                "name": lambda: _text(nvml.nvmlDeviceGetName(handle)),
                "temperature_c": lambda: nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU),
                "utilization_pct": lambda: nvml.nvmlDeviceGetUtilizationRates(handle).gpu,
                "memory_used_mb": lambda: nvml.nvmlDeviceGetMemoryInfo(handle).used / 2**20,
                "memory_total_mb": lambda: nvml.nvmlDeviceGetMemoryInfo(handle).total / 2**20,
                "power_w": lambda: nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0,
                "power_limit_w": lambda: nvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000.0,
                "sm_clock_mhz": lambda: nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM),
                "throttle_reasons": lambda: decode_throttle_reasons(
                    nvml.nvmlDeviceGetCurrentClocksEventReasons(handle)
                    if hasattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons")
                    else nvml.nvmlDeviceGetCurrentClocksThrottleReasons(handle)
                ),
            }
            for key, probe in probes.items():
                try:
                    reading[key] = probe()
                except nvml.NVMLError:
                    reading[key] = None  # not supported on this card (e.g. power on some laptops)
            readings.append(reading)
        return readings, None


class NoGpuSource:
    name = "none"

    def __init__(self, note: str) -> None:
        self.note = note

    def sample(self) -> tuple[list[dict[str, Any]], str | None]:
        return [], self.note


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def open_gpu_source(environ: dict[str, str] | None = None) -> SimulatedGpuSource | NvmlSource | NoGpuSource:
    """The simulation when configured, else NVML, else the no-GPU source with the reason why."""
    environ = os.environ if environ is None else environ
    if environ.get(SIMULATION_ENV):
        return SimulatedGpuSource(Path(environ[SIMULATION_ENV]))
    try:
        import pynvml

        pynvml.nvmlInit()
        if pynvml.nvmlDeviceGetCount() == 0:
            return NoGpuSource("NVML reports no GPU")
        return NvmlSource(pynvml)
    except ImportError:
        return NoGpuSource("nvidia-ml-py is not installed: no GPU readings")
    except Exception as exc:  # pynvml.NVMLError and friends: no driver, no device
        return NoGpuSource(f"no GPU ({exc})")


def host_readings() -> dict[str, Any]:
    import psutil

    memory = psutil.virtual_memory()
    return {
        "cpu_pct": psutil.cpu_percent(interval=None),
        "ram_used_mb": round((memory.total - memory.available) / 2**20),
        "ram_total_mb": round(memory.total / 2**20),
    }


class TelemetrySampler:
    """Samples every `interval_s` in a daemon thread; `latest` holds the newest GPU readings."""

    def __init__(self, interval_s: float, emit: Callable[[dict[str, Any]], None], source: Any = None) -> None:
        self.interval_s = interval_s
        self._emit = emit
        self._source = source
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._latest: list[dict[str, Any]] = []
        self._latest_reading: dict[str, Any] | None = None
        self._thread = threading.Thread(target=self._run, name="omni-telemetry", daemon=True)

    @property
    def latest(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._latest)

    @property
    def latest_reading(self) -> dict[str, Any] | None:
        """The newest whole reading (GPUs, host, `sampled_at`), for a rank that reports its machine to rank 0."""
        with self._lock:
            return self._latest_reading

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def sample_once(self) -> dict[str, Any]:
        if self._source is None:
            self._source = open_gpu_source()
        gpus, note = self._source.sample()
        reading = {"source": self._source.name, "gpus": gpus, "note": note, **host_readings()}
        with self._lock:
            self._latest = gpus
            self._latest_reading = {**reading, "sampled_at": time.time()}
        return reading

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._emit(self.sample_once())
            except Exception as exc:  # a sampling failure must never reach the training loop
                self._emit({"source": "none", "gpus": [], "note": f"telemetry failed: {exc}"})
            self._stop.wait(self.interval_s)
