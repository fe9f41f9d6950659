"""The generated tiny media data set: deterministic, in the real layouts, and labelled truthfully."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from omni_runner.data.bundled.media import (
    COLOURS,
    MEDIA_DATA_NAME,
    NUMBER_WORDS,
    PITCHES,
    SPEECH_REFERENCES,
    STAMP_FILE,
    VIDEO_FPS,
    VIDEO_FRAMES,
    build_media_data,
    ensure_media_data,
    read_stamp,
)
from omni_runner.data.media import load_audio, load_image, load_video

RATE = 16000  # what the loaders are asked for, as Qwen's feature extractor does

RECORD_FILES = {
    "vision_qa_train.json": 400,
    "vision_qa_heldout.json": 48,
    "video_caption_train.jsonl": 200,
    "video_caption_heldout.jsonl": 24,
    "audio_qa_train.jsonl": 300,
    "audio_qa_heldout.jsonl": 32,
    "omni_train.jsonl": 200,
    "omni_heldout.jsonl": 24,
    "speech_transcript.jsonl": 12,
    "speech_untranscribed.jsonl": 12,
    "image_gen_train.jsonl": 64,
    "image_gen_heldout.jsonl": 8,
    "image_edit_train.jsonl": 48,
    "image_edit_heldout.jsonl": 8,
}


@pytest.fixture(scope="module")
def media_data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One build for the module, made by `ensure_media_data` in a cache of its own."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMNI_RUNNER_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield ensure_media_data()


def _records(folder: Path, name: str) -> list[dict[str, Any]]:
    text = (folder / name).read_text(encoding="utf-8")
    if name.endswith(".json"):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines()]


def _media_refs(record: dict[str, Any]) -> list[str]:
    refs = [record[key] for key in ("image", "video", "audio", "img_path", "source_image", "target_image") if key in record]
    return refs + record.get("audios", []) + record.get("videos", [])


def _files(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def _count_bursts(samples: np.ndarray, rate: int) -> int:
    """Separate sounds in a clip: 10 ms windows louder than a quarter of the loudest, counted by onsets."""
    hop = rate // 100
    windows = samples[: len(samples) // hop * hop].reshape(-1, hop)
    loudness = np.sqrt((windows.astype(np.float64) ** 2).mean(axis=1))
    active = loudness > 0.25 * loudness.max()
    return int(active[0]) + int(np.count_nonzero(active[1:] & ~active[:-1]))


def _dominant_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[spectrum.argmax()])


def _nearest_colour(rgb: np.ndarray) -> str:
    return min(COLOURS, key=lambda name: float(np.linalg.norm(rgb - np.array(COLOURS[name]))))


def test_ensure_builds_into_the_cache(media_data: Path) -> None:
    assert media_data.parent.name == "data"
    assert media_data.name == MEDIA_DATA_NAME
    assert read_stamp(media_data)["records"] == RECORD_FILES


def test_two_builds_are_identical(media_data: Path, tmp_path: Path) -> None:
    again = build_media_data(tmp_path / "again")
    first, second = _files(media_data), _files(again)
    assert sorted(first) == sorted(second)
    # Byte for byte, MP4s included: the encoders run single-threaded and the muxer writes no dates.
    assert [name for name in first if first[name] != second[name]] == []


def test_record_files_have_their_real_layouts(media_data: Path) -> None:
    for name, count in RECORD_FILES.items():
        records = _records(media_data, name)
        assert len(records) == count, name
        for record in records:
            if name.startswith("vision_qa"):  # LLaVA-Instruct
                assert set(record) == {"id", "image", "conversations"}
                assert [turn["from"] for turn in record["conversations"]] == ["human", "gpt"]
                assert record["conversations"][0]["value"].startswith("<image>\n")
            elif name.startswith("video_caption"):  # MSR-VTT
                assert set(record) == {"video_id", "video", "caption", "sen_id"}
                assert record["video"] == f"videos/{record['video_id']}.mp4"
            elif name.startswith("audio_qa"):  # ShareGPT with an audios column
                assert set(record) == {"conversations", "audios"}
                assert record["conversations"][0]["value"].startswith("<audio>")
            elif name.startswith("omni"):  # OpenAI messages with a videos column
                assert set(record) == {"messages", "videos"}
                assert [message["role"] for message in record["messages"]] == ["user", "assistant"]
                assert record["messages"][0]["content"].startswith("<video>")
            elif name.startswith("image_gen"):  # JourneyDB-GoT
                assert set(record) == {"img_path", "prompt", "got"}
            elif name.startswith("image_edit"):  # OmniEdit-GoT
                assert set(record) == {"source_image", "instruction", "target_image", "got"}
            elif name == "speech_untranscribed.jsonl":  # the transcript layout, most records without text
                assert set(record) in ({"audio", "transcript", "speakers"}, {"audio", "speakers"})
            else:
                assert set(record) == {"audio", "transcript", "speakers"}


def test_every_media_file_is_referenced_and_exists(media_data: Path) -> None:
    referenced = {ref for name in RECORD_FILES for record in _records(media_data, name) for ref in _media_refs(record)}
    on_disk = {str(path.relative_to(media_data)) for path in media_data.glob("*/*")}
    assert referenced == on_disk


def _shape_facts(pixels: np.ndarray) -> tuple[str, str, tuple[int, int, int, int]]:
    """The one shape's colour, side and bounding box ((x1, y1) inclusive, (x2, y2) exclusive)."""
    shape = pixels.max(axis=2) > 0
    rows, columns = np.flatnonzero(shape.any(axis=1)), np.flatnonzero(shape.any(axis=0))
    side = "left" if columns.max() < pixels.shape[1] // 2 else "right"
    assert side == "left" or columns.min() >= pixels.shape[1] // 2, "the shape straddles the middle"
    box = (int(columns.min()), int(rows.min()), int(columns.max()) + 1, int(rows.max()) + 1)
    return _nearest_colour(pixels[shape].mean(axis=0)), side, box


def test_generation_prompts_and_chains_of_thought_match_the_pictures(media_data: Path) -> None:
    for split in ("train", "heldout"):
        for record in _records(media_data, f"image_gen_{split}.jsonl"):
            colour, side, box = _shape_facts(np.asarray(load_image(str(media_data / record["img_path"]))))
            assert record["prompt"].startswith(f"a {colour} ") and record["prompt"].endswith(f" on the {side}")
            assert record["got"].endswith(f"in the {side} half of the picture, at ({box[0]}, {box[1]}), ({box[2]}, {box[3]})."), record["img_path"]


def test_edited_pictures_do_what_the_instruction_says_and_nothing_else(media_data: Path) -> None:
    kinds = set()
    for split in ("train", "heldout"):
        for record in _records(media_data, f"image_edit_{split}.jsonl"):
            source = _shape_facts(np.asarray(load_image(str(media_data / record["source_image"]))))
            target = _shape_facts(np.asarray(load_image(str(media_data / record["target_image"]))))
            *_, new = record["instruction"].split()
            if record["instruction"].startswith("make the shape"):
                kinds.add("recolour")
                assert (target[0], target[1:]) == (new, source[1:]) and new != source[0], record
                assert record["got"].startswith(f"Change the {source[0]} ") and record["got"].endswith(f" on the {source[1]} to {new}.")
            else:
                kinds.add("move")
                assert (target[0], target[1]) == (source[0], new) and new != source[1], record
                assert target[2][1::2] == source[2][1::2]  # same rows: moved sideways only
                assert record["got"].endswith(f"from the {source[1]} half to the {new} half.")
    assert kinds == {"recolour", "move"}


def test_image_answers_match_the_pixels(media_data: Path) -> None:
    for name in ("vision_qa_train.json", "vision_qa_heldout.json"):
        for record in _records(media_data, name):
            pixels = np.asarray(load_image(str(media_data / record["image"])))
            shape = pixels.max(axis=2) > 0
            columns = np.flatnonzero(shape.any(axis=0))
            side = "left" if columns.max() < pixels.shape[1] // 2 else "right"
            assert side == "left" or columns.min() >= pixels.shape[1] // 2, f"{record['id']} straddles the middle"
            question, answer = (turn["value"] for turn in record["conversations"])
            if "colour" in question:
                assert _nearest_colour(pixels[shape].mean(axis=0)) == answer, record["id"]
            else:
                assert side == answer, record["id"]


def test_video_captions_and_omni_answers_match_the_clips(media_data: Path) -> None:
    captions = {record["video"]: record["caption"] for split in ("train", "heldout")
                for record in _records(media_data, f"video_caption_{split}.jsonl")}
    answers = {record["videos"][0]: record["messages"][1]["content"] for split in ("train", "heldout")
               for record in _records(media_data, f"omni_{split}.jsonl")}
    assert captions.keys() == answers.keys()
    for ref, caption in captions.items():
        video = load_video(str(media_data / ref), fps=VIDEO_FPS, max_frames=VIDEO_FRAMES, audio_rate=RATE)
        assert video.frames.shape == (VIDEO_FRAMES, 56, 56, 3)
        square = video.frames.max(axis=3) > 128
        centres = [np.flatnonzero(mask.any(axis=0)).mean() for mask in square]
        direction = "right" if centres[-1] > centres[0] else "left"
        colour = _nearest_colour(video.frames[square].mean(axis=0))
        assert caption == f"a {colour} square moves to the {direction}", ref
        said_direction, beeps = answers[ref].split(", ")
        assert said_direction == direction, ref
        assert beeps.split()[0] == NUMBER_WORDS[_count_bursts(video.audio, RATE) - 1], ref


def test_audio_answers_match_the_clips(media_data: Path) -> None:
    for split in ("train", "heldout"):
        for record in _records(media_data, f"audio_qa_{split}.jsonl"):
            samples = load_audio(str(media_data / record["audios"][0]), RATE)
            assert len(samples) == RATE  # one second, resampled from 22050 Hz
            question, answer = (turn["value"] for turn in record["conversations"])
            if "How many" in question:
                assert NUMBER_WORDS[_count_bursts(samples, RATE) - 1] == answer, record["audios"]
            else:
                pitch = min(PITCHES, key=lambda name: abs(PITCHES[name] - _dominant_hz(samples, RATE)))
                assert pitch == answer, record["audios"]


def test_speech_has_one_tone_per_transcript_word(media_data: Path) -> None:
    records = _records(media_data, "speech_transcript.jsonl")
    assert {tuple(record["speakers"]) for record in records} == {("S1",), ("S1", "S2")}
    for record in records:
        samples = load_audio(str(media_data / record["audio"]), RATE)
        assert _count_bursts(samples, RATE) == len(record["transcript"].split()), record["audio"]


def test_untranscribed_speech_keeps_the_first_transcripts_as_references(media_data: Path) -> None:
    transcribed = _records(media_data, "speech_transcript.jsonl")
    untranscribed = _records(media_data, "speech_untranscribed.jsonl")
    assert [r["audio"] for r in untranscribed] == [r["audio"] for r in transcribed]
    assert untranscribed[:SPEECH_REFERENCES] == transcribed[:SPEECH_REFERENCES]
    assert all("transcript" not in record for record in untranscribed[SPEECH_REFERENCES:])


def test_heldout_media_never_repeat_training_media(media_data: Path) -> None:
    def contents(name: str) -> set[bytes]:
        return {(media_data / ref).read_bytes() for record in _records(media_data, name) for ref in _media_refs(record)}

    for stem in ("vision_qa", "audio_qa", "omni", "image_gen", "image_edit"):
        suffix = ".json" if stem == "vision_qa" else ".jsonl"
        assert not contents(f"{stem}_train{suffix}") & contents(f"{stem}_heldout{suffix}"), stem


def _cached_copy(media_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the module's build as the current build of a fresh cache."""
    monkeypatch.setenv("OMNI_RUNNER_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "cache" / "data" / MEDIA_DATA_NAME
    shutil.copytree(media_data, folder)
    return folder


def test_ensure_reuses_a_current_build(media_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _cached_copy(media_data, tmp_path, monkeypatch)
    before = {path: path.stat().st_mtime_ns for path in (folder / STAMP_FILE, folder / "videos" / "video0.mp4")}
    assert ensure_media_data() == folder
    assert {path: path.stat().st_mtime_ns for path in before} == before


def test_ensure_rebuilds_after_the_stamp_changes(media_data: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _cached_copy(media_data, tmp_path, monkeypatch)
    stamp = read_stamp(folder)
    (folder / STAMP_FILE).write_text(json.dumps({**stamp, "fingerprint": "an older builder"}), encoding="utf-8")
    (folder / "images" / "shape0000.png").write_bytes(b"stale")
    assert ensure_media_data() == folder
    assert read_stamp(folder) == stamp
    assert (folder / "images" / "shape0000.png").read_bytes() == (media_data / "images" / "shape0000.png").read_bytes()


def test_build_refuses_a_folder_that_is_not_a_build(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a tiny-media build"):
        build_media_data(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"
