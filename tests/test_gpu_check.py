"""benchmarks/gpu_check.sh is ready where no GPU is: it says so, its shell parses, and the FLOP count
behind its MFU figure counts the weights the real language model multiplies."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"


def _gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_shell_script_parses():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], check=False).returncode == 0


def test_without_a_gpu_it_says_so_and_names_the_cpu_flow(tmp_path: Path):
    env = {**os.environ, "PATH": f"{tmp_path}:/usr/bin:/bin"}  # an nvidia-smi that finds no GPU
    (tmp_path / "nvidia-smi").write_text("#!/bin/sh\nexit 9\n")
    (tmp_path / "nvidia-smi").chmod(0o755)
    done = subprocess.run(["bash", str(SCRIPT)], check=False, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "no NVIDIA GPU here" in done.stderr and "--device cpu" in done.stderr


def test_flops_count_every_linear_weight_of_the_real_decoder_and_head():
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    gpu_check = _gpu_check()
    size = gpu_check.SIZES["smoke"]
    model = Qwen2ForCausalLM(Qwen2Config(
        hidden_size=size.hidden, num_hidden_layers=size.layers, num_attention_heads=size.heads,
        num_key_value_heads=size.kv_heads, intermediate_size=size.intermediate, vocab_size=size.vocab,
        tie_word_embeddings=False))
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    assert gpu_check.multiplying_parameters(size) == linear


def test_the_peak_table_matches_the_most_specific_card_name():
    gpu_check = _gpu_check()
    assert gpu_check.peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert gpu_check.peak_tflops("NVIDIA H100 80GB HBM3") == 989.0  # the SXM card's name
    assert gpu_check.peak_tflops("NVIDIA GeForce RTX 4090") == 165.0
    assert gpu_check.peak_tflops("Some Future Card") is None
