"""The tiny media data set: generated images, videos and sounds with labels a tiny model can learn.

A tiny random Qwen2.5-Omni trained for minutes on CPU must be able to learn these tasks, so each
label is a plain property of the pixels or the waveform (a colour, a side, a direction, a count of
beeps, a pitch), and every file is small. Media are generated on first use into the cache, never
committed; the same builder, seed and library versions give the same bytes (MP4 included), so
runs on different machines compare.

Public API:
- `MEDIA_DATA_NAME` (`"tiny-media"`), `BUILDER_VERSION`.
- `build_media_data(out_dir) -> Path`: build into `out_dir` (written beside it, then renamed into
  place). Refuses to overwrite a non-empty folder that is not a media-data build.
- `ensure_media_data() -> Path`: the cached build under `$OMNI_RUNNER_CACHE/data/tiny-media/`, built
  on first use and rebuilt when the builder, seed or the Pillow/av/soundfile/numpy versions changed
  (the fingerprint in `STAMP_FILE`). Safe to call from several processes at once.
- `read_stamp(folder) -> dict | None`: what a media-data folder was built from.

Files (record files use the layouts of the real data sets they stand in for; media paths in them
are relative to the folder):
- `images/shapeNNNN.png`: 56x56 RGB, black background, one filled square or circle in red, green,
  blue or yellow, wholly inside the left or the right half (a 28-pixel half is exactly one merged
  2x2 patch column of Qwen's vision tower).
- `vision_qa_train.json` (400) / `vision_qa_heldout.json` (48): LLaVA-Instruct layout, a JSON list of
  `{"id", "image", "conversations": [{"from": "human", "value": "<image>\\n..."}, {"from": "gpt", ...}]}`.
  The question is "What colour is the shape?" (red/green/blue/yellow) or "Is the shape on the left
  or the right?" (left/right). Learnable: colour from the pixel values, side from where they are.
- `generation/gNNNN.png` + `image_gen_train.jsonl` (64) / `image_gen_heldout.jsonl` (8): JourneyDB-GoT
  layout, `{"img_path", "prompt", "got"}`: pictures drawn as the vision-qa ones, the prompt "a red
  circle on the left", the generation chain of thought "One red circle, in the left half of the
  picture, at (x1, y1), (x2, y2)." (its box in pixels, end exclusive). The image-caption adapter reads
  them as captions and as prompt -> picture requests.
- `edits/eNNNN_source.png`, `edits/eNNNN_target.png` + `image_edit_train.jsonl` (48) /
  `image_edit_heldout.jsonl` (8): OmniEdit-GoT layout, `{"source_image", "instruction",
  "target_image", "got"}`: a recolour ("make the shape blue", the same shape in the new colour) or a
  move ("move the shape to the right", the same shape at the same place in the other half), with the
  chain of thought "Change the red circle on the left to blue." / "Move the red circle from the left
  half to the right half."
- `videos/videoN.mp4`: 8 frames at 4 fps (2 s), 56x56, MPEG-4 Part 2 (FFmpeg's built-in encoder, in
  every PyAV build), a coloured square sliding left to right or right to left; a mono AAC track at
  16 kHz holds one to three 0.2 s beeps at 880 Hz. AAC's encoder delay puts 64 ms of silence first.
- `video_caption_train.jsonl` (200) / `video_caption_heldout.jsonl` (24): MSR-VTT layout as on the
  Hugging Face hub copies, `{"video_id", "video", "caption", "sen_id"}`, caption
  "a red square moves to the left". Learnable: colour from the pixels, direction from frame order.
- `audio/aNNN.wav`: 1.0 s, 22050 Hz (so loading resamples to the processor's 16 kHz), mono 16-bit,
  one to four 0.1 s beeps at 440 Hz ("low") or 1320 Hz ("high").
- `audio_qa_train.jsonl` (300) / `audio_qa_heldout.jsonl` (32): LLaMA-Factory's multimodal ShareGPT
  layout, `{"conversations": [{"from": "human", "value": "<audio>..."}, {"from": "gpt", ...}],
  "audios": [...]}`, asking "How many beeps do you hear?" (one..four) or "Is the tone high or low?".
- `omni_train.jsonl` (200) / `omni_heldout.jsonl` (24): OpenAI messages layout with a `videos`
  column, over the same videos (train over train, held-out over held-out): "Which way does the
  square move, and how many beeps are there?" → "left, two beeps". Needs the picture (direction)
  and the sound track (count) together, i.e. Qwen2.5-Omni's use_audio_in_video.
- `speech/sNNN.wav` + `speech_transcript.jsonl` (12): an OleSpeech-IV-like transcript layout,
  `{"audio", "transcript", "speakers"}`. The "speech" is NOT speech: espeak-ng may be absent, so
  each word of the transcript is a 0.18 s tone whose pitch is fixed per vocabulary word, with a
  0.07 s pause between words; speaker S2 speaks an octave lower, with a harmonic. Records with two
  speakers give S1 the first half of the words and S2 the rest. It exercises the format, the
  loaders and word-aligned audio, not speech recognition.
- `speech_untranscribed.jsonl` (12): the same clips in the same layout, of which only the first
  `SPEECH_REFERENCES` keep their transcript; the others have `audio` and `speakers` only, as
  recordings without transcripts arrive. `omni-run data prepare` transcribes those with
  `encoders.asr` and scores the recogniser on the ones with references.

Held-out items are drawn after the training items and never repeat one (the same colour, shape,
size and position, or the same beep pattern), so held-out scores measure the learned property.
Each part draws from its own random generator, so adding a part leaves the others' files unchanged.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from omni_runner.data.media import write_video
from omni_runner.models.folders import (
    atomic_folder,
    build_target,
    ensure_built,
    read_stamp_file,
)
from omni_runner.paths import TINY_MEDIA, cache_dir

MEDIA_DATA_NAME = TINY_MEDIA
# Bump whenever a rule here changes the files.
BUILDER_VERSION = 5
STAMP_FILE = "omni_runner_media.json"
SEED = 20260301
FINGERPRINT_LIBRARIES = ("Pillow", "av", "soundfile", "numpy")

COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0)}
NUMBER_WORDS = ("one", "two", "three", "four")
SIDES = ("left", "right")

IMAGE_SIZE = 56
TRAIN_IMAGES, HELDOUT_IMAGES = 400, 48
COLOUR_QUESTION = "What colour is the shape?"
TRAIN_GENERATIONS, HELDOUT_GENERATIONS = 64, 8
TRAIN_EDITS, HELDOUT_EDITS = 48, 8
EDITS = ("recolour", "move")
SIDE_QUESTION = "Is the shape on the left or the right?"

VIDEO_FRAMES, VIDEO_FPS = 8, 4
VIDEO_AUDIO_RATE = 16000
VIDEO_BEEP_HZ, VIDEO_BEEP_S = 880.0, 0.2
TRAIN_VIDEOS, HELDOUT_VIDEOS = 200, 24
OMNI_QUESTION = "Which way does the square move, and how many beeps are there?"

CLIP_RATE, CLIP_SECONDS, CLIP_BEEP_S = 22050, 1.0, 0.1
PITCHES = {"low": 440.0, "high": 1320.0}
TRAIN_CLIPS, HELDOUT_CLIPS = 300, 32
COUNT_QUESTION = "How many beeps do you hear?"
PITCH_QUESTION = "Is the tone high or low?"

SPEECH_RATE, SPEECH_RECORDS = 16000, 12
SPEECH_REFERENCES = 4
SPEECH_WORD_S, SPEECH_PAUSE_S = 0.18, 0.07
SPEECH_WORDS = ("the", "cat", "dog", "sees", "a", "red", "ball", "runs", "home", "now", "we", "play",
                "today", "good", "morning", "friend")
# One pitch per word from a pentatonic scale over two octaves, so neighbouring words differ audibly.
SPEECH_PITCHES = [220.0 * 2 ** (step / 12) for step in (0, 2, 4, 7, 9, 12, 14, 16, 19, 21, 24, 26, 28, 31, 33, 36)]


def _beeps(rate: int, seconds: float, starts: list[float], length_s: float, hz: float,
           amplitude: float) -> np.ndarray:
    """Silence with sine beeps at `starts`; 5 ms ramps keep the edges from clicking."""
    samples = np.zeros(round(seconds * rate), dtype=np.float64)
    length = round(length_s * rate)
    ramp = min(round(0.005 * rate), length // 2)
    rise = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
    envelope = np.ones(length)
    envelope[:ramp], envelope[-ramp:] = rise, rise[::-1]
    tone = amplitude * envelope * np.sin(2 * np.pi * hz * np.arange(length) / rate)
    for start in starts:
        first = round(start * rate)
        samples[first:first + length] += tone
    return samples.astype(np.float32)


def _splits(rng: np.random.Generator, draw: Callable[[np.random.Generator], tuple], train: int,
            heldout: int) -> dict[str, list[tuple]]:
    """`train` then `heldout` draws, none repeated across both, so held-out items are new."""
    seen: set[tuple] = set()
    splits: dict[str, list[tuple]] = {}
    for split, count in (("train", train), ("heldout", heldout)):
        splits[split] = []
        while len(splits[split]) < count:
            item = draw(rng)
            if item not in seen:
                seen.add(item)
                splits[split].append(item)
    return splits


# --- images ---------------------------------------------------------------------------------------

def _draw_shape(rng: np.random.Generator) -> tuple:
    size = int(rng.integers(22, 25))  # nearly all of its half: only a big patch of colour gets through a random vision tower
    half = IMAGE_SIZE // 2
    return (
        str(rng.choice(list(COLOURS))),
        str(rng.choice(["square", "circle"])),
        str(rng.choice(SIDES)),
        size,
        int(rng.integers(2, half - 2 - size + 1)),  # left edge inside the half
        int(rng.integers(2, IMAGE_SIZE - 2 - size + 1)),  # top edge
    )


def _shape_pixels(colour: str, shape: str, side: str, size: int, left: int, top: int) -> np.ndarray:
    pixels = np.zeros((IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    left += IMAGE_SIZE // 2 if side == "right" else 0
    box = pixels[top:top + size, left:left + size]
    if shape == "square":
        box[:] = COLOURS[colour]
    else:
        centre = (size - 1) / 2
        y, x = np.mgrid[0:size, 0:size]
        box[(y - centre) ** 2 + (x - centre) ** 2 <= (size / 2) ** 2] = COLOURS[colour]
    return pixels


def _write_images(folder: Path, rng: np.random.Generator) -> dict[str, list[dict[str, Any]]]:
    from PIL import Image

    (folder / "images").mkdir()
    splits = _splits(rng, _draw_shape, TRAIN_IMAGES, HELDOUT_IMAGES)
    records: dict[str, list[dict[str, Any]]] = {}
    number = 0
    for split, shapes in splits.items():
        records[split] = []
        for colour, shape, side, size, left, top in shapes:
            name = f"shape{number:04d}"
            Image.fromarray(_shape_pixels(colour, shape, side, size, left, top)).save(folder / "images" / f"{name}.png")
            question, answer = (COLOUR_QUESTION, colour) if rng.random() < 0.5 else (SIDE_QUESTION, side)
            records[split].append({
                "id": name,
                "image": f"images/{name}.png",
                "conversations": [{"from": "human", "value": f"<image>\n{question}"}, {"from": "gpt", "value": answer}],
            })
            number += 1
    return records


def _box(side: str, size: int, left: int, top: int) -> tuple[int, int, int, int]:
    """The shape's bounding box in picture pixels: (x1, y1) inclusive, (x2, y2) exclusive."""
    x1 = left + (IMAGE_SIZE // 2 if side == "right" else 0)
    return x1, top, x1 + size, top + size


def _plan(colour: str, shape: str, side: str, size: int, left: int, top: int) -> str:
    """A generation chain of thought as the GoT releases write one: what goes where, with its box."""
    x1, y1, x2, y2 = _box(side, size, left, top)
    return f"One {colour} {shape}, in the {side} half of the picture, at ({x1}, {y1}), ({x2}, {y2})."


def _write_generations(folder: Path, rng: np.random.Generator) -> dict[str, list[dict[str, Any]]]:
    """Prompt -> picture records with their chain of thought (JourneyDB-GoT layout)."""
    from PIL import Image

    (folder / "generation").mkdir()
    records: dict[str, list[dict[str, Any]]] = {}
    number = 0
    for split, shapes in _splits(rng, _draw_shape, TRAIN_GENERATIONS, HELDOUT_GENERATIONS).items():
        records[split] = []
        for colour, shape, side, size, left, top in shapes:
            relative = f"generation/g{number:04d}.png"
            Image.fromarray(_shape_pixels(colour, shape, side, size, left, top)).save(folder / relative)
            records[split].append({"img_path": relative, "prompt": f"a {colour} {shape} on the {side}",
                                   "got": _plan(colour, shape, side, size, left, top)})
            number += 1
    return records


def _draw_edit(rng: np.random.Generator) -> tuple:
    colour, shape, side, size, left, top = _draw_shape(rng)
    edit = str(rng.choice(EDITS))
    new = str(rng.choice([c for c in COLOURS if c != colour])) if edit == "recolour" else SIDES[1 - SIDES.index(side)]
    return colour, shape, side, size, left, top, edit, new


def _write_edits(folder: Path, rng: np.random.Generator) -> dict[str, list[dict[str, Any]]]:
    """Source picture + instruction -> edited picture records with their chain of thought (OmniEdit-GoT layout)."""
    from PIL import Image

    (folder / "edits").mkdir()
    records: dict[str, list[dict[str, Any]]] = {}
    number = 0
    for split, edits in _splits(rng, _draw_edit, TRAIN_EDITS, HELDOUT_EDITS).items():
        records[split] = []
        for colour, shape, side, size, left, top, edit, new in edits:
            if edit == "recolour":
                edited = (new, shape, side, size, left, top)
                instruction, got = f"make the shape {new}", f"Change the {colour} {shape} on the {side} to {new}."
            else:
                edited = (colour, shape, new, size, left, top)
                instruction, got = f"move the shape to the {new}", f"Move the {colour} {shape} from the {side} half to the {new} half."
            source, target = f"edits/e{number:04d}_source.png", f"edits/e{number:04d}_target.png"
            Image.fromarray(_shape_pixels(colour, shape, side, size, left, top)).save(folder / source)
            Image.fromarray(_shape_pixels(*edited)).save(folder / target)
            records[split].append({"source_image": source, "instruction": instruction, "target_image": target, "got": got})
            number += 1
    return records


# --- videos ---------------------------------------------------------------------------------------

def _draw_video(rng: np.random.Generator) -> tuple:
    size = int(rng.integers(22, 27))
    return (
        str(rng.choice(list(COLOURS))),
        str(rng.choice(SIDES)),  # the direction the square moves to
        int(rng.integers(1, 4)),  # beeps
        size,
        int(rng.integers(2, IMAGE_SIZE - 2 - size + 1)),  # top edge
    )


def _video_frames(colour: str, direction: str, size: int, top: int) -> list[np.ndarray]:
    lefts = np.linspace(2, IMAGE_SIZE - 2 - size, VIDEO_FRAMES).round().astype(int)
    frames = []
    for left in lefts if direction == "right" else lefts[::-1]:
        pixels = np.zeros((IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
        pixels[top:top + size, left:left + size] = COLOURS[colour]
        frames.append(pixels)
    return frames


def _count_phrase(beeps: int) -> str:
    return f"{NUMBER_WORDS[beeps - 1]} beep{'s' if beeps > 1 else ''}"


def _write_videos(folder: Path, rng: np.random.Generator) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Videos and both record sets that use them: captions (MSR-VTT) and direction + beeps (omni)."""
    (folder / "videos").mkdir()
    splits = _splits(rng, _draw_video, TRAIN_VIDEOS, HELDOUT_VIDEOS)
    captions: dict[str, list[dict[str, Any]]] = {}
    omni: dict[str, list[dict[str, Any]]] = {}
    number = 0
    for split, videos in splits.items():
        captions[split], omni[split] = [], []
        for colour, direction, beeps, size, top in videos:
            video_id = f"video{number}"
            starts = [0.1 + 0.6 * beep + float(rng.uniform(0, 0.1)) for beep in range(beeps)]
            sound = _beeps(VIDEO_AUDIO_RATE, VIDEO_FRAMES / VIDEO_FPS, starts, VIDEO_BEEP_S, VIDEO_BEEP_HZ, 0.5)
            write_video(folder / "videos" / f"{video_id}.mp4", _video_frames(colour, direction, size, top), VIDEO_FPS,
                        sound, VIDEO_AUDIO_RATE)
            relative = f"videos/{video_id}.mp4"
            captions[split].append({"video_id": video_id, "video": relative,
                                    "caption": f"a {colour} square moves to the {direction}", "sen_id": number})
            omni[split].append({
                "messages": [{"role": "user", "content": f"<video>{OMNI_QUESTION}"},
                             {"role": "assistant", "content": f"{direction}, {_count_phrase(beeps)}"}],
                "videos": [relative],
            })
            number += 1
    return {"video_caption": captions, "omni": omni}


# --- audio clips ----------------------------------------------------------------------------------

def _draw_clip(rng: np.random.Generator) -> tuple:
    beeps = int(rng.integers(1, 5))
    return (
        beeps,
        str(rng.choice(list(PITCHES))),
        int(rng.integers(3, 7)),  # amplitude in tenths
        tuple(int(rng.integers(0, 21)) for _ in range(beeps)),  # each beep's delay in ms
    )


def _write_clips(folder: Path, rng: np.random.Generator) -> dict[str, list[dict[str, Any]]]:
    import soundfile

    (folder / "audio").mkdir()
    splits = _splits(rng, _draw_clip, TRAIN_CLIPS, HELDOUT_CLIPS)
    records: dict[str, list[dict[str, Any]]] = {}
    number = 0
    for split, clips in splits.items():
        records[split] = []
        for beeps, pitch, tenths, delays_ms in clips:
            # beeps every 0.24 s from 0.04 s: four fit in the second, with at least 0.12 s between them
            starts = [0.04 + 0.24 * beep + delay / 1000 for beep, delay in enumerate(delays_ms)]
            sound = _beeps(CLIP_RATE, CLIP_SECONDS, starts, CLIP_BEEP_S, PITCHES[pitch], tenths / 10)
            relative = f"audio/a{number:03d}.wav"
            soundfile.write(folder / relative, sound, CLIP_RATE, subtype="PCM_16")
            asks_count = rng.random() < 0.5
            question, answer = (COUNT_QUESTION, NUMBER_WORDS[beeps - 1]) if asks_count else (PITCH_QUESTION, pitch)
            records[split].append({
                "conversations": [{"from": "human", "value": f"<audio>{question}"}, {"from": "gpt", "value": answer}],
                "audios": [relative],
            })
            number += 1
    return records


# --- tone "speech" --------------------------------------------------------------------------------

def _tone_speech(words: list[str], speakers: list[str]) -> np.ndarray:
    """One tone per word (pitch fixed by the word); S2 an octave lower with its second harmonic."""
    second_turn = (len(words) + 1) // 2 if len(speakers) == 2 else len(words)
    length, pause = round(SPEECH_WORD_S * SPEECH_RATE), round(SPEECH_PAUSE_S * SPEECH_RATE)
    t = np.arange(length) / SPEECH_RATE
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.minimum(1.0, np.minimum(t, t[::-1]) / 0.01))
    pieces = [np.zeros(pause)]
    for index, word in enumerate(words):
        hz = SPEECH_PITCHES[SPEECH_WORDS.index(word)]
        if index >= second_turn:  # S2 speaks the second half
            hz /= 2
            tone = 0.3 * np.sin(2 * np.pi * hz * t) + 0.15 * np.sin(4 * np.pi * hz * t)
        else:
            tone = 0.4 * np.sin(2 * np.pi * hz * t)
        pieces += [ramp * tone, np.zeros(pause)]
    return np.concatenate(pieces).astype(np.float32)


def _write_speech(folder: Path, rng: np.random.Generator) -> list[dict[str, Any]]:
    import soundfile

    (folder / "speech").mkdir()
    records = []
    for number in range(SPEECH_RECORDS):
        words = [str(word) for word in rng.choice(SPEECH_WORDS, size=int(rng.integers(3, 7)))]
        speakers = ["S1", "S2"] if number % 3 == 2 else ["S1"]
        relative = f"speech/s{number:03d}.wav"
        soundfile.write(folder / relative, _tone_speech(words, speakers), SPEECH_RATE, subtype="PCM_16")
        records.append({"audio": relative, "transcript": " ".join(words), "speakers": speakers})
    return records


# --- the folder -----------------------------------------------------------------------------------

def _write_records(path: Path, records: list[dict[str, Any]]) -> None:
    """A JSON list for `.json` (as LLaVA-Instruct ships), one object per line for `.jsonl`."""
    if path.suffix == ".json":
        text = json.dumps(records, indent=1, ensure_ascii=False) + "\n"
    else:
        text = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
    path.write_text(text, encoding="utf-8")


def _fingerprint() -> str:
    """Builder, seed, and the libraries that draw and encode the files (another version may write other bytes)."""
    libraries = " ".join(f"{name} {metadata.version(name)}" for name in FINGERPRINT_LIBRARIES)
    return hashlib.sha256(f"builder {BUILDER_VERSION} seed {SEED} {libraries}".encode()).hexdigest()


def _write_folder(folder: Path) -> None:
    # One generator per part, so adding records to one part leaves the others' files unchanged.
    images, videos, clips, speech, generations, edits = (np.random.default_rng([SEED, part]) for part in range(6))
    files = {f"vision_qa_{split}.json": records for split, records in _write_images(folder, images).items()}
    for stem, splits in (*_write_videos(folder, videos).items(), ("audio_qa", _write_clips(folder, clips)),
                         ("image_gen", _write_generations(folder, generations)), ("image_edit", _write_edits(folder, edits))):
        files.update({f"{stem}_{split}.jsonl": records for split, records in splits.items()})
    files["speech_transcript.jsonl"] = _write_speech(folder, speech)
    files["speech_untranscribed.jsonl"] = [
        record if number < SPEECH_REFERENCES else {"audio": record["audio"], "speakers": record["speakers"]}
        for number, record in enumerate(files["speech_transcript.jsonl"])
    ]
    for name, records in files.items():
        _write_records(folder / name, records)
    stamp = {
        "name": MEDIA_DATA_NAME,
        "builder_version": BUILDER_VERSION,
        "fingerprint": _fingerprint(),
        "seed": SEED,
        "records": {name: len(records) for name, records in sorted(files.items())},
    }
    (folder / STAMP_FILE).write_text(json.dumps(stamp, indent=2) + "\n", encoding="utf-8")


def read_stamp(folder: Path) -> dict[str, Any] | None:
    """The build record of a media-data folder, or None when the folder is not a (complete) build."""
    return read_stamp_file(folder, STAMP_FILE)


def build_media_data(out_dir: Path) -> Path:
    """Generate the data set into `out_dir`; the folder appears complete or not at all."""
    out_dir = build_target(out_dir, read_stamp, MEDIA_DATA_NAME)
    with atomic_folder(out_dir) as staging:
        _write_folder(staging)
    return out_dir


def ensure_media_data() -> Path:
    """The cached data set, built on first use and rebuilt when its builder or libraries changed."""
    return ensure_built(cache_dir() / "data" / MEDIA_DATA_NAME, _fingerprint(), read_stamp, build_media_data)
