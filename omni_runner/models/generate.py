"""Drawing with a trained run: prompt -> reply -> query states -> the decoder's own pipeline.

The prompt is rendered exactly as a generation training sample is (`render_sample` with the
capability's template, media expanded by the model's processor, the queries appended by
`append_queries`, collated by `collate_padded`), so the queries read at generation time what they
read in training: the model first writes its reply greedily (the generation chain of thought, or
nothing), the reply closes with the template's end-of-turn, the N query positions follow, one
forward gives their final hidden states, and the run's connector turns them into the decoder's
conditioning. That conditioning replaces the text (SD3) or CLIP image (SVD) embeddings in the
decoders' own diffusers pipelines, which do the sampling.

Sizes are those the run trained at: the plan's `generation` shapes of the last stage that
trained the kind, else the decoder's own config (`target_specs`).

Public API: `GenerationError`, `Drawing`, `trained_shapes`, `prompt_request`, `Painter`
(`condition`, `image`, `video`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from omni_runner.data.conversation import Conversation, Message
from omni_runner.models.generation import (
    SVD_FPS,
    SVD_MOTION_BUCKET,
    SVD_NOISE_AUG,
    FinalHiddenStates,
    query_states,
    target_specs,
)

# The capability whose training samples a request is rendered like.
CAPABILITY_OF = {("image", False): "image-generation", ("image", True): "image-editing", ("video", False): "video-generation"}


class GenerationError(RuntimeError):
    """Generation cannot run (no decoder of the kind, nothing to start a video from); str() says what to do."""


@dataclass
class Drawing:
    """The conditioning of one prompt for one decoder kind, and the reply the model wrote before it."""

    reply: str
    conditioning: torch.Tensor  # (1, queries, conditioning width)
    pooled: torch.Tensor | None  # (1, pooled width): SD3 only


def trained_shapes(plan: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Per decoder kind, the shape (latent side, frames) the last stage that generated it trained at."""
    shapes: dict[str, dict[str, int]] = {}
    for stage in plan.get("stages") or []:
        shapes.update(stage.get("generation") or {})
    return shapes


def prompt_request(prompt: str, edit_image: str | None = None, reply: str = "") -> Conversation:
    """A generation request as the data adapters write it: the prompt (after the source image, for
    an edit) answered by `reply`."""
    content: str | list[dict[str, Any]] = prompt
    if edit_image is not None:
        content = [{"type": "image"}, {"type": "text", "text": prompt}]
    return Conversation([Message("user", content), Message("assistant", reply)], images=[edit_image] if edit_image else [])


class Painter:
    """A run's final model with its generation heads (`load_for_inference(..., decoders=True)`) and the
    shapes it trained at; draws images (SD3) and videos (SVD)."""

    def __init__(self, loaded: Any, shapes: dict[str, dict[str, int]]) -> None:
        self.loaded = loaded
        self.heads = loaded.generation
        if self.heads is None:
            raise GenerationError("this run has no image decoder (its final/ has no generation.json): train it with "
                                  "`decoders.image` (and `decoders.video`) and a generation capability")
        self.shapes = shapes

    def spec(self, kind: str) -> Any:
        """The kind's `TargetSpec`: pixel side and frames, as trained."""
        if kind not in self.heads.kinds:
            raise GenerationError(f"this run has no {kind} decoder (decoders.{kind}); train it with one to generate {kind}s")
        return target_specs(self.heads, {kind}, self.shapes)[kind]

    @torch.no_grad()
    def condition(self, kind: str, prompt: str, edit_image: str | None = None, max_new_tokens: int = 256) -> Drawing:
        """The model's reply to the prompt, then the connector's conditioning from the queries after it."""
        from omni_runner.data.external import encode_sample_media
        from omni_runner.data.generation import GenerationTarget, append_queries
        from omni_runner.data.multimodal import MediaSettings, has_media
        from omni_runner.data.packing import Sample, collate_padded
        from omni_runner.data.render import render_prompt, render_sample, template_for
        from omni_runner.models.export import generate_ids, prompt_inputs

        loaded, spec = self.loaded, self.spec(kind)
        tokenizer, template = loaded.tokenizer, template_for(CAPABILITY_OF[(kind, edit_image is not None)])
        settings = MediaSettings()
        asked = prompt_request(prompt, edit_image)
        prompt_text, _ = render_prompt(asked, tokenizer, template)
        inputs = prompt_inputs(loaded.model, loaded.processor, asked, prompt_text, settings, loaded.external)
        reply = tokenizer.decode(generate_ids(loaded.model, inputs, max_new_tokens, loaded.external),
                                 skip_special_tokens=True).strip()

        answered = prompt_request(prompt, edit_image, reply)
        rendered = render_sample(answered, tokenizer, template)
        ids, labels, media, positions = rendered.input_ids, rendered.labels, None, None
        if has_media(answered):
            ids, labels, media, positions = encode_sample_media(answered, rendered, loaded.processor, settings,
                                                                loaded.thinker, loaded.external_features())
        ids, labels, positions = append_queries(ids, labels, positions, spec.queries, tokenizer.pad_token_id)
        sample = Sample(ids, labels, "generate", "prompt", "prompt", media=media, positions=positions,
                        generation=GenerationTarget(kind, spec.queries, cache_file=""))
        batch = collate_padded([sample], tokenizer.pad_token_id, mrope=True)
        return Drawing(reply, *self._query_conditioning(kind, batch))

    def _query_conditioning(self, kind: str, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One forward of a collated batch, as the trainer makes it, to the connector's output."""
        loaded = self.loaded
        inputs = loaded.forward_inputs(batch)
        with FinalHiddenStates(loaded.thinker, True) as final:
            loaded.model(**inputs)
        part = batch["generation"][kind]
        states = query_states(final.states, part["index"].to(loaded.device), part["targets"][0].queries)
        return self.heads.connectors[kind].condition(states)

    def image(self, drawing: Drawing, negative: Drawing | None, seed: int, steps: int, guidance: float) -> Any:
        """A PIL image from SD3 conditioned on `drawing` (`negative`: the unconditional side, for guidance > 1)."""
        from diffusers import StableDiffusion3Pipeline

        decoder, spec = self.heads.decoders["image"], self.spec("image")
        pipeline = StableDiffusion3Pipeline(transformer=decoder.denoiser, vae=decoder.ensure_vae(), scheduler=decoder.scheduler,
                                            text_encoder=None, tokenizer=None, text_encoder_2=None, tokenizer_2=None,
                                            text_encoder_3=None, tokenizer_3=None)
        pipeline.set_progress_bar_config(disable=True)
        dtype = decoder.denoiser.dtype
        extra = {}
        if guidance > 1.0:
            if negative is None:
                raise ValueError("guidance > 1 needs the unconditional drawing")
            extra = {"negative_prompt_embeds": negative.conditioning.to(dtype),
                     "negative_pooled_prompt_embeds": negative.pooled.to(dtype)}
        result = pipeline(prompt_embeds=drawing.conditioning.to(dtype), pooled_prompt_embeds=drawing.pooled.to(dtype),
                          height=spec.pixel_side, width=spec.pixel_side, num_inference_steps=steps, guidance_scale=guidance,
                          generator=torch.Generator().manual_seed(seed), output_type="pil", **extra)
        return result.images[0]

    def video(self, drawing: Drawing, first_frame: Any, seed: int, steps: int, guidance: float) -> list[Any]:
        """RGB uint8 frames from SVD, started from the PIL `first_frame` and conditioned on `drawing`
        (where SVD reads its CLIP image embedding)."""
        import numpy as np

        decoder, spec = self.heads.decoders["video"], self.spec("video")
        pipeline = _query_conditioned_svd(decoder.denoiser, decoder.ensure_vae(), decoder.scheduler, drawing.conditioning)
        pipeline.set_progress_bar_config(disable=True)
        frames = pipeline(first_frame, height=spec.pixel_side, width=spec.pixel_side, num_frames=spec.frames,
                          num_inference_steps=steps, min_guidance_scale=1.0, max_guidance_scale=max(guidance, 1.0),
                          fps=SVD_FPS, motion_bucket_id=SVD_MOTION_BUCKET, noise_aug_strength=SVD_NOISE_AUG,
                          generator=torch.Generator().manual_seed(seed), output_type="np").frames[0]
        return [np.asarray(np.clip(frame * 255.0 + 0.5, 0, 255), dtype=np.uint8) for frame in frames]


def _query_conditioned_svd(unet: Any, vae: Any, scheduler: Any, conditioning: torch.Tensor) -> Any:
    """SVD's own pipeline with the connector's conditioning where it reads its CLIP image embedding
    (zeros for the unconditional half, as SVD does); it has no image encoder."""
    from diffusers import StableVideoDiffusionPipeline

    class QueryConditionedSVD(StableVideoDiffusionPipeline):
        def _encode_image(self, image: Any, device: Any, num_videos_per_prompt: int,
                          do_classifier_free_guidance: bool) -> torch.Tensor:
            embeddings = conditioning.to(device=device, dtype=self.unet.dtype).repeat_interleave(num_videos_per_prompt, 0)
            if do_classifier_free_guidance:
                embeddings = torch.cat([torch.zeros_like(embeddings), embeddings])
            return embeddings

    return QueryConditionedSVD(vae=vae, image_encoder=None, unet=unet, scheduler=scheduler, feature_extractor=None)
