"""External encoders train through their projectors: an align stage moves nothing else (with SigLIP2 or
CLIP for vision, and on Qwen3-Omni), the projectors resume exactly, and `final/` gives them back to chat. Short real runs of
recipes/tiny_omni_encoders.yaml."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO, status, step_losses, trainer, wait_for
from omni_runner.run.prepare import prepare_run
from omni_runner.run.rundir import RunDir
from omni_runner.train.checkpoint import find_resumable, load_checkpoint, step_of

pytestmark = pytest.mark.slow

ALIGN_STEPS, INSTRUCT_STEPS = 2, 2
SHORT = [
    "training.micro_batch=2", "training.num_workers=0", "training.warmup_steps=1",
    f"stages.0.max_steps={ALIGN_STEPS}", f"stages.1.max_steps={INSTRUCT_STEPS}",
    "controller.checkpoint.every_steps=1", "controller.checkpoint.keep_last=10", "eval.at_end=false",
]
RECIPE = REPO / "recipes" / "tiny_omni_encoders.yaml"


# The recipe as it is; with the tiny CLIP for vision (its 4 x 4 patch grid pooled 2 x 2 as well); and on the
# tiny Qwen3-Omni, which reads video through the external SigLIP2 (it speaks no podcast reply).
VARIANTS = {
    "siglip2": [],
    "clip": ["encoders.vision.path=builtin:tiny-clip", "encoders.vision.kind=clip"],
    "qwen3-omni": ["base_model.path=builtin:tiny-qwen3-omni", "base_model.architecture=tiny-qwen3-omni",
                   "capabilities.podcast.enabled=false",
                   (f"stages=[{{name: align, capabilities: [video-understanding], train: [vision_projector], "
                    f"max_steps: {ALIGN_STEPS}}}, {{name: instruct, train: [thinker, vision_projector], "
                    f"max_steps: {INSTRUCT_STEPS}}}]")],
}


def _prepare(folder: Path, variant: str = "siglip2") -> RunDir:
    return prepare_run(RECIPE, [*SHORT, *VARIANTS[variant]], None, run_dir=folder / "run")


@pytest.fixture(scope="module")
def encoders_run(tmp_path_factory) -> RunDir:
    run = _prepare(tmp_path_factory.mktemp("encoders"))
    assert trainer(run).wait(timeout=600) == 0, run.trainer_log.read_text()[-3000:]
    return run


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_an_align_stage_changes_only_the_projectors(variant, tmp_path):
    from omni_runner.train.loop import Trainer

    run = _prepare(tmp_path, variant)
    trainer_ = Trainer(run, resume=False)
    trainer_.setup()
    try:
        before = {name: p.detach().clone() for name, p in trainer_.loaded.named_parameters()}
        for _ in range(ALIGN_STEPS):
            trainer_.train_step(trainer_.stages[0])
        changed = {name for name, p in trainer_.loaded.named_parameters() if not torch.equal(before[name], p)}
    finally:
        trainer_.batches.stream.close()
    trained = {name for name, p in trainer_.loaded.named_parameters() if p.requires_grad}
    assert trained and changed == trained and all(".projector." in name for name in trained)


def test_projectors_resume_exactly_after_a_stop_in_the_instruct_stage(encoders_run, tmp_path):
    run = _prepare(tmp_path)
    process = trainer(run)
    wait_for(lambda: (status(run).get("step") or 0) >= ALIGN_STEPS + 1, timeout=300, what="the first instruct step")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 0
    stopped_at = step_of(find_resumable(run.path))
    assert ALIGN_STEPS < stopped_at < ALIGN_STEPS + INSTRUCT_STEPS or stopped_at == ALIGN_STEPS + INSTRUCT_STEPS

    assert trainer(run, "--resume").wait(timeout=300) == 0
    total = ALIGN_STEPS + INSTRUCT_STEPS
    assert step_losses(run) == step_losses(encoders_run)
    resumed = load_checkpoint(run.checkpoints / f"step-{total}").weights
    reference = load_checkpoint(encoders_run.checkpoints / f"step-{total}").weights
    projectors = [name for name in reference if ".projector." in name]
    assert projectors and all(torch.equal(resumed[name], reference[name]) for name in projectors)


def test_final_holds_the_projectors_and_loads_them_back(encoders_run):
    from omni_runner.models.export import load_for_inference

    loaded = load_for_inference(encoders_run.final)
    last = load_checkpoint(encoders_run.checkpoints / f"step-{ALIGN_STEPS + INSTRUCT_STEPS}").weights
    restored = loaded.external.projector_state()
    assert restored and all(torch.equal(tensor, last[f"external.{name}"]) for name, tensor in restored.items())


def test_chat_reads_an_image_and_an_audio_clip_through_the_external_encoders(encoders_run):
    from omni_runner.data.bundled.media import ensure_media_data

    media = ensure_media_data()
    result = subprocess.run(
        [sys.executable, "-m", "omni_runner.cli", "chat", str(encoders_run.path), "--prompt", "What colour?",
         "--image", str(next((media / "images").glob("*.png"))), "--audio", str(next((media / "audio").glob("*.wav"))),
         "--max-new-tokens", "4"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
