"""`resolve_device`: the one reading of `hardware.device` that the trainer and every loader share."""

from __future__ import annotations

import pytest
import torch

from omni_runner.models.load import ModelLoadError, resolve_device


@pytest.fixture
def no_gpu(monkeypatch):
    """Simulation: torch sees no GPU, also on a machine that has one."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def one_gpu(monkeypatch):
    """Simulation: torch is told GPU 0 exists; resolving a device touches no GPU."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)


def test_cuda_without_a_gpu_is_a_model_load_error_that_says_what_to_use(no_gpu):
    # The trainer's own copy raised a bare RuntimeError here, which users saw as a traceback.
    with pytest.raises(ModelLoadError, match="hardware.device is 'cuda' but torch sees no CUDA GPU; use 'auto' or 'cpu'"):
        resolve_device("cuda")


def test_auto_and_nothing_mean_the_cpu_without_a_gpu(no_gpu):
    assert resolve_device("auto") == resolve_device(None) == torch.device("cpu")


def test_a_bare_cuda_is_the_same_device_as_auto_on_a_gpu_machine(one_gpu):
    # The loader's copy returned an index-less `cuda`, which compares unequal to the trainer's `cuda:0`.
    assert resolve_device("cuda") == resolve_device("auto") == resolve_device("cuda:0") == torch.device("cuda", 0)


def test_a_device_the_caller_names_keeps_its_index(one_gpu):
    assert resolve_device("cuda:1") == torch.device("cuda", 1)


def test_an_unknown_device_name_is_a_model_load_error():
    with pytest.raises(ModelLoadError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")
