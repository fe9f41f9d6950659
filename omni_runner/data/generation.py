"""Generation samples: the prompt, its reply, the query positions, and the target image or video.

A generation capability's record is read as a request (`Conversation.generation`): a prompt (for
an edit, the source image and the instruction), the generation chain of thought when the data has
one (it trains with the language-model loss), and the target medium. The sample is that
conversation rendered with the chat template, then N query positions (`decoders.<kind>.query_tokens`),
whose final hidden states condition the decoder (`omni_runner/models/generation.py`). The queries
come after the reply's end-of-turn token, so at generation time the model first writes its reply
(the chain of thought, or nothing) and then the queries are appended. Their ids are the pad token
(the model replaces their embeddings) and they have no label; their rotary positions continue the
sample's as text.

Targets are decoded here, in the data workers: an image resized (centre-cropped to a square) to the
plan's pixel size, a video sampled at the data set's `video_fps` to the plan's frame count. When the
latent cache (`LatentCache`) holds the target's latents for this decoder and shape, the sample
carries those and the trainer needs no VAE; otherwise it carries the pixels, and the trainer
encodes them and fills the cache.

Public API: `TargetSpec`, `GenerationTarget`, `GenerationSamples` (picklable, one per stream),
`LatentCache`, `target_pixels`, `append_queries`.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omni_runner.capabilities import CAPABILITIES, LOSS_DENOISING
from omni_runner.data.conversation import Conversation, RecordError

# Decoder kind of each generated modality.
OUTPUT_KINDS = {"image_out": "image", "video_out": "video"}


def is_generation(capability: str) -> bool:
    """Whether a capability trains through a decoder (its samples are generation requests)."""
    entry = CAPABILITIES.get(capability)
    return entry is not None and entry.loss_on == LOSS_DENOISING


def generated_kinds(capabilities: list[str]) -> set[str]:
    """The decoder kinds ("image", "video") the capabilities generate."""
    return {OUTPUT_KINDS[m] for c in capabilities if c in CAPABILITIES for m in CAPABILITIES[c].requires if m in OUTPUT_KINDS}


@dataclass(frozen=True)
class TargetSpec:
    """How one decoder's targets are made: pixel side, frames (video) and the decoder's VAE identity
    (`vae_id`), which with the shape keys the latent cache."""

    kind: str
    queries: int
    pixel_side: int
    frames: int
    vae_id: str

    @property
    def cache_key(self) -> str:
        return f"{self.kind}-{self.vae_id}-{self.pixel_side}px-{self.frames}f"


@dataclass
class GenerationTarget:
    """A sample's target: its latents from the cache, or its pixels to encode (and the cache file to fill)."""

    kind: str
    queries: int
    cache_file: str
    latents: dict[str, Any] | None = None
    pixels: Any = None


def _square(image: Any, side: int) -> Any:
    """Centre-crop to a square and resize to `side` (the decoders train on square latents)."""
    from PIL import Image

    width, height = image.size
    edge = min(width, height)
    left, top = (width - edge) // 2, (height - edge) // 2
    return image.crop((left, top, left + edge, top + edge)).resize((side, side), Image.Resampling.BICUBIC)


def _to_unit_range(array: Any) -> Any:
    """uint8 (..., H, W, 3) -> float32 (..., 3, H, W) in [-1, 1], the range the VAEs encode."""
    import numpy as np
    import torch

    tensor = torch.from_numpy(np.array(array, dtype=np.float32)).div(127.5).sub(1.0)
    return tensor.movedim(-1, -3)


def target_pixels(path: str, spec: TargetSpec, video_fps: float) -> Any:
    """The target as the decoder trains on it: (3, S, S) for an image, (F, 3, S, S) for a video."""
    import numpy as np
    from PIL import Image

    from omni_runner.data.media import load_image, load_video

    if spec.kind == "image":
        return _to_unit_range(np.asarray(_square(load_image(path), spec.pixel_side)))
    video = load_video(path, fps=video_fps, max_frames=max(spec.frames, 2))
    if len(video.frames) < spec.frames:
        raise RecordError(f"video {path} has {len(video.frames)} frames at {video_fps:g} fps, "
                          f"and the video decoder trains on {spec.frames}")
    frames = [np.asarray(_square(Image.fromarray(frame), spec.pixel_side)) for frame in video.frames[: spec.frames]]
    return _to_unit_range(np.stack(frames))


def content_hash(path: str) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError as error:
        raise RecordError(f"cannot read target {path}: {error.strerror or error}") from None
    return digest.hexdigest()


@dataclass
class LatentCache:
    """Target latents on disk, keyed by the target file's content hash and the decoder's `cache_key`
    (its VAE and the shape), so a changed file or another decoder or shape never reads stale latents.

    A file's hash is kept while its size and modification time stay the same, so a target drawn again
    (the next epoch, another stage, `data prepare` looking it up twice) is not read and hashed again."""

    folder: Path
    _hashes: dict[str, tuple[int, int, str]] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def default(cls) -> LatentCache:
        """The shared cache every run and `data prepare` use: `$OMNI_RUNNER_CACHE/latents`."""
        from omni_runner.paths import cache_dir

        return cls(cache_dir() / "latents")

    def file_for(self, path: str, spec: TargetSpec) -> Path:
        return self.folder / spec.cache_key / f"{self._content_hash(path)}.safetensors"

    def _content_hash(self, path: str) -> str:
        try:
            stat = os.stat(path)
        except OSError as error:
            raise RecordError(f"cannot read target {path}: {error.strerror or error}") from None
        known = self._hashes.get(path)
        if known is not None and known[:2] == (stat.st_size, stat.st_mtime_ns):
            return known[2]
        digest = content_hash(path)
        self._hashes[path] = (stat.st_size, stat.st_mtime_ns, digest)
        return digest

    def read(self, file: Path) -> dict[str, Any] | None:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(file) if file.exists() else None
        except (OSError, SafetensorError):  # a damaged entry is a miss; the next write replaces it
            return None

    def write(self, file: Path, latents: dict[str, Any]) -> None:
        """Atomic: a reader sees the whole entry or none."""
        from safetensors.torch import save_file

        file.parent.mkdir(parents=True, exist_ok=True)
        partial = file.with_name(f".{file.name}.{os.getpid()}.partial")
        save_file({k: v.detach().cpu().contiguous() for k, v in latents.items()}, partial)
        os.replace(partial, file)


@dataclass
class GenerationSamples:
    """What the data workers need to make generation samples: per decoder kind its `TargetSpec`,
    the cache, and the id the query positions carry."""

    specs: dict[str, TargetSpec]
    cache: LatentCache
    query_id: int

    def request(self, conversation: Conversation, capability: str) -> Conversation:
        """The record as a generation request, or RecordError when it cannot be one."""
        request = conversation.generation
        if request is None or request.target is None:
            raise RecordError(f"this record has no target image or video, so it cannot train {capability}")
        if request.target.kind not in self.specs:
            raise RecordError(f"{capability} makes {request.target.kind}s, and the recipe has no "
                              f"decoders.{request.target.kind}")
        return request

    def target(self, request: Conversation, video_fps: float) -> GenerationTarget:
        from omni_runner.data.media import require_file

        spec = self.specs[request.target.kind]
        require_file(spec.kind, request.target.path)
        file = self.cache.file_for(request.target.path, spec)
        latents = self.cache.read(file)
        pixels = None if latents is not None else target_pixels(request.target.path, spec, video_fps)
        return GenerationTarget(spec.kind, spec.queries, str(file), latents=latents, pixels=pixels)

    def with_queries(self, input_ids: list[int], labels: list[int], positions: Any, queries: int) -> tuple[list[int], list[int], Any]:
        """The sample with its query positions appended (`append_queries`)."""
        return append_queries(input_ids, labels, positions, queries, self.query_id)


def append_queries(input_ids: list[int], labels: list[int], positions: Any, queries: int,
                   query_id: int) -> tuple[list[int], list[int], Any]:
    """A sample with `queries` query positions appended: `query_id` ids, no labels, text-like rotary
    positions. Training samples and `omni-run generate`'s prompts both end this way."""
    import torch

    ids = [*input_ids, *[query_id] * queries]
    labels = [*labels, *[-100] * queries]
    if positions is not None:
        start = int(positions.max()) + 1
        positions = torch.cat([positions, torch.arange(start, start + queries)[None].expand(positions.shape[0], queries)], dim=1)
    return ids, labels, positions


def generation_batch(placed: list[tuple[int, Any]]) -> dict[str, Any]:
    """The batch's generation part: per decoder kind, the flat (row-major) indices of every query
    position, and the targets and capabilities in the same order. `placed` pairs each sample with
    the flat index just past its last token."""
    import torch

    kinds: dict[str, dict[str, Any]] = {}
    for end, sample in placed:
        target = sample.generation
        if target is None:
            continue
        part = kinds.setdefault(target.kind, {"index": [], "targets": [], "capabilities": []})
        part["index"].extend(range(end - target.queries, end))
        part["targets"].append(target)
        part["capabilities"].append(sample.capability)
    for part in kinds.values():
        part["index"] = torch.tensor(part["index"], dtype=torch.long)
    return {"generation": kinds} if kinds else {}
