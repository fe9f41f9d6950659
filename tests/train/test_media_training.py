"""Media reach the model and train: one short real run over the generated tiny-media set covers the four
media capabilities and the three media-pair formats, with a corrupt and a missing file among the records,
decoding in a DataLoader worker, LoRA on the thinker and the vision merger and audio projection in full."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, status, step_losses, trainer, wait_for
from omni_runner.run.events import read_events
from omni_runner.run.prepare import prepare_run
from omni_runner.run.rundir import RunDir
from omni_runner.train.checkpoint import find_resumable, load_checkpoint, step_of

pytestmark = pytest.mark.slow

STEPS = 8
MEDIA_CAPABILITIES = ("vision-qa", "video-understanding", "podcast", "tri-streaming")
CAPTIONS = 3  # image-caption records written next to the recipe, plus one corrupt and one missing image


def _write_recipe(folder: Path, media: Path) -> Path:
    """tiny_omni_media.yaml extended with image-caption and speech-transcript data, and made short."""
    images = sorted((media / "images").glob("*.png"))[:CAPTIONS]
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a picture")
    records = [{"image": str(path), "caption": f"picture {path.stem}"} for path in images]
    records[1:1] = [{"image": "broken.png", "caption": "a broken file"}, {"image": "gone.png", "caption": "no file"}]
    (folder / "captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    recipe = folder / "media.yaml"
    recipe.write_text(f"""\
extends: {REPO / "recipes" / "tiny_omni_media.yaml"}
name: media-test
datasets:
  captions: {{path: captions.jsonl, format: image-caption, max_bad_fraction: 0.5}}
  speech: {{path: "builtin:tiny-media/speech_transcript.jsonl", format: speech-transcript}}
capabilities:
  vision-qa: {{weight: 3.0, datasets: [captions]}}   # drawn often: every record, the bad ones too
  podcast: {{weight: 1.0, datasets: [beeps, speech]}}
training:
  method: lora
  lora: {{r: 8, alpha: 16, dropout: 0.0, target_modules: [q_proj, k_proj, v_proj, o_proj]}}
  max_steps: {STEPS}
  micro_batch: 2
  warmup_steps: 1
  lr: 5.0e-3
stages:
  - {{name: media, train: [thinker, vision_merger, audio_projection]}}
controller:
  checkpoint: {{every_steps: 2, keep_last: 5}}
eval:
  max_samples: 2
  max_new_tokens: 4
""")
    return recipe


@pytest.fixture(scope="module")
def media_recipe(tmp_path_factory) -> Path:
    from omni_runner.data.bundled.media import ensure_media_data

    return _write_recipe(tmp_path_factory.mktemp("media-recipe"), ensure_media_data())


@pytest.fixture(scope="module")
def media_run(media_recipe, tmp_path_factory) -> RunDir:
    run = prepare_run(media_recipe, run_dir=tmp_path_factory.mktemp("media") / "run")
    assert trainer(run).wait(timeout=600) == 0, run.trainer_log.read_text()[-3000:]
    return run


def _capability_losses(run: RunDir, capability: str) -> list[float]:
    return [e["capability_losses"][capability] for e in read_events(run.events)
            if e["type"] == "step" and capability in e["capability_losses"]]


def _eval_result(run: RunDir, capability: str) -> dict:
    results = json.loads((run.eval / "results.json").read_text())
    return next(result for result in results.values() if result["capability"] == capability)


def _trains(run: RunDir, capability: str) -> None:
    losses = _capability_losses(run, capability)
    assert len(losses) >= STEPS // 2, f"{capability} was drawn in only {len(losses)} of {STEPS} steps"
    assert losses[-1] < losses[0]
    scored = _eval_result(run, capability)
    assert scored["n"] == 2 and "answer_exact_match" in scored


def test_vision_qa_trains_end_to_end(media_run):
    _trains(media_run, "vision-qa")


def test_video_understanding_trains_end_to_end(media_run):
    _trains(media_run, "video-understanding")


def test_podcast_trains_end_to_end(media_run):
    _trains(media_run, "podcast")


def test_tri_streaming_trains_end_to_end(media_run):
    _trains(media_run, "tri-streaming")


def test_caption_and_transcript_formats_train(media_run):
    seen = [e for e in read_events(media_run.events) if e["type"] == "data"][-1]["seen_by_dataset"]
    for dataset in ("captions", "motion", "speech"):  # image-caption, video-caption, speech-transcript
        assert seen.get(dataset, 0) > 0, seen


def test_corrupt_and_missing_media_are_skipped_counted_and_located(media_run):
    report = [e for e in read_events(media_run.events) if e["type"] == "data"][-1]
    bad = {b["reason"].split(":")[0]: b for b in report["bad_records"] if b["dataset"] == "captions"}
    assert status(media_run)["state"] == "finished"
    assert report["skipped"]["captions"] == 2
    assert any(reason.startswith("cannot read image") for reason in bad), bad
    assert any(reason.startswith("missing image file") for reason in bad), bad
    assert {b["location"] for b in bad.values()} == {"captions.jsonl:2", "captions.jsonl:3"}


def test_checkpoints_carry_the_merger_and_projection_beside_the_adapters(media_run):
    weights = load_checkpoint(find_resumable(media_run.path), map_location="cpu").weights
    assert any(".visual.merger." in name for name in weights)
    assert any(".audio_tower.proj." in name for name in weights)
    assert any("lora_" in name for name in weights)


def test_a_media_stage_resumes_exactly_after_a_stop(media_run, media_recipe, tmp_path):
    run = prepare_run(media_recipe, run_dir=tmp_path / "run")
    process = trainer(run)
    wait_for(lambda: (status(run).get("step") or 0) >= 3, timeout=300, what="step 3")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 0
    stopped_at = step_of(find_resumable(run.path))
    assert 3 <= stopped_at < STEPS

    assert trainer(run, "--resume").wait(timeout=600) == 0
    reference, resumed = step_losses(media_run), step_losses(run)
    assert [resumed[s] for s in range(stopped_at + 1, STEPS + 1)] == [reference[s] for s in range(stopped_at + 1, STEPS + 1)]


def test_chat_answers_about_an_image(media_run):
    from omni_runner.data.bundled.media import ensure_media_data

    image = sorted((ensure_media_data() / "images").glob("*.png"))[0]
    chat = subprocess.run([sys.executable, "-m", "omni_runner.cli", "chat", str(media_run.path), "--prompt",
                           "What colour is the shape?", "--image", str(image), "--max-new-tokens", "4"],
                          capture_output=True, text=True, timeout=300)
    assert chat.returncode == 0, chat.stderr
    assert chat.stdout.strip()


def test_chat_refuses_a_missing_media_file_before_loading_the_model(media_run, tmp_path):
    chat = subprocess.run([sys.executable, "-m", "omni_runner.cli", "chat", str(media_run.path), "--prompt", "hi",
                           "--audio", str(tmp_path / "none.wav")], capture_output=True, text=True, timeout=120)
    assert chat.returncode == 1
    assert "no such media file" in chat.stderr and "none.wav" in chat.stderr
