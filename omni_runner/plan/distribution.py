"""The recipe's `distributed:` section as the plan states it: the process layout the trainer is launched
with, the global batch that layout implies, and what the strategy does to each device's memory.

The trainer reads `distributed.world_size` and `distributed.strategy` from plan.json; the rest is for
the launcher and for people. Pure data and arithmetic: no torch, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omni_runner.plan.memory import GIB, STRATEGY_SHARDS, MemoryEstimate, Sharding, sharding


@dataclass(frozen=True)
class Layout:
    """How many processes train, on how many machines, and how they share the model."""

    strategy: str = "ddp"
    world_size: int = 1
    num_machines: int = 1
    machine_rank: int = 0
    main_process_ip: str | None = None
    main_process_port: int = 29500

    @classmethod
    def from_recipe(cls, data: dict[str, Any]) -> Layout:
        """The layout of a loaded recipe (its defaults filled in, its cross-field rules checked)."""
        section = data["distributed"]
        return cls(
            strategy=section["strategy"],
            world_size=section["num_processes"],
            num_machines=section["num_machines"],
            machine_rank=section["machine_rank"],
            main_process_ip=section["main_process_ip"],
            main_process_port=section["main_process_port"],
        )

    @property
    def processes_per_machine(self) -> int:
        return self.world_size // self.num_machines

    @property
    def split(self) -> Sharding:
        return sharding(self.strategy, self.world_size)

    def to_json(self, global_batches: dict[str, int]) -> dict[str, Any]:
        """plan.json's `distributed` block; `global_batches` maps each stage to its samples per optimizer step."""
        return {
            "strategy": self.strategy,
            "world_size": self.world_size,
            "num_machines": self.num_machines,
            "processes_per_machine": self.processes_per_machine,
            "machine_rank": self.machine_rank,
            "main_process_ip": self.main_process_ip,
            "main_process_port": self.main_process_port,
            "batch_is_per_process": True,
            "global_batch": global_batches,
        }


def batch_decision(layout: Layout, micro_batch: int, grad_accum: int) -> dict[str, str] | None:
    """With more than one process, what the recipe's batch settings add up to, and how to keep one
    process's global batch (None with one process: micro_batch x grad_accum is the whole story)."""
    n = layout.world_size
    if n == 1:
        return None
    one_process = micro_batch * grad_accum
    keep = (f"grad_accum {grad_accum // n} keeps the one-process global batch of {one_process}" if grad_accum % n == 0
            else f"to keep the one-process global batch of {one_process}, use a grad_accum that {n} divides")
    return {
        "what": f"global batch {one_process * n} = micro_batch {micro_batch} x grad_accum {grad_accum} x {n} processes",
        "why": "training.micro_batch and grad_accum are per process (the Hugging Face Trainer's and Axolotl's convention): "
               f"every process reads its own share of the data, so each optimizer step sees {n}x the samples of one process; "
               + keep,
    }


def memory_decision(layout: Layout, whole: MemoryEstimate, device: MemoryEstimate) -> dict[str, str] | None:
    """With more than one process, what the strategy holds on each device and what that costs against
    one process (`whole`); None with one process, where nothing is split or added."""
    n = layout.world_size
    if n == 1:
        return None
    parts = STRATEGY_SHARDS[layout.strategy]
    held = "every device holds the whole model" if not parts else f"{', '.join(parts)} split {n} ways"
    notes = [f"about {device.total / GIB:.1f} GB per device against {whole.total / GIB:.1f} GB for one process"]
    if "gradients" not in parts:
        notes.append(f"DDP's buckets hold a second copy of the {whole.gradients / GIB:.2f} GB of trainable gradients while they are averaged")
    if device.gathered:
        notes.append(f"the embeddings, output head, two decoder blocks and the towers a stage runs are held whole ({device.gathered / GIB:.2f} GB)")
    notes.append("activations stay per device (each process runs its own micro-batch)")
    return {"what": f"{layout.strategy} over {n} processes: {held}", "why": "; ".join(notes)}
