"""The Omni families the trainer loads, as data: which transformers class is the thinker, and which of its
modules make up the groups a recipe names.

Qwen2.5-Omni and Qwen3-Omni share the thinker's layout (`model.language_model`, `model.visual`,
`model.audio_tower`, `lm_head`), its forward inputs, its processor outputs and its multimodal rotary
positions, so one loader serves both; they differ in the class, in the language model's MLP (dense, or
mixture-of-experts with fused 3-D expert weights), and in the modules that project a tower into the
language model. This table is the one place those differences live. No torch here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OmniFamily:
    name: str
    model_types: tuple[str, ...]  # the complete model's (thinker and talker) first, then the thinker-only folder's
    thinker_class: str  # in `transformers`
    complete_class: str  # in `transformers`: the thinker beside the talker, what a complete folder loads as
    vision_merger: tuple[str, ...]  # modules of `model.visual` that map vision features into the language model
    audio_projection: tuple[str, ...]  # modules of `model.audio_tower` that map audio features into it
    # Suffixes (peft `target_parameters`) of the fused expert weights; empty for a dense language model.
    expert_parameters: tuple[str, ...] = ()

    @property
    def complete_model_type(self) -> str:
        """The `model_type` of a complete folder; the family's other type is a thinker-only folder's."""
        return self.model_types[0]


QWEN2_5_OMNI = OmniFamily(
    name="Qwen2.5-Omni",
    model_types=("qwen2_5_omni", "qwen2_5_omni_thinker"),
    thinker_class="Qwen2_5OmniThinkerForConditionalGeneration",
    complete_class="Qwen2_5OmniForConditionalGeneration",
    vision_merger=("merger",),
    audio_projection=("ln_post", "proj"),
)
QWEN3_OMNI = OmniFamily(
    name="Qwen3-Omni",
    model_types=("qwen3_omni_moe", "qwen3_omni_moe_thinker"),
    thinker_class="Qwen3OmniMoeThinkerForConditionalGeneration",
    complete_class="Qwen3OmniMoeForConditionalGeneration",
    vision_merger=("merger", "merger_list"),  # the final merger and one per deepstack layer
    audio_projection=("ln_post", "proj1", "proj2"),
    expert_parameters=("mlp.experts.gate_up_proj", "mlp.experts.down_proj"),
)
FAMILIES = (QWEN2_5_OMNI, QWEN3_OMNI)
MODEL_TYPES: tuple[str, ...] = tuple(t for family in FAMILIES for t in family.model_types)


def family_of(model_type: str | None) -> OmniFamily | None:
    return next((family for family in FAMILIES if model_type in family.model_types), None)
