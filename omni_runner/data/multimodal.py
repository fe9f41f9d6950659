"""A conversation's media, through the base model's own processor, into the tensors the thinker takes.

Rendering (`render.py`) writes one placeholder per medium (`<|vision_bos|><|IMAGE|><|vision_eos|>`,
...) and finds the trained tokens. Here the media are decoded (`media.py`), the processor turns them
into `pixel_values`/`image_grid_thw`, `pixel_values_videos`/`video_grid_thw`/`video_second_per_grid`
and `input_features`/`feature_attention_mask`, and expands each placeholder into as many tokens as
its medium has features (with `use_audio_in_video`, a video's frames and its audio track interleave
by time inside the video's placeholder). The labels follow the expansion: every inserted token is
masked, every original token keeps its label.

Positions are Qwen2.5-Omni's 3-D multimodal rotary ids, computed by the model's own `get_rope_index`
from the sample's grids (`rope_positions`), one sample at a time, so packed samples get exactly the
positions they would get alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omni_runner.data.conversation import Conversation, RecordError
from omni_runner.data.render import IGNORE_INDEX, Rendered

# The processor outputs the thinker's forward takes, in the order they are concatenated over a batch.
MEDIA_KEYS = (
    "pixel_values",
    "image_grid_thw",
    "pixel_values_videos",
    "video_grid_thw",
    "video_second_per_grid",
    "input_features",
    "feature_attention_mask",
)
_PART_KINDS = ("image", "video", "audio")


@dataclass(frozen=True)
class MediaSettings:
    """How one data set's media are sampled (its recipe entry: `video_fps`, `video_max_frames`,
    `use_audio_in_video`, `image_max_pixels`, `video_max_pixels`)."""

    video_fps: float = 2.0
    video_max_frames: int = 32
    use_audio_in_video: bool = False
    image_max_pixels: int | None = None
    video_max_pixels: int | None = None

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> MediaSettings:
        defaults = cls()
        return cls(
            video_fps=float(spec.get("video_fps") or defaults.video_fps),
            video_max_frames=int(spec.get("video_max_frames") or defaults.video_max_frames),
            use_audio_in_video=bool(spec.get("use_audio_in_video", False)),
            image_max_pixels=spec.get("image_max_pixels"),
            video_max_pixels=spec.get("video_max_pixels"),
        )


def media_order(conversation: Conversation) -> list[str]:
    """The kinds of the conversation's media parts ("image", "video", "audio") in reading order."""
    return [
        part["type"]
        for message in conversation.messages
        if isinstance(message.content, list)
        for part in message.content
        if part.get("type") in _PART_KINDS
    ]


def has_media(conversation: Conversation) -> bool:
    return bool(conversation.images or conversation.videos or conversation.audios)


def _size_limit(default: dict[str, int], max_pixels: int | None) -> dict[str, int] | None:
    """A processor `size` capped at `max_pixels` (the lower bound follows so the range stays valid)."""
    if max_pixels is None:
        return None
    return {"shortest_edge": min(int(default["shortest_edge"]), max_pixels), "longest_edge": max_pixels}


def _processor_inputs(conversation: Conversation, processor: Any, settings: MediaSettings) -> dict[str, Any]:
    """Decode every medium and lay them out as the processor's `images`, `videos`, `audio` arguments.

    Audio slots follow the reading order of the placeholders that carry sound: a standalone audio,
    or a video whose track is used (`audio_from_video_indices` names the video a slot came from).
    """
    from omni_runner.data.media import load_audio, load_image, load_video

    rate = int(processor.feature_extractor.sampling_rate)
    images = [load_image(path) for path in conversation.images]
    videos, audio, audio_sources = [], [], []
    next_video, next_audio = iter(conversation.videos), iter(conversation.audios)
    for kind in media_order(conversation):
        if kind == "video":
            video = load_video(next(next_video), fps=settings.video_fps, max_frames=settings.video_max_frames,
                               audio_rate=rate if settings.use_audio_in_video else None)
            if settings.use_audio_in_video and video.audio is None:
                raise RecordError(f"video {conversation.videos[len(videos)]} has no audio track, but "
                                  "use_audio_in_video is set for its data set")
            if settings.use_audio_in_video:
                audio.append(video.audio)
                audio_sources.append(len(videos))
            videos.append(video)
        elif kind == "audio":
            audio.append(load_audio(next(next_audio), rate))
            audio_sources.append(None)
    arguments: dict[str, Any] = {"images": images or None, "audio": audio or None}
    if videos:
        arguments["videos"] = [video.frames for video in videos]
        # Frames are sampled already; the processor only needs their rate for the temporal positions.
        arguments["videos_kwargs"] = {"fps": videos[0].fps, "do_sample_frames": False}
        # The processor class's own video default (Qwen: 128-768 x 28 x 28 pixels) wins over its video processor's.
        default = getattr(processor, "videos_kwargs", {}).get("size") or processor.video_processor.size
        size = _size_limit(default, settings.video_max_pixels)
        if size:
            arguments["videos_kwargs"]["size"] = size
        if settings.use_audio_in_video:
            arguments.update(load_audio_from_video=True, audio_from_video_indices=audio_sources)
    if audio:
        # Pad features to the longest clip, not to the extractor's 30 s: the padding costs a full
        # mel spectrogram per clip and the tower skips it anyway (`collate` pads across samples).
        longest = max(len(clip) for clip in audio)
        arguments["audio_kwargs"] = {"max_length": min(longest, int(processor.feature_extractor.n_samples))}
    if images and settings.image_max_pixels:
        arguments["images_kwargs"] = {"size": _size_limit(processor.image_processor.size, settings.image_max_pixels)}
    return arguments


def _aligned_labels(original: list[int], labels: list[int], expanded: list[int]) -> list[int]:
    """Labels for `expanded` (the placeholders grown into feature tokens): the original tokens keep
    theirs, inserted tokens get IGNORE_INDEX. The expansion only inserts, so a two-pointer walk aligns them."""
    aligned, position = [], 0
    for token in expanded:
        if position < len(original) and token == original[position]:
            aligned.append(labels[position])
            position += 1
        else:
            aligned.append(IGNORE_INDEX)
    if position != len(original):
        raise RecordError("the processor's media expansion does not contain the rendered text; "
                          "is the chat template's placeholder the processor's media token?")
    return aligned


def processor_features(conversation: Conversation, text: str, processor: Any, settings: MediaSettings) -> Any:
    """The processor's output for `text` (rendered with one placeholder per medium) and the
    conversation's media: expanded `input_ids` and the media tensors, batch of one.

    Raises RecordError (MediaError for unreadable files) so a training record is skipped and counted.
    """
    arguments = _processor_inputs(conversation, processor, settings)
    videos_kwargs = arguments.pop("videos_kwargs", {})
    try:
        return processor(text=[text], return_tensors="pt", videos_kwargs=videos_kwargs, **arguments)
    except (ValueError, RuntimeError, IndexError) as exc:
        raise RecordError(f"the processor cannot take this record's media: {exc}") from None


def encode_media(
    conversation: Conversation, rendered: Rendered, processor: Any, settings: MediaSettings
) -> tuple[list[int], list[int], dict[str, Any]]:
    """Token ids and labels with every media placeholder expanded, and the sample's media tensors."""
    features = processor_features(conversation, rendered.text, processor, settings)
    expanded = features["input_ids"][0].tolist()
    labels = _aligned_labels(rendered.input_ids, rendered.labels, expanded)
    media = {key: features[key] for key in MEDIA_KEYS if key in features}
    return expanded, labels, media


def rope_positions(thinker: Any, input_ids: list[int], media: dict[str, Any], use_audio_in_video: bool) -> Any:
    """The sample's (3, length) multimodal rotary positions, from the model's own `get_rope_index`."""
    import torch

    ids = torch.tensor([input_ids])
    mask = media.get("feature_attention_mask")
    positions, _ = thinker.get_rope_index(
        ids,
        media.get("image_grid_thw"),
        media.get("video_grid_thw"),
        torch.ones_like(ids),
        use_audio_in_video,
        mask.sum(-1) if mask is not None else None,
        media.get("video_second_per_grid"),
    )
    return positions[:, 0]
