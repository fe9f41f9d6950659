"""`omni-run data check` and `data preview` on media records: real files, prepared as training prepares them.

The files are copies of the bundled tiny media (56x56 PNGs, 1 s 22050 Hz WAVs, 2 s 56x56 MP4s at
4 fps with an AAC beep track), next to a missing and a truncated image.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from tests.data.test_data_command import run_data

pytestmark = pytest.mark.slow  # each run loads the tiny model's processor and decodes media

RECIPE = """\
name: media-check
base_model:
  path: builtin:tiny-qwen2.5-omni
datasets:
  pictures: {path: pictures.jsonl, format: sharegpt, max_bad_fraction: 0.5}
  clips: {path: clips.jsonl, format: openai, video_fps: 4, video_max_frames: 8,
          video_max_pixels: 3136, use_audio_in_video: true}
capabilities:
  vision-qa: {weight: 1, datasets: [pictures]}
  tri-streaming: {weight: 1, datasets: [clips]}
training:
  max_steps: 10
  seq_len: 512
"""


def _sharegpt(question: str, answer: str, column: str, path: str) -> dict:
    return {"conversations": [{"from": "human", "value": question}, {"from": "gpt", "value": answer}], column: [path]}


PICTURES = [
    _sharegpt("<image>\nIs the shape on the left or the right?", "left", "images", "images/shape.png"),
    _sharegpt("<audio>How many beeps do you hear?", "three", "audios", "audio/beeps.wav"),
    _sharegpt("<image>\nWhat colour is the shape?", "red", "images", "images/gone.png"),
    _sharegpt("<image>\nWhat colour is the shape?", "blue", "images", "images/truncated.png"),
]
CLIPS = [{"messages": [{"role": "user", "content": "<video>Which way does the square move?"},
                       {"role": "assistant", "content": "left"}], "videos": ["videos/clip.mp4"]}]


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory, _omni_runner_cache: Path) -> Path:
    from omni_runner.data.bundled.media import ensure_media_data
    from omni_runner.models.tiny import ensure_tiny_model

    ensure_tiny_model()
    bundled = ensure_media_data()
    folder = tmp_path_factory.mktemp("media-check")
    for sub in ("images", "audio", "videos"):
        (folder / sub).mkdir()
    shutil.copy(bundled / "images" / "shape0000.png", folder / "images" / "shape.png")
    (folder / "images" / "truncated.png").write_bytes((bundled / "images" / "shape0001.png").read_bytes()[:60])
    shutil.copy(bundled / "audio" / "a000.wav", folder / "audio" / "beeps.wav")
    shutil.copy(bundled / "videos" / "video0.mp4", folder / "videos" / "clip.mp4")
    (folder / "pictures.jsonl").write_text("".join(json.dumps(r) + "\n" for r in PICTURES))
    (folder / "clips.jsonl").write_text("".join(json.dumps(r) + "\n" for r in CLIPS))
    path = folder / "recipe.yaml"
    path.write_text(RECIPE)
    return path


def test_check_counts_media_tokens_and_reports_media_and_unreadable_files(recipe, capsys):
    assert run_data("check", str(recipe), "--json") == 0
    report = json.loads(capsys.readouterr().out)
    pictures, clips = report["datasets"]["pictures"], report["datasets"]["clips"]
    assert (pictures["records"], pictures["usable"], pictures["bad"], pictures["ok"]) == (4, 2, 2, True)
    missing, truncated = report["bad_records"]
    assert missing == {"dataset": "pictures", "location": "pictures.jsonl:3",
                       "reason": f"missing image file {recipe.parent / 'images' / 'gone.png'}"}
    assert truncated["location"] == "pictures.jsonl:4"
    assert truncated["reason"].startswith(f"cannot read image {recipe.parent / 'images' / 'truncated.png'}: ")
    assert pictures["media"] == {
        "image": {"count": 1, "resolution": {"min": "56x56", "median": "56x56", "max": "56x56"}},
        "audio": {"count": 1, "duration_s": {"min": 1.0, "median": 1.0, "max": 1.0},
                  "sample_rates": [22050]},
    }
    video = clips["media"]["video"]
    assert (video["count"], video["with_audio"], video["resolution"]["max"]) == (1, 1, "56x56")
    assert video["frames"] == {"min": 8, "median": 8, "max": 8}  # 2 s at video_fps 4
    assert video["duration_s"]["max"] == pytest.approx(2.0, abs=0.1)
    # Lengths count the expanded media: 4 image tokens (56x56), 16 video + about 50 audio tokens.
    assert 30 < pictures["tokens"]["min"] < 50 and clips["tokens"]["min"] > 16 + 50


def test_check_fails_when_unreadable_media_pass_max_bad_fraction(recipe, capsys):
    assert run_data("check", str(recipe), "--set", "datasets.pictures.max_bad_fraction=0.25") == 1
    output = capsys.readouterr().out
    assert "pictures (sharegpt, vision-qa): 2/4 usable, 2 bad (50.0%) TOO MANY BAD (limit 0.25)" in output
    assert f"pictures: pictures.jsonl:3: missing image file {recipe.parent / 'images' / 'gone.png'}" in output
    assert "  image 1: resolution min 56x56 median 56x56 max 56x56\n" in output
    assert "  audio 1: seconds min 1 median 1 max 1; sample rate 22050 Hz\n" in output
    assert re.search(r"  video 1: resolution min 56x56 median 56x56 max 56x56; seconds min [\d.]+ median [\d.]+ "
                     r"max [\d.]+; frames min 8 median 8 max 8; 1 with an audio track\n", output)


def test_preview_collapses_media_tokens_and_places_each_medium(recipe, capsys):
    assert run_data("preview", str(recipe), "--capability", "vision-qa", "-n", "4") == 0
    output = capsys.readouterr().out
    # 15 tokens before the image: the system turn, "<|im_start|>user\n" and <|vision_bos|>.
    assert "<|vision_bos|><|IMAGE|>×4<|vision_eos|>\nIs the shape on the left or the right?" in output
    assert "[[left<|im_end|>]]" in output
    assert "image 1 (images/shape.png, 56x56): 4 tokens at 15-18\n" in output
    assert "<|audio_bos|><|AUDIO|>×25<|audio_eos|>How many beeps" in output
    assert "audio 1 (audio/beeps.wav, 1.00 s): 25 tokens at 15-39\n" in output
    assert f"(bad record: missing image file {recipe.parent / 'images' / 'gone.png'})" in output


def test_preview_places_a_videos_interleaved_audio_inside_its_run(recipe, capsys):
    assert run_data("preview", str(recipe), "--capability", "tri-streaming", "-n", "1") == 0
    output = capsys.readouterr().out
    collapsed = re.search(r"<\|vision_bos\|><\|VIDEO\|>×16<\|AUDIO\|>×(\d+)<\|vision_eos\|>Which way", output)
    assert collapsed, output
    audio = int(collapsed.group(1))
    # The expansion adds <|audio_bos|> after <|vision_bos|>, so the run starts one token later than an image's.
    assert (f"video 1 (videos/clip.mp4, 56x56, 2.00 s, audio track): {16 + audio} tokens "
            f"(16 <|VIDEO|> + {audio} <|AUDIO|>) at 16-{16 + 16 + audio - 1}\n") in output


def test_check_counts_the_external_encoders_tokens_when_the_recipe_has_them(capsys):
    """The same shapes: 4 tokens each for the base model's own tower (tiny_omni_media.yaml), 16 through
    the tiny SigLIP2 of tiny_omni_encoders.yaml (its 8 x 8 patch grid pooled 2 x 2)."""
    recipes = Path(__file__).resolve().parents[2] / "recipes"
    own_tower, external = (_shape_tokens(recipes / name, capsys) for name in ("tiny_omni_media.yaml", "tiny_omni_encoders.yaml"))
    assert external == own_tower + 16 - 4


def _shape_tokens(recipe: Path, capsys) -> int:
    assert run_data("check", str(recipe), "--json", "--capabilities", "vision-qa") == 0
    return json.loads(capsys.readouterr().out)["datasets"]["shapes"]["tokens"]["max"]


EDIT_RECIPE = """\
name: edit-check
base_model:
  path: builtin:tiny-qwen2.5-omni
decoders:
  image: {path: builtin:tiny-sd3}
datasets:
  edits: {path: edits.jsonl, format: image-edit, max_bad_fraction: 0.5}
capabilities:
  image-editing: {weight: 1, datasets: [edits]}
training:
  max_steps: 10
  seq_len: 512
"""


@pytest.fixture(scope="module")
def edit_recipe(tmp_path_factory: pytest.TempPathFactory, _omni_runner_cache: Path) -> Path:
    """Two OmniEdit-GoT records over the bundled edit pictures: one whole, one whose target is missing."""
    from omni_runner.data.bundled.media import ensure_media_data

    bundled = ensure_media_data()
    folder = tmp_path_factory.mktemp("edit-check")
    shutil.copytree(bundled / "edits", folder / "edits")
    records = [json.loads(line) for line in (bundled / "image_edit_train.jsonl").read_text().splitlines()[:2]]
    records[1]["target_image"] = "edits/gone.png"
    (folder / "edits.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (folder / "recipe.yaml").write_text(EDIT_RECIPE)
    return folder / "recipe.yaml"


def test_check_reads_image_edit_records_and_reports_a_missing_target_as_a_bad_record(edit_recipe, capsys):
    assert run_data("check", str(edit_recipe), "--json") == 0
    report = json.loads(capsys.readouterr().out)
    edits = report["datasets"]["edits"]
    assert (edits["records"], edits["usable"], edits["bad"]) == (2, 1, 1)
    assert edits["media"]["image"]["count"] == 1  # the source image goes in; the target is what comes out
    assert report["bad_records"] == [{"dataset": "edits", "location": "edits.jsonl:2",
                                      "reason": f"missing image file {edit_recipe.parent / 'edits' / 'gone.png'}"}]


def test_preview_shows_an_edit_request_with_its_source_image_and_chain_of_thought(edit_recipe, capsys):
    assert run_data("preview", str(edit_recipe), "--capability", "image-editing", "-n", "1") == 0
    output = capsys.readouterr().out
    assert "<|vision_bos|><|IMAGE|>×4<|vision_eos|>make the shape yellow<|im_end|>" in output
    assert "[[Change the red circle on the right to yellow.<|im_end|>]]" in output
    assert "image 1 (edits/e0000_source.png, 56x56): 4 tokens at 15-18\n" in output


BROKEN_RECIPE = """\
name: broken-media
base_model:
  path: builtin:tiny-qwen2.5-omni
datasets:
  mixed: {path: mixed.jsonl, format: sharegpt, max_bad_fraction: 0.9, video_fps: 4, video_max_frames: 8,
          video_max_pixels: 3136}
capabilities:
  vision-qa: {weight: 1, datasets: [mixed]}
training:
  max_steps: 10
  seq_len: 512
"""
BROKEN_FILES = {  # (record column, file): what a user's data set holds when a copy or a download was cut short
    ("images", "images/ok.png"): None,
    ("audios", "audio/empty.wav"): lambda good: b"",
    ("audios", "audio/wrong-header.wav"): lambda good: b"RIFF\x00\x00\x00\x00WAVEfmt " + bytes(range(200)),
    ("audios", "audio/cut.flac"): lambda good: good["flac"][: len(good["flac"]) // 2],
    ("images", "images/noise.jpg"): lambda good: b"\xff\xd8\xff\xe0" + bytes(range(256)) * 12,
    ("videos", "videos/garbage.mp4"): lambda good: bytes(range(256)) * 16,
    ("videos", "videos/cut.mp4"): lambda good: good["mp4"][: len(good["mp4"]) // 2],
}
PLACEHOLDER = {"images": "<image>", "audios": "<audio>", "videos": "<video>"}


@pytest.fixture(scope="module")
def broken_recipe(tmp_path_factory: pytest.TempPathFactory, _omni_runner_cache: Path) -> Path:
    """One good picture and six files broken in the ways downloads and copies break them."""
    import soundfile

    from omni_runner.data.bundled.media import ensure_media_data
    from omni_runner.models.tiny import ensure_tiny_model

    ensure_tiny_model()
    bundled = ensure_media_data()
    folder = tmp_path_factory.mktemp("broken-media")
    for sub in ("images", "audio", "videos"):
        (folder / sub).mkdir()
    samples, rate = soundfile.read(bundled / "audio" / "a000.wav")
    soundfile.write(folder / "good.flac", samples, rate)
    good = {"flac": (folder / "good.flac").read_bytes(), "mp4": (bundled / "videos" / "video0.mp4").read_bytes()}
    records = []
    for (column, name), broken in BROKEN_FILES.items():
        if broken is None:
            shutil.copy(bundled / "images" / "shape0000.png", folder / name)
        else:
            (folder / name).write_bytes(broken(good))
        records.append(_sharegpt(f"{PLACEHOLDER[column]}What is it?", "a shape", column, name))
    (folder / "mixed.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (folder / "recipe.yaml").write_text(BROKEN_RECIPE)
    return folder / "recipe.yaml"


def _expected_bad(folder: Path) -> list[tuple[str, str]]:
    """(file:line, the start of the reason naming the media file) for each broken file, in record order."""
    kinds = {"images": "image", "audios": "audio", "videos": "video"}
    return [(f"mixed.jsonl:{line}", f"cannot read {kinds[column]} {folder / name}: ")
            for line, ((column, name), broken) in enumerate(BROKEN_FILES.items(), start=1) if broken is not None]


def test_check_counts_each_broken_image_audio_and_video_file_as_a_bad_record_naming_it(broken_recipe, capsys):
    assert run_data("check", str(broken_recipe), "--json") == 0
    report = json.loads(capsys.readouterr().out)
    mixed = report["datasets"]["mixed"]
    assert (mixed["records"], mixed["usable"], mixed["bad"]) == (7, 1, 6)
    found = [(bad["location"], bad["reason"]) for bad in report["bad_records"]]
    assert [(location, reason[: len(start)]) for (location, reason), (_, start) in
            zip(found, _expected_bad(broken_recipe.parent))] == _expected_bad(broken_recipe.parent)


def test_a_training_mix_skips_broken_media_as_bad_records_and_stops_past_max_bad_fraction(broken_recipe):
    """The trainer's own stream: broken files are skipped with file:line and the path, the good record
    keeps coming, and once the skipped ones pass max_bad_fraction the stream stops with a DataError."""
    from omni_runner.data.conversation import DataError
    from omni_runner.data.sources import build_sources
    from omni_runner.data.stream import SampleStream, mixer_for
    from omni_runner.models.load import load_recipe_processor
    from omni_runner.recipe import load_recipe

    recipe = load_recipe(broken_recipe).data
    processor = load_recipe_processor(recipe, broken_recipe.parent)
    sources = build_sources(recipe, broken_recipe.parent)
    stream = SampleStream(sources, mixer_for(recipe, sources), processor.tokenizer, 512, processor=processor)
    samples = [next(stream) for _ in range(3)]
    assert {sample.location for sample in samples} == {"mixed.jsonl:1"}
    skipped = sorted((bad.location, bad.reason) for bad in stream.unrenderable["mixed"].values())
    assert [(location, reason[: len(start)]) for (location, reason), (_, start) in
            zip(skipped, _expected_bad(broken_recipe.parent))] == _expected_bad(broken_recipe.parent)
    assert stream.report()["skipped"] == {"mixed": 6}

    sources["mixed"].max_bad_fraction = 0.5
    stream = SampleStream(sources, mixer_for(recipe, sources), processor.tokenizer, 512, processor=processor)
    with pytest.raises(DataError, match=r"dataset 'mixed': \d of \d records are bad .*max_bad_fraction = 0.5"):
        for _ in range(20):
            next(stream)
