"""Media capabilities split over two trainer processes, under DDP and under FSDP2.

The tiny media recipe (images, video, audio, video with its audio track) trains the language model in
full and its vision merger and audio projection, one sample a micro-batch, so in most steps one rank's
batch holds a medium the other's lacks: at step 1 one rank sees a beep clip, the other a video without
sound. Its audio projection then has a gradient on one rank only. DDP finds such parameters
(`find_unused_parameters`); under FSDP2 the towers are part of the root unit and the rank without
the medium hands in a zero gradient. Each run must equal one process with the same global batch
(grad_accum 2 instead of two ranks of 1).

Tolerance (1e-5 relative, as in test_ddp_run.py): every optimizer step sees the same samples in all three
runs, so only float32 summation order differs; a gradient missing on one rank halves that parameter's
update and moves the loss in the 3rd digit by the second step.
"""

from __future__ import annotations

import pytest
from run_watch import events_of
from trainer_processes import REPO, omni_run

from omni_runner.run.rundir import RunDir

pytestmark = pytest.mark.slow

TOLERANCE = 1e-5
STEPS = 3
MEDIA = ["training.method=full", f"training.max_steps={STEPS}", "training.packing=false", "training.micro_batch=1",
         "training.warmup_steps=1", "eval.at_end=false", "controller.checkpoint.every_steps=1000",
         "stages=[{name: media, train: [thinker, vision_merger, audio_projection]}]"]


def _losses(tmp_path_factory, name: str, *overrides: str) -> dict[int, float]:
    run = RunDir(tmp_path_factory.mktemp(name) / "run")
    args = [arg for override in (*MEDIA, *overrides) for arg in ("--set", override)]
    process = omni_run(run.path.parent / "omni-run.log", "train", str(REPO / "recipes" / "tiny_omni_media.yaml"),
                       "--run-dir", str(run.path), *args)
    assert process.wait(timeout=600) == 0, run.trainer_log.read_text()[-3000:]
    assert events_of(run, "run_start")[0].get("world_size", 1) == (1 if name == "one-process" else 2)
    return {e["step"]: e["loss"] for e in events_of(run, "step")}


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> dict[int, float]:
    return _losses(tmp_path_factory, "one-process", "training.grad_accum=2")


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_media_losses_match_one_process_with_the_same_global_batch(strategy, one_process, tmp_path_factory):
    two = _losses(tmp_path_factory, strategy, "training.grad_accum=1", "distributed.num_processes=2",
                  f"distributed.strategy={strategy}")
    assert sorted(two) == list(range(1, STEPS + 1)) == sorted(one_process)
    assert all(abs(two[s] - one_process[s]) <= TOLERANCE * abs(one_process[s]) for s in one_process), (two, one_process)
