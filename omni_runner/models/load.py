"""Load the base model for training: the same code for the tiny model on a CPU and the 7B on a GPU.

What trains is the Omni *thinker* (`Qwen2_5OmniThinkerForConditionalGeneration`, or for Qwen3-Omni
`Qwen3OmniMoeThinkerForConditionalGeneration`: language model, vision tower, audio tower; models/families.py
says which modules form which group). It is loaded straight from a full Omni folder: transformers 5 maps
the checkpoint's `thinker.` keys onto the thinker and reports `talker.`/`token2wav.` keys as
unexpected without reading them (the safetensors are memory-mapped and those slices are never
materialised), so the talker costs no memory unless a stage trains it.

Public API:
- `load_for_training(recipe_data, recipe_dir, device=None, *, train_groups=None,
  gradient_checkpointing=None, sole=False) -> LoadedModel`
  - `recipe_data`: `Recipe.data` (uses `base_model`, `training.method/lora/gradient_checkpointing`,
    `stages[*].train`, `hardware.device`).
  - `train_groups`: the groups that train first (default: the first stage's `train`, else `thinker`).
    LoRA adapters are placed for the union of all stages' groups so later stages can switch with
    `set_trainable_groups`.
  - `gradient_checkpointing`: the plan's decision; None reads the recipe (`auto` → on for CUDA only).
  - The model comes back in train mode with `config.use_cache = False`; generate with
    `export.generate_text` (or pass `use_cache=True`).
- `LoadedModel`: `model` (the trainable module: a peft model for lora/qlora, the thinker for full),
  `thinker` (the underlying thinker), `processor`, `tokenizer`, `groups` (group name → modules),
  `talker` (only when a stage trains it: the talker with LoRA adapters), `model_dir`, `device`, `dtype`, `method`, `quantization`,
  `lora_targets`, `trainable_groups`; `.parameter_counts() -> {"trainable": n, "total": n}`.
- `set_trainable_groups(loaded, groups)`: freeze everything except the named groups
  (`thinker`, `vision_tower`, `vision_merger`, `audio_tower`, `audio_projection`, `talker`); with LoRA
  only adapter weights train, except in the merger and the audio projection, which train fully; the
  talker always trains its adapters only (train/talker_realign.py).
  The generation groups (`GENERATION_GROUPS`: decoder projectors, query tokens) are set on `generation`.
- `resolve_model_dir(path_value, recipe_dir) -> Path`: `builtin:tiny-qwen2.5-omni` (and `builtin:tiny-qwen3-omni`)
  builds the tiny model.
- `check_model_dir(folder) -> dict`: the folder's config, or `ModelLoadError`.
- `load_processor(folder)`, `load_thinker(folder, ...)`: the pieces, reused by `export`;
  `load_recipe_processor(recipe_data, recipe_dir)`: the base model's processor, for `data check|preview`.
- `ModelLoadError`: a human message (what is wrong, where, what to do); no traceback for users.
- `GROUPS`: the group names.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omni_runner.data.external import EXTERNAL_KEYS
from omni_runner.data.packing import VARLEN_ATTENTION
from omni_runner.models.families import MODEL_TYPES as OMNI_MODEL_TYPES
from omni_runner.models.families import OmniFamily, family_of
from omni_runner.models.hf_env import (
    keep_bitsandbytes_out,
    offline_hub,
    quiet_transformers,
)
from omni_runner.models.quantization import LOADED_QUANTIZATIONS, stored_quantization
from omni_runner.paths import (
    BUILTIN_PREFIX,
    builtin_name,
    is_builtin,
    resolve_model_path,
)

GROUPS = ("thinker", "vision_tower", "vision_merger", "audio_tower", "audio_projection", "talker")
# Small projection groups that always train all their weights, whatever training.method says: like a
# LLaVA projector they are what a new data distribution first moves, and adapters would cost as much.
FULLY_TRAINED_GROUPS = ("vision_merger", "audio_projection")
# Projectors of the external encoders (`encoders.vision`, `encoders.audio`): they live beside the
# thinker (models/encoders.py) and always train in full.
PROJECTOR_GROUPS = ("vision_projector", "audio_projector")
# Stage groups of the generation path (models/generation.py): the decoders' connectors (and denoiser
# adapters) and the learnable queries, beside the thinker.
GENERATION_GROUPS = ("image_projector", "video_projector", "query_tokens")
LORA_METHODS = ("lora", "qlora")
# The batch inputs that run each of `LoadedModel.towers`, in its order: the vision tower, the audio tower.
TOWER_INPUTS = (("pixel_values", "pixel_values_videos"), ("input_features",))
# What the forward takes from a collated batch; the media tensors only when present (the external
# encoders' inputs become `inputs_embeds` in `LoadedModel.forward_inputs`).
MODEL_INPUTS = ("input_ids", "attention_mask", "position_ids", "pixel_values", "image_grid_thw",
                "pixel_values_videos", "video_grid_thw", "input_features", "feature_attention_mask", *EXTERNAL_KEYS)


_DTYPES = {"bfloat16": "bfloat16", "float16": "float16", "float32": "float32"}


class ModelLoadError(Exception):
    """A model folder or setting that cannot be used; the message says what to do."""


@dataclass
class LoadedModel:
    model: Any  # what the optimizer sees: a peft model (lora/qlora) or the thinker itself (full)
    thinker: Any  # the underlying thinker (Qwen2.5-Omni's, or Qwen3-Omni's mixture-of-experts one)
    loaded_processor: Any  # None until `processor` is first asked for (load_for_training defers it)
    model_dir: Path
    device: Any
    dtype: Any
    method: str
    quantization: str = "none"
    lora_targets: list[str] = field(default_factory=list)
    trainable_groups: tuple[str, ...] = ()
    talker: Any = None  # loaded only when a stage trains it; its parameters are not in `model`
    external: Any = None  # encoders.ExternalEncoders (frozen encoders + projectors), beside `model`
    generation: Any = None  # generation.GenerationHeads (queries, connectors, decoders), beside `model`
    _tokenizer: Any = field(default=None, repr=False)

    @property
    def processor(self) -> Any:
        """The base model's processor, loaded on first use: its image, video and audio processors import
        torchvision (and through it torch._dynamo), seconds of start-up that a text-only run never needs."""
        if self.loaded_processor is None:
            self.loaded_processor = load_processor(self.model_dir)
        return self.loaded_processor

    @property
    def tokenizer(self) -> Any:
        """The processor's tokenizer; until the processor is loaded, the same tokenizer files loaded alone."""
        if self.loaded_processor is not None:
            return self.loaded_processor.tokenizer
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.model_dir)
        return self._tokenizer

    @property
    def groups(self) -> dict[str, list[Any]]:
        """Group name -> the modules it covers (`talker` is empty unless loaded)."""
        inner, family = self.thinker.model, thinker_family(self.thinker)
        return {
            "thinker": [inner.language_model, self.thinker.lm_head],
            "vision_tower": [inner.visual],
            "vision_merger": [getattr(inner.visual, name) for name in family.vision_merger],
            "audio_tower": [inner.audio_tower],
            "audio_projection": [getattr(inner.audio_tower, name) for name in family.audio_projection],
            "talker": [self.talker] if self.talker is not None else [],
            **(self.external.groups if self.external is not None else {}),
            **(self.generation.groups if self.generation is not None else {}),
        }

    @property
    def towers(self) -> list[Any]:
        """The thinker's own vision and audio towers (the batch inputs that run each: `TOWER_INPUTS`)."""
        return [self.thinker.model.visual, self.thinker.model.audio_tower]

    def named_parameters(self) -> Iterator[tuple[str, Any]]:
        """Everything the optimizer and checkpoints see: `model`'s parameters under their own names, and
        those of the modules beside it under their prefix (`external.`: the external encoders and their
        projectors; `talker.`: the talker with its realign adapter, when loaded; `generation.`: the
        queries, connectors and loaded decoders)."""
        yield from self.model.named_parameters()
        for prefix, module in self._beside().items():
            yield from module.named_parameters(prefix=prefix)

    def _beside(self) -> dict[str, Any]:
        beside = (("external", self.external), ("talker", self.talker), ("generation", self.generation))
        return {prefix: module for prefix, module in beside if module is not None}

    def external_features(self) -> Any:
        """What the data workers need for the external encoders (`data.external.ExternalFeatures`), or None."""
        return self.external.features(self.thinker.config) if self.external is not None else None

    def load_weights(self, weights: dict[str, Any]) -> list[str]:
        """Load checkpointed weights (names as `named_parameters` gives them); returns the names that fit nothing."""
        own: dict[str, Any] = {}
        parts: dict[str, dict[str, Any]] = {"external": {}, "talker": {}, "generation": {}}
        for name, value in weights.items():
            prefix, _, rest = name.partition(".")
            (parts[prefix] if prefix in parts else own)[rest if prefix in parts else name] = value
        unexpected = list(self.model.load_state_dict(own, strict=False).unexpected_keys)
        beside = self._beside()
        for prefix, part in parts.items():
            if part:
                misfits = beside[prefix].load_state_dict(part, strict=False).unexpected_keys if prefix in beside else part
                unexpected += [f"{prefix}.{name}" for name in misfits]
        return unexpected

    def forward_inputs(self, batch: dict[str, Any]) -> dict[str, Any]:
        """The forward's inputs from a collated batch, on the device: the external encoders' tokens and
        the generation queries in place of their placeholders (as `inputs_embeds`) when the batch has any."""
        inputs = {key: _to_device(batch[key], self.device) for key in MODEL_INPUTS if key in batch}
        if self.external is not None:
            inputs = self.external.embed_inputs(self.thinker, inputs)
        if "generation" in batch:
            inputs = self.generation.embed_queries(self.thinker, inputs, batch["generation"])
        return inputs

    @property
    def sliding_window(self) -> int | None:
        return sliding_window(self.thinker)

    @property
    def varlen_attention(self) -> bool:
        """Whether the thinker's attention kernel takes packed samples as one row cut by position restarts
        (flash-attention's varlen path) instead of a block-diagonal mask."""
        return self.thinker.config.text_config._attn_implementation in VARLEN_ATTENTION

    def parameter_counts(self) -> dict[str, int]:
        """Whole counts, also of weights DeepSpeed's ZeRO-3 has split (it empties them between uses)."""
        sizes = [(getattr(p, "ds_numel", p.numel()), p.requires_grad) for _, p in self.named_parameters()]
        return {"trainable": sum(n for n, trains in sizes if trains), "total": sum(n for n, _ in sizes)}


def _to_device(value: Any, device: Any) -> Any:
    """A tensor, or a dict of tensors (a packed mask by layer type), on `device`."""
    if isinstance(value, dict):
        return {key: tensor.to(device) for key, tensor in value.items()}
    return value.to(device)


def sliding_window(thinker: Any) -> int | None:
    """The window of a thinker's sliding-window attention layers (packed masks need it); None when it has none."""
    text = thinker.config.text_config
    return text.sliding_window if "sliding_attention" in (getattr(text, "layer_types", None) or ()) else None


def thinker_family(thinker: Any) -> OmniFamily:
    """The family of a loaded thinker (its config's model_type names it)."""
    family = family_of(thinker.config.model_type)
    if family is None:
        raise ModelLoadError(f"a {thinker.config.model_type} thinker is not an Omni family the trainer loads")
    return family


# ---------------------------------------------------------------- folders


def resolve_model_dir(path_value: str, recipe_dir: Path) -> Path:
    """A recipe's model path as a folder on disk; the built-in tiny model is built on first use."""
    if is_builtin(path_value):
        from omni_runner.models import tiny, tiny_qwen3

        builders = {tiny.TINY_MODEL_NAME: tiny.ensure_tiny_model, tiny_qwen3.NAME: tiny_qwen3.ensure_tiny_qwen3_omni}
        if builtin_name(path_value) not in builders:
            raise ModelLoadError(
                f"base_model.path: unknown built-in model {path_value!r}; "
                f"the built-in models are {', '.join(BUILTIN_PREFIX + name for name in builders)}."
            )
        return builders[builtin_name(path_value)]()
    return resolve_model_path(path_value, recipe_dir)


def check_model_dir(folder: Path) -> dict[str, Any]:
    """Read and check `config.json` and the weights' presence before transformers sees the folder."""
    folder = Path(folder)
    rebuild_hint = "Point base_model.path at a Qwen2.5-Omni or Qwen3-Omni folder (config.json, *.safetensors, processor files)."
    if not folder.is_dir():
        raise ModelLoadError(f"model folder {folder} does not exist. {rebuild_hint}")
    config_path = folder / "config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelLoadError(f"{config_path} is missing, so {folder} is not a model folder. {rebuild_hint}") from None
    except (OSError, ValueError) as error:
        raise ModelLoadError(
            f"{config_path} is not valid JSON ({error}). The folder is damaged: copy or download it again"
            f"{_tiny_hint(folder)}."
        ) from None
    if not isinstance(config, dict) or config.get("model_type") not in OMNI_MODEL_TYPES:
        found = config.get("model_type") if isinstance(config, dict) else type(config).__name__
        raise ModelLoadError(
            f"{config_path}: model_type is {found!r}, but omni-runner trains Qwen2.5-Omni and Qwen3-Omni "
            f"(model_type {' or '.join(OMNI_MODEL_TYPES)}). {rebuild_hint}"
        )
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
        raise ModelLoadError(
            f"{folder} has a config.json but no weights (*.safetensors). The copy is incomplete: copy it again"
            f"{_tiny_hint(folder)}."
        )
    return config


def _tiny_hint(folder: Path) -> str:
    from omni_runner.models.tiny import read_stamp

    return " (or delete it: the built-in tiny model is rebuilt on next use)" if read_stamp(folder) else ""


# ---------------------------------------------------------------- settings


def resolve_device(requested: str | None) -> Any:
    """`hardware.device` (or a device the caller names, like "cuda:1") as a torch device.

    The trainer and every loader use this one function, so a run's parameters, batches and
    optimizer state land on the same device, and a missing GPU is a `ModelLoadError` (a message
    for the user) everywhere. `auto` (or nothing) picks the current GPU when there is one; a bare
    `cuda` gets the current GPU's index, so devices compare equal wherever they were resolved.
    """
    import torch

    if requested in (None, "auto"):
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise ModelLoadError(f"hardware.device: unknown device {requested!r}; use 'auto', 'cpu' or 'cuda'.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"hardware.device is {requested!r} but torch sees no CUDA GPU; use 'auto' or 'cpu'.")
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def resolve_dtype(requested: str, device: Any) -> Any:
    """`base_model.dtype`: auto is bfloat16 on a GPU that supports it, float32 elsewhere."""
    import torch

    if requested == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float16 if device.type == "cuda" else torch.float32
    return getattr(torch, _DTYPES[requested])


def resolve_attn_implementation(requested: str, device: Any) -> str:
    """`auto` is flash_attention_2 on a GPU when the package is installed, else sdpa."""
    if requested != "auto":
        return requested
    if device.type == "cuda" and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def resolve_quantization(requested: str, method: str, config: dict[str, Any]) -> str:
    """`auto` follows the checkpoint (a GPTQ folder stays GPTQ); qlora on an unquantized folder means bnb 4-bit."""
    if requested != "auto":
        return requested
    stored = stored_quantization(config)
    if stored is not None:
        return stored.name
    return "bnb-4bit" if method == "qlora" else "none"


# The first bitsandbytes whose CPU backend this project trained QLoRA with (the tiny model, tests/models/test_load.py).
BNB_ON_CPU = (0, 50)


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".")[:2] if part.isdigit())


def _quantization_kwargs(
    quantization: str, config: dict[str, Any], dtype: Any, device: Any, folder: Path
) -> dict[str, Any]:
    """from_pretrained arguments for the quantized base; clear errors when the backend is missing."""
    stored = stored_quantization(config)
    if quantization == "none":
        if stored is not None:
            raise ModelLoadError(
                f"{folder}/config.json describes a {stored.name} checkpoint, but "
                "base_model.quantization is 'none'. Set it to 'auto' (or the checkpoint's scheme)."
            )
        return {}
    if quantization not in LOADED_QUANTIZATIONS:
        source = f"{folder}/config.json ({stored.key}: {stored.describe()})" if stored is not None else "the recipe"
        raise ModelLoadError(
            f"{source} asks for {quantization} weights, which the loader cannot load: it loads "
            f"{', '.join(LOADED_QUANTIZATIONS)}. Use the unquantized model (bnb-4bit/bnb-8bit quantize it while "
            "loading) or a GPTQ build."
        )
    if quantization.startswith("gptq"):
        if importlib.util.find_spec("gptqmodel") is None:
            raise ModelLoadError(
                f"base_model.quantization {quantization} needs the GPTQ backend, which is not installed: "
                "run `pip install omni-runner[gptq]` (installs gptqmodel)."
            )
        if stored is None or stored.method != "gptq":
            raise ModelLoadError(
                f"base_model.quantization {quantization} needs a GPTQ-quantized checkpoint, but {folder}/config.json "
                "has no GPTQ quantization_config. Use a GPTQ folder, or bnb-4bit/bnb-8bit to quantize while loading."
            )
        return {}  # transformers reads the checkpoint's own quantization_config
    if quantization in ("bnb-4bit", "bnb-8bit"):
        if importlib.util.find_spec("bitsandbytes") is None:
            raise ModelLoadError(
                f"base_model.quantization {quantization} needs bitsandbytes, which is not installed: "
                "run `pip install 'omni-runner[bnb]'` (bitsandbytes)."
            )
        if device.type == "cpu" and _version_tuple(importlib.metadata.version("bitsandbytes")) < BNB_ON_CPU:
            raise ModelLoadError(
                f"base_model.quantization {quantization} on the CPU needs bitsandbytes "
                f"{'.'.join(map(str, BNB_ON_CPU))} or later (its CPU backend), but "
                f"{importlib.metadata.version('bitsandbytes')} is installed: run `pip install -U 'omni-runner[bnb]'`."
            )
        from transformers import BitsAndBytesConfig

        # The towers and the output layer stay in full precision: they are small and quantizing them hurts most.
        keep = ["lm_head", "visual", "audio_tower"]
        if quantization == "bnb-4bit":
            bnb = BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=dtype,
                llm_int8_skip_modules=keep,
            )
        else:
            bnb = BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=keep)
        return {"quantization_config": bnb}


# ---------------------------------------------------------------- loading


def load_recipe_processor(recipe_data: dict[str, Any], recipe_dir: Path) -> Any:
    """The processor of the recipe's base model (building the built-in tiny model first if needed), for
    the commands that read data without training: its tokenizer renders every record, and it expands
    media placeholders exactly as training does. `ModelLoadError` when the folder is unusable."""
    return load_processor(resolve_model_dir(str((recipe_data.get("base_model") or {}).get("path", "")), Path(recipe_dir)))


def load_processor(folder: Path) -> Any:
    offline_hub()
    from transformers import AutoProcessor

    try:
        with quiet_transformers():
            return AutoProcessor.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise ModelLoadError(
            f"cannot load the processor (tokenizer, image/video processors, feature extractor) from {folder}: "
            f"{error}. The folder needs its tokenizer and preprocessor files{_tiny_hint(folder)}."
        ) from None


def load_tokenizer(folder: Path) -> Any:
    """The tokenizer alone (the processor's own files, without its media processors)."""
    offline_hub()
    from transformers import AutoTokenizer

    try:
        with quiet_transformers():
            return AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise ModelLoadError(f"cannot load the tokenizer from {folder}: {error}{_tiny_hint(folder)}.") from None


def load_thinker(
    folder: Path,
    *,
    dtype: Any,
    device: Any,
    attn_implementation: str = "sdpa",
    extra_kwargs: dict[str, Any] | None = None,
    trust_remote_code: bool = False,
) -> Any:
    """The thinker alone, from a full Omni folder or a thinker folder, with its family's class."""
    offline_hub()
    import transformers

    family = family_of(check_model_dir(folder)["model_type"])

    kwargs: dict[str, Any] = {
        "dtype": dtype,
        "attn_implementation": attn_implementation,
        "local_files_only": True,
        "trust_remote_code": trust_remote_code,
        **(extra_kwargs or {}),
    }
    if device.type == "cuda":
        kwargs["device_map"] = {"": device.index or 0}  # accelerate places the weights while loading
    try:
        with quiet_transformers():
            thinker = getattr(transformers, family.thinker_class).from_pretrained(folder, **kwargs)
    except (OSError, ValueError, RuntimeError, KeyError) as error:
        raise ModelLoadError(
            f"cannot load the {family.name} thinker from {folder}: {error}. "
            f"The weights may be damaged or from another model{_tiny_hint(folder)}."
        ) from None
    if device.type != "cuda":
        thinker.to(device)
    return thinker


def _group_prefixes() -> dict[str, str]:
    """Module-name prefixes (relative to the thinker) of the groups that can carry LoRA adapters."""
    return {"thinker": "model.language_model.", "vision_tower": "model.visual.", "audio_tower": "model.audio_tower."}


def _not_adapted(family: OmniFamily) -> tuple[str, ...]:
    """Name prefixes of the FULLY_TRAINED_GROUPS' layers inside the towers: never adapted, so their trained
    weights stay plain tensors that `final/` can store beside the adapter."""
    return (*(f"model.visual.{name}." for name in family.vision_merger),
            *(f"model.audio_tower.{name}." for name in family.audio_projection))


def lora_target_names(thinker: Any, target_modules: Iterable[str], groups: Iterable[str]) -> list[str]:
    """Full names of the Linear layers that get adapters.

    In the language model: the recipe's `training.lora.target_modules` (by name suffix). The towers
    reuse names like `q_proj`, so suffixes alone would put adapters in them too; a tower gets
    adapters (on all its Linear layers but the merger's and the audio projection's, which train in
    full as their own groups) only when a stage trains it.
    """
    import torch

    targets = set(target_modules)
    prefixes = _group_prefixes()
    not_adapted = _not_adapted(thinker_family(thinker))
    wanted = [prefixes[group] for group in groups if group in prefixes and group != "thinker"]
    names: list[str] = []
    found_suffixes: set[str] = set()
    for name, module in thinker.named_modules():
        if not isinstance(module, torch.nn.Linear):
            continue
        suffix = name.rsplit(".", 1)[-1]
        if "thinker" in groups and name.startswith(prefixes["thinker"]) and suffix in targets:
            names.append(name)
            found_suffixes.add(suffix)
        elif any(name.startswith(prefix) for prefix in wanted) and not (name + ".").startswith(not_adapted):
            names.append(name)
    missing = targets - found_suffixes
    if "thinker" in groups and missing:
        available = sorted(
            {
                name.rsplit(".", 1)[-1]
                for name, module in thinker.named_modules()
                if isinstance(module, torch.nn.Linear) and name.startswith(prefixes["thinker"])
            }
        )
        raise ModelLoadError(
            f"training.lora.target_modules: {', '.join(sorted(missing))} match no layer of the language model; "
            f"its Linear layers are {', '.join(available)}."
        )
    return names


def expert_parameter_names(thinker: Any, lora: dict[str, Any], groups: Iterable[str]) -> list[str]:
    """Full names of the fused expert weights that get adapters (`training.lora.target_experts`), or none.

    peft adapts a 3-D expert weight with one rank-r pair per expert (`target_parameters`); it cannot
    apply dropout there, so the recipe must set dropout 0 (plan refuses it otherwise, and so does this).
    """
    if not lora.get("target_experts") or "thinker" not in groups:
        return []
    family = thinker_family(thinker)
    if not family.expert_parameters:
        raise ModelLoadError(f"training.lora.target_experts: the {family.name} language model has no experts; remove it.")
    if float(lora.get("dropout", 0.05)):
        raise ModelLoadError("training.lora.target_experts: peft cannot apply dropout to fused expert weights; "
                             "set training.lora.dropout: 0.")
    prefix = _group_prefixes()["thinker"]
    return [name for name, _ in thinker.named_parameters()
            if name.startswith(prefix) and name.endswith(family.expert_parameters)]


def _apply_lora(
    thinker: Any, lora: dict[str, Any], target_names: list[str], quantized: bool, checkpointing: bool,
    expert_names: list[str] | None = None,
) -> Any:
    from peft import (
        LoraConfig,
        TaskType,
        get_peft_model,
        prepare_model_for_kbit_training,
    )

    if quantized:
        thinker = prepare_model_for_kbit_training(
            thinker, use_gradient_checkpointing=checkpointing, gradient_checkpointing_kwargs={"use_reentrant": False}
        )
    config = LoraConfig(
        r=int(lora.get("r", 16)),
        lora_alpha=float(lora.get("alpha", 32)),
        lora_dropout=float(lora.get("dropout", 0.05)),
        target_modules=target_names,
        target_parameters=expert_names or None,
        bias="none",
        task_type=TaskType.CAUSAL_LM,
    )
    return get_peft_model(thinker, config)


def set_trainable_groups(loaded: LoadedModel, groups: Iterable[str]) -> None:
    """Freeze all but `groups`. With LoRA only the adapters inside those groups train, except in the
    FULLY_TRAINED_GROUPS (the vision merger, the audio projection), which train every weight."""
    requested = tuple(groups)
    groups = _base_groups(requested)
    if "talker" in groups and loaded.talker is None:
        raise ModelLoadError("a stage trains the talker, but it was not loaded: list 'talker' in stages[*].train.")
    missing = [group for group in groups if group in PROJECTOR_GROUPS and group not in loaded.groups]
    if missing:
        raise ModelLoadError(f"a stage trains {', '.join(missing)}, but the recipe has no "
                             f"{' or '.join('encoders.' + g.removesuffix('_projector') for g in missing)}.")
    for module in [loaded.model, *loaded.groups["talker"], *([loaded.external] if loaded.external is not None else [])]:
        module.requires_grad_(False)
    if loaded.generation is not None:
        loaded.generation.set_trainable(requested)
    # The merger and projection sit inside their towers: set them last so a tower's LoRA rule
    # (adapters only) does not undo their full training.
    for group in sorted(groups, key=lambda g: g in FULLY_TRAINED_GROUPS):
        adapters_only = group == "talker" or (
            loaded.method in LORA_METHODS and group not in (*FULLY_TRAINED_GROUPS, *PROJECTOR_GROUPS))
        for module in loaded.groups[group]:
            for name, parameter in module.named_parameters():
                if adapters_only:
                    parameter.requires_grad_("lora_" in name)
                elif parameter.is_floating_point():
                    parameter.requires_grad_(True)
    loaded.trainable_groups = groups


def set_activation_checkpointing(loaded: LoadedModel, enabled: bool) -> None:
    """Recompute activations in backward (or stop doing so): the plan decides per stage, since stages
    differ in sequence length and in what they keep on the card."""
    if loaded.thinker.is_activation_checkpointing == enabled:
        return
    if enabled:
        loaded.thinker.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        loaded.thinker.activation_checkpointing_disable()


def _base_groups(groups: Iterable[str]) -> tuple[str, ...]:
    """The base-model groups among a stage's `train` list (external ones are dropped, unknown ones refused)."""
    groups = tuple(groups)
    unknown = [group for group in groups if group not in GROUPS + PROJECTOR_GROUPS + GENERATION_GROUPS]
    if unknown:
        raise ModelLoadError(
            f"stages[*].train: unknown module group(s) {', '.join(unknown)}; "
            f"known: {', '.join(GROUPS + PROJECTOR_GROUPS + GENERATION_GROUPS)}."
        )
    return tuple(group for group in groups if group in GROUPS + PROJECTOR_GROUPS)


def _stage_groups(recipe_data: dict[str, Any]) -> list[tuple[str, ...]]:
    """Each stage's base-model groups; a stage with an empty `train` trains the thinker."""
    stages = recipe_data.get("stages") or []
    listed = [tuple(stage.get("train") or ("thinker",)) for stage in stages] or [("thinker",)]
    return [_base_groups(groups) for groups in listed]


def _checkpointing_wanted(value: str, device: Any) -> bool:
    return value == "on" or (value == "auto" and device.type == "cuda")


def load_for_training(
    recipe_data: dict[str, Any],
    recipe_dir: Path,
    device: Any = None,
    *,
    train_groups: Iterable[str] | None = None,
    gradient_checkpointing: bool | None = None,
    sole: bool = False,
) -> LoadedModel:
    """Load the thinker, apply quantization, LoRA or full fine-tuning, and freezing; the processor loads
    when first used (`LoadedModel.processor`).

    `sole`: this process loads no other model (the trainer child), so a quantization backend this one
    does not use is kept out of it (`hf_env.keep_bitsandbytes_out`: a second of its start)."""
    offline_hub()
    base = recipe_data["base_model"]
    training = recipe_data.get("training", {})
    method = training.get("method", "lora")
    device = resolve_device(str(device) if device is not None else recipe_data.get("hardware", {}).get("device"))
    folder = resolve_model_dir(base["path"], Path(recipe_dir))
    config = check_model_dir(folder)
    dtype = resolve_dtype(base.get("dtype", "auto"), device)
    quantization = resolve_quantization(base.get("quantization", "auto"), method, config)
    if sole and quantization == "none":
        keep_bitsandbytes_out()
    if quantization != "none" and method == "full":
        raise ModelLoadError(
            f"training.method full cannot update {quantization} weights; "
            "use method qlora, or base_model.quantization none."
        )
    if gradient_checkpointing is None:
        gradient_checkpointing = _checkpointing_wanted(training.get("gradient_checkpointing", "auto"), device)
    stage_groups = _stage_groups(recipe_data)
    first_groups = _base_groups(train_groups) if train_groups is not None else stage_groups[0]
    all_groups = tuple(dict.fromkeys(group for groups in (*stage_groups, first_groups) for group in groups))

    thinker = load_thinker(
        folder,
        dtype=dtype,
        device=device,
        attn_implementation=resolve_attn_implementation(base.get("attn_implementation", "auto"), device),
        extra_kwargs=_quantization_kwargs(quantization, config, dtype, device, folder),
        trust_remote_code=bool(base.get("trust_remote_code", False)),
    )
    thinker.config.use_cache = False  # the KV cache is useless when training and costs memory

    talker = None
    if "talker" in all_groups:  # a talker_realign stage: the talker gets LoRA adapters (train/talker_realign.py)
        from omni_runner.models.speech import add_talker_adapter, load_talker

        talker = add_talker_adapter(load_talker(folder, dtype, device), training.get("lora", {}))

    targets: list[str] = []
    model = thinker
    if method in LORA_METHODS:
        lora = training.get("lora", {})
        targets = lora_target_names(thinker, lora.get("target_modules", ()), all_groups)
        experts = expert_parameter_names(thinker, lora, all_groups)
        model = _apply_lora(thinker, lora, targets, quantization != "none", gradient_checkpointing, experts)
        targets = targets + experts
    from omni_runner.models.encoders import load_external_encoders

    external = load_external_encoders(recipe_data, Path(recipe_dir), thinker.config.text_config.hidden_size, device, dtype)
    from omni_runner.models.generation import load_generation_heads

    generation = load_generation_heads(recipe_data, Path(recipe_dir), thinker, device)
    loaded = LoadedModel(model, thinker, None, folder, device, dtype, method, quantization, targets, talker=talker,
                         external=external, generation=generation)
    set_activation_checkpointing(loaded, gradient_checkpointing)
    set_trainable_groups(loaded, first_groups)
    loaded.model.train()
    return loaded
