"""A built-in tiny model built by a rank other than 0 of a torch.distributed group comes out whole.

Two real processes (gloo) on an empty cache: rank 1 builds the tiny Whisper while rank 0 waits, then
rank 0 asks for it and loads it. transformers writes a model's files on rank 0 alone once
torch.distributed is initialised, so without `hf_env.saving_on_any_rank` rank 1 left a folder with
its stamp and no config or weights, which every later run then took for a finished build.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

SCRIPT = """
import torch.distributed as dist
from transformers import WhisperForConditionalGeneration
from omni_runner.models.tiny_encoders import ensure_tiny_encoder

dist.init_process_group("gloo")
if dist.get_rank() == 1:
    ensure_tiny_encoder("tiny-whisper")
dist.barrier()
if dist.get_rank() == 0:
    WhisperForConditionalGeneration.from_pretrained(ensure_tiny_encoder("tiny-whisper"))
    print("loaded")
dist.destroy_process_group()
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_tiny_model_built_by_rank_1_loads_on_rank_0(tmp_path):
    env = {**os.environ, "OMNI_RUNNER_CACHE": str(tmp_path / "cache"), "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(_free_port()), "WORLD_SIZE": "2"}
    ranks = [subprocess.Popen([sys.executable, "-c", SCRIPT], env={**env, "RANK": str(rank)}, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for rank in (0, 1)]
    outputs = [rank.communicate(timeout=300)[0] for rank in ranks]
    assert [rank.returncode for rank in ranks] == [0, 0], outputs
    assert "loaded" in outputs[0], outputs[0][-3000:]
