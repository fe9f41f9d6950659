"""DeepSpeed's engine under `ZeroEngine` (train/zero.py) on two CPU processes: its consolidated state is one
process's, and an engine built afresh from that state continues exactly where the first one was.

Each case starts zero_worker.py twice under torchrun: a small Qwen2 trains 3 steps, its weights and AdamW
state are gathered, it trains 2 more; then an engine over the same model (split under ZeRO-3, as in a
`nan_policy` rollback) and one over a fresh model (as in a resume) are each given the gathered state and
train the same 2 steps. The reference is one torch AdamW over both ranks' samples (grad_accum 2), in
this process. Both AdamW groups (matrices, decayed; vectors, not) hold parameters, so each rank holds two
partitions whose step counts must stay apart.

Tolerances: the same samples reach every step, so the 2-process losses and the one-process ones differ
only in float32 summation order (1e-5 relative, as in test_ddp_run.py); weights by 1e-4 absolute, 1/100
of one step's move at lr 1e-2 (Adam turns float noise in a near-zero gradient into a visible fraction of
a step, test_fsdp_run.py says more). The second engine must repeat the first engine's losses to 1e-6: a
moment or step count set wrong moves them in the 4th digit.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import zero_worker

from omni_runner.train.optimizer import make_optimizer

pytestmark = pytest.mark.slow

WORKER = Path(__file__).with_name("zero_worker.py")
TOLERANCE = 1e-5
WEIGHT_TOLERANCE = 1e-4


def _two_ranks(stage: int, out: Path) -> dict:
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(WORKER), str(stage), str(out)], capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


def _one_process() -> tuple[list[float], torch.nn.Module, torch.optim.Optimizer]:
    """The reference: each step takes both ranks' samples, one after the other, each weighted a half; the
    losses are rank 0's samples'."""
    torch.manual_seed(0)
    model = zero_worker.Qwen2ForCausalLM(zero_worker.CONFIG)
    optimizer = make_optimizer(model.parameters(), lr=1e-2, weight_decay=0.1, device_type="cpu")
    shards = [zero_worker.batches(rank, 2) for rank in range(2)]
    losses = []
    for step in range(zero_worker.STEPS):
        for rank, shard in enumerate(shards):
            loss = model(input_ids=shard[step], labels=shard[step]).loss
            (loss / 2).backward()
            if rank == 0:
                losses.append(loss.item())
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
    return losses, model, optimizer


@pytest.fixture(scope="module")
def reference():
    return _one_process()


def _close(a: float, b: float, tolerance: float) -> bool:
    return abs(a - b) <= tolerance * abs(b)


@pytest.mark.parametrize("stage", [2, 3])
def test_the_consolidated_state_is_one_processs_and_a_new_engine_continues_it_exactly(stage, reference, tmp_path):
    seen = _two_ranks(stage, tmp_path / "out.json")
    losses, model, optimizer = reference
    assert all(_close(a, b, TOLERANCE) for a, b in zip(seen["first"], losses, strict=True)), (seen["first"], losses)
    expected = optimizer.state_dict()
    assert [{k: v for k, v in g.items() if k != "betas"} for g in seen["optimizer"]["param_groups"]] == \
        [{k: v for k, v in g.items() if k != "betas"} for g in expected["param_groups"]]
    for name, parameter in model.named_parameters():
        assert torch.allclose(torch.tensor(seen["weights"][name]), parameter.detach(), atol=WEIGHT_TOLERANCE, rtol=0), name
    for index, entries in expected["state"].items():
        got = seen["optimizer"]["state"][str(index)]
        assert float(got["step"]) == float(entries["step"]) == zero_worker.STEPS
        assert torch.allclose(torch.tensor(got["exp_avg"]), entries["exp_avg"], atol=1e-6, rtol=1e-3), index
    for again in ("resumed", "rolled_back"):
        assert all(_close(a, b, 1e-6) for a, b in zip(seen[again], seen["uninterrupted"], strict=True)), (again, seen[again])
