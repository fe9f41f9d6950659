"""Media batches on the real tiny models (Qwen2.5-Omni and Qwen3-Omni): packing keeps each media sample's
loss, positions match the model's own (a video's audio track interleaved with its frames included),
gradients reach exactly the groups that train, and DataLoader workers change nothing."""

from __future__ import annotations

import itertools

import pytest
import torch

from conftest import REPO
from omni_runner.data.mixer import Draw
from omni_runner.data.packing import collate_packed, collate_padded
from omni_runner.data.sources import build_sources
from omni_runner.data.stream import SamplePreparer, SampleStream, mixer_for
from omni_runner.models.families import family_of
from omni_runner.models.load import load_for_training
from omni_runner.recipe import load_recipe
from omni_runner.train.losses import shifted_targets, token_losses

pytestmark = pytest.mark.slow

GROUPS = ["thinker", "vision_merger", "audio_projection"]


@pytest.fixture(scope="module", params=["tiny-qwen2.5-omni", "tiny-qwen3-omni"])
def recipe(request):
    """The tiny media recipe's data sets on each family's tiny model, LoRA on the language model."""
    base = [f"base_model.path=builtin:{request.param}", f"base_model.architecture={request.param}"]
    return load_recipe(REPO / "recipes" / "tiny_omni_media.yaml", overrides=["training.method=lora", *base]).data


@pytest.fixture(scope="module")
def loaded(recipe):
    return load_for_training(recipe, REPO / "recipes", "cpu", train_groups=GROUPS)


@pytest.fixture(scope="module")
def sources(recipe):
    return build_sources(recipe, REPO / "recipes")


@pytest.fixture(scope="module")
def samples(loaded, sources):
    """One sample of each media kind: an image, a video, an audio clip, and a video with its audio track."""
    preparer = SamplePreparer(sources, loaded.tokenizer, 256, loaded.processor, loaded.thinker)
    draws = [("vision-qa", "shapes"), ("video-understanding", "motion"), ("podcast", "beeps"), ("tri-streaming", "omni")]
    return [preparer.sample(Draw(capability, dataset, 0, 0)) for capability, dataset in draws]


def _token_losses(loaded, batch):
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids", "pixel_values", "image_grid_thw",
                                    "pixel_values_videos", "video_grid_thw", "input_features", "feature_attention_mask")
              if k in batch}
    targets, _ = shifted_targets(batch["labels"], batch["token_capability"])
    return token_losses(loaded.model(**inputs).logits, targets)


def test_every_media_kind_reaches_the_thinker_as_its_processor_tensors(samples):
    keys = [set(sample.media) for sample in samples]
    assert keys[0] == {"pixel_values", "image_grid_thw"}
    assert keys[1] == {"pixel_values_videos", "video_grid_thw", "video_second_per_grid"}
    assert keys[2] == {"input_features", "feature_attention_mask"}
    assert keys[3] == keys[1] | keys[2] and samples[3].use_audio_in_video


def test_positions_are_the_models_own(loaded, samples):
    loaded.model.eval()
    with torch.no_grad():
        for sample in samples:
            batch = collate_padded([sample], loaded.tokenizer.pad_token_id)
            ours = _token_losses(loaded, batch)
            del batch["position_ids"]  # the thinker computes them itself from the grids
            batch["use_audio_in_video"] = sample.use_audio_in_video
            model_own = loaded.model(**{k: v for k, v in batch.items() if k not in ("labels", "token_capability", "capabilities")})
            targets, _ = shifted_targets(batch["labels"], batch["token_capability"])
            torch.testing.assert_close(ours, token_losses(model_own.logits, targets))
    loaded.model.train()


def test_a_packed_media_sample_has_the_loss_it_has_alone(loaded, samples):
    loaded.model.eval()
    with torch.no_grad():
        packed = collate_packed([samples], loaded.tokenizer.pad_token_id, dtype=torch.float32,
                                sliding_window=loaded.sliding_window)
        packed_losses = _token_losses(loaded, packed)
        start = 0
        for sample in samples:
            alone = _token_losses(loaded, collate_padded([sample], loaded.tokenizer.pad_token_id))
            torch.testing.assert_close(packed_losses[0, start:start + len(sample)], alone[0], rtol=1e-4, atol=1e-5)
            start += len(sample)
    loaded.model.train()


def test_gradients_reach_what_trains_and_nothing_else(loaded, samples):
    loaded.model.zero_grad(set_to_none=True)
    batch = collate_packed([samples[:2], samples[2:]], loaded.tokenizer.pad_token_id, dtype=torch.float32,
                           sliding_window=loaded.sliding_window)
    _token_losses(loaded, batch).sum().backward()
    trained = {n for n, p in loaded.model.named_parameters() if p.requires_grad}
    reached = {n for n, p in loaded.model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    family = family_of(loaded.thinker.config.model_type)
    assert reached <= trained
    assert {n for n in trained if ".visual.merger." in n} <= reached  # Qwen3-Omni's deepstack mergers see only some layers
    assert {n for n in trained if any(f".audio_tower.{m}." in n for m in family.audio_projection)} <= reached
    assert any(f".audio_tower.{m}." in n for n in trained for m in family.audio_projection)
    assert any("lora_B" in n and "language_model" in n for n in reached)
    assert not any(".visual.blocks." in n or ".audio_tower.layers." in n for n in trained)
    loaded.model.zero_grad(set_to_none=True)


def test_dataloader_workers_give_the_same_samples_and_resume_position(recipe, loaded, sources):
    def stream(workers: int) -> SampleStream:
        return SampleStream(sources, mixer_for(recipe, sources), loaded.tokenizer, 256,
                            processor=loaded.processor, thinker=loaded.thinker, num_workers=workers)

    inline, workers = stream(0), stream(2)
    first = list(itertools.islice(inline, 6))
    second = list(itertools.islice(workers, 6))
    assert [s.input_ids for s in first] == [s.input_ids for s in second]
    assert [s.location for s in first] == [s.location for s in second]
    assert inline.state_dict() == workers.state_dict()
    resumed = stream(2)
    resumed.load_state_dict(workers.state_dict())
    assert next(resumed).input_ids == next(inline).input_ids
    workers.close()
    resumed.close()


def test_the_trainers_model_inputs_cover_every_media_tensor():
    from omni_runner.data.multimodal import MEDIA_KEYS
    from omni_runner.models.load import MODEL_INPUTS

    assert set(MEDIA_KEYS) - {"video_second_per_grid"} <= set(MODEL_INPUTS)
