"""`omni-run generate` on one real tiny run trained through both decoders (SD3 for images and edits,
SVD for videos): the files it writes, their sizes, determinism, and its refusals; and `omni-run eval`'s
CLIP score of its drawings, with the tiny CLIP. The run's targets are put in the latent cache by
`omni-run data prepare` first, so it also shows that training then reads every target from there."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from omni_runner.cli import main

pytestmark = pytest.mark.slow

RECIPE = """\
name: generate-test
base_model: {path: builtin:tiny-qwen2.5-omni, architecture: tiny-qwen2.5-omni}
decoders:
  image: {path: builtin:tiny-sd3, query_tokens: 4}
  video: {path: builtin:tiny-svd, query_tokens: 4}
datasets:
  gen: {path: builtin:tiny-media/image_gen_train.jsonl, format: image-caption, max_samples: 4}
  edit: {path: builtin:tiny-media/image_edit_train.jsonl, format: image-edit, max_samples: 4}
  clips: {path: builtin:tiny-media/video_caption_train.jsonl, format: video-caption, video_fps: 4, video_max_frames: 8,
          max_samples: 4}
capabilities:
  image-generation: {datasets: [gen]}
  image-editing: {datasets: [edit]}
  video-generation: {datasets: [clips]}
training: {method: lora, micro_batch: 2, grad_accum: 1, seq_len: 512, packing: true, precision: fp32, seed: 7,
           gradient_checkpointing: off, num_workers: 0, max_steps: 2}
stages:
  - {name: gen, train: [thinker, image_projector, video_projector, query_tokens], max_steps: 2}
controller:
  cooldown: {every_steps: 0, seconds: 0}
  thermal: {enabled: false}
  checkpoint: {every_steps: 0}
eval: {at_end: false}
hardware: {device: cpu, vram_gb: 4}
"""
STEPS = ["--steps", "2", "--max-new-tokens", "8"]  # short: the tiny run writes no end-of-turn early


@pytest.fixture(scope="module")
def drawing_run(tmp_path_factory) -> Path:
    """A run trained 2 steps on image generation, image editing and video generation, its targets
    encoded by `data prepare` first."""
    folder = tmp_path_factory.mktemp("generate")
    (folder / "recipe.yaml").write_text(RECIPE)
    prepared = subprocess.run([sys.executable, "-m", "omni_runner.cli", "data", "prepare", str(folder / "recipe.yaml")],
                              capture_output=True, text=True, timeout=600, check=False)
    assert prepared.returncode == 0, prepared.stdout[-2000:] + prepared.stderr[-3000:]
    result = subprocess.run([sys.executable, "-m", "omni_runner.cli", str(folder / "recipe.yaml"), "--run-dir",
                             str(folder / "run")], capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert (folder / "run" / "final" / "generation.json").is_file()
    return folder / "run"


@pytest.fixture(scope="module")
def image_side(drawing_run) -> int:
    """The pixel side the run trained images at (the plan's latent side times the VAE's factor)."""
    import json

    from omni_runner.models.generation import vae_scale
    from omni_runner.models.tiny_decoders import resolve_decoder_dir

    plan = json.loads((drawing_run / "plan.json").read_text())
    latent = plan["stages"][0]["generation"]["image"]["latent_side"]
    return latent * vae_scale(resolve_decoder_dir("builtin:tiny-sd3", drawing_run), "image")


def test_training_after_data_prepare_reads_every_target_from_the_latent_cache(drawing_run):
    from omni_runner.run.events import read_events

    counts = [e["latent_cache"] for e in read_events(drawing_run / "events.jsonl") if e["type"] == "data"][-1]

    assert counts["misses"] == 0 and counts["hits"] > 0


def generate(run: Path, *args: str) -> int:
    return main(["generate", str(run), *args])


def test_generate_writes_a_png_of_the_trained_size(drawing_run, image_side, tmp_path):
    from PIL import Image

    assert generate(drawing_run, "--prompt", "a red circle on the right", "--out", str(tmp_path / "a.png"), *STEPS) == 0

    with Image.open(tmp_path / "a.png") as image:
        assert (image.format, image.size, image.mode) == ("PNG", (image_side, image_side), "RGB")


def test_the_same_seed_gives_the_same_file_and_another_seed_another(drawing_run, tmp_path):
    for name, seed in (("a.png", "3"), ("b.png", "3"), ("c.png", "4")):
        assert generate(drawing_run, "--prompt", "a blue square", "--out", str(tmp_path / name), "--seed", seed, *STEPS) == 0

    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert (tmp_path / "a.png").read_bytes() != (tmp_path / "c.png").read_bytes()


def test_edit_writes_a_png_from_the_source_image(drawing_run, image_side, tmp_path):
    from PIL import Image

    from omni_runner.paths import cache_dir

    source = cache_dir() / "data" / "tiny-media" / "edits" / "e0000_source.png"
    assert generate(drawing_run, "--prompt", "make the shape yellow", "--edit", str(source), "--out", str(tmp_path / "e.png"),
                    "--guidance", "2", *STEPS) == 0

    with Image.open(tmp_path / "e.png") as image:
        assert image.size == (image_side, image_side)


def test_video_writes_an_mp4_of_the_trained_frame_count(drawing_run, tmp_path):
    import json

    import av

    frames = json.loads((drawing_run / "plan.json").read_text())["stages"][0]["generation"]["video"]["frames"]

    assert generate(drawing_run, "--prompt", "a yellow square moves to the left", "--video", "--out",
                    str(tmp_path / "v.mp4"), *STEPS) == 0

    with av.open(str(tmp_path / "v.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == frames


def test_eval_scores_the_drawn_images_against_their_prompts_with_clip(drawing_run, capsys, monkeypatch):
    import json

    from transformers import CLIPModel

    load = CLIPModel.from_pretrained

    def chatty(*args, **kwargs):
        print("a library's notice")  # simulated: DeepSpeed prints one to standard output on its first import
        return load(*args, **kwargs)

    monkeypatch.setattr(CLIPModel, "from_pretrained", chatty)
    arguments = ["eval", str(drawing_run), "--suite", "generation", "--clip", "builtin:tiny-clip", "--json",
                 "--data", "builtin:tiny-media/image_gen_train.jsonl", "--format", "image-caption", "--max-samples", "2"]
    assert main([*arguments, *STEPS]) == 0
    printed = capsys.readouterr()
    [result] = json.loads(printed.out)["results"].values()  # --json: the document alone on standard output
    assert result["n"] == 2 and 0.0 <= result["clip_score"] <= 100.0
    assert "a library's notice" in printed.err


def test_a_run_without_decoders_is_refused_with_the_reason(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "final").mkdir(parents=True)
    (run / "plan.json").write_text("{}")

    assert generate(run, "--prompt", "anything", "--out", str(tmp_path / "x.png")) == 1

    assert "this run has no image decoder" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_a_missing_edit_image_is_refused_before_loading(drawing_run, tmp_path, capsys):
    assert generate(drawing_run, "--prompt", "recolour", "--edit", str(tmp_path / "nope.png"), "--out", str(tmp_path / "x.png")) == 1

    assert f"no such image file: {tmp_path / 'nope.png'}" in capsys.readouterr().err


def test_an_unreadable_edit_image_is_refused_with_its_path(drawing_run, tmp_path, capsys):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")

    assert generate(drawing_run, "--prompt", "recolour", "--edit", str(broken), "--out", str(tmp_path / "x.png"), *STEPS) == 1

    assert str(broken) in capsys.readouterr().err
