"""Media decoding: shapes, rates, frame sampling, and one clear MediaError per kind of broken file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile
from PIL import Image

from omni_runner.data.conversation import RecordError
from omni_runner.data.media import MediaError, load_audio, load_image, load_video, media_info, write_video

VIDEO_SECONDS = 2.0
VIDEO_FPS = 10
VIDEO_SIZE = (48, 64)  # height, width


def _sine(seconds: float, rate: int, hz: float = 440.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def _write_mp4(path: Path, *, audio_rate: int | None, audio_channels: int = 1) -> Path:
    """Frame i is flat grey at level 10*i, so a test can tell which source frame was sampled."""
    import av

    frame_count = round(VIDEO_SECONDS * VIDEO_FPS)
    with av.open(str(path), "w") as container:
        video = container.add_stream("mpeg4", rate=VIDEO_FPS)
        video.height, video.width = VIDEO_SIZE
        video.pix_fmt = "yuv420p"
        video.bit_rate = 400_000
        audio = None
        if audio_rate is not None:
            audio = container.add_stream("aac", rate=audio_rate, layout="mono" if audio_channels == 1 else "stereo")
        for index in range(frame_count):
            pixels = np.full((*VIDEO_SIZE, 3), 10 * index, dtype=np.uint8)
            container.mux(video.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(video.encode(None))
        if audio is not None:
            samples = np.tile(_sine(VIDEO_SECONDS, audio_rate), (audio_channels, 1))
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout=audio.layout.name)
            frame.sample_rate = audio_rate
            container.mux(audio.encode(frame))
            container.mux(audio.encode(None))
    return path


@pytest.fixture
def video_with_audio(tmp_path: Path) -> Path:
    return _write_mp4(tmp_path / "clip.mp4", audio_rate=22050, audio_channels=2)


@pytest.fixture
def silent_video(tmp_path: Path) -> Path:
    return _write_mp4(tmp_path / "silent.mp4", audio_rate=None)


def _frame_levels(frames: np.ndarray) -> list[int]:
    """Which source frame each sampled frame is (its grey level / 10)."""
    return [round(float(frame.mean()) / 10) for frame in frames]


def test_media_error_is_a_record_error() -> None:
    assert issubclass(MediaError, RecordError)


def test_load_image_is_fully_decoded_rgb(tmp_path: Path) -> None:
    path = tmp_path / "grey.png"
    Image.new("L", (30, 20), 128).save(path)
    image = load_image(str(path))
    assert image.mode == "RGB"
    assert image.size == (30, 20)
    assert np.asarray(image).dtype == np.uint8
    assert image.getpixel((0, 0)) == (128, 128, 128)


def test_load_image_puts_transparent_pixels_on_white(tmp_path: Path) -> None:
    path = tmp_path / "clear.png"
    Image.new("RGBA", (8, 8), (0, 0, 0, 0)).save(path)
    assert load_image(str(path)).getpixel((3, 3)) == (255, 255, 255)


def test_load_audio_resamples_to_the_requested_rate(tmp_path: Path) -> None:
    path = tmp_path / "tone.wav"
    soundfile.write(path, _sine(1.5, 22050), 22050)
    samples = load_audio(str(path), 16000)
    assert samples.dtype == np.float32
    assert samples.ndim == 1
    assert abs(len(samples) - 1.5 * 16000) <= 2


def test_load_audio_keeps_samples_at_the_file_rate(tmp_path: Path) -> None:
    path = tmp_path / "tone16k.wav"
    original = _sine(0.5, 16000)
    soundfile.write(path, original, 16000, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(str(path), 16000), original)


def test_load_audio_averages_stereo_into_mono(tmp_path: Path) -> None:
    path = tmp_path / "stereo.wav"
    tone = _sine(0.5, 16000, amplitude=1.0)
    soundfile.write(path, np.stack([0.4 * tone, 0.2 * tone], axis=1), 16000, subtype="FLOAT")
    samples = load_audio(str(path), 16000)
    assert samples.shape == tone.shape
    np.testing.assert_allclose(samples, 0.3 * tone, atol=1e-6)


def test_load_video_samples_frames_at_the_requested_fps(silent_video: Path) -> None:
    video = load_video(str(silent_video), fps=2, max_frames=64)
    assert video.frames.shape == (4, *VIDEO_SIZE, 3)
    assert video.frames.dtype == np.uint8
    assert _frame_levels(video.frames) == [0, 5, 10, 15]  # t = 0, 0.5, 1.0, 1.5 s
    assert video.fps == 2
    assert video.duration_s == pytest.approx(VIDEO_SECONDS)


def test_load_video_spreads_max_frames_over_the_clip(silent_video: Path) -> None:
    video = load_video(str(silent_video), fps=10, max_frames=4)
    assert _frame_levels(video.frames) == [0, 5, 10, 15]
    assert video.fps == pytest.approx(4 / VIDEO_SECONDS)


def test_load_video_drops_an_odd_last_frame(silent_video: Path) -> None:
    video = load_video(str(silent_video), fps=1.5, max_frames=64)  # t = 0, 0.67, 1.33 s: three frames
    assert _frame_levels(video.frames) == [0, 7]


def test_load_video_doubles_a_single_frame(silent_video: Path) -> None:
    video = load_video(str(silent_video), fps=0.4, max_frames=64)  # only t = 0 lies inside 2 s
    assert _frame_levels(video.frames) == [0, 0]


def test_load_video_returns_the_audio_track_at_the_requested_rate(video_with_audio: Path) -> None:
    video = load_video(str(video_with_audio), fps=2, max_frames=8, audio_rate=16000)
    assert video.audio is not None
    assert video.audio.dtype == np.float32
    assert video.audio.ndim == 1
    # AAC adds up to two frames of encoder delay and padding around the 2 s of samples
    assert VIDEO_SECONDS * 16000 <= len(video.audio) <= (VIDEO_SECONDS + 0.15) * 16000


def test_load_video_leaves_audio_out_unless_asked(video_with_audio: Path) -> None:
    assert load_video(str(video_with_audio), fps=2, max_frames=8).audio is None


def test_load_video_without_an_audio_track_gives_no_audio(silent_video: Path) -> None:
    assert load_video(str(silent_video), fps=2, max_frames=8, audio_rate=16000).audio is None


def test_load_video_rejects_an_impossible_frame_budget(silent_video: Path) -> None:
    with pytest.raises(ValueError, match="max_frames >= 2"):
        load_video(str(silent_video), fps=2, max_frames=1)


def _truncated_png(tmp_path: Path) -> Path:
    path = tmp_path / "cut.png"
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def _text_as_wav(tmp_path: Path) -> Path:
    path = tmp_path / "notes.wav"
    path.write_text("these are not samples\n")
    return path


def _garbage_mp4(tmp_path: Path) -> Path:
    path = tmp_path / "noise.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return path


def _audio_only_mp4(tmp_path: Path) -> Path:
    import av

    path = tmp_path / "voice.mp4"
    with av.open(str(path), "w") as container:
        audio = container.add_stream("aac", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(_sine(0.5, 16000)[None], format="fltp", layout="mono")
        frame.sample_rate = 16000
        container.mux(audio.encode(frame))
        container.mux(audio.encode(None))
    return path


def _missing(tmp_path: Path) -> Path:
    return tmp_path / "absent.bin"


def _empty(name: str):
    def make(tmp_path: Path) -> Path:
        path = tmp_path / name
        path.write_bytes(b"")
        return path
    return make


def _wav_with_a_wrong_header(tmp_path: Path) -> Path:
    path = tmp_path / "wrong.wav"
    path.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt " + np.random.default_rng(0).bytes(200))
    return path


def _wav_header_without_samples(tmp_path: Path) -> Path:
    path = tmp_path / "header.wav"
    soundfile.write(path, _sine(1.0, 16000), 16000)
    path.write_bytes(path.read_bytes()[:44])
    return path


def _truncated_flac(tmp_path: Path) -> Path:
    path = tmp_path / "cut.flac"
    soundfile.write(path, _sine(1.0, 16000), 16000)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def _garbage_jpeg(tmp_path: Path) -> Path:
    path = tmp_path / "noise.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0" + np.random.default_rng(0).bytes(3000))
    return path


def _truncated_mp4(tmp_path: Path) -> Path:
    path = _write_mp4(tmp_path / "cut.mp4", audio_rate=None)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def _mp4_damaged_after_its_header(tmp_path: Path) -> Path:
    """Headers intact (media_info reads it), frames noise: the damage shows only while decoding."""
    path = _write_mp4(tmp_path / "damaged.mp4", audio_rate=None)
    data = bytearray(path.read_bytes())
    middle = slice(len(data) // 4, len(data) * 3 // 4)
    data[middle] = np.random.default_rng(0).bytes(middle.stop - middle.start)
    path.write_bytes(bytes(data))
    return path


BROKEN = [
    pytest.param(_truncated_png, lambda p: load_image(p), "cannot read image", id="truncated-png"),
    pytest.param(_text_as_wav, lambda p: load_audio(p, 16000), "cannot read audio", id="text-as-wav"),
    pytest.param(_garbage_mp4, lambda p: load_video(p, fps=2, max_frames=8), "cannot read video", id="garbage-mp4"),
    pytest.param(_audio_only_mp4, lambda p: load_video(p, fps=2, max_frames=8), "has no video stream", id="no-video"),
    pytest.param(_empty("empty.png"), lambda p: load_image(p), "cannot read image", id="zero-byte-png"),
    pytest.param(_garbage_jpeg, lambda p: load_image(p), "cannot read image", id="garbage-jpeg"),
    pytest.param(_empty("empty.wav"), lambda p: load_audio(p, 16000), "cannot read audio", id="zero-byte-wav"),
    pytest.param(_wav_with_a_wrong_header, lambda p: load_audio(p, 16000), "cannot read audio", id="wrong-wav-header"),
    pytest.param(_wav_header_without_samples, lambda p: load_audio(p, 16000), "has no samples", id="wav-header-only"),
    pytest.param(_truncated_flac, lambda p: load_audio(p, 16000), "cannot read audio", id="truncated-flac"),
    pytest.param(_empty("empty.mp4"), lambda p: load_video(p, fps=2, max_frames=8), "cannot read video", id="zero-byte-mp4"),
    pytest.param(_truncated_mp4, lambda p: load_video(p, fps=2, max_frames=8), "cannot read video", id="truncated-mp4"),
    pytest.param(_mp4_damaged_after_its_header, lambda p: load_video(p, fps=2, max_frames=8), "cannot read video",
                 id="mp4-damaged-frames"),
    pytest.param(_missing, lambda p: load_image(p), "missing image file", id="missing-image"),
    pytest.param(_missing, lambda p: load_audio(p, 16000), "missing audio file", id="missing-audio"),
    pytest.param(_missing, lambda p: load_video(p, fps=2, max_frames=8), "missing video file", id="missing-video"),
]


@pytest.mark.parametrize(("make", "load", "reason"), BROKEN)
def test_broken_media_raises_media_error_naming_the_file(tmp_path: Path, make, load, reason: str) -> None:
    path = str(make(tmp_path))
    with pytest.raises(MediaError) as raised:
        load(path)
    assert reason in str(raised.value)
    assert path in str(raised.value)
    assert "\n" not in str(raised.value)


def test_media_info_of_an_image(tmp_path: Path) -> None:
    path = tmp_path / "wide.png"
    Image.new("RGB", (40, 10)).save(path)
    assert media_info("image", str(path)) == {"width": 40, "height": 10}


def test_media_info_of_audio(tmp_path: Path) -> None:
    path = tmp_path / "stereo.wav"
    soundfile.write(path, np.zeros((11025, 2), dtype=np.float32), 22050)
    assert media_info("audio", str(path)) == {"duration_s": 0.5, "sample_rate": 22050, "channels": 2}


def test_media_info_of_a_video(video_with_audio: Path) -> None:
    info = media_info("video", str(video_with_audio))
    assert info == {
        "width": VIDEO_SIZE[1],
        "height": VIDEO_SIZE[0],
        "duration_s": pytest.approx(VIDEO_SECONDS),
        "fps": VIDEO_FPS,
        "frames": round(VIDEO_SECONDS * VIDEO_FPS),
        "has_audio": True,
    }


def test_media_info_raises_like_the_loaders(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="cannot read image"):
        media_info("image", str(_text_as_wav(tmp_path)))
    with pytest.raises(MediaError, match="missing video file"):
        media_info("video", str(_missing(tmp_path)))


def test_media_info_names_the_kinds_it_knows() -> None:
    with pytest.raises(ValueError, match="image, audio, video"):
        media_info("subtitles", "/x/a.srt")


def _moving_bar(frames: int, height: int = 32, width: int = 32) -> list[np.ndarray]:
    clip = [np.zeros((height, width, 3), dtype=np.uint8) for _ in range(frames)]
    for index, pixels in enumerate(clip):
        pixels[:, 4 * index:4 * index + 8] = (255, 255, 255)
    return clip


def test_write_video_writes_frames_that_load_video_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    write_video(path, _moving_bar(4), fps=4)
    video = load_video(str(path), fps=4, max_frames=8, audio_rate=16000)
    assert video.frames.shape == (4, 32, 32, 3) and video.audio is None
    bright = [np.flatnonzero(frame.max(axis=(0, 2)) > 128).mean() for frame in video.frames]
    assert bright == sorted(bright) and bright[0] < bright[-1]  # the bar moves right, in frame order


def test_write_video_muxes_a_mono_track_and_writes_the_same_bytes_twice(tmp_path: Path) -> None:
    first, second = tmp_path / "a.mp4", tmp_path / "b.mp4"
    for path in (first, second):
        write_video(path, _moving_bar(8), fps=4, audio=_sine(2.0, 16000), audio_rate=16000)
    assert first.read_bytes() == second.read_bytes()
    assert load_video(str(first), fps=4, max_frames=8, audio_rate=16000).audio is not None


def test_write_video_asks_for_the_rate_of_an_audio_track(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="audio_rate"):
        write_video(tmp_path / "a.mp4", _moving_bar(2), fps=4, audio=_sine(0.5, 16000))
