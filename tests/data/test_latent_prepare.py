"""`omni-run data prepare` fills the latent cache with every generation target, at the plan's sizes,
so training finds them all there."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from omni_runner.cli import main

pytestmark = pytest.mark.slow

RECIPE = """\
name: latents-test
base_model: {path: builtin:tiny-qwen2.5-omni, architecture: tiny-qwen2.5-omni}
decoders:
  image: {path: builtin:tiny-sd3, query_tokens: 4}
  video: {path: builtin:tiny-svd, query_tokens: 4}
datasets:
  gen: {path: gen.jsonl, format: image-caption}
  clips: {path: builtin:tiny-media/video_caption_train.jsonl, format: video-caption, video_fps: 4, video_max_frames: 8,
          max_samples: 2}
capabilities:
  image-generation: {datasets: [gen]}
  video-generation: {datasets: [clips]}
training: {method: lora, micro_batch: 2, seq_len: 512, precision: fp32, num_workers: 0, max_steps: 2}
hardware: {device: cpu, vram_gb: 4}
"""


@pytest.fixture
def recipe(tmp_path) -> Path:
    """Three image-generation records whose pictures are fresh copies in `tmp_path`, and two video clips."""
    from omni_runner.paths import cache_dir

    pictures = cache_dir() / "data" / "tiny-media" / "generation"
    with open(tmp_path / "gen.jsonl", "w") as lines:
        for number in range(3):
            shutil.copy(pictures / f"g000{number}.png", tmp_path / f"g{number}.png")
            lines.write(json.dumps({"image": f"g{number}.png", "prompt": f"picture {number}"}) + "\n")
    (tmp_path / "recipe.yaml").write_text(RECIPE)
    return tmp_path / "recipe.yaml"


def prepare(recipe: Path, capsys) -> dict:
    capsys.readouterr()
    assert main(["data", "prepare", str(recipe), "--json"]) == 0
    return json.loads(capsys.readouterr().out)["latents"]


def cached(recipe: Path, kind: str, target: str) -> dict | None:
    """The latents the trainer would read for `target` at the plan's shape of `kind`."""
    from omni_runner.data.generation import LatentCache
    from omni_runner.models.generation import (
        recipe_decoder_settings,
        settings_target_specs,
    )
    from omni_runner.paths import cache_dir
    from omni_runner.plan import compile_plan
    from omni_runner.recipe import load_recipe

    loaded = load_recipe(recipe)
    shapes = compile_plan(loaded).to_json()["stages"][0]["generation"]
    spec = settings_target_specs(recipe_decoder_settings(loaded.data, recipe.parent), {kind}, shapes)[kind]
    cache = LatentCache(cache_dir() / "latents")
    return cache.read(cache.file_for(target, spec))


def video_targets() -> list[str]:
    from omni_runner.paths import cache_dir

    folder = cache_dir() / "data" / "tiny-media"
    records = [json.loads(line) for line in (folder / "video_caption_train.jsonl").read_text().splitlines()[:2]]
    return [str(folder / record["video"]) for record in records]


def test_prepare_caches_the_latents_of_every_target(recipe, capsys):
    report = prepare(recipe, capsys)

    assert report["ok"] and not report["failures"]
    assert {(t["kind"], t["encoded"] + t["cached"]) for t in report["targets"].values()} == {("image", 3), ("video", 2)}
    for number in range(3):
        latents = cached(recipe, "image", str(recipe.parent / f"g{number}.png"))
        assert latents is not None and latents["latents"].ndim == 3
    for clip in video_targets():
        latents = cached(recipe, "video", clip)
        assert latents is not None and latents["latents"].ndim == 4 and latents["first"].ndim == 3


def test_a_second_prepare_encodes_nothing(recipe, capsys):
    prepare(recipe, capsys)

    again = prepare(recipe, capsys)

    assert {(t["kind"], t["encoded"], t["cached"]) for t in again["targets"].values()} == {("image", 0, 3), ("video", 0, 2)}


def test_a_changed_target_file_misses_and_is_encoded_again(recipe, capsys):
    prepare(recipe, capsys)
    changed = recipe.parent / "g1.png"
    pixels = np.asarray(Image.open(changed).convert("RGB")).copy()
    pixels[0, 0] = np.frombuffer(np.random.default_rng().bytes(3), dtype=np.uint8)  # new bytes every run
    pixels[0, 1] = 255 - pixels[0, 0]
    Image.fromarray(pixels).save(changed)

    assert cached(recipe, "image", str(changed)) is None
    again = prepare(recipe, capsys)

    assert {(t["kind"], t["encoded"], t["cached"]) for t in again["targets"].values()} == {("image", 1, 2), ("video", 0, 2)}
    assert cached(recipe, "image", str(changed)) is not None


def test_an_unreadable_target_is_reported_with_its_record_and_fails_the_prepare(recipe, capsys):
    with open(recipe.parent / "gen.jsonl", "a") as lines:
        lines.write(json.dumps({"image": "missing.png", "prompt": "lost"}) + "\n")

    assert main(["data", "prepare", str(recipe), "--json"]) == 1

    report = json.loads(capsys.readouterr().out)["latents"]
    assert [(f["dataset"], f["location"]) for f in report["failures"]] == [("gen", "gen.jsonl:4")]
    assert "missing.png" in report["failures"][0]["reason"]
    assert {(t["kind"], t["encoded"] + t["cached"]) for t in report["targets"].values()} == {("image", 3), ("video", 2)}
