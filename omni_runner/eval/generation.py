"""The `generation` suite: the CLIP score of images the model draws for held-out prompts.

For each eval record that can be read as an image-generation request (an `image-caption` record: its
prompt, else its caption), the run's generation heads draw an image (`models.generate.Painter`, seed
0, no guidance) and a CLIP model scores it against the prompt: CLIPScore = 100 x max(cos(image, text),
0) (Hessel et al. 2021, as torchmetrics computes it), averaged. CLIP is not bundled: without `--clip
PATH` (a local CLIP folder: CLIPModel and its processor, e.g. a download of
openai/clip-vit-base-patch32) the score is reported as not computed, with that reason, and nothing
is drawn. `clip_score` is pure; `run` does the model I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

NOT_COMPUTED = ("not computed: the CLIP score needs a CLIP model; give --clip PATH, a local CLIP model folder "
                "(e.g. a download of openai/clip-vit-base-patch32)")


def clip_score(image_embedding: Sequence[float], text_embedding: Sequence[float]) -> float:
    """100 x max(cosine similarity, 0) of one image's and one text's CLIP embeddings."""
    dot = sum(a * b for a, b in zip(image_embedding, text_embedding, strict=True))
    norms = math.sqrt(sum(a * a for a in image_embedding)) * math.sqrt(sum(b * b for b in text_embedding))
    if norms == 0:
        raise ValueError("a CLIP embedding of zero length has no direction")
    return 100.0 * max(dot / norms, 0.0)


def _image_requests(source: Any) -> bool:
    generation = source.conversation(0).generation
    return generation is not None and generation.target is not None and generation.target.kind == "image" \
        and not generation.images


def _prompt(conversation: Any) -> str:
    content = conversation.generation.messages[0].content
    return content if isinstance(content, str) else " ".join(p.get("text", "") for p in content if p.get("type") == "text")


def run(context: Any) -> dict[str, dict[str, Any]]:
    from omni_runner.eval.records import eval_sources

    sources = eval_sources(context, _image_requests, "image-generation prompts (image-caption records)")
    clip_dir = context.options.get("clip")
    if clip_dir is None:
        return {source.name: {"clip_score": None, "n": 0, "note": NOT_COMPUTED} for source in sources}
    return {source.name: _scored(context, source, clip_dir) for source in sources}


def _scored(context: Any, source: Any, clip_dir: str) -> dict[str, Any]:
    import json

    import torch
    from transformers import CLIPModel, CLIPProcessor

    from omni_runner.models.generate import Painter, trained_shapes

    plan_path = context.run_dir / "plan.json" if context.run_dir is not None else None
    plan = json.loads(plan_path.read_text(encoding="utf-8")) if plan_path is not None and plan_path.is_file() else {}
    painter = Painter(context.loaded, trained_shapes(plan))
    clip = CLIPModel.from_pretrained(clip_dir, local_files_only=True).eval()
    processor = CLIPProcessor.from_pretrained(clip_dir, local_files_only=True)
    scores, samples = [], []
    for position in range(len(source)):
        prompt = _prompt(source.conversation(position))
        drawing = painter.condition("image", prompt, None, context.max_new_tokens)
        image = painter.image(drawing, None, 0, int(context.options.get("steps") or 28), 1.0)
        with torch.no_grad():
            inputs = processor(text=[prompt], images=[image], return_tensors="pt", padding=True, truncation=True)
            embedded = clip(**inputs)  # image_embeds and text_embeds: the projected embeddings
        score = clip_score(embedded.image_embeds[0].tolist(), embedded.text_embeds[0].tolist())
        scores.append(score)
        samples.append({"location": source.location(position), "prompt": prompt, "reply": drawing.reply, "clip_score": score})
    return {"clip_score": sum(scores) / len(scores) if scores else None, "n": len(scores), "samples": samples}
