"""DeepSpeed ZeRO (`distributed.strategy: deepspeed-zero2 | deepspeed-zero3`): DeepSpeed's engine under the loop.

ZeRO-2 splits gradients and the optimizer's state over the ranks and keeps the weights whole on each;
ZeRO-3 splits the weights too, gathering each module's for its forward and backward. Either way the
loop stays the one every strategy runs: it builds the AdamW and the schedule, and hands the optimizer to
DeepSpeed's engine (`ZeroEngine`), which keeps fp32 master weights and AdamW's moments in flat per-rank
partitions, clips by `training.max_grad_norm`, and skips a step whose gradients are not finite.

The engine is told that the caller owns gradient accumulation (`managed_gradient_accumulation: false`):
every micro-batch's backward is reduced into the partitions as it ends, and `step` is the optimizer step.
It is built afresh for every stage (a stage changes what trains) and on a rollback, over the same model.

Checkpoints stay consolidated, the files one process writes (train/sharding.py says why): DeepSpeed's
fragment API gathers each trained weight's fp32 master and its moments at a checkpoint, and sets them
back at a resume, so a ZeRO run resumes on any number of processes under any strategy, and `final/` is
written by the same code as always. Each gather is a collective: every rank calls these at the same
boundary, in the same order.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch

from omni_runner.models.load import ModelLoadError

ZERO_STAGES = {"deepspeed-zero2": 2, "deepspeed-zero3": 3}
ADAM_MOMENTS = ("exp_avg", "exp_avg_sq")
SHARED_MEMORY_ALL_REDUCE = "deepspeed_shm_comm"  # the name DeepSpeed's CPU builder of that op goes by


def import_deepspeed(cpu: bool) -> Any:
    """The `deepspeed` package, on its CPU accelerator when the run trains on the CPU (DeepSpeed picks
    CUDA whenever a GPU is visible, whatever device the recipe chose)."""
    if cpu:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    try:
        import deepspeed
    except ImportError as exc:
        raise ModelLoadError("distributed.strategy deepspeed-zero2/3 needs DeepSpeed, which is not installed: "
                             "pip install 'omni-runner[deepspeed]', or use strategy fsdp") from exc
    if cpu:
        # The CPU accelerator compiles a shared-memory all-reduce when its communication backend starts (a
        # minute, and a C++ compiler). Only DeepSpeed's inference all-reduce uses it, which training never
        # calls; marked unusable, the backend is plain gloo, as every other collective of the run.
        deepspeed.ops.__compatible_ops__[SHARED_MEMORY_ALL_REDUCE] = False
    return deepspeed


def engine_config(stage: int, *, micro_batch: int, grad_accum: int, max_grad_norm: float, bf16: bool) -> dict[str, Any]:
    """DeepSpeed's configuration for one stage of the recipe. The batch sizes only describe the step (the
    loop feeds the micro-batches); `bf16` keeps bf16 weights with fp32 masters, as the model was loaded."""
    return {
        "train_micro_batch_size_per_gpu": micro_batch,
        "gradient_accumulation_steps": grad_accum,
        "managed_gradient_accumulation": False,
        "gradient_clipping": max_grad_norm,
        "zero_optimization": {"stage": stage},
        "bf16": {"enabled": bf16, "check_grad_overflow": True},
        "zero_allow_untested_optimizer": True,  # torch's AdamW, built by the loop as for every strategy
        "steps_per_print": 2**62,
        "wall_clock_breakdown": False,
    }


class ZeroEngine:
    """DeepSpeed's engine over `module`, stepping the loop's `optimizer` as `config` says (`engine_config`).

    `towers` are frozen submodules of `module` that run only on the ranks whose batch holds their medium
    (the vision and audio towers). ZeRO-3 would split their weights and gather them for each forward, a
    collective the other ranks never join; so under ZeRO-3 they are hidden from it (`_hidden`) while the
    engine lives: whole on every rank and without its hooks, as under ZeRO-2. Hidden, they are also out of
    the order of modules ZeRO-3 records to prefetch by, which must be the same on every rank (it checks).
    """

    def __init__(self, module: torch.nn.Module, optimizer: torch.optim.AdamW, config: dict[str, Any], cpu: bool,
                 towers: Sequence[torch.nn.Module] = ()) -> None:
        self.deepspeed = import_deepspeed(cpu)
        self.towers_shown = _hidden(module, towers if config["zero_optimization"]["stage"] == 3 else ())
        # The loop's optimizer numbers its parameters as one process's state dict does, which consolidated
        # checkpoints keep. DeepSpeed swaps its groups' parameters for flat partitions and drops a group
        # with none (LoRA trains no vectors), so it steps an AdamW of its own over the same group dicts:
        # the loop's schedule still sets their learning rate, and its optimizer keeps every group.
        self.client = optimizer
        self.parameters = [p for group in optimizer.param_groups for p in group["params"]]
        self.group_template = optimizer.state_dict()["param_groups"]
        stepped = type(optimizer)([group for group in optimizer.param_groups if group["params"]],
                                  fused=optimizer.defaults.get("fused"))
        self.engine, self.optimizer, *_ = self.deepspeed.initialize(model=module, optimizer=stepped, config=config,
                                                                    dist_init_required=False)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.engine(*args, **kwargs)

    def backward(self, loss: torch.Tensor) -> None:
        """Backward of `loss` as given: the loop has already normalised it over the step's tokens."""
        self.engine.backward(loss, scale_wrt_gas=False)

    def step(self) -> tuple[float, bool]:
        """Clip and apply the step's gradients; returns their norm and whether the step was applied
        (DeepSpeed skips a step whose gradient norm is not finite, and reports it as inf)."""
        self.engine.step()
        norm = self.engine.get_global_grad_norm()
        return float(norm) if norm is not None else float("nan"), bool(self.engine.was_step_applied())

    def close(self) -> None:
        """Remove the engine's hooks from the model and put its towers back, before another engine is built over it."""
        self.engine.destroy()
        self.towers_shown()

    # ------------------------------------------------------------------ consolidated state

    def gathered_weights(self, weights: Mapping[str, torch.nn.Parameter], keep: bool) -> dict[str, torch.Tensor]:
        """Whole copies of `weights` on the CPU where `keep` (rank 0): trained ones from their fp32 masters,
        frozen ones (adapters of an earlier stage) from the model's own, gathered under ZeRO-3."""
        safe_get = self.deepspeed.utils.safe_get_full_fp32_param
        gathered = {}
        for name, parameter in weights.items():
            if parameter.requires_grad:
                value = safe_get(parameter)
            else:
                with whole([parameter], self.deepspeed, modified=False):
                    value = parameter.detach().clone()
            if keep:
                gathered[name] = value.detach().cpu()
        return gathered

    def gathered_optimizer(self, keep: bool) -> dict[str, Any]:
        """The optimizer's state dict as one process's AdamW writes it (parameters by index, whole moments
        on the CPU, the groups' current hyperparameters) where `keep`; its groups alone elsewhere."""
        safe_get = self.deepspeed.utils.safe_get_full_optimizer_state
        steps = self._steps()
        state = {}
        if steps is not None:  # before the first step AdamW has no state, as in one process
            self._link_moments()
            for index, parameter in enumerate(self.parameters):
                moments = {key: safe_get(parameter, key) for key in ADAM_MOMENTS}  # collectives: on every rank
                if keep:
                    state[index] = {"step": steps.clone(), **{key: value.detach().cpu() for key, value in moments.items()}}
        return {"state": state, "param_groups": self._groups()}

    def load(self, weights: Mapping[str, torch.Tensor], optimizer: dict[str, Any],
             parameters: Mapping[str, torch.nn.Parameter]) -> None:
        """Set a consolidated checkpoint's trained weights (fp32 masters) and AdamW state into the partitions.
        The model's own weights were loaded before the engine was built (`whole` under ZeRO-3)."""
        utils = self.deepspeed.utils
        for name, value in weights.items():
            parameter = parameters.get(name)
            if parameter is not None and parameter.requires_grad:
                utils.safe_set_full_fp32_param(parameter, value.to(self._device(), torch.float32))
        for group, saved in zip(self.client.param_groups, optimizer["param_groups"], strict=True):
            group.update({key: value for key, value in saved.items() if key != "params"})
        if not optimizer["state"]:
            return
        step = next(iter(optimizer["state"].values()))["step"]
        self._start_state(step)
        for index, entries in optimizer["state"].items():
            for key in ADAM_MOMENTS:
                utils.safe_set_full_optimizer_state(self.parameters[int(index)], entries[key].to(self._device()), key)

    def _steps(self) -> torch.Tensor | None:
        """AdamW's step count (one for all partitions: each takes every step), None before the first."""
        for entries in self.optimizer.optimizer.state.values():
            if "step" in entries:
                return torch.as_tensor(entries["step"]).detach().cpu().clone()
        return None

    def _start_state(self, step: torch.Tensor) -> None:
        """AdamW's state for every partition, zero moments at `step`, as its first step would make it (it
        makes it lazily), so that the fragment API has somewhere to write the checkpoint's moments."""
        inner = self.optimizer.optimizer
        # ZeRO-3 hands its partitions to the optimizer only while it steps; ZeRO-2 leaves them in its groups.
        partitions = (getattr(self.optimizer, "fp32_partitioned_groups_flat", None)
                      or [flat for group in inner.param_groups for flat in group["params"]])
        on_device = bool(inner.defaults.get("fused"))  # a fused AdamW keeps its step count on the device
        for flat in partitions:
            # A tensor of its own for each: AdamW counts each partition's steps in place.
            inner.state[flat] = {"step": torch.tensor(float(step), device=flat.device if on_device else "cpu"),
                                 **{key: torch.zeros_like(flat) for key in ADAM_MOMENTS}}
        self._link_moments()

    def _link_moments(self) -> None:
        """Tie each weight's view of AdamW's moments (ZeRO-2) to the partitions' state as it is now. DeepSpeed
        ties them once, after the first parameter group steps, when the other groups have no moments yet,
        and never again (0.19); the decayed and undecayed groups here are two. Private, for that reason."""
        if hasattr(self.optimizer, "_hp_optimizer_states_linked"):
            self.optimizer._hp_optimizer_states_linked = False
            self.optimizer._lazy_init_hp_params_optimizer_state()

    def _groups(self) -> list[dict[str, Any]]:
        return [{**{key: value for key, value in group.items() if key != "params"}, "params": template["params"]}
                for group, template in zip(self.client.param_groups, self.group_template, strict=True)]

    def _device(self) -> torch.device:
        return self.engine.device


def _hidden(module: torch.nn.Module, parts: Sequence[torch.nn.Module]) -> Callable[[], None]:
    """Hide `parts` (frozen submodules of `module`) from the module tree that DeepSpeed walks, until the
    returned function is called. Each part's slot among its parent's submodules holds None, which
    `modules()` and `parameters()` skip, and the part itself becomes a plain attribute of the parent, so
    the parent's forward still finds it (`self.visual`) with its own weights; putting it back restores
    the slot in place, so names and order are as before."""
    wanted = {id(part) for part in parts}
    slots = [(parent, name, child) for parent in module.modules() for name, child in parent._modules.items()
             if child is not None and id(child) in wanted]
    for parent, name, child in slots:
        parent._modules[name] = None
        parent.__dict__[name] = child

    def shown() -> None:
        for parent, name, child in slots:
            del parent.__dict__[name]
            parent._modules[name] = child

    return shown


@contextlib.contextmanager
def whole(parameters: Sequence[torch.nn.Parameter], deepspeed: Any, modified: bool = True) -> Iterator[None]:
    """Within the block, ZeRO-3's split `parameters` are whole on every rank (a collective), and where
    `modified`, what rank 0 wrote into them is split again at its end; parameters not split are left alone."""
    split = [p for p in parameters if hasattr(p, "ds_id")]
    if not split:
        yield
        return
    with deepspeed.zero.GatheredParameters(split, modifier_rank=0 if modified else None):
        yield
