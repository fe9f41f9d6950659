"""Compile a loaded recipe into a plan: gated capabilities, stages, module groups, mixture, memory.

The plan is plain data (`Plan.to_json()` is what `plan.json` holds) so the trainer, the TUI and a
person read the same thing. Compiling reads config files at most; it never loads weights or
imports torch. All recipe problems found here come out together as one `RecipeError`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from omni_runner.capabilities import CAPABILITIES, enabled_capabilities
from omni_runner.plan.architectures import group_size
from omni_runner.plan.distribution import Layout, batch_decision, memory_decision
from omni_runner.plan.fit import Fit, Precision, Shape, estimate, fit_stage, native_generation_shape
from omni_runner.plan.memory import Adapters
from omni_runner.plan.gate import blocked_diagnostics, modality_sources
from omni_runner.plan.mixture import stage_mixture, total_mixture
from omni_runner.plan.models import PlannedModel, effective_quantization, resolve_models
from omni_runner.data.packing import VARLEN_ATTENTION
from omni_runner.plan.packing import decide_packing
from omni_runner.plan.modules import (
    DEFAULT_TRAIN,
    GENERATION_OUTPUTS,
    StageModules,
    feeds,
    stage_modules,
    tower_inputs,
)
from omni_runner.plan.support import ASR_SLOT, UNTRAINED_CAPABILITIES, UNTRAINED_OUTPUTS, unsupported_diagnostics
from omni_runner.recipe.errors import ERROR, Diagnostic, Location, RecipeError, error, warning

DEFAULT_STAGE = "train"
# The groups LoRA adapters go into (the loader's `lora_target_names`).
_ADAPTED_GROUPS = ("thinker", "vision_tower", "audio_tower")


@dataclass
class StagePlan:
    name: str
    capabilities: list[str]
    max_steps: int | None
    lr: float
    train: list[str]  # the module groups that train, as `stages[].train` spells them
    modules: StageModules
    fit: Fit
    mixture: dict[str, Any]
    decisions: list[dict[str, str]]  # what the plan decided for this stage and why: scope first, then fitting
    packing: bool = True  # training.packing, or what `auto` decided for this stage

    def to_json(self) -> dict[str, Any]:
        shape = self.fit.shape
        payload = {
            "name": self.name,
            "capabilities": self.capabilities,
            "max_steps": self.max_steps,
            "lr": self.lr,
            "train": self.train,
            "trainable": [g.to_json() for g in self.modules.trainable],
            "frozen": [g.to_json() for g in self.modules.frozen],
            "trainable_parameters": sum(g.parameters for g in self.modules.trainable),
            "micro_batch": shape.micro_batch,
            "grad_accum": shape.grad_accum,
            "seq_len": shape.seq_len,
            "gradient_checkpointing": shape.checkpointing,
            "packing": self.packing,
            "memory": self.fit.estimate.to_json(),
            "decisions": self.decisions,
            "mixture": self.mixture,
        }
        if shape.generation:
            payload["generation"] = shape.generation
        return payload


@dataclass
class Plan:
    name: str
    stages: list[StagePlan]
    models: dict[str, PlannedModel]
    modality_sources: dict[str, str]
    total_steps: int | None
    vram_gb: float
    layout: Layout
    precision: Precision  # how the base model's weights are held, for estimates at other shapes (benchmarks)
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        global_batches = {s.name: s.fit.shape.micro_batch * s.fit.shape.grad_accum * self.layout.world_size for s in self.stages}
        return {
            "name": self.name,
            "total_steps": self.total_steps,
            "vram_gb": self.vram_gb,
            "distributed": self.layout.to_json(global_batches),
            "stages": [s.to_json() for s in self.stages],
            "mixture": total_mixture([s.mixture for s in self.stages]),
            "models": {slot: {**m.detection.to_json(), "planned_from_table": m.from_table} for slot, m in self.models.items()},
            "modalities": self.modality_sources,
            "warnings": self.warnings,
        }


# Given a stage's capabilities, the token lengths of its first samples in stream order (None: not measurable).
MeasureLengths = Callable[[list[str]], "list[int] | None"]


def compile_plan(recipe: Any, measure_lengths: MeasureLengths | None = None) -> Plan:
    """The plan for `recipe` (a loaded `Recipe`); raises RecipeError listing every problem.

    `measure_lengths` (`data.lengths.LengthProbe.stage_lengths`) lets `training.packing: auto` decide from
    the data; without it (`validate`) the decision is left to the plan a run is prepared with.
    """
    data = recipe.data
    models, diagnostics = resolve_models(recipe)
    if "base_model" not in models:
        raise RecipeError(diagnostics)
    sources = modality_sources(models)
    diagnostics += blocked_diagnostics(recipe, sources) + _model_checks(recipe, models, sources) + unsupported_diagnostics(recipe, models)
    _raise_on_errors(diagnostics)

    training = data.get("training") or {}
    vram = (data.get("hardware") or {}).get("vram_gb", 16)
    vram_gb = float(min(vram) if isinstance(vram, list) else vram)
    precision = _precision(data, models["base_model"])
    layout = Layout.from_recipe(data)
    stage_specs = _stage_specs(data, recipe, diagnostics)
    total_steps = _total_steps(training, stage_specs, diagnostics, recipe)
    stages = [_compile_stage(spec, models, sources, precision, layout, vram_gb, recipe, diagnostics, measure_lengths)
              for spec in stage_specs]
    _raise_on_errors(diagnostics)
    diagnostics += _estimate_notes(recipe) + _recovery_notes(recipe)
    return Plan(
        name=str(data.get("name", "")),
        stages=[stage for stage in stages if stage is not None],
        models=models,
        modality_sources=sources,
        total_steps=total_steps,
        vram_gb=vram_gb,
        layout=layout,
        precision=precision,
        warnings=[_warning_text(d) for d in diagnostics if d.severity != ERROR],
    )


def _raise_on_errors(diagnostics: list[Diagnostic]) -> None:
    if any(d.severity == ERROR for d in diagnostics):
        raise RecipeError(diagnostics)


def _model_checks(recipe: Any, models: dict[str, PlannedModel], sources: dict[str, str]) -> list[Diagnostic]:
    """Model choices that cannot work together, beyond the modality gates."""
    problems = []
    if "speech" in (recipe.data.get("decoders") or {}) and "audio_out" not in sources:
        problems.append(warning("decoders.speech uses the base model's talker, but the base model has none; nothing provides audio_out",
                                recipe.location(("decoders", "speech")), "decoders.speech"))
    quantization = models["base_model"].detection.quantization
    method = (recipe.data.get("training") or {}).get("method", "lora")
    stages = recipe.data.get("stages") or []
    if method != "full" and stages and all(s.get("train") and not set(s["train"]) & set(_ADAPTED_GROUPS) for s in stages):
        problems.append(error(
            f"training.method {method} puts adapters on the thinker and the towers, but no stage trains any of them "
            "(the vision merger and the audio projection train in full, without adapters)",
            _where(recipe, ("training", "method")), "training.method",
            "use method: full (then only the listed groups train), or list thinker in a stage's train",
        ))
    if method == "full" and quantization:
        problems.append(error(
            f"full fine-tuning cannot update {quantization} weights",
            recipe.location(("training", "method")), "training.method",
            "use method: lora (LoRA adapters on the quantized base) or an unquantized base model",
        ))
    return problems


def _estimate_notes(recipe: Any) -> list[Diagnostic]:
    """What the memory estimate does not cover for this hardware set-up."""
    notes = []
    if (recipe.data.get("hardware") or {}).get("device") == "cpu":
        notes.append(warning("device cpu: the estimate is host memory and vram_gb is not enforced",
                             recipe.location(("hardware", "device")), "hardware.device"))
    return notes


def _recovery_notes(recipe: Any) -> list[Diagnostic]:
    """Recovery settings (training.nan_policy, training.auto_micro_batch) that this recipe leaves nothing to act on."""
    training, checkpoint = recipe.data["training"], recipe.data["controller"]["checkpoint"]
    notes = []
    if training["nan_policy"]["action"] == "rollback" and checkpoint["every_steps"] == 0:
        notes.append(warning("a rollback goes back to a checkpoint, and controller.checkpoint.every_steps is 0: "
                             "until one is taken on request, NaNs stop the run",
                             _where(recipe, ("training", "nan_policy", "action")), "training.nan_policy.action"))
    if training["auto_micro_batch"] and training["micro_batch"] == 1:
        notes.append(warning("micro_batch is already 1, so an out-of-memory failure stops the run: there is nothing to lower",
                             _where(recipe, ("training", "auto_micro_batch")), "training.auto_micro_batch"))
    return notes


def _where(recipe: Any, path: tuple[str, ...]) -> Location:
    """Where a field was written; for a default, its section, else the top of the recipe file."""
    return recipe.location(path) or recipe.location(path[:1]) or Location(recipe.source, 1, 1)


def _warning_text(diagnostic: Diagnostic) -> str:
    return f"{diagnostic.field}: {diagnostic.message}" if diagnostic.field else diagnostic.message


def _precision(data: dict[str, Any], base: PlannedModel) -> Precision:
    base_section = data.get("base_model") or {}
    training = data.get("training") or {}
    dtype = base_section.get("dtype", "auto")
    if dtype == "auto":
        dtype = "float32" if (data.get("hardware") or {}).get("device") == "cpu" else "bfloat16"
    quantization = effective_quantization(data, base)
    lora = training.get("lora") or {}
    full = training.get("method") == "full"
    return Precision(
        dtype=dtype,
        quantization=quantization,
        group_size=group_size(base.from_table) if base.from_table else 128,
        full_thinker=full,
        thinker_adapters=Adapters(full=True) if full else Adapters(
            targets=tuple(lora.get("target_modules") or ()),
            r=int(lora.get("r", 16)),
            dropout=float(lora.get("dropout", 0.05)) > 0,
            experts=bool(lora.get("target_experts")),
        ),
        on_accelerator=(data.get("hardware") or {}).get("device") != "cpu",
    )


def _stage_specs(data: dict[str, Any], recipe: Any, diagnostics: list[Diagnostic]) -> list[dict[str, Any]]:
    """The recipe's stages (or one stage with everything), each restricted to enabled capabilities."""
    enabled = enabled_capabilities(data)
    declared = data.get("stages") or [{"name": DEFAULT_STAGE, "capabilities": []}]
    specs = []
    for index, stage in enumerate(declared):
        asked = list(stage.get("capabilities") or enabled)
        kept = [c for c in asked if c in enabled]
        if not kept:
            diagnostics.append(warning(f"stage {stage['name']!r} has no enabled capability and is skipped",
                                       recipe.location(("stages", index, "name")), f"stages[{index}]"))
            continue
        specs.append({**stage, "capabilities": kept, "index": index})
    return specs


def _total_steps(training: dict[str, Any], specs: list[dict[str, Any]], diagnostics: list[Diagnostic], recipe: Any) -> int | None:
    """Give stages without `max_steps` an even share of `training.max_steps`; the sum is the run's length."""
    budget = training.get("max_steps")
    open_stages = [s for s in specs if not s.get("max_steps")]
    if budget is None and open_stages:
        names = ", ".join(repr(s["name"]) for s in open_stages)
        diagnostics.append(error(f"no step count for stage {names}: the trainer runs a fixed number of optimizer steps",
                                 _where(recipe, ("training", "max_steps")), "training.max_steps",
                                 "set training.max_steps, or max_steps on every stage"))
        return None
    share, remainder = divmod(int(budget or 0), max(len(open_stages), 1))
    for position, spec in enumerate(open_stages):
        spec["max_steps"] = share + (1 if position < remainder else 0)
    return sum(int(s["max_steps"]) for s in specs)


def _compile_stage(
    spec: dict[str, Any],
    models: dict[str, PlannedModel],
    sources: dict[str, str],
    precision: Precision,
    layout: Layout,
    vram_gb: float,
    recipe: Any,
    diagnostics: list[Diagnostic],
    measure_lengths: MeasureLengths | None = None,
) -> StagePlan | None:
    capabilities = spec["capabilities"]
    training = recipe.data.get("training") or {}
    train = list(spec.get("train") or DEFAULT_TRAIN)
    diagnostics.extend(_gradient_problems(spec, train, sources, recipe))
    modules = stage_modules(capabilities, train, models, sources, recipe.data)
    policy = training.get("gradient_checkpointing", "auto")
    shape = Shape(
        micro_batch=int(training.get("micro_batch", 1)),
        grad_accum=int(training.get("grad_accum", 8)),
        seq_len=int(training.get("seq_len", 2048)),
        checkpointing=policy == "on",
        generation=native_generation_shape(modules),
    )
    fit = fit_stage(modules, shape, precision, vram_gb, policy, layout.split)
    scope = _scope_decisions(capabilities) + _asr_decisions(models) + _expert_decisions(models, training, train)
    if not fit.fits and (recipe.data.get("hardware") or {}).get("device") != "cpu":
        need = fit.estimate.total / 1024**3
        diagnostics.append(error(
            f"stage {spec['name']!r} needs about {need:.1f} GB per device even after {len(fit.decisions)} adjustment(s) "
            f"({'; '.join(d['what'] for d in fit.decisions) or 'none allowed'}), more than the {vram_gb:g} GB card",
            _where(recipe, ("hardware", "vram_gb")), "hardware.vram_gb",
            "use a quantized base (gptq-int4, bnb-4bit), a shorter training.seq_len, fewer capabilities per stage"
            + (", gradient_checkpointing: auto" if policy == "off" else "") + ", or a larger card"
            + (f" (with {layout.strategy}, every process holds the whole model: more processes do not lower it)"
               if layout.world_size > 1 and not layout.split.parameters else ""),
        ))
        return None
    global_batch = fit.shape.micro_batch * fit.shape.grad_accum * layout.world_size
    steps = int(spec.get("max_steps") or 0)
    one_process = estimate(modules, fit.shape, precision)
    spread = [d for d in (batch_decision(layout, fit.shape.micro_batch, fit.shape.grad_accum),
                          memory_decision(layout, one_process, fit.estimate)) if d]
    varlen = (recipe.data.get("base_model") or {}).get("attn_implementation") in VARLEN_ATTENTION
    packing, packing_decisions = _packing(training.get("packing", True), capabilities, fit.shape, measure_lengths, varlen)
    return StagePlan(
        name=spec["name"],
        capabilities=capabilities,
        max_steps=steps or None,
        lr=float(spec.get("lr") or training.get("lr", 2e-4)),
        train=train,
        modules=modules,
        fit=fit,
        mixture=stage_mixture(recipe.data, capabilities, steps * global_batch),
        decisions=scope + fit.decisions + spread + packing_decisions,
        packing=packing,
    )


def _packing(setting: bool | str, capabilities: list[str], shape: Shape,
             measure_lengths: MeasureLengths | None, varlen: bool) -> tuple[bool, list[dict[str, str]]]:
    """`training.packing` for a stage: as written, or for `auto` decided from its measured lengths (plan/packing.py)."""
    if setting != "auto":
        return bool(setting), []
    lengths = measure_lengths(capabilities) if measure_lengths is not None else None
    kept = [length for length in lengths or [] if length <= shape.seq_len]
    if not kept:
        why = ("the lengths are measured when a run is prepared (`omni-run plan` and `omni-run RECIPE` measure them)"
               if measure_lengths is None else
               "the stage's samples have media (their tokens are known only after decoding), or none fits seq_len")
        return True, [{"what": "packing on (training.packing: auto, lengths not measured)", "why": why}]
    choice = decide_packing(kept, shape.seq_len, shape.micro_batch, varlen)
    return choice.pack, [choice.decision(shape.seq_len)]


def _gradient_problems(spec: dict[str, Any], train: list[str], sources: dict[str, str], recipe: Any) -> list[Diagnostic]:
    """Every group a stage trains must get a gradient from its data, and every sample must reach a trained
    group: otherwise a step (or a micro-batch of only such samples) has a loss with no gradient, and
    backward stops the run ("element 0 of tensors does not require grad")."""
    name, capabilities = spec["name"], spec["capabilities"]
    unfed = [
        (f"stage {name!r} trains {group}, but none of its capabilities ({', '.join(capabilities)}) feeds it, so it would get no gradient",
         f"remove {group} from train, or add to the stage {_feeders(group)}")
        for group in train if not any(feeds(c, group, sources, recipe.data) for c in capabilities)
    ]
    unreaching = [
        (f"stage {name!r} trains only {', '.join(train)}, which samples of {capability!r} never reach: a micro-batch of them would have no gradient",
         f"add thinker to train, or train {capability!r} in a stage of its own")
        for capability in capabilities if not any(feeds(capability, group, sources, recipe.data) for group in train)
    ]
    where = _where(recipe, ("stages", spec["index"], "train"))
    return [error(message, where, f"stages[{spec['index']}].train", hint) for message, hint in unfed + unreaching]


def _feeders(group: str) -> str:
    """The data that would feed a tower group, for hints."""
    if group == "thinker":
        return "any capability"
    if group in GENERATION_OUTPUTS:
        outputs = set(GENERATION_OUTPUTS[group])
        return f"a capability that generates {' or '.join(sorted(outputs))} ({', '.join(c.name for c in CAPABILITIES.values() if c.requires & outputs)})"
    inputs = set(tower_inputs(group))
    names = [c.name for c in CAPABILITIES.values() if c.requires & inputs and c.name not in UNTRAINED_CAPABILITIES]
    text = f"a capability with {' or '.join(sorted(inputs))} ({', '.join(names)})"
    if "audio_in" in inputs:
        text += ", or video-understanding with `use_audio_in_video: true` on its data sets"
    return text


def _expert_decisions(models: dict[str, PlannedModel], training: dict[str, Any], train: list[str]) -> list[dict[str, str]]:
    """How a mixture-of-experts language model trains: every expert is resident, and LoRA reaches the
    experts only when the recipe asks (`training.lora.target_experts`)."""
    lm = models["base_model"].detection.components.get("thinker") or {}
    experts = lm.get("experts")
    if not experts or "thinker" not in train:
        return []
    resident = (f"all {experts['count']} experts of {experts['layers']} layers are resident in the weights; "
                f"activations are kept for the {experts['per_token']} routed per token")
    if training.get("method", "lora") == "full":
        return [{"what": "every expert trains in full", "why": resident}]
    if (training.get("lora") or {}).get("target_experts"):
        return [{"what": "LoRA on attention and on every expert (training.lora.target_experts)",
                 "why": resident + "; each layer's merged expert weights are held for backward (counted in activations)"}]
    return [{"what": "LoRA on attention only: the experts stay frozen",
             "why": resident + "; set training.lora.target_experts: true to adapt them too"}]


def _asr_decisions(models: dict[str, PlannedModel]) -> list[dict[str, str]]:
    """Where encoders.asr runs: in `omni-run data prepare`, so training neither loads nor counts it."""
    if ASR_SLOT not in models:
        return []
    return [{
        "what": "encoders.asr transcribes in `omni-run data prepare`, not in the training forward",
        "why": "its transcripts fill speech-transcript records without text from the cache beside the data; "
               "the recogniser is not loaded during training, so the memory estimate leaves it out",
    }]


def _scope_decisions(capabilities: list[str]) -> list[dict[str, str]]:
    """What the stage leaves out of its capabilities because the trainer does not train it (support.py)."""
    decisions = []
    for output, why in UNTRAINED_OUTPUTS.items():
        asking = [c for c in capabilities if c in CAPABILITIES and output in CAPABILITIES[c].requires]
        if asking:
            decisions.append({"what": f"{output} not trained ({', '.join(asking)})", "why": why})
    return decisions
