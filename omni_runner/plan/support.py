"""What the trainer trains today, as data, and the refusals for everything a recipe names beyond it.

The schema and the capability registry describe the whole design (ARCHITECTURE.md); the trainer
trains less. Every part a recipe can name that the trainer would drop, ignore or fail on is listed
here with what is missing and what to do instead, and the planner refuses it at the line that names
it, so nothing validates and then fails, or is silently left out, at run time. `omni-run
capabilities` shows the same tables. An entry goes when the trainer learns the part, together with
a test that trains it (tests/plan/test_support_matrix.py walks every capability and format).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from omni_runner.capabilities import CAPABILITIES, enabled_capabilities
from omni_runner.models.quantization import LOADED_QUANTIZATIONS
from omni_runner.plan.models import PlannedModel, effective_quantization
from omni_runner.recipe.errors import Diagnostic, error, field_name, warning
from omni_runner.recipe.schema import child_schema, recipe_schema
from omni_runner.tracking import TRACKERS, missing_extra


@dataclass(frozen=True)
class Gap:
    """Something a recipe can name that the trainer does not train: what is missing, and what to do today."""

    missing: str
    instead: str


# Every capability in the registry trains; an entry here would be refused at its recipe line.
UNTRAINED_CAPABILITIES: dict[str, Gap] = {}

# Every data-set format has an adapter; an entry here would be refused where a trained capability uses it.
UNTRAINED_FORMATS: dict[str, Gap] = {}

# Model slots whose models the trainer never loads (none today: the decoders train through their connectors).
UNWIRED_MODELS: dict[str, Gap] = {}

# encoders.asr transcribes speech records without text in `omni-run data prepare` (omni_runner/models/asr.py);
# it is a data tool, never loaded in training, and it runs Hugging Face or NeMo Parakeet checkpoints.
ASR_SLOT = "encoders.asr"
ASR_MODEL_TYPES: tuple[str, ...] = ("parakeet_tdt", "parakeet_rnnt", "parakeet_ctc", "nemo-asr")
_ASR_GAPS = {
    "freeze": Gap("encoders.asr only transcribes data in `omni-run data prepare`; nothing trains it",
                  "remove freeze (the recogniser is never trained)"),
    "kind": Gap("data prepare transcribes with Parakeet models only; Whisper is not wired",
                "use a Parakeet folder or .nemo file with kind: parakeet"),
}

# `stages[].train` groups the trainer cannot train (none today).
UNTRAINED_GROUPS: dict[str, Gap] = {}

# Outputs a trained capability asks for that the trainer does not train directly; the stage trains the rest.
UNTRAINED_OUTPUTS: dict[str, str] = {
    "audio_out": ("the speech reply has no ground-truth target (Qwen's speech tokenizer is unreleased): the text reply "
                  "trains and the frozen talker speaks it; eval reports talker_consistency (the talker's loss on the "
                  "original model's own speech), and a stage with `train: [talker]` realigns the talker (docs/speech.md)"),
}

# `distributed:` as the trainer runs it: one process, `ddp`, `fsdp` (FSDP2) or DeepSpeed ZeRO-2/3 under
# `accelerate launch`, on one machine or several.
# What `strategy: fsdp` does not train yet with more than one process (train/sharding.py), by recipe part.
_OR_DDP = "use strategy: ddp, which trains it"
FSDP_GAPS: dict[str, Gap] = {
    "quantization": Gap("FSDP2 splits floating-point weights; a quantized base's packed 4-bit weights are not split", _OR_DDP),
    "fp16": Gap("loss scaling of sharded gradients is not wired", f"use precision bf16 or auto (a GPU since Ampere), or {_OR_DDP}"),
}
# What DeepSpeed ZeRO (train/zero.py) does not train yet with more than one process, by recipe part. Its
# collectives (ZeRO-3's gathers, the gradient reductions into partitions) must run alike on every rank, and
# they follow the parameters a micro-batch reaches: media reach only the ranks whose batch holds them. The
# towers stay frozen and whole on every rank (train/zero.py), and media train the language model.
_OR_FSDP = "use strategy: fsdp, which trains it and splits what ZeRO-3 splits, or ddp"
DEEPSPEED_GAPS: dict[str, Gap] = {
    "missing": Gap("DeepSpeed is not installed", "pip install 'omni-runner[deepspeed]', or use strategy fsdp"),
    "towers": Gap("a tower runs only on the ranks whose batch holds its medium, so ZeRO's gradient reductions of "
                  "its weights would differ between ranks; under DeepSpeed the towers stay frozen, whole on every "
                  "rank (media still train the language model)", f"remove it from train, or {_OR_FSDP}"),
    "generation": Gap("generation is not wired under ZeRO-3: its learned queries are placed into the language "
                      "model's input embeddings before its forward, where the engine has split the embedding weights",
                      "use strategy: deepspeed-zero2 (the query tokens and connectors trained in a stage of their "
                      f"own), or {_OR_FSDP}"),
    "encoders": Gap("external encoders are not wired under ZeRO-3: their features are placed into the language "
                    "model's input embeddings before its forward, where the engine has split the embedding weights",
                    f"use strategy: deepspeed-zero2 (the projectors trained in a stage of their own), or {_OR_FSDP}"),
    "projectors": Gap("under DeepSpeed the parts beside the model that serve one medium (external encoders' projectors, "
                      "generation's query tokens, connectors and denoiser adapters) train only in a stage of their "
                      "own, which runs without the engine; beside the engine, a part whose medium no rank's batch "
                      "holds in a step would still be stepped, on a zero gradient",
                      "train it in a stage before this one and leave it out of this stage's train list, or use "
                      "strategy: fsdp or ddp, which train them together"),
    "talker": Gap("the talker realign runs the thinker's inner model outside its forward, where ZeRO-3's engine gathers "
                  "nothing, and an earlier stage that trained the thinker under ZeRO-3 has left its weights split",
                  "put the talker stages before the others, or use strategy: deepspeed-zero2 (the weights stay "
                  "whole), fsdp, or ddp"),
    "quantization": Gap("a quantized base's packed 4-bit weights are not split by ZeRO", _OR_DDP),
    "fp16": Gap("loss scaling under DeepSpeed is not wired", f"use precision bf16 or auto (a GPU since Ampere), or {_OR_DDP}"),
    "every_steps": Gap("evaluation during training under ZeRO-3 needs every rank in each forward; not wired",
                       "use strategy deepspeed-zero2 (rank 0 holds the whole model and evaluates) or fsdp, "
                       "or evaluate at the end only (eval.every_steps: 0)"),
}
OTHER_MACHINE = Gap("a recipe's run starts on machine 0; the other machines join it rather than start it",
                    "remove machine_rank, start the run on machine 0 and run `omni-run join RUN --machine-rank K` "
                    "on machine K (docs/distributed.md)")
_FROZEN_ENCODER = Gap("external encoders stay frozen: only their projectors train (vision_projector, audio_projector)",
                      "remove freeze (the encoder stays frozen)")
_RESIDENT_DECODER = Gap("a decoder stays on the device for the whole of every stage that generates with it "
                        "(it is loaded when such a stage starts and dropped when it ends); moving it in per step is not built",
                        "remove resident (the default, true, is what the trainer does)")

# Fields the trainer does not read: any value but the schema default is refused at its line.
IGNORED_FIELDS: dict[tuple[str, ...], Gap] = {
    ("encoders", "vision", "freeze"): _FROZEN_ENCODER,
    ("encoders", "audio", "freeze"): _FROZEN_ENCODER,
    ("decoders", "image", "resident"): _RESIDENT_DECODER,
    ("decoders", "video", "resident"): _RESIDENT_DECODER,
    ("training", "epochs"): Gap("the trainer runs a fixed number of optimizer steps; epochs are not turned into steps",
                                "set training.max_steps (or max_steps per stage) instead"),
}

# `encoders.*.kind` values the trainer loads (models/encoders.py picks the class from the folder's config).
LOADED_ENCODER_KINDS: dict[str, tuple[str, ...]] = {"vision": ("siglip2", "siglip", "clip"), "audio": ("whisper",)}

# Base-model types the trainer loads (omni_runner/models/load.py loads the thinker; models/families.py).
QWEN3_OMNI_TYPES: tuple[str, ...] = ("qwen3_omni_moe", "qwen3_omni_moe_thinker")
TRAINED_BASE_MODEL_TYPES: tuple[str, ...] = ("qwen2_5_omni", "qwen2_5_omni_thinker", *QWEN3_OMNI_TYPES)

# What the trainer does not do with a Qwen3-Omni base (its thinker trains text, images, video and a video's
# sound track, through its own towers or external encoders, and drives the generation decoders, with LoRA
# on attention and optionally the experts, or in full): refused where the recipe names it.
_QWEN3_SAME_AS = "or use a Qwen2.5-Omni base, which has it"
QWEN3_OMNI_GAPS: dict[str, Gap] = {
    "audio_out": Gap("Qwen3-Omni's talker and code2wav are not wired: no speech reply is spoken, scored or realigned",
                     f"train a capability without speech out, {_QWEN3_SAME_AS}"),
    "talker": Gap("the talker realign objective is written for Qwen2.5-Omni's talker; Qwen3-Omni's multi-codebook "
                  "MoE talker is not wired", "remove talker from train"),
    "quantization": Gap("quantized Qwen3-Omni bases (GPTQ, bitsandbytes, qlora) are not wired: its experts are fused "
                        "3-D weights, not the linear layers those backends quantize",
                        "use training.method lora or full with base_model.quantization none"),
}
# LoRA target names of a dense MLP, which a mixture-of-experts layer does not have (its experts are fused weights).
_DENSE_MLP_TARGETS = ("gate_proj", "up_proj", "down_proj")


def unsupported_diagnostics(recipe: Any, models: dict[str, PlannedModel]) -> list[Diagnostic]:
    """One error per part of `recipe` the trainer would not train (and a warning per untrained output),
    each at the line that names it."""
    return [
        *_base_model(recipe, models),
        *_qwen3_omni(recipe, models),
        *_merge(recipe, models),
        *_experts(recipe, models),
        *_model_slots(recipe),
        *_encoders(recipe),
        *_asr(recipe, models),
        *_capabilities(recipe),
        *_formats(recipe),
        *_groups(recipe),
        *_ignored_fields(recipe),
        *_distributed(recipe, models),
        *_trackers(recipe),
    ]


def _distributed(recipe: Any, models: dict[str, PlannedModel]) -> Iterator[Diagnostic]:
    """What the trainer cannot do with the recipe's process layout: refused at the line that asks for it;
    settings that change nothing with this layout are a warning there."""
    data = recipe.data
    section = data["distributed"]
    processes, machines, strategy = section["num_processes"], section["num_machines"], section["strategy"]
    if section["machine_rank"] != 0:
        yield _refusal(recipe, f"distributed.machine_rank is {section['machine_rank']}", OTHER_MACHINE,
                       ("distributed", "machine_rank"))
    if machines == 1:
        if section["main_process_ip"] is not None:
            yield _no_effect(recipe, "main_process_ip", "on one machine (its processes meet on it)")
        if section["main_process_port"] != _schema_default(("distributed", "main_process_port")):
            yield _no_effect(recipe, "main_process_port", "on one machine (the launcher picks a free port, so two runs never share one)")
    if processes == 1:
        if strategy != "ddp":
            yield _no_effect(recipe, "strategy", "with one process (it trains on one device)")
        return
    what = f"with {processes} processes"
    if strategy == "fsdp":
        yield from _split_weights(recipe, models, f"under strategy fsdp {what}", FSDP_GAPS)
    if strategy.startswith("deepspeed"):
        yield from _deepspeed(recipe, models, strategy, f"under strategy {strategy} {what}")


def _split_weights(recipe: Any, models: dict[str, PlannedModel], where: str, gaps: dict[str, Gap]) -> Iterator[Diagnostic]:
    """What a strategy that splits weights or gradients cannot take: a quantized base, fp16's loss scaling."""
    data = recipe.data
    base = models.get("base_model")
    quantization = effective_quantization(data, base) if base is not None else None
    if quantization:
        named_by = (("base_model", "quantization") if data["base_model"].get("quantization", "auto") not in ("auto", None)
                    else ("base_model", "path") if base.detection.quantization else ("training", "method"))
        yield _refusal(recipe, f"a {quantization} base {where}", gaps["quantization"], named_by)
    if data["training"]["precision"] == "fp16":
        yield _refusal(recipe, f"training.precision fp16 {where}", gaps["fp16"], ("training", "precision"))


def _deepspeed(recipe: Any, models: dict[str, PlannedModel], strategy: str, where: str) -> Iterator[Diagnostic]:
    """DEEPSPEED_GAPS, each at the line that asks for it."""
    data = recipe.data
    if not deepspeed_installed():
        yield _refusal(recipe, f"distributed.strategy {strategy}", DEEPSPEED_GAPS["missing"], ("distributed", "strategy"))
    yield from _split_weights(recipe, models, where, DEEPSPEED_GAPS)
    # Imported here: plan.modules imports this module.
    from omni_runner.plan.modules import DEFAULT_TRAIN, TOWER_MODULES

    for name in enabled_capabilities(data):
        requires = CAPABILITIES[name].requires
        if requires & {"image_out", "video_out"} and strategy == "deepspeed-zero3":
            yield _refusal(recipe, f"capability {name!r} generates {where}", DEEPSPEED_GAPS["generation"], ("capabilities", name))
    for slot in ("vision", "audio"):
        if (data.get("encoders") or {}).get(slot) and strategy == "deepspeed-zero3":
            yield _refusal(recipe, f"encoders.{slot} {where}", DEEPSPEED_GAPS["encoders"], ("encoders", slot))
    thinker_trained = False  # by an earlier stage: a talker stage trains the talker alone (_groups)
    for index, stage in enumerate(data.get("stages") or ()):
        trains_thinker = "thinker" in (stage.get("train") or DEFAULT_TRAIN)
        for position, group in enumerate(stage.get("train") or ()):
            path = ("stages", index, "train", position)
            if group == "talker" and thinker_trained and strategy == "deepspeed-zero3":
                yield _refusal(recipe, f"stage {stage['name']!r} trains the talker after a stage that trains the thinker "
                               f"{where}", DEEPSPEED_GAPS["talker"], path)
            elif group in TOWER_MODULES:
                yield _refusal(recipe, f"stage {stage['name']!r} trains {group} {where}", DEEPSPEED_GAPS["towers"], path)
            elif (group in _PROJECTED_BY or group in _DECODED_BY) and trains_thinker:
                yield _refusal(recipe, f"stage {stage['name']!r} trains {group} with the thinker {where}",
                               DEEPSPEED_GAPS["projectors"], path)
        thinker_trained = thinker_trained or "talker" not in (stage.get("train") or ())
    if strategy == "deepspeed-zero3" and data["eval"]["every_steps"]:
        yield _refusal(recipe, f"eval.every_steps {where}", DEEPSPEED_GAPS["every_steps"], ("eval", "every_steps"))


def deepspeed_installed() -> bool:
    """Whether the deepspeed package is importable, looked up without importing it (plan stays light)."""
    return importlib.util.find_spec("deepspeed") is not None


def _no_effect(recipe: Any, key: str, why: str) -> Diagnostic:
    path = ("distributed", key)
    return warning(f"{field_name(path)} is {recipe.data['distributed'][key]!r}, which has no effect {why}",
                   recipe.location(path), field_name(path))


def _trackers(recipe: Any) -> Iterator[Diagnostic]:
    """A tracker in `output.report_to` whose optional extra is not installed would fail the trainer's start."""
    for index, name in enumerate((recipe.data.get("output") or {}).get("report_to") or []):
        problem = missing_extra(name) if name in TRACKERS else None
        if problem:
            yield error(problem, recipe.location(("output", "report_to", index)), f"output.report_to[{index}]",
                        f"install it, or take {name} out of output.report_to")


def _refusal(recipe: Any, what: str, gap: Gap, path: tuple[str | int, ...]) -> Diagnostic:
    return error(f"{what}: {gap.missing}", recipe.location(path), field_name(path), gap.instead)


def _base_model(recipe: Any, models: dict[str, PlannedModel]) -> Iterator[Diagnostic]:
    base = models.get("base_model")
    if base is not None and base.detection.model_type not in TRAINED_BASE_MODEL_TYPES:
        yield error(
            f"the trainer loads Qwen2.5-Omni and Qwen3-Omni base models only, and this is {base.detection.model_type} "
            f"({', '.join(base.detection.modalities) or 'no modality detected'})",
            recipe.location(("base_model", "path")), "base_model.path",
            "use a Qwen2.5-Omni folder (Qwen2.5-Omni-7B, -3B, -7B-GPTQ-Int4, or builtin:tiny-qwen2.5-omni) "
            "or a Qwen3-Omni one (Qwen3-Omni-30B-A3B-Instruct, or builtin:tiny-qwen3-omni)",
        )
    stored = base.detection.quantization if base is not None else None
    if stored and stored not in LOADED_QUANTIZATIONS and (recipe.data.get("base_model") or {}).get("quantization", "auto") == "auto":
        yield error(
            f"the base model's weights are {stored}, which the loader cannot load (it loads {', '.join(LOADED_QUANTIZATIONS)})",
            recipe.location(("base_model", "path")), "base_model.path",
            "use the unquantized model (base_model.quantization bnb-4bit or bnb-8bit quantizes it while loading) or a GPTQ build",
        )


_KEEP_THE_ADAPTER = "remove output.merge: final/ keeps the adapter, which `omni-run chat` and peft load on the base model"


def _merge(recipe: Any, models: dict[str, PlannedModel]) -> Iterator[Diagnostic]:
    """`output.merge` writes a complete folder (thinker and talker) from the base's unquantized weights at the
    end of the run; a base it cannot do that from is refused now, not after the training."""
    data, base, path = recipe.data, models.get("base_model"), ("output", "merge")
    if not (data.get("output") or {}).get("merge") or base is None:
        return
    if data["training"]["method"] == "full":
        yield warning("output.merge has no effect with training.method full: final/ is the complete tuned folder",
                      recipe.location(path), field_name(path))
        return
    stored = base.detection.quantization or ""
    if stored.startswith("gptq"):
        yield error(f"output.merge with a {stored} base: its weights cannot be de-quantized exactly, so the adapter "
                    "cannot be merged into them", recipe.location(path), field_name(path),
                    f"{_KEEP_THE_ADAPTER}; or train the unquantized model with base_model.quantization bnb-4bit "
                    "(QLoRA), whose merge starts from the unquantized weights")
    elif base.detection.model_type.endswith("_thinker"):
        yield error("output.merge needs a complete Omni base (thinker and talker), and this folder holds only a thinker",
                    recipe.location(path), field_name(path), f"{_KEEP_THE_ADAPTER}; or train from the complete model's folder")


def _qwen3_omni(recipe: Any, models: dict[str, PlannedModel]) -> Iterator[Diagnostic]:
    """Each part of the recipe a Qwen3-Omni base cannot train yet (QWEN3_OMNI_GAPS), at its line."""
    base = models.get("base_model")
    if base is None or base.detection.model_type not in QWEN3_OMNI_TYPES:
        return
    data = recipe.data
    what = "with a Qwen3-Omni base"
    for name in enabled_capabilities(data):
        if "audio_out" in CAPABILITIES[name].requires:
            yield _refusal(recipe, f"capability {name!r} speaks its reply {what}", QWEN3_OMNI_GAPS["audio_out"], ("capabilities", name))
    for index, stage in enumerate(data.get("stages") or ()):
        if "talker" in (stage.get("train") or ()):
            path = ("stages", index, "train", stage["train"].index("talker"))
            yield _refusal(recipe, f"stage {stage['name']!r} trains the talker {what}", QWEN3_OMNI_GAPS["talker"], path)
    training, base_section = data.get("training") or {}, data.get("base_model") or {}
    if training.get("method") == "qlora":
        yield _refusal(recipe, f"training.method qlora {what}", QWEN3_OMNI_GAPS["quantization"], ("training", "method"))
    if base_section.get("quantization", "auto") not in ("auto", "none") or base.detection.quantization:
        path = ("base_model", "quantization") if "quantization" in base_section else ("base_model", "path")
        yield _refusal(recipe, f"a quantized base {what}", QWEN3_OMNI_GAPS["quantization"], path)


def _experts(recipe: Any, models: dict[str, PlannedModel]) -> Iterator[Diagnostic]:
    """LoRA settings that a mixture-of-experts (or a dense) language model cannot honour."""
    base = models.get("base_model")
    if base is None:
        return
    lm = base.detection.components.get("thinker") or base.detection.components.get("language_model") or {}
    experts = lm.get("experts")
    lora = (recipe.data.get("training") or {}).get("lora") or {}
    if not lora:
        return
    if lora.get("target_experts") and not experts:
        gap = Gap(f"the {base.detection.model_type} language model has no experts", "remove target_experts")
        yield _refusal(recipe, "training.lora.target_experts is true", gap, ("training", "lora", "target_experts"))
    if lora.get("target_experts") and experts and float(lora.get("dropout", 0.05)):
        gap = Gap("peft adapts fused expert weights without dropout (it cannot factor the input out of them)",
                  "set training.lora.dropout: 0, or remove target_experts")
        yield _refusal(recipe, f"training.lora.dropout is {lora.get('dropout', 0.05)} with target_experts", gap, ("training", "lora", "dropout"))
    dense = [t for t in lora.get("target_modules") or () if t in _DENSE_MLP_TARGETS]
    if experts and dense and experts["layers"] == lm["layers"]:
        index = list(lora["target_modules"]).index(dense[0])
        gap = Gap("every layer of this mixture-of-experts language model routes to fused experts, so it has no "
                  f"{', '.join(dense)} Linear layers", "remove them; set training.lora.target_experts: true to adapt the experts")
        yield _refusal(recipe, f"training.lora.target_modules names {', '.join(dense)}", gap, ("training", "lora", "target_modules", index))


def _model_slots(recipe: Any) -> Iterator[Diagnostic]:
    for slot, gap in UNWIRED_MODELS.items():
        path = tuple(slot.split("."))
        section, key = recipe.data.get(path[0]) or {}, path[1]
        if section.get(key) is not None:
            yield _refusal(recipe, f"the trainer does not load {slot}", gap, path)


def _encoders(recipe: Any) -> Iterator[Diagnostic]:
    """Encoder kinds the loader has no class for, and media settings the external path cannot honour."""
    sections = recipe.data.get("encoders") or {}
    for slot, kinds in LOADED_ENCODER_KINDS.items():
        section = sections.get(slot)
        if section is not None and section.get("kind", kinds[0]) not in kinds:
            gap = Gap(f"the trainer loads {' and '.join(kinds)} {slot} encoders only",
                      f"use a {kinds[0]} encoder, or remove encoders.{slot} so the base model's own tower reads it")
            yield _refusal(recipe, f"encoders.{slot}.kind is {section['kind']!r}", gap, ("encoders", slot, "kind"))
    pool = ((sections.get("vision") or {}).get("projector") or {}).get("pool", 1)
    if round(pool ** 0.5) ** 2 != pool:
        gap = Gap("a vision projector pools a square of patches", "use 1, 4, 9, 16, ... (4 averages 2 x 2 patches)")
        yield _refusal(recipe, f"encoders.vision.projector.pool is {pool}", gap, ("encoders", "vision", "projector", "pool"))
    if not (sections.get("vision") or sections.get("audio")):
        return
    for name, spec in sorted((recipe.data.get("datasets") or {}).items()):
        if (spec or {}).get("use_audio_in_video"):
            gap = Gap("a video's audio track interleaves with its frames only inside the base model's own towers, "
                      "and the recipe routes video or audio through an external encoder",
                      "remove use_audio_in_video (the track is not used), or remove the external encoders")
            yield _refusal(recipe, f"data set {name!r} sets use_audio_in_video", gap, ("datasets", name, "use_audio_in_video"))


def _asr(recipe: Any, models: dict[str, PlannedModel]) -> Iterator[Diagnostic]:
    section = (recipe.data.get("encoders") or {}).get("asr") or {}
    if section.get("freeze") is False:
        yield _refusal(recipe, "encoders.asr.freeze is false", _ASR_GAPS["freeze"], ("encoders", "asr", "freeze"))
    if section.get("kind", "parakeet") != "parakeet":
        yield _refusal(recipe, f"encoders.asr.kind is {section['kind']!r}", _ASR_GAPS["kind"], ("encoders", "asr", "kind"))
    elif ASR_SLOT in models and models[ASR_SLOT].detection.model_type not in ASR_MODEL_TYPES:
        yield error(
            f"encoders.asr.path holds a {models[ASR_SLOT].detection.model_type} model, and data prepare transcribes with Parakeet models only",
            recipe.location(("encoders", "asr", "path")), "encoders.asr.path",
            "point it at a Parakeet folder (parakeet_tdt, parakeet_rnnt, parakeet_ctc) or a .nemo file",
        )


def _capabilities(recipe: Any) -> Iterator[Diagnostic]:
    for name in enabled_capabilities(recipe.data):
        if name in UNTRAINED_CAPABILITIES:
            yield _refusal(recipe, f"capability {name!r} does not train yet", UNTRAINED_CAPABILITIES[name], ("capabilities", name))
        for output in sorted(CAPABILITIES[name].requires & UNTRAINED_OUTPUTS.keys()):  # the loader refused unknown names
            yield warning(UNTRAINED_OUTPUTS[output], recipe.location(("capabilities", name)), f"capabilities.{name}")


def _formats(recipe: Any) -> Iterator[Diagnostic]:
    """Untrained formats among the data sets of enabled capabilities (untrained capabilities are reported already)."""
    datasets = recipe.data.get("datasets") or {}
    specs = recipe.data.get("capabilities") or {}
    used = {name for c in enabled_capabilities(recipe.data) if c not in UNTRAINED_CAPABILITIES for name in (specs[c] or {}).get("datasets") or ()}
    for name in sorted(used):
        fmt = (datasets.get(name) or {}).get("format")
        if fmt in UNTRAINED_FORMATS:
            path = ("datasets", name, "format")
            yield _refusal(recipe, f"data set {name!r} has format {fmt}, which does not train yet", UNTRAINED_FORMATS[fmt], path)


# A projector group needs its external encoder: group -> (the encoder, the base model's own counterpart).
_PROJECTED_BY = {"vision_projector": ("vision", "vision_merger"), "audio_projector": ("audio", "audio_projection")}
# A generation group needs a decoder: group -> the decoders that have it.
_DECODED_BY = {"image_projector": ("image",), "video_projector": ("video",), "query_tokens": ("image", "video")}


def _groups(recipe: Any) -> Iterator[Diagnostic]:
    encoders = recipe.data.get("encoders") or {}
    decoders = recipe.data.get("decoders") or {}
    for index, stage in enumerate(recipe.data.get("stages") or ()):
        for position, group in enumerate(stage.get("train") or ()):
            path = ("stages", index, "train", position)
            if group in UNTRAINED_GROUPS:
                yield _refusal(recipe, f"stage {stage['name']!r} cannot train {group}", UNTRAINED_GROUPS[group], path)
            elif group in _DECODED_BY and not any(decoders.get(kind) for kind in _DECODED_BY[group]):
                slots = " or ".join(f"decoders.{kind}" for kind in _DECODED_BY[group])
                gap = Gap(f"it conditions {slots}, which the recipe does not have", f"add {slots}, or remove {group}")
                yield _refusal(recipe, f"stage {stage['name']!r} cannot train {group}", gap, path)
            elif group in _PROJECTED_BY and not encoders.get(_PROJECTED_BY[group][0]):
                slot, own = _PROJECTED_BY[group]
                gap = Gap(f"it projects encoders.{slot}, which the recipe does not have",
                          f"add encoders.{slot}, or train {own}, the base model's own projection of its {slot} tower")
                yield _refusal(recipe, f"stage {stage['name']!r} cannot train {group}", gap, path)
        yield from _talker_stage(recipe, index, stage)


def _talker_stage(recipe: Any, index: int, stage: dict[str, Any]) -> Iterator[Diagnostic]:
    """A stage that trains the talker runs the talker_realign objective (train/talker_realign.py): the
    talker alone learns, reading a frozen thinker, and only where the recipe unfroze it."""
    train = list(stage.get("train") or ())
    if "talker" not in train:
        return
    path = ("stages", index, "train", train.index("talker"))
    if train != ["talker"]:
        yield error(f"stage {stage['name']!r} trains the talker with {', '.join(g for g in train if g != 'talker')}: "
                    "a talker stage realigns the talker alone, reading the frozen thinker",
                    recipe.location(path), field_name(path), "put the other groups in a stage of their own, before it")
    speech = (recipe.data.get("decoders") or {}).get("speech") or {}
    if speech.get("freeze", True):
        yield error(f"stage {stage['name']!r} trains the talker, but decoders.speech.freeze is true (the default)",
                    recipe.location(path), field_name(path), "set decoders.speech.freeze: false to let it realign the talker")


def _ignored_fields(recipe: Any) -> Iterator[Diagnostic]:
    for path, gap in IGNORED_FIELDS.items():
        node: Any = recipe.data
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if node is not None and node != _schema_default(path):
            yield _refusal(recipe, f"{field_name(path)} is {node!r}, but the trainer does not read it", gap, path)


def _schema_default(path: tuple[str, ...]) -> Any:
    schema: Any = recipe_schema()
    for key in path:
        schema = child_schema(schema, key)
    return schema.get("default")
