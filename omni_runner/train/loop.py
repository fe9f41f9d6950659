"""The training loop: setup → train (stage by stage) → final output → cleanup, top to bottom.

Run in the trainer child (`python -m omni_runner.train RUN_DIR [--resume]`) from the run folder the
parent prepared (`recipe.yaml` resolved, `plan.json`). Everything it decides comes from those two
files, so a restarted trainer behaves exactly like the first one. The loop consults the controller
at every optimizer-step boundary (pause, cooldown, checkpoint, stop); it hides nothing behind
callbacks.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from omni_runner.capabilities import reads_media
from omni_runner.control.across_ranks import SharedBoundary
from omni_runner.control.controller import Controller
from omni_runner.data.conversation import DataError
from omni_runner.data.generation import GenerationSamples, LatentCache, generated_kinds
from omni_runner.data.packing import collate_packed, collate_padded, collate_varlen
from omni_runner.data.sources import build_sources
from omni_runner.data.stream import (
    MicroBatches,
    SampleStream,
    mixer_for,
    resolve_num_workers,
)
from omni_runner.models.export import save_final
from omni_runner.models.generation import (
    TargetLatents,
    query_states,
    step_generator,
    target_specs,
)
from omni_runner.models.load import (
    LORA_METHODS,
    TOWER_INPUTS,
    ModelLoadError,
    load_for_training,
    resolve_device,
    resolve_model_dir,
    set_activation_checkpointing,
    set_trainable_groups,
)
from omni_runner.plain_yaml import read_plain_yaml
from omni_runner.plan.modules import TOWER_MODULES
from omni_runner.run.batch_shape import (
    BatchShapeError,
    oom_suggestion,
    read_batch_shapes,
    with_batch_shapes,
)
from omni_runner.run.events import EventLog, RankEventLog
from omni_runner.run.exit_codes import TrainerExit
from omni_runner.run.rundir import RunDir
from omni_runner.run.status import RunStatus
from omni_runner.tracking import TrackerError, Trackers, open_trackers
from omni_runner.train import checkpoint as ckpt
from omni_runner.train import sharding, zero
from omni_runner.train.fault_injection import raise_simulated_oom, simulated_nan_factor
from omni_runner.train.losses import (
    ForwardWithTokenLosses,
    capability_loss_weights,
    capability_sums,
    count_targets,
    shifted_targets,
)
from omni_runner.train.optimizer import make_optimizer
from omni_runner.train.precision import resolve_precision
from omni_runner.train.ranks import Ranks
from omni_runner.train.schedule import lr_multiplier
from omni_runner.train.talker_realign import (
    RunSpeech,
    is_realign_stage,
)


class NonFiniteLossAbort(RuntimeError):
    """Too many optimizer steps in a row had a NaN/Inf loss or gradient norm, and no rollback helps."""


@dataclass
class Progress:
    """Counters that checkpoints carry and resume restores."""

    step: int = 0  # optimizer steps completed, over all stages
    stage: int = 0
    stage_step: int = 0
    tokens: int = 0
    samples: int = 0
    skipped_steps: int = 0  # over the whole run
    skipped_in_a_row: int = 0  # the current streak; a finite step resets it
    rollbacks: int = 0  # training.nan_policy rollbacks so far
    lr_scale: float = 1.0  # the schedule's multiplier after those rollbacks
    data: dict[str, Any] = field(default_factory=dict)  # MicroBatches.state_dict(), taken when checkpointing


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _usable_cores() -> int:
    """The CPU cores this process may run on (its affinity where the platform has one, as under taskset or
    a SLURM allocation)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class Trainer:
    """One run's trainer: holds the model, data, optimizer and the controller between steps."""

    def __init__(self, run: RunDir, resume: bool, sole: bool = False) -> None:
        self.run = run
        self.sole = sole  # the process trains this run alone (the trainer child): see load_for_training
        self.recipe = read_plain_yaml(run.recipe)
        self.plan = json.loads(run.plan.read_text())
        self.stages: list[dict[str, Any]] = self.plan["stages"]
        self.total_steps = sum(int(stage["max_steps"]) for stage in self.stages)
        self.resume = resume
        self.parent_pid = os.getppid()  # the supervisor: when it dies we are re-parented and told to stop
        # A built-in base model is built (once, under a file lock) before the process group exists: with
        # a group up, transformers writes a model's weights from rank 0 only, and any rank may build it.
        resolve_model_dir(self.recipe["base_model"]["path"], run.path)
        # Rank 0 reports the run and owns its controller; the other ranks log their errors and follow.
        self.ranks = Ranks.join(cpu=self.recipe["hardware"]["device"] == "cpu" or not torch.cuda.is_available(),
                                strategy=self.recipe["distributed"]["strategy"])
        identity = self.ranks.identity() if self.ranks.distributed else {}
        self.events = EventLog(run.events) if self.ranks.is_main else RankEventLog(run.events, identity)
        status_dir = run.path if self.ranks.is_main else run.path / "ranks" / f"rank-{self.ranks.rank}"
        status_dir.mkdir(parents=True, exist_ok=True)
        self.status = RunStatus(status_dir, name=self.recipe["name"], state="starting", reason="loading",
                                total_steps=self.total_steps, **{"pid": os.getpid(), **identity})
        self.controller: Controller | None = None
        self.progress = Progress()
        # Every weight any stage so far has trained: checkpoints carry them all, so a resume in a
        # later stage does not reload an earlier stage's work from the base model.
        self.trained_weights: set[str] = set()
        self.zero: zero.ZeroEngine | None = None  # DeepSpeed's engine, under a deepspeed-zero strategy
        self.batches: MicroBatches | None = None
        self.trackers: Trackers | None = None

    # ------------------------------------------------------------------ setup

    def setup(self) -> None:
        training = self.recipe["training"]
        self.stages = with_batch_shapes(self.stages, read_batch_shapes(self.run.path))  # auto_micro_batch
        torch.manual_seed(int(training["seed"]))
        self.device = self.ranks.device(resolve_device(self.recipe["hardware"]["device"]))
        self.precision = resolve_precision(training["precision"], self.device)
        if self.precision.note:
            self.events.emit("warning", 0, message=self.precision.note, source="precision")
        self.num_workers = resolve_num_workers(training["num_workers"], self.device.type, _usable_cores(),
                                               self.ranks.world_size // self.ranks.num_machines)
        if (self.ranks.sharded or self.ranks.zero_stage) and self.precision.name == "fp16":
            raise ModelLoadError(f"this GPU has no bf16, and loss scaling of split gradients ({self.ranks.strategy}) "
                                 "is not wired: use distributed.strategy ddp on it")
        first = self.stages[0]
        self.loaded = load_for_training(
            self.recipe, self.run.path, self.device,
            train_groups=first.get("train") or None,
            gradient_checkpointing=bool(first.get("gradient_checkpointing")), sole=self.sole,
        )
        self.model = self.loaded.model
        self.pad_id = self.loaded.tokenizer.pad_token_id
        self.sources = build_sources(self.recipe, self.run.path)
        self.loss_weights = capability_loss_weights(self.recipe)
        self.latents = TargetLatents(LatentCache.default())
        resumed_from = self._find_checkpoint() if self.resume else None
        state = ckpt.load_checkpoint(resumed_from, map_location=self.device) if resumed_from else None
        share = ckpt.rank_share(state, self.ranks.rank, self.ranks.world_size) if state is not None else None
        if state is not None:
            self.progress = Progress(**{**state.trainer_state["progress"], "data": share.data})
            if share.note:
                self._warn_checkpoint(share.note)
        # Before any step: the model is still the original one that speech targets come from.
        self.speech = RunSpeech.for_run(self.loaded, self.recipe, self.run.path, self.stages, pristine=state is None,
                                        ranks=self.ranks)
        self._setup_stage(self.progress.stage, state)
        if share is not None and share.rng is not None:
            ckpt.restore_rng_state(share.rng)  # last: building the stage must not shift the generators
        # Before the controller starts its telemetry thread, so trackers see every event from here on.
        self.trackers = open_trackers(self.recipe["output"].get("report_to") or [] if self.ranks.is_main else [],
                                      self.run.path, self.run.path.name, self.recipe,
                                      resume_step=self.progress.step if self.resume else None)
        self.events.listen(self.trackers.record)
        machine = {"host": self.ranks.host, "machine_rank": 0} if self.ranks.num_machines > 1 else None
        if self.ranks.is_main:
            self.controller = Controller(self.run.path, self.recipe["controller"], self.events, self.status,
                                         start_step=self.progress.step, machine=machine)
        telemetry_s = float((self.recipe["controller"].get("telemetry") or {}).get("interval_s", 2))
        self.boundary = SharedBoundary(self.ranks, self.controller, telemetry_s)
        ranks = {}
        if self.ranks.distributed:
            ranks = {"world_size": self.ranks.world_size, "strategy": self.ranks.strategy,
                     "ranks": self.ranks.gather(self.ranks.identity())}
            self.status.update(**ranks)
        self.events.emit("run_start", self.progress.step, name=self.recipe["name"], total_steps=self.total_steps,
                         attempt=(self.status.snapshot().get("restarts") or 0) + 1,
                         resumed_from=str(resumed_from) if resumed_from else None, pid=os.getpid(),
                         micro_batch=int(self.stages[self.progress.stage]["micro_batch"]),
                         grad_accum=int(self.stages[self.progress.stage]["grad_accum"]), data_workers=self.num_workers,
                         **ranks)
        _log(f"model {self.loaded.model_dir} on {self.device} ({self.precision.name}), "
             f"{self.loaded.parameter_counts()['trainable']:,} trainable parameters, "
             f"{self.total_steps} steps, samples prepared "
             + (f"by {self.num_workers} worker processes" if self.num_workers else "on the training thread")
             + (f", resuming from {resumed_from}" if resumed_from else ""))

    def _find_checkpoint(self) -> Path | None:
        found = ckpt.find_resumable(self.run.path, self._warn_checkpoint)
        if found is None:
            self._warn_checkpoint("no valid checkpoint to resume from: starting from step 0")
        return found

    def _warn_checkpoint(self, message: str) -> None:
        self.events.emit("warning", self.progress.step, message=message, source="checkpoint")
        _log(message)

    def _setup_stage(self, index: int, state: ckpt.CheckpointContents | None = None) -> None:
        """Build what changes between stages: trainable groups, data mixture, optimizer, schedule.

        The scheduler can only be built after the optimizer, and both only after the groups are
        set, because they hold the trainable parameters.
        """
        stage = self.stages[index]
        generation = self._use_decoders(stage)
        if stage.get("train"):
            set_trainable_groups(self.loaded, stage["train"])
        set_activation_checkpointing(self.loaded, bool(stage.get("gradient_checkpointing")))
        # Under DeepSpeed, a stage that trains only parts beside the model (the talker realign) steps them as
        # under DDP, without an engine: ZeRO-2's weights are whole, and the plan lets ZeRO-3 run such a stage
        # only before any engine has split them.
        engine = bool(self.ranks.zero_stage) and any(p.requires_grad for p in self.model.parameters())
        self.trained_weights |= {n for n, p in self.loaded.named_parameters() if p.requires_grad}
        if self.ranks.sharded:  # before the optimizer is built, which must hold this rank's shards
            towers_train = any(group in TOWER_MODULES for stage in self.stages for group in stage.get("train") or ())
            sharding.shard(self.model, self.device, self.ranks.world_size, self.loaded.towers, towers_train)
        if self.batches is not None:
            self.batches.stream.close()
        # A stage whose capabilities read no media gets the processor only if a record brings some.
        processor = self.loaded.processor if reads_media(stage["capabilities"]) else None
        stream = SampleStream(self.sources, mixer_for(self.recipe, self.sources, stage["capabilities"]),
                              self.loaded.tokenizer, int(stage["seq_len"]), processor=processor,
                              thinker=self.loaded.thinker, num_workers=self.num_workers,
                              external=self.loaded.external_features(), generation=generation,
                              shard=(self.ranks.rank, self.ranks.world_size),
                              load_processor=lambda: self.loaded.processor)
        self.batches = MicroBatches(stream, int(stage["micro_batch"]), int(stage["seq_len"]),
                                    bool(stage.get("packing", self.recipe["training"]["packing"])))  # the plan decides `auto`
        self.optimizer = make_optimizer((p for _, p in self.loaded.named_parameters()), lr=float(stage["lr"]),
                                        weight_decay=float(self.recipe["training"]["weight_decay"]),
                                        device_type=self.device.type)
        warmup, schedule, steps = int(self.recipe["training"]["warmup_steps"]), self.recipe["training"]["lr_scheduler"], int(stage["max_steps"])
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda s: self.progress.lr_scale * lr_multiplier(s, total_steps=steps, warmup_steps=warmup, schedule=schedule))
        self.scaler = self.precision.grad_scaler()
        if state is not None:
            self.trained_weights |= set(state.weights)
            weights, optimizer = state.weights, state.optimizer
            if self.ranks.sharded:
                weights, optimizer = sharding.split(weights, optimizer, dict(self.loaded.named_parameters()),
                                                    self._optimized())
            if engine:  # the model's weights now; the optimizer's go into the engine's partitions
                loading = [p for n, p in self.loaded.named_parameters() if n in weights]  # gathered at once under ZeRO-3
                with zero.whole(loading, zero.import_deepspeed(self.device.type == "cpu")):
                    self._load_weights(weights)
            else:
                self._load_weights(weights)
                self.optimizer.load_state_dict(optimizer)
            self.scheduler.load_state_dict(state.scheduler)
            if state.scaler:
                self.scaler.load_state_dict(state.scaler)
            self.batches.load_state_dict(self.progress.data)
        # Wrapped last, once the stage's trainable weights are set and loaded: under several processes
        # DistributedDataParallel (or DeepSpeed's engine) averages the gradients of exactly those.
        self.forward = self.ranks.wrap(ForwardWithTokenLosses(self.model, self.loaded.thinker))
        if self.zero is not None:  # its hooks off the model before another engine, or none, takes it
            self.zero.close()
            self.zero = None
        if engine:
            self.forward = self.zero = self._zero_engine(self.forward, stage, state)

    def _zero_engine(self, module: torch.nn.Module, stage: dict[str, Any],
                     state: ckpt.CheckpointContents | None) -> zero.ZeroEngine:
        """DeepSpeed's engine over `module` for `stage`, with the checkpoint's trained weights and AdamW state
        in its partitions."""
        config = zero.engine_config(self.ranks.zero_stage, micro_batch=int(stage["micro_batch"]),
                                    grad_accum=int(stage["grad_accum"]),
                                    max_grad_norm=float(self.recipe["training"]["max_grad_norm"]),
                                    bf16=self.loaded.dtype == torch.bfloat16)
        engine = zero.ZeroEngine(module, self.optimizer, config, cpu=self.device.type == "cpu", towers=self.loaded.towers)
        if state is not None:
            engine.load(state.weights, state.optimizer, dict(self.loaded.named_parameters()))
        return engine

    def _use_decoders(self, stage: dict[str, Any]) -> GenerationSamples | None:
        """Load the decoders the stage's generation capabilities need (and drop the others), and
        describe their targets to the data workers at the plan's sizes."""
        heads = self.loaded.generation
        if heads is None:
            return None
        kinds = generated_kinds(stage["capabilities"]) & set(heads.kinds)
        heads.use(kinds, self.loaded.dtype, bool(stage.get("gradient_checkpointing")))
        if not kinds:
            return None
        specs = target_specs(heads, kinds, stage.get("generation") or {})
        return GenerationSamples(specs, LatentCache.default(), self.pad_id)

    # ------------------------------------------------------------------ train

    def train(self) -> str:
        """Run every remaining stage; return "finished" or "stopped"."""
        self.boundary.start()
        started = time.monotonic()
        first_step = self.progress.step
        if not self.boundary.at_step_boundary(self.progress.step, self.save_checkpoint):
            return "stopped"
        while self.progress.stage < len(self.stages):
            stage = self.stages[self.progress.stage]
            if self.progress.stage_step >= int(stage["max_steps"]):
                self.progress.stage += 1
                self.progress.stage_step = 0
                if self.progress.stage < len(self.stages):
                    self._setup_stage(self.progress.stage)
                continue
            step_started = time.monotonic()
            metrics = self.train_step(stage)
            if self.progress.skipped_in_a_row >= int(self.recipe["training"]["nan_policy"]["after"]):
                self.after_non_finite_streak()  # back to a checkpoint's step, or NonFiniteLossAbort
                continue
            self.progress.step += 1
            self.progress.stage_step += 1
            self.report_step(metrics, time.monotonic() - step_started, started, first_step)
            # A split model's forward needs every rank, so then all evaluate in step (rank 0 alone reports);
            # otherwise rank 0 evaluates and the others wait for it at the boundary.
            if self._periodic_eval_due() and (self.ranks.is_main or self.ranks.sharded):
                self.evaluate(self.run.eval / f"step-{self.progress.step}")
            if not self.boundary.at_step_boundary(self.progress.step, self.save_checkpoint):
                return "stopped"
        return "finished"

    def train_step(self, stage: dict[str, Any]) -> dict[str, Any]:
        """One optimizer step over `grad_accum` micro-batches, token-weighted across all of them."""
        if is_realign_stage(stage):
            return self.realign_step(stage)
        raise_simulated_oom(int(stage["micro_batch"]))  # test-only, off unless its variable is set
        waiting = time.monotonic()
        micro_batches = [self._collate(next(self.batches)) for _ in range(int(stage["grad_accum"]))]
        data_wait_s = time.monotonic() - waiting  # preparing samples the workers had not finished, and collating
        capabilities = sorted(stage["capabilities"])  # one order on every rank, for the sums over ranks
        # Every target token of the step counts once, on whichever rank it is: the normaliser is the
        # step's total, and DistributedDataParallel averages gradients, so each rank's loss is multiplied
        # by the world size to make that average the sum.
        totals = self.ranks.sum(torch.tensor([
            sum(count_targets(b["labels"]) for b in micro_batches),
            sum(len(part["targets"]) for b in micro_batches for part in b.get("generation", {}).values()),
            *(sum(any(key in b for key in keys) for b in micro_batches) for keys in TOWER_INPUTS),
        ], dtype=torch.float64))
        target_tokens, generated = int(totals[0]), int(totals[1])
        towers_fed = [bool(count) for count in totals[2:]]
        lm_weights = torch.tensor([self.loss_weights[c]["lm"] for c in capabilities], dtype=torch.float64)
        sums = torch.zeros(len(capabilities), dtype=torch.float64)
        counts = torch.zeros(len(capabilities), dtype=torch.float64)
        denoising: dict[str, list[float]] = {}
        input_tokens = 0
        samples = sum(len(row) for batch in micro_batches for row in batch["rows"])
        for micro, batch in enumerate(micro_batches):
            input_tokens += sum(len(sample) for row in batch["rows"] for sample in row)
            if self.ranks.sharded:  # external tokens and generation queries are embedded with the root unit's table
                self.model.unshard()
            inputs = self.loaded.forward_inputs(batch)
            targets, token_caps = shifted_targets(batch["labels"].to(self.device), batch["token_capability"].to(self.device))
            last = micro == len(micro_batches) - 1  # gradients are averaged over the ranks after the last one
            with self._gradients_kept_local(last):
                with self.precision.autocast():
                    hidden, losses = self.forward(targets, **inputs)
                    remap = torch.tensor([capabilities.index(c) for c in batch["capabilities"]] or [0], device=self.device)
                    token_caps = remap[token_caps.clamp(min=0)]
                    loss = (losses * lm_weights.to(self.device, losses.dtype)[token_caps]).sum() / max(1, target_tokens)
                    if "generation" in batch:
                        loss = loss + self._denoising_loss(batch["generation"], hidden, generated, micro, denoising)
                if loss.requires_grad:  # a micro-batch whose only loss reads frozen weights adds no gradient
                    poison = simulated_nan_factor(self.progress.step + 1, self.ranks.rank)  # test-only, 1.0 unless set
                    self._backward(loss * (self.ranks.world_size * poison))
            batch_sums, batch_counts = capability_sums(losses, targets, token_caps, len(capabilities))
            sums += batch_sums
            counts += batch_counts
        n = len(capabilities)
        denoised = torch.tensor([sum(denoising.get(c, ())) for c in capabilities], dtype=torch.float64)
        denoised_counts = torch.tensor([len(denoising.get(c, ())) for c in capabilities], dtype=torch.float64)
        totals = self.ranks.sum(torch.cat([sums, counts, denoised, denoised_counts,
                                           torch.tensor([input_tokens, samples], dtype=torch.float64)]))
        sums, counts, denoised, denoised_counts = totals[:n], totals[n:2 * n], totals[2 * n:3 * n], totals[3 * n:4 * n]
        input_tokens, samples = int(totals[4 * n]), int(totals[4 * n + 1])
        loss_value = float((sums * lm_weights).sum() / counts.sum().clamp(min=1))
        loss_value += sum(self.loss_weights[c]["denoising"] * float(d) for c, d in zip(capabilities, denoised)) / max(1, generated)
        self._forget_unfed_towers(towers_fed)
        grad_norm, lr = self._apply_gradients(loss_value)
        self.progress.tokens += input_tokens
        self.progress.samples += samples
        return {
            "loss": loss_value, "lr": lr, "grad_norm": grad_norm, "tokens": input_tokens, "data_wait_s": data_wait_s,
            "samples": samples,
            "capability_losses": {c: float(s / n) for c, s, n in zip(capabilities, sums, counts) if n > 0},
            "denoising_losses": {c: float(d / k) for c, d, k in zip(capabilities, denoised, denoised_counts) if k > 0},
        }

    def _backward(self, loss: torch.Tensor) -> None:
        if self.zero is not None:
            self.zero.backward(loss)
        else:
            self.scaler.scale(loss).backward()

    def _gradients_kept_local(self, last: bool) -> contextlib.AbstractContextManager:
        """DistributedDataParallel's `no_sync` for all but a step's last micro-batch: averaging the
        gradients once per optimizer step, not once per micro-batch, gives the same result for less traffic.
        DeepSpeed's ZeRO reduces each micro-batch's gradients into its partitions as they come, and a stage
        that trains only parts beside the model has nothing wrapped (they are averaged at the step's end)."""
        if last or not self.ranks.distributed or self.zero is not None:
            return contextlib.nullcontext()
        if self.ranks.sharded:
            return sharding.gradients_kept_local(self.model)
        wrapped = isinstance(self.forward, torch.nn.parallel.DistributedDataParallel)
        return self.forward.no_sync() if wrapped else contextlib.nullcontext()

    def _denoising_loss(self, parts: dict[str, dict[str, Any]], hidden: torch.Tensor, generated: int, micro: int,
                        collected: dict[str, list[float]]) -> torch.Tensor:
        """The decoders' own losses for the micro-batch's generation samples, weighted per capability
        and averaged over the step's generation samples; per-sample values go into `collected`."""
        heads = self.loaded.generation
        # Numbered across the ranks as one process numbers its micro-batches (rank r's m-th holds the draws
        # one process's (m * world_size + r)-th would, with one sample a micro-batch), so no two ranks draw
        # the same noise.
        generator = step_generator(int(self.recipe["training"]["seed"]), self.progress.step,
                                   micro * self.ranks.world_size + self.ranks.rank)
        total = torch.zeros((), device=self.device)
        for kind in sorted(parts):
            part = parts[kind]
            states = query_states(hidden, part["index"].to(self.device), part["targets"][0].queries)
            conditioning, pooled = heads.connectors[kind].condition(states)
            targets = self.latents.stack(heads.decoders[kind], part["targets"])
            per_sample = heads.decoders[kind].loss(conditioning, pooled, targets, generator)
            weights = torch.tensor([self.loss_weights[c]["denoising"] for c in part["capabilities"]], device=self.device)
            total = total + (per_sample * weights).sum() / generated
            for capability, value in zip(part["capabilities"], per_sample.detach().tolist(), strict=True):
                collected.setdefault(capability, []).append(value)
        return total

    def _forget_unfed_towers(self, fed: list[bool]) -> None:
        """Under FSDP2 a tower in the root unit hands in a zero gradient on a rank whose batch lacked its
        medium (`sharding.shard`). Where no rank's batch held it this step, those zeros are dropped, so that
        AdamW leaves the tower's weights and moments alone, as in one process and under DDP: stepped on a
        zero gradient, its moments would decay and its bias correction advance, shrinking the next real
        update."""
        if not self.ranks.sharded:
            return
        for tower, was_fed in zip(self.loaded.towers, fed, strict=True):
            if not was_fed:
                for parameter in tower.parameters():
                    parameter.grad = None

    def realign_step(self, stage: dict[str, Any]) -> dict[str, Any]:
        """One optimizer step of a talker_realign stage (train/talker_realign.py): the talker adapter
        learns the original model's codec tokens while reading the tuned, frozen thinker."""
        # The talker's conditioning reads the thinker's inner model, not its forward, so a split thinker's
        # root unit (embeddings, final norm) is gathered for it.
        with sharding.root_gathered(self.model):
            loss_value, codec_tokens, prompts = self.speech.realign[self.progress.stage].backward(
                self.loaded, self.progress.stage_step, int(stage["micro_batch"]) * int(stage["grad_accum"]),
                self.scaler.scale, self.precision.autocast, self.ranks)
        grad_norm, lr = self._apply_gradients(loss_value)
        self.progress.samples += prompts
        return {"loss": loss_value, "lr": lr, "grad_norm": grad_norm, "tokens": codec_tokens, "data_wait_s": 0.0,
                "samples": prompts, "capability_losses": {}, "denoising_losses": {}}

    def _apply_gradients(self, loss_value: float) -> tuple[float, float]:
        """Clip and apply the accumulated gradients (or skip a non-finite step); step the schedule.
        Returns the gradient norm and the learning rate the step used."""
        if self.zero is not None:
            return self._apply_zero_gradients(loss_value)
        if self.ranks.distributed:
            self.ranks.average_gradients(self._beside_model())
        self.scaler.unscale_(self.optimizer)
        max_norm = float(self.recipe["training"]["max_grad_norm"])
        grad_norm = (sharding.clip_gradients(self._optimized(), max_norm) if self.ranks.sharded
                     else float(torch.nn.utils.clip_grad_norm_(self._optimized(), max_norm)))
        if not (math.isfinite(loss_value) and math.isfinite(grad_norm)):
            self._skip_step(loss_value, grad_norm)
        else:
            self.progress.skipped_in_a_row = 0
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return grad_norm, self._step_schedule()

    def _apply_zero_gradients(self, loss_value: float) -> tuple[float, float]:
        """`_apply_gradients` under DeepSpeed: its engine clips, steps and zeroes the gradients, and skips a
        step whose gradient norm is not finite itself; the NaN guard counts that step as skipped."""
        grad_norm, applied = self.zero.step()
        if applied and math.isfinite(loss_value):
            self.progress.skipped_in_a_row = 0
        else:
            self._skip_step(loss_value, grad_norm)
        return grad_norm, self._step_schedule()

    def _step_schedule(self) -> float:
        """Advance the learning-rate schedule; returns the rate the step just taken used."""
        lr = self.scheduler.get_last_lr()[0]
        self.scheduler.step()
        return lr

    def _collate(self, rows: list[list[Any]]) -> dict[str, Any]:
        if self.batches.packing and self.loaded.varlen_attention:
            batch = collate_varlen(rows, self.pad_id, mrope=True)
        elif self.batches.packing:
            batch = collate_packed(rows, self.pad_id, mrope=True, dtype=self.loaded.dtype,
                                   sliding_window=self.loaded.sliding_window)
        else:
            batch = collate_padded([row[0] for row in rows], self.pad_id, mrope=True)
        batch["rows"] = rows
        return batch

    def _skip_step(self, loss: float, grad_norm: float) -> None:
        self.progress.skipped_steps += 1
        self.progress.skipped_in_a_row += 1
        policy = self.recipe["training"]["nan_policy"]
        message = (f"step {self.progress.step + 1} skipped: loss {loss}, grad norm {grad_norm} "
                   f"({self.progress.skipped_in_a_row} in a row; training.nan_policy acts ({policy['action']}) "
                   f"after {policy['after']})")
        self.events.emit("warning", self.progress.step, message=message, source="nan_guard")
        _log(message)

    # ------------------------------------------------------------------ NaN/Inf policy

    def after_non_finite_streak(self) -> None:
        """`training.nan_policy.after` steps in a row were skipped: roll back to the newest checkpoint
        from before them (same stage), or raise NonFiniteLossAbort saying what happened and what to try.

        Only a checkpoint from before the streak is a good one: one written during it holds weights
        that may be the cause. A rollback stays within the stage, because a checkpoint of an earlier
        stage lacks the weights later stages trained.
        """
        policy = self.recipe["training"]["nan_policy"]
        streak = self.progress.skipped_in_a_row
        before = self.progress.step + 1 - streak  # optimizer steps completed before the streak began
        steps = f"step {before + 1}" if streak == 1 else f"steps {before + 1}-{self.progress.step + 1}"
        what = (f"{streak} step{'s' if streak > 1 else ''} in a row ({steps}) had a non-finite loss or gradient "
                f"norm (training.nan_policy.after: {policy['after']})")
        found = ckpt.find_resumable(self.run.path, self._warn_checkpoint, at_most_step=before)
        state = ckpt.load_checkpoint(found, map_location=self.device) if found else None
        if state is not None and state.trainer_state["progress"]["stage"] != self.progress.stage:
            refusal = (f"the newest checkpoint from before them ({found.name}) is from an earlier stage, and a "
                       f"rollback stays within its stage")
            found = state = None
        elif found is None:
            refusal = f"there is no checkpoint from step {before} or before to roll back to"
        elif policy["action"] == "stop":
            refusal = f"training.nan_policy.action is stop; the last good checkpoint is {found}"
        elif self.progress.rollbacks >= int(policy["max_rollbacks"]):
            refusal = (f"it was rolled back {self.progress.rollbacks} of at most {policy['max_rollbacks']} times "
                       f"(training.nan_policy.max_rollbacks); the last good checkpoint is {found}")
        else:
            self._roll_back(found, state, policy, what)
            return
        advice = ("Try: lower training.lr or raise training.warmup_steps; look for bad records with "
                  "`omni-run data check`" + ("; set training.nan_policy.action: rollback to go back to the last good "
                                             "checkpoint with a lower learning rate automatically"
                                             if policy["action"] == "stop" else "")
                  + ("; `omni-run resume RUN` continues from the last good checkpoint" if found else "")
                  + ("; checkpoint more often (controller.checkpoint.every_steps)" if not found else "") + ".")
        raise NonFiniteLossAbort(f"{what}; {refusal}. {advice}")

    def _roll_back(self, path: Path, state: ckpt.CheckpointContents, policy: dict[str, Any], what: str) -> None:
        """Restore the checkpoint at `path` as a resume would (weights, optimizer, schedule, random state),
        keeping the run's rollback count and lowering the learning rate; save that state over the
        checkpoint so it survives a later resume.

        Data (`skip_data`, the default): the batches drawn since the checkpoint are not replayed. Those
        batches are exactly what produced the non-finite steps (and the few finite ones before them),
        and replaying them deterministically would most often produce the same NaNs when the data is
        the cause; PaLM likewise skipped the batches around each loss spike.
        """
        data_now = self.batches.state_dict()
        share = ckpt.rank_share(state, self.ranks.rank, self.ranks.world_size)  # every rank goes back together
        self.progress = Progress(**{
            **state.trainer_state["progress"],
            "data": share.data,
            "rollbacks": self.progress.rollbacks + 1,
            "lr_scale": self.progress.lr_scale * float(policy["lr_factor"]),
            "skipped_steps": self.progress.skipped_steps,
            **({"data": data_now} if policy["skip_data"] else {}),
        })
        abandoned = ckpt.discard_after(self.run.checkpoints, self.progress.step) if self.ranks.is_main else []
        self._setup_stage(self.progress.stage, state)
        self.scheduler.last_epoch -= 1  # recompute the restored step's learning rate at the new scale
        self.scheduler.step()
        ckpt.restore_rng_state(share.rng if share.rng is not None else state.rng)
        message = (f"{what}: rolled back to {path.name} (rollback {self.progress.rollbacks} of at most "
                   f"{policy['max_rollbacks']}), learning rate now x{self.progress.lr_scale:g}"
                   + (", continuing with the data after the skipped steps" if policy["skip_data"] else ", replaying its data")
                   + (f"; removed the later checkpoints {', '.join(p.name for p in abandoned)}" if abandoned else ""))
        self.events.emit("warning", self.progress.step, message=message, source="nan_policy", checkpoint=str(path),
                         rollbacks=self.progress.rollbacks, lr_scale=self.progress.lr_scale,
                         skipped_data=bool(policy["skip_data"]))
        _log(message)
        self.status.update(step=self.progress.step)
        self.boundary.rolled_back(self.progress.step, self.save_checkpoint)

    def report_step(self, metrics: dict[str, Any], step_s: float, started: float, first_step: int) -> None:
        elapsed = time.monotonic() - started
        done = self.progress.step - first_step
        eta = elapsed / done * (self.total_steps - self.progress.step) if done else None
        fields = {
            "loss": metrics["loss"], "lr": metrics["lr"], "grad_norm": metrics["grad_norm"],
            "tokens_per_s": metrics["tokens"] / step_s if step_s else None,
            "samples_per_s": metrics["samples"] / step_s if step_s else None,
            "capability_losses": metrics["capability_losses"],
            **({"denoising_losses": metrics["denoising_losses"]} if metrics.get("denoising_losses") else {}),
            "data_wait_s": round(metrics["data_wait_s"], 4), "step_s": round(step_s, 4),
            "epoch": self._epoch(), "elapsed_s": round(elapsed, 3), "eta_s": eta, "total_steps": self.total_steps,
        }
        if self.device.type == "cuda":
            fields["gpu_memory_peak_gib"] = round(torch.cuda.max_memory_allocated(self.device) / 2**30, 3)
        log_every = int(self.recipe["training"]["log_every"])
        if self.progress.step % log_every == 0 or self.progress.step == self.total_steps:
            self.events.emit("step", self.progress.step, **fields)
            _log(f"step {self.progress.step}/{self.total_steps} loss {metrics['loss']:.4f} lr {metrics['lr']:.2e}")
        self.status.update(step=self.progress.step, loss=metrics["loss"], eta_s=eta, epoch=fields["epoch"])

    def _data_report(self, other_ranks: list[dict[str, Any]]) -> dict[str, Any]:
        """The `data` event: the stream's counts over every rank's shard (`other_ranks`: the other ranks'
        data positions), and the latent cache's when the run generates."""
        report = self.batches.stream.report(other_ranks)
        if self.loaded.generation is not None:
            report["latent_cache"] = self.latents.counts()
        return report

    def _epoch(self) -> float:
        records = sum(len(source) for source in self.sources.values()) or 1
        return round(self.progress.samples / records, 3)

    def out_of_memory(self, exc: torch.OutOfMemoryError) -> str:
        """What ran out of memory, where, and the plan's advice (`oom_suggestion`, as the supervisor gives it)."""
        stage = self.stages[self.progress.stage]
        shape = f"micro_batch {stage['micro_batch']}, grad_accum {stage['grad_accum']}, seq_len {stage['seq_len']}"
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else "CUDA out of memory"
        return (f"out of GPU memory at step {self.progress.step + 1} in stage {stage.get('name', self.progress.stage)!r} "
                f"({shape}): {first_line}. {oom_suggestion({'stages': self.stages}, self.progress.stage)}")

    # ------------------------------------------------------------------ checkpoints

    def save_checkpoint(self, reason: str) -> Path | None:
        """Write everything exact resume needs (the controller decides when, and records it).

        Every rank calls it at the same boundary and hands in its own data position and random state,
        and, when the model is sharded, its shards; rank 0 writes the one checkpoint (whole weights and
        optimizer state, the same on every rank or gathered) and returns its folder, the others None.
        """
        self.progress.data = self.batches.state_dict()  # checkpoints fall on batch boundaries: exact
        shares = self.ranks.gather({"data": self.progress.data, "rng": ckpt.capture_rng_state()})
        weights, optimizer = self._gathered_weights(), self._gathered_optimizer()
        if not self.ranks.is_main:
            return None
        contents = ckpt.CheckpointContents(
            weights=weights,
            optimizer=optimizer,
            scheduler=self.scheduler.state_dict(),
            scaler=self.scaler.state_dict() if self.scaler.is_enabled() else None,
            rng=shares[0]["rng"],
            rank_rng=[share["rng"] for share in shares] if self.ranks.distributed else [],
            trainer_state={
                "progress": self.progress.__dict__, "reason": reason,
                **({"world_size": self.ranks.world_size, "rank_data": [share["data"] for share in shares]}
                   if self.ranks.distributed else {}),
                "recipe_sha256": _digest(self.run.recipe), "plan_sha256": _digest(self.run.plan),
                # What this checkpoint was trained under, so `omni-run resume` can name what changed since.
                "recipe": self.recipe, "plan": self.plan,
            },
        )
        saved = ckpt.save_checkpoint(self.run.checkpoints, self.progress.step, contents)
        keep = int(self.recipe["controller"]["checkpoint"]["keep_last"])
        for removed in ckpt.prune_checkpoints(self.run.checkpoints, keep, saved.path):
            _log(f"removed old checkpoint {removed.name} (keep_last {keep})")
        self.events.emit("data", self.progress.step, **self._data_report([share["data"] for share in shares[1:]]))
        _log(f"checkpoint {saved.path} ({reason})")
        return saved.path

    def _load_weights(self, weights: dict[str, torch.Tensor]) -> None:
        missing = self.loaded.load_weights(weights)
        if missing:
            raise ckpt.CheckpointError(f"checkpoint weights do not fit this model: {missing[:3]} …")

    def _optimized(self) -> list[torch.Tensor]:
        """The optimizer's parameters, in the order its state dict numbers them."""
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    def _beside_model(self) -> list[torch.Tensor]:
        """The trainable parameters outside the model DDP or FSDP wraps (`Ranks.average_gradients`)."""
        inside = {id(p) for p in self.model.parameters()}
        return [p for _, p in self.loaded.named_parameters() if p.requires_grad and id(p) not in inside]

    def _trained_weights(self) -> dict[str, torch.Tensor]:
        """What a checkpoint keeps: every weight a stage so far has trained, and the adapters."""
        return {n: p for n, p in self.loaded.named_parameters() if n in self.trained_weights or "lora_" in n}

    def _gathered_weights(self) -> dict[str, torch.Tensor]:
        """`_trained_weights` whole, as one process holds them, on rank 0 (empty on the others). Split over
        the ranks (fsdp, DeepSpeed) this is a collective: every rank calls it at the same boundary."""
        weights, keep = self._trained_weights(), self.ranks.is_main
        if self.zero is not None:
            return self.zero.gathered_weights(weights, keep)
        return sharding.gathered_weights(weights, keep) if self.ranks.sharded else weights

    def _gathered_optimizer(self) -> dict[str, Any]:
        """The optimizer's state dict as one process's AdamW writes it (see `_gathered_weights`)."""
        if self.zero is not None:
            return self.zero.gathered_optimizer(self.ranks.is_main)
        optimizer = self.optimizer.state_dict()
        return sharding.gathered_optimizer(optimizer, self.ranks.is_main) if self.ranks.sharded else optimizer

    # ------------------------------------------------------------------ final output

    def finish(self) -> None:
        """Rank 0 saves the final model and evaluates it; the other ranks hand in their data counts and end."""
        positions = self.ranks.gather(self.batches.state_dict())
        if self.ranks.sharded or self.zero is not None:
            self._unshard_on_rank_0()
        if not self.ranks.is_main:
            return
        output = self.recipe["output"]
        trained_modules = ({n: p for n, p in self.model.named_parameters() if n in self.trained_weights and "lora_" not in n}
                           if self.loaded.method in LORA_METHODS else None)
        save_final(self.loaded, self.run.final, merge=bool(output["merge"]), save_processor=bool(output["save_processor"]),
                   trained_modules=trained_modules)
        self.events.emit("data", self.progress.step, **self._data_report(positions[1:]))
        _log(f"final model in {self.run.final}")
        if self.recipe["eval"]["at_end"]:
            self.evaluate(self.run.eval)

    def _unshard_on_rank_0(self) -> None:
        """A whole model on rank 0 for `final/` and evaluation: every rank hands in its shards of the trained
        weights, and rank 0 loads them into the model built afresh from the base folder, as a resume would."""
        trained = self._gathered_weights()
        if not self.ranks.is_main:
            return
        self.loaded = self.model = self.forward = self.optimizer = self.zero = None  # free the shards first
        last = self.stages[-1]
        self.loaded = load_for_training(self.recipe, self.run.path, self.device, train_groups=last.get("train") or None)
        self.model = self.loaded.model
        self._use_decoders(last)  # the decoders the last stage trained adapters on
        self._load_weights(trained)
        _log("gathered the sharded model on rank 0")

    def _periodic_eval_due(self) -> bool:
        every = int(self.recipe["eval"]["every_steps"])
        return every > 0 and self.progress.step % every == 0 and self.progress.step < self.total_steps

    def evaluate(self, eval_dir: Path) -> None:
        """Score the model as it is now (results under `eval_dir`): each capability's held-out loss, then
        each data set's metric. A failing evaluation is reported but never costs the trained run, and the
        random generators are put back, so a run that evaluates trains exactly like one that does not.

        With a split model every rank evaluates the same records in step, since each forward gathers the
        units from all ranks (and generation runs until every rank is done, `synced_gpus`); the root unit
        stays gathered throughout, for the embeddings used outside the forward. Rank 0 alone writes and
        reports."""
        rng = ckpt.capture_rng_state()
        try:
            with sharding.root_gathered(self.model):
                self._evaluate_heldout(eval_dir)
                self._evaluate_datasets(eval_dir)
        finally:
            ckpt.restore_rng_state(rng)

    def _evaluate_heldout(self, eval_dir: Path) -> None:
        """`eval` events of suite `perplexity`, one per capability, and `eval_dir/perplexity.json`."""
        try:
            from omni_runner.eval.heldout import SUITE, heldout_losses

            losses = heldout_losses(self.loaded, self.recipe, self.run.path, int(self.recipe["eval"]["max_samples"]),
                                    self.precision.autocast)
        except Exception as exc:
            traceback.print_exc()
            self.events.emit("error", self.progress.step, message=f"held-out loss failed: {exc}", source="eval")
            return
        if not losses or not self.ranks.is_main:
            return
        eval_dir.mkdir(parents=True, exist_ok=True)
        (eval_dir / f"{SUITE}.json").write_text(json.dumps(losses, indent=2) + "\n")
        for capability, metrics in losses.items():
            self.events.emit("eval", self.progress.step, suite=SUITE, capability=capability, metrics=metrics)
            _log(f"held-out {capability}: {metrics}")

    def _evaluate_datasets(self, eval_dir: Path) -> None:
        try:
            from omni_runner.eval import evaluate

            results = evaluate(self.loaded, self.recipe, self.run.path, eval_dir=eval_dir if self.ranks.is_main else None,
                               consistency=self.speech.consistency)
        except Exception as exc:
            traceback.print_exc()
            self.events.emit("error", self.progress.step, message=f"evaluation failed: {exc}", source="eval")
            return
        if not self.ranks.is_main:
            return
        for dataset, result in results.items():
            metrics = {key: value for key, value in result.items() if key != "capability"}
            self.events.emit("eval", self.progress.step, dataset=dataset, capability=result.get("capability"), metrics=metrics)
            _log(f"eval {dataset}: {metrics}")


def run_trainer(run_dir: Path, resume: bool, sole: bool = False) -> int:
    """The child's whole life; returns its exit code (docs/internals.md). `sole`: nothing else runs in
    this process (`python -m omni_runner.train`), so what the run's model does not use is kept out of it."""
    run = RunDir(Path(run_dir))
    trainer = Trainer(run, resume, sole)
    controller: Controller | None = None
    ended = "failed"
    try:
        trainer.setup()
        controller = trainer.controller
        outcome = trainer.train()
        if outcome == "finished":
            trainer.finish()
        reason = "done" if outcome == "finished" else ("supervisor gone" if os.getppid() != trainer.parent_pid else "user")
        if controller is not None:
            controller.close(outcome, reason)
        else:
            trainer.status.update(state=outcome, reason=reason)
        trainer.events.emit("run_end", trainer.progress.step, state=outcome,
                            reason={"done": "done", "user": "stopped on request"}.get(reason, reason))
        ended = outcome
        return TrainerExit.OK
    except KeyboardInterrupt:
        return _fail(trainer, controller, "interrupted", "stopped at once by a second stop signal, without a checkpoint", TrainerExit.INTERRUPTED)
    except NonFiniteLossAbort as exc:
        return _fail(trainer, controller, "nan", str(exc), TrainerExit.NAN)
    except torch.OutOfMemoryError as exc:
        return _fail(trainer, controller, "oom", trainer.out_of_memory(exc), TrainerExit.OOM)
    except (DataError, ModelLoadError, ckpt.CheckpointError, TrackerError, BatchShapeError) as exc:
        return _fail(trainer, controller, "error", str(exc), TrainerExit.ERROR)
    except Exception as exc:  # anything else: keep the traceback in trainer.log, say it in the events
        traceback.print_exc()
        return _fail(trainer, controller, "error", f"{type(exc).__name__}: {exc}", TrainerExit.ERROR)
    finally:
        if trainer.trackers is not None:
            trainer.trackers.close(ended)
        trainer.events.close()


def _fail(trainer: Trainer, controller: Controller | None, reason: str, detail: str, code: int) -> int:
    print(f"error: {detail}", file=sys.stderr, flush=True)
    trainer.events.emit("error", trainer.progress.step, message=detail, source=reason)
    if controller is not None:
        controller.close("failed", reason, detail)
    else:
        trainer.status.update(state="failed", reason=reason)
    trainer.events.emit("run_end", trainer.progress.step, state="failed", reason=reason, detail=detail)
    return code
