"""A conversation's media for the external encoders (`encoders.vision`, `encoders.audio`), LLaVA-style.

An external encoder replaces the base model's own tower for its modality: every image and video
frame goes through SigLIP(2), every audio clip through Whisper, and a trained projector puts the
(pooled) encoder tokens into the language model's embeddings at the medium's placeholder tokens
(`omni_runner/models/encoders.py`). Here, in the data workers, each medium is decoded and turned
into the encoder's inputs, and its single placeholder is expanded into as many copies as the
projector will produce tokens for it:
- an image: ceil(h/k) x ceil(w/k) tokens for an h x w patch grid pooled k x k (`projector.pool` = k²);
- a video: that for each sampled frame, frames in order;
- an audio clip: cut into 30 s windows (Whisper's input), ceil(frames/pool) tokens per window, where a
  window of s samples has ceil(s / 320) encoder frames (20 ms each).

Positions: the inserted tokens count as text (one rotary position each on all three axes), so the
sample's other positions are the model's own with the inserted runs spliced in (`splice_external`).

A sample whose images or video go through the base model's own vision tower cannot also have its
audio go through an external encoder: the model's multimodal positions need every medium's grid or
feature length, and an external medium has neither (set `encoders.vision` as well).

Public API: `encode_sample_media` (any media sample, with or without external encoders),
`ExternalFeatures` (picklable; `LoadedModel.external_features()` builds it), `EXTERNAL_KEYS` (the batch
keys it adds), `splice_external`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from omni_runner.data.conversation import Conversation, RecordError
from omni_runner.data.multimodal import (
    MediaSettings,
    encode_media,
    has_media,
    media_order,
    rope_positions,
)
from omni_runner.data.render import IGNORE_INDEX, Rendered

# Batch keys of external-encoder inputs, concatenated over a batch in reading order.
EXTERNAL_KEYS = (
    "external_pixel_values",
    "external_pixel_attention_mask",
    "external_spatial_shapes",
    "external_audio_features",
    "external_audio_frames",
)
WHISPER_SAMPLES_PER_FRAME = 320  # 10 ms mel hop x the encoder's stride 2
VISION_KINDS = ("image", "video")


@dataclass
class VisionInputs:
    """An image processor (SigLIP2 naflex, or fixed-size SigLIP) and the pooling of its patch grid."""

    processor: Any
    patch_size: int
    pool: int  # k: k x k patches become one token

    def encode(self, images: list[Any]) -> tuple[dict[str, Any], int]:
        """The encoder inputs for `images` (PIL images or HxWx3 arrays) and the tokens they will become."""
        import torch

        out = self.processor(images=images, return_tensors="pt")
        pixels = out["pixel_values"]
        if "spatial_shapes" in out:  # SigLIP2 naflex: a patch sequence per image, padded, with its grid
            shapes = out["spatial_shapes"]
            tensors = {"external_pixel_values": pixels, "external_pixel_attention_mask": out["pixel_attention_mask"],
                       "external_spatial_shapes": shapes}
        else:  # fixed resolution: the grid is the image size over the patch size
            grid = [pixels.shape[-2] // self.patch_size, pixels.shape[-1] // self.patch_size]
            shapes = torch.tensor([grid] * len(images))
            tensors = {"external_pixel_values": pixels, "external_spatial_shapes": shapes}
        tokens = sum(math.ceil(int(h) / self.pool) * math.ceil(int(w) / self.pool) for h, w in shapes.tolist())
        return tensors, tokens


@dataclass
class AudioInputs:
    """A Whisper feature extractor and the pooling of the encoder's 20 ms frames."""

    extractor: Any
    pool: int

    @property
    def sampling_rate(self) -> int:
        return int(self.extractor.sampling_rate)

    def encode(self, clip: Any) -> tuple[dict[str, Any], int]:
        """Whisper features for `clip` in 30 s windows, the valid frames of each, and the tokens they become."""
        import torch

        window = int(self.extractor.n_samples)
        pieces = [clip[start:start + window] for start in range(0, max(len(clip), 1), window)]
        features = self.extractor(pieces, sampling_rate=self.sampling_rate, return_tensors="pt")["input_features"]
        frames = torch.tensor([max(1, math.ceil(len(piece) / WHISPER_SAMPLES_PER_FRAME)) for piece in pieces])
        tokens = sum(math.ceil(int(n) / self.pool) for n in frames)
        return {"external_audio_features": features, "external_audio_frames": frames}, tokens


@dataclass
class ExternalFeatures:
    """What the workers need to prepare media for the external encoders, and the placeholder ids they fill."""

    vision: VisionInputs | None
    audio: AudioInputs | None
    placeholder_ids: dict[str, int]  # "image"/"video"/"audio" -> the chat template's placeholder token id

    def handles(self, kind: str) -> bool:
        return (self.vision is not None and kind in VISION_KINDS) or (self.audio is not None and kind == "audio")

    def external_ids(self) -> set[int]:
        return {self.placeholder_ids[kind] for kind in ("image", "video", "audio") if self.handles(kind)}

    def encode(self, conversation: Conversation, settings: MediaSettings) -> tuple[list[int], dict[str, Any]]:
        """Tokens per externally encoded medium (reading order) and their encoder inputs, batch-concatenated."""
        import torch

        from omni_runner.data.media import load_audio, load_image, load_video

        counts: list[int] = []
        parts: dict[str, list[Any]] = {}
        images, videos, audios = iter(conversation.images), iter(conversation.videos), iter(conversation.audios)
        for kind in media_order(conversation):
            path = next({"image": images, "video": videos, "audio": audios}[kind])
            if not self.handles(kind):
                continue
            if kind == "image":
                tensors, tokens = self.vision.encode([load_image(path)])
            elif kind == "video":
                video = load_video(path, fps=settings.video_fps, max_frames=settings.video_max_frames)
                tensors, tokens = self.vision.encode(list(video.frames))
            else:
                tensors, tokens = self.audio.encode(load_audio(path, self.audio.sampling_rate))
            counts.append(tokens)
            for key, value in tensors.items():
                parts.setdefault(key, []).append(value)
        return counts, {key: torch.cat(values) for key, values in parts.items()}


def without_external(conversation: Conversation, features: ExternalFeatures) -> Conversation:
    """The conversation with only the media the base model's own towers take (for its processor)."""
    return Conversation(
        conversation.messages, conversation.tools,
        images=[] if features.handles("image") else conversation.images,
        videos=[] if features.handles("video") else conversation.videos,
        audios=[] if features.handles("audio") else conversation.audios,
    )


def _next_kept(rendered_ids: list[int], external_ids: set[int]) -> list[int | None]:
    """For each position, the next token after it that is not an external placeholder (None at the end)."""
    following: list[int | None] = [None] * len(rendered_ids)
    upcoming = None
    for index in range(len(rendered_ids) - 1, -1, -1):
        following[index] = upcoming
        if rendered_ids[index] not in external_ids:
            upcoming = rendered_ids[index]
    return following


def splice_external(
    rendered_ids: list[int], rendered_labels: list[int], own_ids: list[int], own_labels: list[int], own_positions: Any,
    external_ids: set[int], counts: list[int],
) -> tuple[list[int], list[int], Any]:
    """Merge the base-model expansion with the external placeholders' expansion.

    `rendered_*` hold one placeholder per medium; `own_*` are what the base model's processor made of
    the rendering without the external placeholders (its own media expanded, inserted tokens masked)
    and their (3, n) positions. Each external placeholder becomes `counts[i]` copies, masked, with
    consecutive positions after the token before it; every later position moves up by as many.
    """
    import torch

    ids, labels, columns = [], [], []
    shift, own, pending = 0, 0, iter(counts)
    last = torch.full((3,), -1, dtype=torch.long)

    def take_own() -> None:
        nonlocal own, last
        ids.append(own_ids[own])
        labels.append(own_labels[own])
        last = own_positions[:, own] + shift
        columns.append(last)
        own += 1

    following = _next_kept(rendered_ids, external_ids)
    for index, (token, label) in enumerate(zip(rendered_ids, rendered_labels, strict=True)):
        if token in external_ids:
            while own < len(own_ids) and own_ids[own] != following[index]:
                take_own()  # the rest of the processor's expansion of the medium before this one
            count = next(pending)
            start = int(last.max()) + 1
            ids.extend([token] * count)
            labels.extend([IGNORE_INDEX] * count)
            columns.extend(torch.full((3,), start + offset, dtype=torch.long) for offset in range(count))
            last = columns[-1]
            shift += count
            continue
        while own < len(own_ids) and own_ids[own] != token:
            take_own()  # tokens the processor inserted for the base model's own media
        if own == len(own_ids):
            raise RecordError("the processor's media expansion does not contain the rendered text")
        take_own()
    while own < len(own_ids):
        take_own()
    return ids, labels, torch.stack(columns, dim=1)


def encode_sample_media(
    conversation: Conversation, rendered: Rendered, processor: Any, settings: MediaSettings, thinker: Any,
    external: ExternalFeatures | None,
) -> tuple[list[int], list[int], dict[str, Any], Any]:
    """Token ids and labels with every placeholder expanded, the media tensors, and the (3, n)
    positions (None without a `thinker` to compute them) of a media sample."""
    if external is None or not any(external.handles(kind) for kind in media_order(conversation)):
        ids, labels, tensors = encode_media(conversation, rendered, processor, settings)
        with_track = bool(conversation.videos and settings.use_audio_in_video)
        return ids, labels, tensors, rope_positions(thinker, ids, tensors, with_track) if thinker is not None else None
    return _encode_with_external(conversation, rendered, processor, settings, thinker, external)


def _encode_with_external(
    conversation: Conversation, rendered: Rendered, processor: Any, settings: MediaSettings, thinker: Any,
    external: ExternalFeatures,
) -> tuple[list[int], list[int], dict[str, Any], Any]:
    """The base model's own media expanded by its processor, then the external placeholders spliced in."""
    import torch

    own = without_external(conversation, external)
    if (own.images or own.videos) and external.handles("audio"):
        raise RecordError("its images or video go through the base model's vision tower and its audio through "
                          "encoders.audio, which one sample cannot mix; set encoders.vision as well")
    external_ids = external.external_ids()
    counts, tensors = external.encode(conversation, settings)
    kept = [(t, label) for t, label in zip(rendered.input_ids, rendered.labels, strict=True) if t not in external_ids]
    own_ids, own_labels = [t for t, _ in kept], [label for _, label in kept]
    if has_media(own):
        text = rendered.text
        for token in processor.tokenizer.convert_ids_to_tokens(sorted(external_ids)):
            text = text.replace(token, "")
        own_rendered = Rendered(own_ids, own_labels, text, rendered.trained_spans)
        own_ids, own_labels, own_tensors = encode_media(own, own_rendered, processor, settings)
        tensors.update(own_tensors)
    positions = torch.arange(len(own_ids))[None].expand(3, -1)  # own media here are audio: text positions
    ids, labels, positions = splice_external(rendered.input_ids, rendered.labels, own_ids, own_labels, positions,
                                             external_ids, counts)
    return ids, labels, tensors, positions
