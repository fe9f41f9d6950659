"""Generation trains through frozen diffusion decoders: the decoder loss reaches the connector, the
queries and the adapters and nothing else (on Qwen2.5-Omni and Qwen3-Omni), falls when the model overfits a few pairs, resumes
exactly, and reads cached latents on a second run. Short real runs of recipes/tiny_omni_generation.yaml."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO, status, step_losses, trainer, wait_for
from omni_runner.run.prepare import prepare_run
from omni_runner.run.rundir import RunDir
from omni_runner.train.checkpoint import find_resumable, step_of

pytestmark = pytest.mark.slow

RECIPE = REPO / "recipes" / "tiny_omni_generation.yaml"
STEPS = 4
SHORT = ["training.micro_batch=2", "training.num_workers=0", "training.warmup_steps=1", f"stages.0.max_steps={STEPS}",
         "controller.checkpoint.every_steps=1", "controller.checkpoint.keep_last=10"]


# The recipe's Qwen2.5-Omni, or the tiny Qwen3-Omni in its place.
BASES = {"qwen2.5-omni": [], "qwen3-omni": ["base_model.path=builtin:tiny-qwen3-omni", "base_model.architecture=tiny-qwen3-omni"]}


def _prepare(folder: Path, extra: list[str] = ()) -> RunDir:
    return prepare_run(RECIPE, [*SHORT, *extra], None, run_dir=folder / "run")


def _trainer_in_process(run: RunDir):
    from omni_runner.train.loop import Trainer

    trainer_ = Trainer(run, resume=False)
    trainer_.setup()
    return trainer_


@pytest.fixture(scope="module")
def generation_run(tmp_path_factory) -> RunDir:
    run = _prepare(tmp_path_factory.mktemp("generation"))
    assert trainer(run).wait(timeout=600) == 0, run.trainer_log.read_text()[-3000:]
    return run


@pytest.mark.parametrize("base", sorted(BASES))
def test_the_decoder_loss_reaches_connectors_queries_and_adapters_and_nothing_frozen(base, tmp_path):
    trainer_ = _trainer_in_process(_prepare(tmp_path, BASES[base]))
    try:
        heads = trainer_.loaded.generation
        before = {name: p.detach().clone() for name, p in trainer_.loaded.named_parameters()}
        trainer_.train_step(trainer_.stages[0])
        # A VAE that encoded uncached targets during the step joins the parameters then: compared below.
        changed = {name for name, p in trainer_.loaded.named_parameters() if name in before and not torch.equal(before[name], p)}
        vaes = {kind: decoder.vae for kind, decoder in heads.decoders.items() if decoder.vae is not None}
    finally:
        trainer_.batches.stream.close()
    for kind in ("image", "video"):
        assert f"generation.connectors.{kind}.queries" in changed
        assert any(name.startswith(f"generation.connectors.{kind}.connector.") for name in changed)
    assert any("lora_" in name and not name.startswith("generation.") for name in changed)  # the thinker's adapters
    image_denoiser = {name for name in before if name.startswith("generation.decoders.image.denoiser.")}
    assert {name for name in image_denoiser if "lora_" in name} & changed  # decoders.image.freeze is false
    assert not {name for name in image_denoiser if "lora_" not in name} & changed
    assert not {name for name in before if name.startswith("generation.decoders.video.")} & changed
    from omni_runner.models.generation import _VAE_CLASSES, _load_component

    for kind, vae in vaes.items():  # the VAE that encoded the targets is the one on disk, bit for bit
        fresh = _load_component(Path(heads.settings[kind]["folder"]), "vae", _VAE_CLASSES[kind]).state_dict()
        assert all(torch.equal(fresh[name], tensor) for name, tensor in vae.state_dict().items())


def test_the_diffusion_loss_falls_by_half_when_overfitting_eight_pairs(tmp_path):
    run = prepare_run(RECIPE, [
        "training.micro_batch=8", "training.num_workers=0", "training.warmup_steps=0", "training.lr=1.0e-2",
        "training.packing=false", "datasets.drawings.max_samples=8", "capabilities.image-editing.enabled=false",
        "capabilities.video-generation.enabled=false", "stages.0.train=[thinker,image_projector,query_tokens]",
        "stages.0.max_steps=20", "controller.checkpoint.every_steps=0", "training.lr_scheduler=constant",
    ], None, run_dir=tmp_path / "run")
    trainer_ = _trainer_in_process(run)
    try:
        losses = [trainer_.train_step(trainer_.stages[0])["denoising_losses"]["image-generation"] for _ in range(20)]
    finally:
        trainer_.batches.stream.close()
    assert np.mean(losses[-5:]) <= 0.5 * np.mean(losses[:5]), losses


def test_a_generation_stage_resumes_exactly(generation_run, tmp_path):
    run = _prepare(tmp_path)
    process = trainer(run)
    wait_for(lambda: (status(run).get("step") or 0) >= 2, timeout=300, what="two steps")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 0
    assert step_of(find_resumable(run.path)) < STEPS
    assert trainer(run, "--resume").wait(timeout=300) == 0
    assert step_losses(run) == step_losses(generation_run)


def test_final_holds_the_generation_heads_and_loads_them_back(generation_run):
    from omni_runner.models.export import load_for_inference
    from omni_runner.train.checkpoint import load_checkpoint

    loaded = load_for_inference(generation_run.final, decoders=True)
    saved = load_checkpoint(generation_run.checkpoints / f"step-{STEPS}").weights
    trained = {name: tensor for name, tensor in saved.items() if name.startswith("generation.")}
    loaded_state = dict(loaded.named_parameters())
    assert trained and all(torch.equal(loaded_state[name].cpu(), tensor) for name, tensor in trained.items())


def _latent_cache_counts(run: RunDir) -> dict[str, int]:
    events = [json.loads(line) for line in run.events.read_text().splitlines()]
    return [e for e in events if e["type"] == "data"][-1]["latent_cache"]


def test_the_latent_cache_is_read_on_the_second_run_and_missed_after_a_change(tmp_path):
    rng = np.random.default_rng()  # fresh pictures: no other run can have cached them
    records = []
    for number in range(4):
        pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / f"p{number}.png")
        records.append({"image": f"p{number}.png", "prompt": f"picture {number}"})
    (tmp_path / "pictures.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    only_images = [f"datasets.drawings.path={tmp_path / 'pictures.jsonl'}", "capabilities.image-editing.enabled=false",
                   "capabilities.video-generation.enabled=false", "stages.0.max_steps=2", "training.micro_batch=2",
                   "training.packing=false", "stages.0.train=[thinker,image_projector,query_tokens]"]
    first, second = (_prepare(tmp_path / name, only_images) for name in ("first", "second"))
    assert trainer(first).wait(timeout=300) == 0, first.trainer_log.read_text()[-3000:]
    assert _latent_cache_counts(first) == {"hits": 0, "misses": 4}
    assert trainer(second).wait(timeout=300) == 0, second.trainer_log.read_text()[-3000:]
    assert _latent_cache_counts(second) == {"hits": 4, "misses": 0}

    from omni_runner.data.generation import LatentCache, TargetSpec
    from omni_runner.paths import cache_dir

    cache, spec = LatentCache(cache_dir() / "latents"), TargetSpec("image", 16, 32, 1, "any")
    before = cache.file_for(str(tmp_path / "p0.png"), spec)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "p0.png")
    assert cache.file_for(str(tmp_path / "p0.png"), spec) != before


def test_the_trainer_trains_at_the_plans_fitted_shape_and_checkpointing(tmp_path):
    trainer_ = _trainer_in_process(_prepare(tmp_path))
    try:
        fitted = {**trainer_.stages[0], "gradient_checkpointing": True,
                  "generation": {"image": {"latent_side": 4, "frames": 1}, "video": {"latent_side": 4, "frames": 2}}}
        samples = trainer_._use_decoders(fitted)
        decoders = trainer_.loaded.generation.decoders
        assert all(decoder.checkpointing and decoder.denoiser.is_gradient_checkpointing for decoder in decoders.values())
        assert {kind: (spec.pixel_side, spec.frames) for kind, spec in samples.specs.items()} == {"image": (16, 1), "video": (16, 2)}
        clip = trainer_.sources["clips"].conversation(0).generation
        assert tuple(samples.target(clip, video_fps=4).pixels.shape) == (2, 3, 16, 16)
    finally:
        trainer_.batches.stream.close()
