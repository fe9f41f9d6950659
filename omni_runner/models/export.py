"""The run's final output, and loading it back for chat.

Layout of `RUN/final/` (written by `save_final`):
- methods lora/qlora: the peft adapter (`adapter_config.json`, `adapter_model.safetensors`), the
  weights of groups that trained in full beside it (the vision merger, the audio projection:
  `trained_modules.safetensors`, thinker-relative names), the processor, and `omni_runner_final.json` (`{"kind": "adapter", "base_model": "<folder>",
  "base_fingerprint": <tiny-model build or null>, "method": ...}`);
  with `output.merge: true` also `final/merged/`: a complete folder of the base's family in which the
  tuned thinker (for Qwen3-Omni, its experts' adapters merged too) sits beside the base model's ORIGINAL
  talker and speech decoder (Qwen2.5-Omni's token2wav and speaker table, Qwen3-Omni's code2wav), loadable
  with `Qwen2_5OmniForConditionalGeneration` or `Qwen3OmniMoeForConditionalGeneration.from_pretrained`,
  plus the processor.
- with external encoders (`encoders.vision`/`encoders.audio`): their projectors in
  `external_encoders.safetensors` and the encoders' folders and projector settings in
  `external_encoders.json`, beside the model (and in `merged/`); `load_for_inference` rebuilds them.
- method full: `final/` itself is that complete folder (`"kind": "merged"`); from a thinker-only base,
  the tuned thinker folder.
- either method, after a talker_realign stage: `final/talker_adapter/`, the talker's peft adapter. It is
  never merged: complete folders keep the original talker, and chat puts the adapter on top of it.
- with external encoders: `external_encoders.{json,safetensors}` (models/encoders.py); with decoders:
  `generation.{json,safetensors}`, the queries, connectors and denoiser adapters (models/generation.py),
  in `final/` and in `final/merged/`.

Merging always starts from the unquantized base weights on the CPU (a 4-bit base cannot hold merged
weights exactly), so a qlora run on bitsandbytes merges as well; a GPTQ base cannot be de-quantized and
is refused with a clear message.

Public API:
- `save_final(loaded, final_dir, *, merge=False, save_processor=True, trained_modules=None) -> Path`:
  `trained_modules` are the non-adapter weights a LoRA run trained (name → tensor, as the trainer's
  model names them).
- `load_for_inference(path, device=None, *, decoders=False) -> LoadedModel`: `final/` (base + adapter),
  `final/merged/` or any Qwen2.5-Omni or Qwen3-Omni folder; the model is in eval mode; `decoders` also loads the
  generation heads and their decoders.
- `generate_text(model, processor, messages, max_new_tokens=128, tools=None, media=None, external=None) -> str`:
  greedy reply to a chat (`messages` in the chat-template form, media parts backed by the files in
  `media`, read through the external encoders `external` where the run has them), without the prompt
  and special tokens.
- `prompt_features(processor, messages, tools=None, media=None, *, model=None, external=None) -> dict`:
  the rendered, tokenised chat prompt with its media, as `generate_text` feeds it.
- `prompt_inputs(model, processor, conversation, prompt, settings, external=None)` and
  `generate_ids(model, inputs, max_new_tokens, external=None, **generate_kwargs)`: the same in two
  steps, for a prompt rendered already (the evaluation).
- `FINAL_MANIFEST`, `MERGED_DIR`, `TALKER_ADAPTER_DIR`, `speech_folder(final_dir) -> Path`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from omni_runner.models.families import family_of
from omni_runner.models.folders import atomic_folder
from omni_runner.models.hf_env import (
    offline_hub,
    quiet_transformers,
    saving_without_deepspeed_probe,
)
from omni_runner.models.load import (
    LORA_METHODS,
    LoadedModel,
    ModelLoadError,
    check_model_dir,
    load_processor,
    load_thinker,
    resolve_device,
    resolve_dtype,
)
from omni_runner.models.tiny import TINY_MODEL_NAME, ensure_tiny_model, read_stamp
from omni_runner.paths import BUILTIN_PREFIX, resolve_model_path

FINAL_MANIFEST = "omni_runner_final.json"
MERGED_DIR = "merged"
TALKER_ADAPTER_DIR = "talker_adapter"  # a talker_realign stage's adapter, on the base (or merged) talker
SPEAKER_FILE = "spk_dict.pt"
TRAINED_MODULES_FILE = "trained_modules.safetensors"
_PEFT_PREFIX = "base_model.model."


def _write_manifest(folder: Path, **fields: Any) -> None:
    (folder / FINAL_MANIFEST).write_text(json.dumps(fields, indent=2) + "\n", encoding="utf-8")


def _base_record(model_dir: Path) -> dict[str, Any]:
    """Which base the run tuned; for the built-in tiny model, also which build of it."""
    stamp = read_stamp(model_dir)
    return {"base_model": str(model_dir), "base_fingerprint": stamp["fingerprint"] if stamp else None}


def _adapter_base_dir(folder: Path) -> Path:
    """The base an adapter was trained on, rebuilt if it is the tiny model and the cache was cleared;
    refused if the tiny model was rebuilt differently since (the adapter would not fit it)."""
    manifest = _read_manifest(folder)
    base_dir = Path(manifest.get("base_model") or _adapter_base(folder))
    expected = manifest.get("base_fingerprint")
    if expected is None:
        return base_dir
    if read_stamp(base_dir) is None and base_dir == resolve_model_path(BUILTIN_PREFIX + TINY_MODEL_NAME, Path.cwd()):
        ensure_tiny_model()
    stamp = read_stamp(base_dir)
    if stamp is not None and stamp["fingerprint"] != expected:
        raise ModelLoadError(
            f"{folder} was trained on another build of the tiny model than the one now at {base_dir} "
            f"(builder or bundled data changed). Use {folder / MERGED_DIR} if the run merged, or train again."
        )
    return base_dir


def _read_manifest(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / FINAL_MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _cpu_state(module: Any) -> dict[str, Any]:
    return {name: tensor.detach().cpu() for name, tensor in module.state_dict().items()}


def save_final(
    loaded: LoadedModel, final_dir: Path, *, merge: bool = False, save_processor: bool = True,
    trained_modules: dict[str, Any] | None = None,
) -> Path:
    """Write `final/` for the finished run (see the module docstring for the layout)."""
    model_type = check_model_dir(loaded.model_dir).get("model_type")
    family = family_of(model_type)
    base_is_complete = family is not None and model_type == family.complete_model_type
    with atomic_folder(Path(final_dir)) as staging, quiet_transformers(), saving_without_deepspeed_probe():
        if loaded.method in LORA_METHODS:
            loaded.model.save_pretrained(staging)
            if trained_modules:
                from safetensors.torch import save_file

                save_file({name.removeprefix(_PEFT_PREFIX): tensor.detach().cpu().contiguous()
                           for name, tensor in trained_modules.items()}, staging / TRAINED_MODULES_FILE)
            if save_processor:
                loaded.processor.save_pretrained(staging)
            if merge:
                (staging / MERGED_DIR).mkdir()
                _write_omni_folder(loaded.model_dir, staging / MERGED_DIR, adapter_dir=staging)
            _write_manifest(staging, kind="adapter", method=loaded.method, **_base_record(loaded.model_dir))
        else:
            if base_is_complete:
                _write_omni_folder(loaded.model_dir, staging, thinker_state=_cpu_state(loaded.thinker))
            else:
                loaded.thinker.save_pretrained(staging)
                loaded.processor.save_pretrained(staging)
            _write_manifest(staging, kind="merged", method=loaded.method, **_base_record(loaded.model_dir))
        if loaded.external is not None:
            from omni_runner.models.encoders import save_projectors

            for folder in (staging, staging / MERGED_DIR):
                if folder.is_dir():
                    save_projectors(loaded.external, folder)
        if loaded.generation is not None:
            from omni_runner.models.generation import save_generation

            for folder in (staging, staging / MERGED_DIR):
                if folder.is_dir():
                    save_generation(loaded.generation, folder)
        if loaded.talker is not None:
            loaded.talker.save_pretrained(staging / TALKER_ADAPTER_DIR)
    return Path(final_dir)


def _write_omni_folder(
    base_dir: Path,
    folder: Path,
    *,
    adapter_dir: Path | None = None,
    thinker_state: dict[str, Any] | None = None,
) -> None:
    """A complete Omni folder of the base's family: the base's talker and speech decoder (Qwen2.5-Omni's
    token2wav, Qwen3-Omni's code2wav, where the base has them) beside a tuned thinker, given as a LoRA
    `adapter_dir` to merge (with Qwen3-Omni, the experts' adapters too) or a full `thinker_state`."""
    offline_hub()
    import transformers

    if (adapter_dir is None) == (thinker_state is None):
        raise ValueError("give exactly one of adapter_dir and thinker_state")
    config = check_model_dir(base_dir)
    family = family_of(config.get("model_type"))
    if family is None or config["model_type"] != family.complete_model_type:
        raise ModelLoadError(
            f"output.merge needs a complete Omni base (thinker + talker); {base_dir} holds only a thinker."
        )
    if (config.get("quantization_config") or {}).get("quant_method") == "gptq":
        raise ModelLoadError(
            f"output.merge cannot merge into the GPTQ-quantized base {base_dir}: its weights cannot be "
            "de-quantized exactly. Keep the adapter in final/ and load it on top of the base model instead."
        )
    with quiet_transformers():
        full = getattr(transformers, family.complete_class).from_pretrained(base_dir, dtype="auto", local_files_only=True)
        if adapter_dir is not None:
            from peft import PeftModel

            full.thinker = PeftModel.from_pretrained(full.thinker, adapter_dir).merge_and_unload()
            _load_trained_modules(full.thinker, adapter_dir)
        else:
            full.thinker.load_state_dict(thinker_state)
        full.save_pretrained(folder)
    speaker_table = base_dir / SPEAKER_FILE
    if speaker_table.exists():
        shutil.copy2(speaker_table, folder / SPEAKER_FILE)
    load_processor(base_dir).save_pretrained(folder)


def load_for_inference(path: Path, device: Any = None, *, decoders: bool = False) -> LoadedModel:
    """Load a final adapter folder (on its base model) or a complete model folder, ready to generate;
    with `decoders`, also its generation queries, connectors and diffusion decoders (`omni-run generate`)."""
    offline_hub()
    folder = Path(path)
    device = resolve_device(str(device) if device is not None else None)
    dtype = resolve_dtype("auto", device)
    if (folder / "adapter_config.json").exists():
        from peft import PeftModel

        base_dir = _adapter_base_dir(folder)
        check_model_dir(base_dir)
        thinker = load_thinker(base_dir, dtype=dtype, device=device)
        with quiet_transformers():
            model = PeftModel.from_pretrained(thinker, folder)
        _load_trained_modules(thinker, folder)
        processor_dir = folder if (folder / "tokenizer_config.json").exists() else base_dir
        method, model_dir = "lora", base_dir
    else:
        check_model_dir(folder)
        thinker = load_thinker(folder, dtype=dtype, device=device)
        model, processor_dir, method, model_dir = thinker, folder, "full", folder
    model.eval()
    model.requires_grad_(False)
    processor = load_processor(processor_dir)
    from omni_runner.models.encoders import load_projectors

    external = load_projectors(folder, thinker.config.text_config.hidden_size, device, dtype)
    generation = None
    if decoders:
        from omni_runner.models.generation import load_generation

        generation = load_generation(folder, thinker, device, dtype)
    return LoadedModel(model, thinker, processor, model_dir, device, dtype, method, external=external,
                       generation=generation)


def _load_trained_modules(thinker: Any, folder: Path) -> None:
    """Put the fully trained groups saved beside an adapter back into the thinker."""
    path = folder / TRAINED_MODULES_FILE
    if not path.exists():
        return
    from safetensors.torch import load_file

    unexpected = thinker.load_state_dict(load_file(path), strict=False).unexpected_keys
    if unexpected:
        raise ModelLoadError(f"{path} holds weights this model does not have ({', '.join(unexpected[:3])}); "
                             "it belongs to another base model.")


def _adapter_base(folder: Path) -> str:
    try:
        config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"{folder}/adapter_config.json cannot be read ({error}).") from None
    base = config.get("base_model_name_or_path")
    if not base:
        raise ModelLoadError(f"{folder}/adapter_config.json does not name its base model (base_model_name_or_path).")
    return base


def prompt_features(
    processor: Any, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None,
    media: dict[str, list[str]] | None = None, *, model: Any = None, external: Any = None,
) -> dict[str, Any]:
    """The chat rendered up to the assistant's turn, tokenised, with its media decoded and expanded as in
    training (`media`: the files behind the messages' media parts, in reading order; read through the
    run's external encoders `external`, for the thinker `model`, where it has them)."""
    from omni_runner.data.conversation import Conversation, Message
    from omni_runner.data.multimodal import MediaSettings

    text = processor.apply_chat_template(messages, tools=tools, add_generation_prompt=True, tokenize=False)
    conversation = Conversation([Message(m["role"], m["content"]) for m in messages], **(media or {}))
    return prompt_inputs(model, processor, conversation, text, MediaSettings(), external)


def generate_text(
    model: Any,
    processor: Any,
    messages: list[dict[str, Any]],
    max_new_tokens: int = 128,
    tools: list[dict[str, Any]] | None = None,
    media: dict[str, list[str]] | None = None,
    external: Any = None,
) -> str:
    """Greedy decoding of the assistant's reply to `messages`.

    `media` holds the files behind the messages' media parts (`{"images": [...], "videos": [...],
    "audios": [...]}`, in reading order); they are decoded and expanded as in training, through the
    run's external encoders (`external`, `LoadedModel.external`) where it has them.
    Works on a model in training too (the trainer's end-of-run evaluation): it generates in eval mode
    with the KV cache on, and puts the model back in the mode it found it in.
    """
    inputs = prompt_features(processor, messages, tools, media, model=model, external=external)
    return processor.tokenizer.decode(generate_ids(model, inputs, max_new_tokens, external), skip_special_tokens=True)


def prompt_inputs(
    model: Any, processor: Any, conversation: Any, prompt: str, settings: Any, external: Any = None,
) -> dict[str, Any]:
    """The generate() inputs for a rendered `prompt` and its conversation's media (batch of one), with
    the media expanded as in training: the base model's processor, and the external encoders' inputs."""
    import torch

    from omni_runner.data.external import encode_sample_media
    from omni_runner.data.multimodal import has_media
    from omni_runner.data.render import IGNORE_INDEX, Rendered

    ids = processor.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    tensors: dict[str, Any] = {}
    if has_media(conversation):
        rendered = Rendered(ids, [IGNORE_INDEX] * len(ids), prompt, [])
        features = external.features(model.config) if external is not None else None
        ids, _, tensors, _ = encode_sample_media(conversation, rendered, processor, settings, None, features)
    input_ids = torch.tensor([ids])
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), **tensors}


def generate_ids(model: Any, inputs: dict[str, Any], max_new_tokens: int, external: Any = None, **extra: Any) -> Any:
    """Greedy continuation of `prompt_inputs`: the new token ids only. External media enter as
    embeddings; the ids stay beside them for the model's position bookkeeping."""
    import torch

    device = next(model.parameters()).device
    inputs = {name: value.to(device) for name, value in inputs.items()}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            if external is not None:
                input_ids = inputs["input_ids"]
                inputs = {**external.embed_inputs(model, dict(inputs)), "input_ids": input_ids}
            output = model.generate(**inputs, **extra, max_new_tokens=max_new_tokens, do_sample=False, use_cache=True,
                                    synced_gpus=split_over_ranks(model))
    finally:
        model.train(was_training)
    return output[0, inputs["input_ids"].shape[1]:]


def split_over_ranks(model: Any) -> bool:
    """Whether `model` is split over several processes (FSDP2): its every forward is then a collective, and
    generation must go on, past this rank's end of sequence, until every rank's reply is done."""
    import torch

    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return False
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def speech_folder(final_dir: Path) -> Path:
    """The complete Omni folder whose talker, token2wav and speakers a final model speaks with: the
    final folder itself when it is complete (method full), else the base an adapter was trained on."""
    final_dir = Path(final_dir)
    if (final_dir / "adapter_config.json").exists():
        return _adapter_base_dir(final_dir)
    return final_dir
