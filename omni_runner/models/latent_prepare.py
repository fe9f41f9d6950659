"""Encode a recipe's generation targets into the latent cache before training (`omni-run data prepare`).

Every target image and video of the data sets a stage's generation capabilities draw from is made
into pixels and looked up exactly as the trainer's data workers do (`GenerationSamples` with the
stage's `TargetSpec`s, from the plan's `generation` shapes), and the misses are encoded with the
decoder's VAE alone (`Decoder.vae_only`: no denoiser, no language model) and written to
`LatentCache.default()`. The trainer then finds every target there and never
loads a VAE. A target that several records or stages share at the same shape is encoded once.

Public API: `prepare_latents(recipe_data, base_dir, stages, device) -> report`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omni_runner.data.conversation import RecordError
from omni_runner.data.generation import (
    GenerationSamples,
    LatentCache,
    generated_kinds,
    is_generation,
)
from omni_runner.data.sources import DataSource, active_capabilities, open_source
from omni_runner.models.generation import (
    Decoder,
    TargetLatents,
    recipe_decoder_settings,
    settings_target_specs,
)


def prepare_latents(recipe_data: dict[str, Any], base_dir: Path, stages: list[dict[str, Any]], device: Any) -> dict[str, Any]:
    """Encode what the plan's `stages` (their JSON form: `capabilities`, `generation`) will read. The
    report: per cache key (decoder and shape) its folder and the targets encoded now and found in the
    cache already; the targets that failed (data set, location, reason); `ok` when none did."""
    settings = recipe_decoder_settings(recipe_data, base_dir)
    cache = LatentCache.default()
    sources: dict[str, DataSource] = {}
    decoders: dict[str, Decoder] = {}
    seen: set[str] = set()
    report: dict[str, Any] = {"targets": {}, "failures": []}
    for stage in stages:
        kinds = generated_kinds(stage["capabilities"]) & set(settings)
        if not kinds:
            continue
        samples = GenerationSamples(settings_target_specs(settings, kinds, stage.get("generation") or {}), cache, query_id=0)
        for capability, spec in active_capabilities(recipe_data, stage["capabilities"]).items():
            if not is_generation(capability):
                continue
            for name in spec.get("datasets") or []:
                if name not in sources:
                    sources[name] = _opened(name, recipe_data, base_dir)
                source = sources[name]
                for position in range(len(source)):
                    try:
                        target = _target(samples, source, position, capability, seen)
                    except RecordError as error:
                        report["failures"].append({"dataset": name, "location": source.location(position), "reason": str(error)})
                        continue
                    if target is None:
                        continue
                    target_spec = samples.specs[target.kind]
                    counts = report["targets"].setdefault(target_spec.cache_key, {
                        "kind": target.kind, "pixel_side": target_spec.pixel_side, "frames": target_spec.frames,
                        "cache": str(cache.folder / target_spec.cache_key), "encoded": 0, "cached": 0})
                    if target.kind not in decoders:
                        decoders[target.kind] = Decoder.vae_only(target.kind, settings[target.kind]["folder"], device)
                    filled = TargetLatents(cache)
                    filled.fill(decoders[target.kind], target)
                    counts["encoded"] += filled.misses
                    counts["cached"] += filled.hits
    report["ok"] = not report["failures"]
    return report


def _target(samples: GenerationSamples, source: DataSource, position: int, capability: str, seen: set[str]) -> Any:
    """The record's target as the data workers make it (cached latents or pixels), or None when an
    earlier record had the same file at the same shape; RecordError when it cannot be made."""
    request = samples.request(source.conversation(position), capability)
    file = str(samples.cache.file_for(request.target.path, samples.specs[request.target.kind]))
    if file in seen:
        return None
    seen.add(file)
    return samples.target(request, source.media.video_fps)


def _opened(name: str, recipe_data: dict[str, Any], base_dir: Path) -> DataSource:
    """The data set opened and scanned as training does (its good records; bad ones are `data check`'s to report)."""
    spec = recipe_data["datasets"][name]
    source = open_source(name, spec, base_dir)
    source.scan(spec.get("max_samples"))
    return source
