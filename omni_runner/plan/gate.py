"""Modality gates: which capabilities the recipe's models can support, and why the others cannot.

The base model contributes everything it detects; encoders add input modalities and decoders add
output modalities (an encoder's ASR text output or a decoder's conditioning input do not count).
A modality a recipe encoder or decoder provides is served by it, not by the base model's own
tower: the person configured it on purpose. `encoders.asr` serves nothing to training: it
transcribes data in `omni-run data prepare`, and the audio itself still reaches the base model's
audio tower.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omni_runner.capabilities import (
    CAPABILITIES,
    MODALITIES,
    describe_missing,
    enabled_capabilities,
)
from omni_runner.plan.models import PlannedModel
from omni_runner.plan.support import ASR_SLOT, UNTRAINED_CAPABILITIES
from omni_runner.recipe.errors import Diagnostic, error

_INPUTS = frozenset({"image_in", "video_in", "audio_in"})
_OUTPUTS = frozenset({"image_out", "video_out"})


@dataclass(frozen=True)
class CapabilityStatus:
    name: str
    category: str
    requires: tuple[str, ...]
    missing: tuple[str, ...]

    @property
    def available(self) -> bool:
        return not self.missing

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "category": self.category,
            "requires": list(self.requires),
            "available": self.available,
            "missing": [{"modality": m, "provided_by": describe_missing(m)} for m in self.missing],
        }


def modality_sources(models: dict[str, PlannedModel]) -> dict[str, str]:
    """Modality -> the recipe slot that provides it."""
    sources: dict[str, str] = {}
    base = models.get("base_model")
    if base is not None:
        sources.update({m: "base_model" for m in base.detection.modalities})
    for slot, planned in models.items():
        if slot == ASR_SLOT:
            continue
        kind = slot.split(".")[0]
        offered = _INPUTS if kind == "encoders" else _OUTPUTS if kind == "decoders" else frozenset()
        for modality in planned.detection.modalities:
            # The first recipe encoder for a modality wins.
            if modality in offered and sources.get(modality, "base_model") == "base_model":
                sources[modality] = slot
    return {m: sources[m] for m in MODALITIES if m in sources}


def capability_statuses(sources: dict[str, str]) -> list[CapabilityStatus]:
    available = frozenset(sources)
    return [
        CapabilityStatus(
            name=c.name,
            category=c.category,
            requires=tuple(m for m in MODALITIES if m in c.requires),
            missing=c.missing(available),
        )
        for c in CAPABILITIES.values()
    ]


def blocked_diagnostics(recipe: Any, sources: dict[str, str]) -> list[Diagnostic]:
    """One error per enabled capability whose gate fails, at the line that asks for it."""
    available = frozenset(sources)
    problems = []
    for name in enabled_capabilities(recipe.data):
        capability = CAPABILITIES.get(name)
        if capability is None or name in UNTRAINED_CAPABILITIES:
            continue  # the loader reported an unknown name; support.py refuses an untrained one
        missing = capability.missing(available)
        if missing:
            problems.append(
                error(
                    f"capability {name!r} is blocked: it needs {', '.join(describe_missing(m) for m in missing)}",
                    recipe.location(("capabilities", name)),
                    f"capabilities.{name}",
                    "or remove the capability (or run with --capabilities to pick others)",
                )
            )
    return problems
