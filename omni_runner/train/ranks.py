"""The trainer's place among the processes of a run: its rank, and the few collectives the loop needs.

One process (the default) is rank 0 of 1, and every method is a no-op that returns its input, so the
loop reads the same with or without distribution. With `distributed.num_processes` > 1 the supervisor
starts the trainers under `accelerate launch`, which sets the rendezvous environment; accelerate's
`PartialState` then joins the process group (gloo on CPU, NCCL on GPUs) and its utilities carry the
collectives. Gradients are averaged by torch's DistributedDataParallel (`wrap`), not here.

The process-group timeout is long because rank 0 alone evaluates, and the other ranks wait for it at
the next step boundary; a rank that dies is noticed at once by the launcher, not by this timeout.
"""

from __future__ import annotations

import datetime
import os
import socket
from dataclasses import dataclass
from typing import Any

import torch

from omni_runner.train.zero import ZERO_STAGES

COLLECTIVE_TIMEOUT = datetime.timedelta(hours=2)


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    machine_rank: int = 0
    num_machines: int = 1
    on_gpus: bool = False  # NCCL, whose collectives take tensors on this rank's GPU only
    strategy: str = "ddp"  # distributed.strategy: `ddp` keeps a whole model on every rank, the others split it
    host: str = socket.gethostname()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def sharded(self) -> bool:
        """Parameters, gradients and optimizer state split over the ranks (train/sharding.py)."""
        return self.distributed and self.strategy == "fsdp"

    @property
    def zero_stage(self) -> int:
        """DeepSpeed ZeRO's stage (train/zero.py), 0 when its engine does not run."""
        return ZERO_STAGES.get(self.strategy, 0) if self.distributed else 0

    @classmethod
    def join(cls, cpu: bool, strategy: str = "ddp") -> Ranks:
        """This process's ranks; joins the process group (gloo when `cpu`) when a launcher started several."""
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return cls()
        from accelerate import PartialState

        state = PartialState(cpu=cpu, timeout=COLLECTIVE_TIMEOUT)
        per_machine = int(os.environ.get("LOCAL_WORLD_SIZE", state.num_processes))  # set by torchrun, as GROUP_RANK
        return cls(state.process_index, state.num_processes, state.local_process_index,
                   machine_rank=int(os.environ.get("GROUP_RANK", "0")), num_machines=state.num_processes // per_machine,
                   on_gpus=not cpu, strategy=strategy)

    def device(self, device: torch.device) -> torch.device:
        """Each rank's own GPU on a machine with several; the CPU is shared."""
        if self.distributed and device.type == "cuda":
            torch.cuda.set_device(self.local_rank)
            return torch.device("cuda", self.local_rank)
        return device

    def broadcast(self, value: Any) -> Any:
        """Rank 0's `value` on every rank (any picklable object)."""
        if not self.distributed:
            return value
        from accelerate.utils import broadcast_object_list

        return broadcast_object_list([value], from_process=0)[0]

    def gather(self, value: Any) -> list[Any]:
        """Every rank's `value`, in rank order, on every rank."""
        if not self.distributed:
            return [value]
        from accelerate.utils import gather_object

        return gather_object([value])

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """The element-wise sum of `values` over the ranks (a new tensor on every rank)."""
        if not self.distributed:
            return values
        from accelerate.utils import reduce

        device = torch.device("cuda", self.local_rank) if self.on_gpus else values.device
        return reduce(values.to(device, copy=True), reduction="sum").to(values.device)

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """`model` under DistributedDataParallel, which averages gradients over the ranks during backward.

        `find_unused_parameters`: a micro-batch without audio leaves the audio tower's adapters without a
        gradient, and the ranks' batches differ in what they hold. A sharded model (`sharded`) is already
        split, and its units average their own gradients, DeepSpeed's engine (`zero_stage`) wraps it
        instead, and a model of which nothing trains (a stage that trains only parts beside it) has nothing
        to average: these are returned as they are.
        """
        if (not self.distributed or self.sharded or self.zero_stage
                or not any(p.requires_grad for p in model.parameters())):
            return model
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.local_rank] if next(model.parameters()).device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=True)

    def average_gradients(self, parameters: list[torch.Tensor]) -> None:
        """Average the gradients of `parameters` over the ranks, as DDP does for the model it wraps: for the
        trainable parts beside it (external encoders' projectors, generation heads, the talker's adapter).

        Every rank calls it at the same step boundary with the same parameters, in the same order. A
        parameter some rank left unused counts as zero there; one that no rank used keeps no gradient, as
        in one process, so the optimizer leaves it alone.
        """
        if not self.distributed or not parameters:
            return
        used = self.sum(torch.tensor([p.grad is not None for p in parameters], dtype=torch.float64))
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).float() for p in parameters])
        flat = self.sum(flat) / self.world_size
        for parameter, gradient, anywhere in zip(parameters, flat.split([p.numel() for p in parameters]), used.tolist(),
                                                 strict=True):
            parameter.grad = gradient.view_as(parameter).to(parameter.dtype) if anywhere else None

    def identity(self) -> dict[str, Any]:
        return {"rank": self.rank, "local_rank": self.local_rank, "machine_rank": self.machine_rank, "host": self.host,
                "pid": os.getpid()}

    @property
    def reports_its_machine(self) -> bool:
        """The first rank of every machine but machine 0 samples its machine's GPUs for rank 0."""
        return self.num_machines > 1 and self.machine_rank > 0 and self.local_rank == 0
