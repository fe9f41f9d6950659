"""The capability registry, as data: what each trainable capability needs and how its data is used.

A capability is something the recipe asks the model to learn (`cot`, `image-generation`, ...).
Each one is gated on modalities: the base model, encoders and decoders together must provide every
modality in `requires`, or the planner refuses the recipe at the line that asks for it. Keeping the
gates as plain data (not code paths) lets `omni-run capabilities`, the schema, the planner and the
data pipeline all read the same table. No heavy imports here: `omni-run capabilities` must stay fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Canonical modality names; every other module spells them exactly like this.
MODALITIES: tuple[str, ...] = (
    "text_in",
    "text_out",
    "image_in",
    "video_in",
    "audio_in",
    "audio_out",
    "image_out",
    "video_out",
)

# Conversation formats: records that hold messages (the data adapters turn each into one common form).
TEXT_FORMATS: tuple[str, ...] = (
    "openai",
    "sharegpt",
    "alpaca",
    "cot-collection",
    "openo1",
    "xlam",
    "hermes",
    "gorilla",
)
# Media-pair formats: a caption or instruction next to the media file it describes or produces.
MEDIA_FORMATS: tuple[str, ...] = (
    "image-caption",  # {image, caption}: JourneyDB, LAION aesthetics
    "image-edit",  # {source_image, instruction, target_image}: OmniEdit
    "video-caption",  # {video, caption}: MSR-VTT, VaTeX, VideoCoF
    "speech-transcript",  # {audio, transcript, speakers?}: OleSpeech, SPoRC, podcast corpora
)
DATASET_FORMATS: tuple[str, ...] = TEXT_FORMATS + MEDIA_FORMATS

# Loss-mask policies: which tokens (or which objective) a sample contributes to the loss.
LOSS_ASSISTANT = "assistant"  # only the assistant's reply tokens; prompts and tool results are masked
LOSS_ASSISTANT_AND_SPEECH = "assistant+speech"  # reply tokens plus the talker's speech codec tokens
LOSS_DENOISING = "denoising"  # the frozen decoder's own objective, back-propagated into the projector


@dataclass(frozen=True)
class Capability:
    """One trainable capability and its modality gate.

    `template` names how a record becomes a training sample (the data pipeline implements each);
    `loss_on` names the loss-mask policy; `eval_metric` is what `eval` reports for it by default.
    """

    name: str
    category: str
    requires: frozenset[str]
    formats: tuple[str, ...]
    template: str
    loss_on: str
    eval_metric: str
    summary: str

    def missing(self, available: frozenset[str] | set[str]) -> tuple[str, ...]:
        """The required modalities not in `available`, in canonical order."""
        return tuple(m for m in MODALITIES if m in self.requires and m not in available)


@dataclass(frozen=True)
class Provider:
    """Which recipe section supplies a modality, and what to put there: used in gate errors."""

    section: str
    what: str


_TEXT = frozenset({"text_in", "text_out"})
_CONVERSATIONS = ("openai", "sharegpt")

CAPABILITIES: dict[str, Capability] = {
    c.name: c
    for c in (
        Capability(
            name="tool-calling",
            category="text",
            requires=_TEXT,
            formats=("xlam", "hermes", "gorilla", *_CONVERSATIONS),
            template="tool-calling",
            loss_on=LOSS_ASSISTANT,
            eval_metric="tool_call_exact_match",
            summary="call functions with the right name and JSON arguments",
        ),
        Capability(
            name="cot",
            category="text",
            requires=_TEXT,
            formats=("cot-collection", "alpaca", *_CONVERSATIONS),
            template="reasoning",
            loss_on=LOSS_ASSISTANT,
            eval_metric="answer_exact_match",
            summary="answer with a visible chain of thought, then the answer",
        ),
        Capability(
            name="reasoning",
            category="text",
            requires=_TEXT,
            formats=("openo1", "cot-collection", "alpaca", *_CONVERSATIONS),
            template="reasoning",
            loss_on=LOSS_ASSISTANT,
            eval_metric="answer_exact_match",
            summary="long multi-step reasoning (o1-style traces)",
        ),
        Capability(
            name="thinking",
            category="text",
            requires=_TEXT,
            formats=("openo1", "cot-collection", *_CONVERSATIONS),
            template="thinking",
            loss_on=LOSS_ASSISTANT,
            eval_metric="answer_exact_match",
            summary="reason inside <think>...</think>, then answer",
        ),
        Capability(
            name="streaming",
            category="text",
            requires=_TEXT,
            formats=("alpaca", *_CONVERSATIONS),
            template="streaming",
            loss_on=LOSS_ASSISTANT,
            eval_metric="perplexity",
            summary="short incremental replies suited to token streaming",
        ),
        Capability(
            name="podcast",
            category="audio",
            requires=frozenset({"text_in", "text_out", "audio_in", "audio_out"}),
            formats=("speech-transcript", *_CONVERSATIONS),
            template="podcast",
            loss_on=LOSS_ASSISTANT_AND_SPEECH,
            eval_metric="answer_exact_match",
            summary="spoken multi-speaker dialogue: listen and answer in speech",
        ),
        Capability(
            name="vision-qa",
            category="vision",
            requires=frozenset({"text_in", "text_out", "image_in"}),
            formats=("image-caption", *_CONVERSATIONS),
            template="vision-qa",
            loss_on=LOSS_ASSISTANT,
            eval_metric="answer_exact_match",
            summary="answer questions about images",
        ),
        Capability(
            name="video-understanding",
            category="vision",
            requires=frozenset({"text_in", "text_out", "video_in"}),
            formats=("video-caption", *_CONVERSATIONS),
            template="video-understanding",
            loss_on=LOSS_ASSISTANT,
            eval_metric="answer_exact_match",
            summary="describe and answer questions about videos",
        ),
        Capability(
            name="tri-streaming",
            category="omni",
            requires=frozenset(
                {"text_in", "text_out", "image_in", "video_in", "audio_in", "audio_out"}
            ),
            formats=_CONVERSATIONS,
            template="tri-streaming",
            loss_on=LOSS_ASSISTANT_AND_SPEECH,
            eval_metric="answer_exact_match",
            summary="see, hear and talk at once: interleaved video, audio and text in, text and speech out",
        ),
        Capability(
            name="image-generation",
            category="generation",
            requires=frozenset({"text_in", "image_out"}),
            formats=("image-caption",),
            template="image-generation",
            loss_on=LOSS_DENOISING,
            eval_metric="clip_score",
            summary="query tokens -> projector -> a frozen SD3 decoder draws the image",
        ),
        Capability(
            name="image-editing",
            category="generation",
            requires=frozenset({"text_in", "image_in", "image_out"}),
            formats=("image-edit",),
            template="image-editing",
            loss_on=LOSS_DENOISING,
            eval_metric="clip_directional_similarity",
            summary="edit an input image as instructed",
        ),
        Capability(
            name="video-generation",
            category="generation",
            requires=frozenset({"text_in", "video_out"}),
            formats=("video-caption",),
            template="video-generation",
            loss_on=LOSS_DENOISING,
            eval_metric="frame_clip_score",
            summary="query tokens -> projector -> a frozen SVD decoder animates the clip",
        ),
    )
}

CATEGORIES: tuple[str, ...] = ("text", "audio", "vision", "omni", "generation")

# Where a missing modality would come from; gate errors quote these so the fix is obvious.
PROVIDERS: dict[str, Provider] = {
    "text_in": Provider("base_model", "a language model as the base model"),
    "text_out": Provider("base_model", "a language model as the base model"),
    "image_in": Provider("base_model", "a base model with its own vision tower (Qwen2.5-Omni)"),
    "video_in": Provider("base_model", "a base model with its own vision tower (Qwen2.5-Omni; video is read as sampled frames)"),
    "audio_in": Provider("base_model", "a base model with its own audio tower (Qwen2.5-Omni)"),
    "audio_out": Provider(
        "decoders.speech", "a speech decoder: the talker of a Qwen2.5-Omni base model (kind: talker)"
    ),
    "image_out": Provider("decoders.image", "an image decoder: a diffusers SD3 pipeline (kind: sd3)"),
    "video_out": Provider("decoders.video", "a video decoder: a diffusers SVD pipeline (kind: svd)"),
}


def enabled_capabilities(data: dict[str, Any]) -> list[str]:
    """The capabilities a recipe's data trains: every one listed, unless `enabled: false`."""
    return [name for name, spec in (data.get("capabilities") or {}).items() if (spec or {}).get("enabled", True)]


def capability_names() -> tuple[str, ...]:
    return tuple(CAPABILITIES)


def describe_missing(modality: str) -> str:
    """One phrase naming a missing modality and what would provide it, for error messages."""
    provider = PROVIDERS[modality]
    return f"{modality} (add {provider.section}: {provider.what})"


MEDIA_INPUTS: frozenset[str] = frozenset({"image_in", "video_in", "audio_in"})


def reads_media(capabilities: list[str]) -> bool:
    """Whether any of these capabilities takes an image, video or audio input (unknown names take none)."""
    return any(CAPABILITIES[name].requires & MEDIA_INPUTS for name in capabilities if name in CAPABILITIES)
