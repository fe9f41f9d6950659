"""A run asked for a GPU on a machine without one ends with the message, not a traceback."""

from __future__ import annotations

from pathlib import Path

import torch

from omni_runner.run.events import read_events
from omni_runner.run.exit_codes import TrainerExit
from omni_runner.run.prepare import prepare_run
from omni_runner.train.loop import run_trainer

TINY = Path(__file__).resolve().parents[2] / "recipes" / "tiny_omni.yaml"


def test_a_cuda_run_without_a_gpu_fails_with_what_to_use_instead(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # simulation, also on a GPU machine
    run = prepare_run(TINY, ["hardware.device=cuda", "training.max_steps=2"], None, run_dir=tmp_path / "run")

    assert run_trainer(run.path, resume=False) == TrainerExit.ERROR

    errors = [event for event in read_events(run.events) if event["type"] == "error"]
    assert "no CUDA GPU; use 'auto' or 'cpu'" in errors[-1]["message"]
    assert "Traceback" not in capsys.readouterr().err
