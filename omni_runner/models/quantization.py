"""Which quantization a checkpoint's config.json says its weights carry, in the names recipes use.

`detect` (what a folder is, for `plan`) and `models.load` (what `from_pretrained` is asked for) both
read it here, so the plan never names a scheme the loader then calls unknown. Pure: no torch, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Schemes the loader loads: GPTQ checkpoints (through gptqmodel) and bitsandbytes at load time.
# Any other stored scheme (AWQ, ...) is refused by `plan` at base_model.path (plan/support.py).
LOADED_QUANTIZATIONS = ("gptq-int4", "gptq-int8", "bnb-4bit", "bnb-8bit")


@dataclass(frozen=True)
class StoredQuantization:
    """A checkpoint's own quantization: `name` as a recipe writes it, and where it was read."""

    name: str  # gptq-int4, awq-int4, bnb-4bit, ...; the bare quant_method for other schemes
    key: str  # quantization_config, or thinker_config.quantization_config for an Omni folder
    method: str  # quant_method as written, lower case ("" when absent)
    details: dict[str, Any]  # bits and group_size, where given

    def describe(self) -> str:
        """`awq (bits 4, group_size 128)`, for messages that point at config.json."""
        detail = ", ".join(f"{key} {value}" for key, value in self.details.items())
        return f"{self.method or 'quantized'}{f' ({detail})' if detail else ''}"


def stored_quantization(config: dict[str, Any]) -> StoredQuantization | None:
    """The quantization `config` (a config.json as a dict) declares, or None for full-precision weights.

    GPTQ and AWQ name their bit width (`gptq-int4`); both libraries default to 4 bits when a config
    leaves it out. A bitsandbytes config is recognised by its method or by its `load_in_*bit` keys.
    """
    key, quant = "quantization_config", config.get("quantization_config")
    thinker = config.get("thinker_config")
    if not isinstance(quant, dict) and isinstance(thinker, dict):
        key, quant = "thinker_config.quantization_config", thinker.get("quantization_config")
    if not isinstance(quant, dict) or not quant:
        return None
    method = str(quant.get("quant_method", "")).lower()
    if method == "bitsandbytes" or "load_in_4bit" in quant or "load_in_8bit" in quant:
        name = "bnb-4bit" if quant.get("load_in_4bit") else "bnb-8bit"
    elif method in ("gptq", "awq"):
        name = f"{method}-int{quant.get('bits', 4)}"
    else:
        name = method or "unknown"
    details = {field: quant[field] for field in ("bits", "group_size") if field in quant}
    return StoredQuantization(name, key, method, details)
