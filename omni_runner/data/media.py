"""Decode image, audio and video files into the arrays Qwen2.5-Omni's processor takes.

Public API:
- `MediaError`: a file that cannot be used; a `RecordError`, so the record that names it is skipped
  with the message as its reason (`cannot read image /x/a.png: <reason>`, `missing audio file /x/a.wav`).
- `load_image(path) -> PIL.Image.Image`: fully decoded RGB.
- `load_audio(path, sampling_rate) -> np.ndarray`: mono float32 at `sampling_rate`.
- `Video` and `load_video(path, *, fps, max_frames, audio_rate=None) -> Video`: frames sampled at
  `fps` (at most `max_frames`, always an even number), and the audio track when asked for.
- `media_info(kind, path) -> dict`: header facts for `omni-run data check` statistics.
- `write_video(path, frames, fps, audio=None, audio_rate=None)`: an MP4 (MPEG-4 Part 2 video, AAC
  mono audio when given) that every PyAV build writes and reads, byte-identical across machines;
  the tiny media and `omni-run generate --video` write with it.

Decoders fail in many ways (Pillow's `SyntaxError` for a broken PNG chunk, libsndfile's
`RuntimeError`, FFmpeg's `InvalidDataError`); every one becomes a `MediaError` naming the file, so
one bad file costs one record, never the run. av, soundfile and soxr are imported when first used,
so importing this module (the data checker does) stays cheap.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from omni_runner.data.conversation import RecordError

MEDIA_KINDS = ("image", "audio", "video")


class MediaError(RecordError):
    """A media file that is missing or cannot be decoded; str() names the file and the reason."""


@dataclass
class Video:
    """Frames sampled from a video, with its audio track when one was asked for and exists."""

    frames: np.ndarray  # (T, H, W, 3) uint8, T even and at least 2
    fps: float  # the rate the frames were sampled at
    audio: np.ndarray | None  # mono float32 at the requested rate; None without a track or request
    duration_s: float


def require_file(kind: str, path: str) -> None:
    """MediaError (a bad record) when `path` is not a file: the message says which kind of file is missing."""
    if not os.path.isfile(path):
        raise MediaError(f"missing {kind} file {path}")


def _reason(error: BaseException) -> str:
    """A one-line reason: decoders' messages, without the traceback, and the type when they say nothing."""
    text = " ".join(str(error).split())
    return text or type(error).__name__


def load_image(path: str) -> Image.Image:
    """The image fully decoded (a truncated file fails here, not later in the processor) as RGB.

    Transparent pixels are composited onto white, as qwen-vl-utils does for Qwen's own training
    data; dropping the alpha channel would show whatever colour the transparent pixels hold.
    """
    require_file("image", path)
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode == "P" and "transparency" in image.info:
                image = image.convert("RGBA")
            if image.mode in ("RGBA", "LA", "PA"):
                rgba = image.convert("RGBA")
                background = Image.new("RGB", rgba.size, (255, 255, 255))
                background.paste(rgba, mask=rgba.getchannel("A"))
                return background
            return image.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise MediaError(f"cannot read image {path}: {_reason(error)}") from error


def _to_mono(samples: np.ndarray) -> np.ndarray:
    """(frames, channels) → (frames,) float32, the channels averaged."""
    return samples.mean(axis=1, dtype=np.float32) if samples.shape[1] > 1 else samples[:, 0].astype(np.float32)


def _resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    if from_rate == to_rate:
        return samples
    import soxr

    return soxr.resample(samples, from_rate, to_rate).astype(np.float32, copy=False)


def load_audio(path: str, sampling_rate: int) -> np.ndarray:
    """The whole file as mono float32 at `sampling_rate` (the feature extractor's rate, 16 kHz for Qwen)."""
    import soundfile

    require_file("audio", path)
    try:
        samples, file_rate = soundfile.read(path, dtype="float32", always_2d=True)
    except (RuntimeError, OSError, ValueError, TypeError) as error:
        raise MediaError(f"cannot read audio {path}: {_reason(error)}") from error
    if samples.shape[0] == 0:
        raise MediaError(f"audio {path} has no samples")
    return _resample(_to_mono(samples), int(file_rate), sampling_rate)


def _open_video(path: str) -> Any:
    import av

    require_file("video", path)
    try:
        container = av.open(path)
    except (av.FFmpegError, OSError, ValueError) as error:
        raise MediaError(f"cannot read video {path}: {_reason(error)}") from error
    if not container.streams.video:
        container.close()
        raise MediaError(f"video {path} has no video stream")
    return container


def _duration_s(container: Any, stream: Any) -> float:
    """The video stream's length from the headers; a demux pass (no decoding) when they do not say."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / 1_000_000  # AV_TIME_BASE
    start = stream.start_time or 0
    end = max(((packet.pts or 0) + (packet.duration or 0) for packet in container.demux(stream)), default=start)
    container.seek(0)
    return float((end - start) * stream.time_base) if stream.time_base else 0.0


def _sample_times(duration_s: float, fps: float, max_frames: int) -> tuple[np.ndarray, float]:
    """Timestamps 0, 1/fps, ... inside the clip; `max_frames` of them spread evenly when that is too many."""
    count = max(1, math.ceil(duration_s * fps - 1e-6))
    if count <= max_frames:
        return np.arange(count) / fps, fps
    return np.arange(max_frames) * (duration_s / max_frames), max_frames / duration_s


def _nearest_frames(container: Any, stream: Any, times: np.ndarray) -> list[np.ndarray]:
    """For each timestamp the decoded frame nearest to it, decoding once and only as far as needed."""
    chosen: list[Any] = [None] * len(times)
    distance = np.full(len(times), np.inf)
    start: float | None = None
    rate = float(stream.average_rate or stream.guessed_rate or 25)
    for index, frame in enumerate(container.decode(stream)):
        moment = frame.time if frame.time is not None else index / rate
        start = moment if start is None else start
        moment -= start  # clips that do not start at 0 (edit lists, cut streams) are timed from their first frame
        gaps = np.abs(times - moment)
        for slot in np.flatnonzero(gaps < distance):
            chosen[slot], distance[slot] = frame, gaps[slot]
        if moment >= times[-1]:
            break  # later frames are further from every timestamp
    return [frame.to_ndarray(format="rgb24") for frame in chosen if frame is not None]


def _even_frames(frames: list[np.ndarray]) -> list[np.ndarray]:
    """Qwen groups frames in pairs (temporal_patch_size 2): drop an odd last frame, or double a lone one."""
    if len(frames) == 1:
        return frames * 2
    return frames[: len(frames) - len(frames) % 2]


def _decode_audio_track(path: str, rate: int) -> np.ndarray | None:
    """The first audio track as mono float32 at `rate`, downmixed and resampled the same way as `load_audio`."""
    import av

    with av.open(path) as container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        to_planar_float = av.AudioResampler(format="fltp")  # keeps the track's layout and rate
        chunks: list[np.ndarray] = []
        track_rate = stream.rate
        for frame in container.decode(stream):
            track_rate = frame.sample_rate
            chunks.extend(converted.to_ndarray() for converted in to_planar_float.resample(frame))
        chunks.extend(converted.to_ndarray() for converted in to_planar_float.resample(None))
    if not chunks or sum(chunk.shape[1] for chunk in chunks) == 0:
        raise MediaError(f"audio track of video {path} has no samples")
    samples = np.concatenate(chunks, axis=1).T  # (samples, channels)
    return _resample(_to_mono(samples), int(track_rate), rate)


def load_video(path: str, *, fps: float, max_frames: int, audio_rate: int | None = None) -> Video:
    """Frames at `fps` (or `max_frames` spread over the clip), and with `audio_rate` the audio track.

    Only the sampled frames are converted to RGB, and decoding stops after the last one, so a long
    clip costs one decode pass, not its length in memory.
    """
    import av

    if fps <= 0 or max_frames < 2:
        raise ValueError(f"load_video needs fps > 0 and max_frames >= 2, got fps={fps}, max_frames={max_frames}")
    container = _open_video(path)
    try:
        with container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            duration = _duration_s(container, stream)
            times, sampled_fps = _sample_times(duration, fps, max_frames)
            frames = _nearest_frames(container, stream, times)
        audio = _decode_audio_track(path, audio_rate) if audio_rate is not None else None
    except MediaError:
        raise
    except (av.FFmpegError, OSError, ValueError) as error:  # damage past the header shows up while decoding
        raise MediaError(f"cannot read video {path}: {_reason(error)}") from error
    if not frames:
        raise MediaError(f"video {path} has no decodable frames")
    return Video(frames=np.stack(_even_frames(frames)), fps=sampled_fps, audio=audio, duration_s=duration)


def _image_info(path: str) -> dict[str, Any]:
    require_file("image", path)
    try:
        with Image.open(path) as image:  # reads the header only
            return {"width": image.width, "height": image.height}
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise MediaError(f"cannot read image {path}: {_reason(error)}") from error


def _audio_info(path: str) -> dict[str, Any]:
    import soundfile

    require_file("audio", path)
    try:
        info = soundfile.info(path)
    except (RuntimeError, OSError, ValueError, TypeError) as error:
        raise MediaError(f"cannot read audio {path}: {_reason(error)}") from error
    if info.frames == 0:
        raise MediaError(f"audio {path} has no samples")
    return {"duration_s": info.frames / info.samplerate, "sample_rate": info.samplerate, "channels": info.channels}


def _video_info(path: str) -> dict[str, Any]:
    import av

    container = _open_video(path)
    try:
        with container:
            stream = container.streams.video[0]
            duration = _duration_s(container, stream)
            rate = float(stream.average_rate or stream.guessed_rate or 0)
            return {
                "width": stream.codec_context.width,
                "height": stream.codec_context.height,
                "duration_s": duration,
                "fps": rate,
                # Some containers do not count their frames; the rate times the length is then the estimate.
                "frames": stream.frames or round(duration * rate),
                "has_audio": bool(container.streams.audio),
            }
    except (av.FFmpegError, OSError, ValueError) as error:
        raise MediaError(f"cannot read video {path}: {_reason(error)}") from error


def media_info(kind: str, path: str) -> dict[str, Any]:
    """Header facts about one file, without decoding it; raises `MediaError` as the loaders do.

    image: width, height. audio: duration_s, sample_rate, channels.
    video: width, height, duration_s, fps, frames, has_audio.
    """
    readers = {"image": _image_info, "audio": _audio_info, "video": _video_info}
    if kind not in readers:
        raise ValueError(f"media_info: unknown kind {kind!r}; expected one of {', '.join(MEDIA_KINDS)}")
    return readers[kind](path)


def write_video(path: str | os.PathLike[str], frames: list[np.ndarray], fps: int,
                audio: np.ndarray | None = None, audio_rate: int | None = None) -> None:
    """Write RGB `frames` ((H, W, 3) uint8, H and W even) at `fps`, with a mono float `audio` track at
    `audio_rate` when given. FFmpeg's built-in MPEG-4 Part 2 and AAC encoders are in every PyAV build;
    single-threaded encoding and a muxer that writes no dates make the bytes depend on the input only."""
    import av

    if audio is not None and not audio_rate:
        raise ValueError("write_video: an audio track needs its audio_rate")
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        video = container.add_stream("mpeg4", rate=fps)
        video.width, video.height = width, height
        video.pix_fmt = "yuv420p"
        video.bit_rate = 200_000
        video.codec_context.thread_count = 1  # slice threads would make the bytes depend on the core count
        if audio is not None:
            # FFmpeg's AAC encoder dominates the encoding time; its fast coder halves it.
            track_stream = container.add_stream("aac", rate=audio_rate, layout="mono", options={"aac_coder": "fast"})
            track_stream.bit_rate = 24_000
        for pixels in frames:
            container.mux(video.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(video.encode(None))
        if audio is not None:
            track = av.AudioFrame.from_ndarray(np.asarray(audio, dtype=np.float32)[None], format="fltp", layout="mono")
            track.sample_rate = audio_rate
            container.mux(track_stream.encode(track))
            container.mux(track_stream.encode(None))
