"""One prepared check of the real training path on one NVIDIA GPU, in under 8 minutes, without downloads.

    python benchmarks/gpu_check.py --out gpu-check            # on the GPU machine (gpu_check.sh installs first)
    python benchmarks/gpu_check.py --device cpu --size smoke  # the same flow on CPU, to check the script

It builds a random-initialised model of the Qwen2.5-Omni architecture locally (the tiny model's
tokenizer, processor, towers and talker, with the thinker's language model widened to about 1.3 B
parameters and the real 151,936-row vocabulary, so the logits cost what they cost on the 7B), writes a
recipe for it and runs the real `omni-run` on it: LoRA in bf16, then QLoRA (bnb-4bit) where
bitsandbytes is installed. During the LoRA run it pauses and resumes with SIGUSR1 and asks for an
emergency checkpoint with SIGUSR2, as a user would.

It reports, per run: tokens/s, model FLOPs utilisation against the card's bf16 peak, the measured peak
memory (`gpu_memory_peak_gib` of the step events: torch.cuda.max_memory_allocated) against the plan's
estimate for the same recipe, the NVML telemetry the controller sampled, and how long the pause and the
checkpoint took. One JSON file (`gpu_check.json`) and one Markdown table (`gpu_check.md`) go to --out.

FLOPs per token (Kaplan et al.'s 2N forward, plus attention): the forward pass costs
2·N + 2·L·S·d_attn, where N is the language model's parameters that multiply activations (its
decoder layers and the output head, not the input embedding), L layers, S the sequence length and
d_attn the query width. Full fine-tuning costs three forwards (forward, input gradients, weight
gradients); LoRA skips the frozen weights' gradients, so it costs two. MFU is achieved FLOPs/s over
the card's dense bf16 peak (a table of common cards, or --peak-tflops).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

# Dense bf16 tensor-core peaks from the vendors' data sheets (TFLOP/s, without sparsity).
PEAK_BF16_TFLOPS = {
    "H200": 989.0, "H200 NVL": 835.0, "H100 80GB HBM3": 989.0, "H100 SXM": 989.0, "H100 NVL": 835.0,
    "H100 PCIe": 756.0, "H100": 756.0,
    "A100": 312.0, "A10G": 70.0, "A10": 125.0, "L40S": 362.0, "L4": 121.0,
    "RTX 4090": 165.0, "RTX 4080": 97.5, "RTX 3090": 71.0, "RTX A6000": 155.0,
}


@dataclass(frozen=True)
class Size:
    """The thinker language model's shape; the rest of the model is the tiny build's."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    seq_len: int
    micro_batch: int
    steps: int


SIZES = {
    # About 1.3 B parameters: 12 decoder layers of width 2048 and the real Qwen2.5 vocabulary.
    "1b": Size(hidden=2048, layers=12, heads=32, kv_heads=8, intermediate=8192, vocab=151_936,
               seq_len=1024, micro_batch=8, steps=60),
    # The same flow at a size two CPU cores run in a minute or two.
    "smoke": Size(hidden=256, layers=2, heads=4, kv_heads=2, intermediate=512, vocab=8192,
                  seq_len=256, micro_batch=2, steps=16),
}


def multiplying_parameters(size: Size) -> int:
    """The weights each token is multiplied by: every linear layer of the decoder layers, and the output head."""
    q_width, kv_width = size.heads * (size.hidden // size.heads), size.kv_heads * (size.hidden // size.heads)
    per_layer = size.hidden * q_width * 2 + size.hidden * kv_width * 2 + 3 * size.hidden * size.intermediate
    return size.layers * per_layer + size.hidden * size.vocab


def flops_per_token(size: Size, full_finetune: bool) -> float:
    """Training FLOPs per token of the language model (see the module docstring)."""
    forward = 2 * multiplying_parameters(size) + 2 * size.layers * size.seq_len * size.hidden
    return forward * (3 if full_finetune else 2)


def peak_tflops(gpu_name: str) -> float | None:
    """The card's dense bf16 peak, matched on the most specific name in the table."""
    for key in sorted(PEAK_BF16_TFLOPS, key=len, reverse=True):
        if key.lower() in gpu_name.lower():
            return PEAK_BF16_TFLOPS[key]
    return None


def build_model(folder: Path, size: Size, device: str) -> dict[str, Any]:
    """Widen the tiny model's thinker to `size`, initialise it randomly with the real class, save it."""
    import torch
    from transformers import Qwen2_5OmniConfig, Qwen2_5OmniForConditionalGeneration

    from omni_runner.models.hf_env import quiet_transformers
    from omni_runner.models.tiny import ensure_tiny_model

    tiny = ensure_tiny_model()
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for item in tiny.iterdir():
        if item.name not in ("model.safetensors", "config.json", "omni_runner_tiny.json"):
            shutil.copy2(item, folder / item.name)
    config = json.loads((tiny / "config.json").read_text())
    thinker = config["thinker_config"]
    text = thinker["text_config"]
    text.update(hidden_size=size.hidden, num_hidden_layers=size.layers, num_attention_heads=size.heads,
                num_key_value_heads=size.kv_heads, intermediate_size=size.intermediate, vocab_size=size.vocab,
                layer_types=["full_attention"] * size.layers, use_sliding_window=False, max_window_layers=size.layers)
    thinker["vision_config"]["out_hidden_size"] = size.hidden
    thinker["audio_config"]["output_dim"] = size.hidden
    config["talker_config"]["embedding_size"] = size.hidden
    torch.manual_seed(0)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    with torch.device(device), quiet_transformers():
        model = Qwen2_5OmniForConditionalGeneration(Qwen2_5OmniConfig(**config)).to(dtype)
        model.save_pretrained(folder, safe_serialization=True)
    parameters = sum(p.numel() for p in model.thinker.model.parameters())
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return {"path": str(folder), "language_model_parameters": parameters}


def write_recipe(path: Path, model: Path, size: Size, device: str, vram_gb: float, quantized: bool) -> Path:
    bf16 = device == "cuda"
    recipe = {
        "name": "gpu-check-qlora" if quantized else "gpu-check-lora",
        "base_model": {"path": str(model), **({"quantization": "bnb-4bit"} if quantized else {})},
        "datasets": {
            "xlam": {"path": "builtin:tool-calling/xlam_train.jsonl", "format": "xlam"},
            "cot": {"path": "builtin:cot/cot_collection.jsonl", "format": "cot-collection"},
        },
        "capabilities": {"tool-calling": {"weight": 1.0, "datasets": ["xlam"]}, "cot": {"weight": 1.0, "datasets": ["cot"]}},
        "training": {
            "method": "qlora" if quantized else "lora",
            "lora": {"r": 16, "alpha": 32, "dropout": 0.0,
                     "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]},
            "max_steps": size.steps, "micro_batch": size.micro_batch, "grad_accum": 1, "seq_len": size.seq_len,
            "packing": True, "lr": 2.0e-4, "warmup_steps": 5, "precision": "bf16" if bf16 else "fp32", "seed": 7,
            "gradient_checkpointing": "off", "log_every": 1,
        },
        "controller": {
            "cooldown": {"every_steps": 0, "seconds": 0},
            "thermal": {"enabled": device == "cuda"},
            "checkpoint": {"every_steps": 0, "keep_last": 2},
            "telemetry": {"interval_s": 1.0},
        },
        "eval": {"at_end": False},
        "hardware": {"device": device, "vram_gb": vram_gb},
    }
    path.write_text(json.dumps(recipe, indent=2))  # JSON is YAML: the recipe loader reads it unchanged
    return path


def plan_estimate(recipe: Path) -> dict[str, Any]:
    """The plan's memory estimate and fitted shape for the recipe's only stage."""
    from omni_runner.plan import compile_plan
    from omni_runner.recipe import load_recipe

    stage = compile_plan(load_recipe(recipe)).to_json()["stages"][0]
    return {"estimate_gib": stage["memory"]["estimate_gb"], "breakdown": stage["memory"]["breakdown"],
            "micro_batch": stage["micro_batch"], "grad_accum": stage["grad_accum"], "seq_len": stage["seq_len"]}


def _events(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "events.jsonl"
    if not path.exists():
        return []
    lines = path.read_text(errors="replace").splitlines()
    return [json.loads(line) for line in lines if line.startswith("{") and line.endswith("}")]


def _state(run_dir: Path) -> str | None:
    try:
        return json.loads((run_dir / "status.json").read_text()).get("state")
    except (OSError, ValueError):
        return None


def _wait(condition, timeout_s: float, what: str, process: subprocess.Popen) -> float:
    start = time.monotonic()
    while not condition():
        if process.poll() is not None:
            raise RuntimeError(f"omni-run ended (exit {process.returncode}) while waiting for {what}")
        if time.monotonic() - start > timeout_s:
            raise RuntimeError(f"no {what} within {timeout_s:.0f} s")
        time.sleep(0.1)
    return time.monotonic() - start


def train(recipe: Path, run_dir: Path, steer: bool) -> dict[str, Any]:
    """Run `omni-run RECIPE`; with `steer`, pause/resume (SIGUSR1) and checkpoint (SIGUSR2) mid-run."""
    if run_dir.exists():
        shutil.rmtree(run_dir)
    log = (run_dir.parent / f"{run_dir.name}.log").open("w")
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", "omni_runner.cli", str(recipe), "--run-dir", str(run_dir)],
                               stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    steering: dict[str, Any] = {}
    try:
        def steps() -> int:
            return sum(1 for e in _events(run_dir) if e.get("type") == "step")

        if steer:
            _wait(lambda: steps() >= 10, 600, "10th step", process)
            process.send_signal(signal.SIGUSR1)
            steering["pause_s"] = round(_wait(lambda: _state(run_dir) == "paused", 120, "pause", process), 2)
            time.sleep(3)
            process.send_signal(signal.SIGUSR1)
            steering["resume_s"] = round(_wait(lambda: _state(run_dir) == "running", 120, "resume", process), 2)
            before = sum(1 for e in _events(run_dir) if e.get("type") == "checkpoint")
            process.send_signal(signal.SIGUSR2)
            steering["checkpoint_s"] = round(_wait(
                lambda: sum(1 for e in _events(run_dir) if e.get("type") == "checkpoint") > before, 300,
                "checkpoint after SIGUSR2", process), 2)
        returncode = process.wait(timeout=900)
    finally:
        if process.poll() is None:
            process.kill()
        log.close()
    events = _events(run_dir)
    return {"returncode": returncode, "wall_s": round(time.monotonic() - started, 1), "steering": steering,
            **_measure(events)}


def _measure(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the steps after the first five (compilation, allocator warm-up)."""
    steps = [e for e in events if e.get("type") == "step"][5:]
    telemetry = [gpu for e in events if e.get("type") == "telemetry" for gpu in e.get("gpus") or []]

    def median(key: str, rows: list[dict[str, Any]]) -> float | None:
        values = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
        return round(statistics.median(values), 3) if values else None

    peaks = [e["gpu_memory_peak_gib"] for e in steps if "gpu_memory_peak_gib" in e]
    return {
        "steps_measured": len(steps),
        "tokens_per_s": median("tokens_per_s", steps),
        "step_s": median("step_s", steps),
        "data_wait_s": median("data_wait_s", steps),
        "peak_memory_gib": max(peaks) if peaks else None,
        "first_loss": steps[0]["loss"] if steps else None,
        "last_loss": steps[-1]["loss"] if steps else None,
        "telemetry_samples": len(telemetry),
        "gpu_temperature_c_max": max((g["temperature_c"] for g in telemetry if g.get("temperature_c") is not None), default=None),
        "gpu_power_w_median": median("power_w", telemetry),
        "gpu_utilization_median": median("utilization_pct", telemetry),
    }


def gpu_identity(device: str) -> dict[str, Any]:
    if device != "cuda":
        return {"name": "cpu", "memory_gib": None, "driver": None}
    import pynvml
    import torch

    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())
    name = pynvml.nvmlDeviceGetName(handle)
    name = name.decode() if isinstance(name, bytes) else name
    driver = pynvml.nvmlSystemGetDriverVersion()
    return {"name": name, "memory_gib": round(pynvml.nvmlDeviceGetMemoryInfo(handle).total / 2**30, 1),
            "driver": driver.decode() if isinstance(driver, bytes) else driver, "torch": torch.__version__,
            "cuda": torch.version.cuda}


def summarise(result: dict[str, Any], size: Size, peak: float | None) -> None:
    """Add MFU and the estimate's error to each run's figures, in place."""
    for run in result["runs"].values():
        if not isinstance(run.get("tokens_per_s"), (int, float)):
            continue
        achieved = run["tokens_per_s"] * flops_per_token(size, full_finetune=False)
        run["achieved_tflops"] = round(achieved / 1e12, 2)
        run["mfu"] = round(achieved / (peak * 1e12), 4) if peak else None
        estimate, measured = run["plan"]["estimate_gib"], run.get("peak_memory_gib")
        run["estimate_error"] = round(estimate / measured - 1, 3) if measured else None


def markdown(result: dict[str, Any]) -> str:
    gpu = result["gpu"]
    title = (f"GPU check on {gpu['name']} ({gpu.get('memory_gib')} GiB, driver {gpu.get('driver')}, torch "
             f"{gpu.get('torch', '')}); thinker language model {result['model']['language_model_parameters'] / 1e9:.2f} B "
             f"parameters, seq {result['size']['seq_len']}, micro-batch {result['size']['micro_batch']}.")
    rows = [title, "",
            "| run | tokens/s | step | MFU | peak memory | plan estimate | estimate error | max GPU °C | median W | pause / resume / SIGUSR2 checkpoint |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for name, run in result["runs"].items():
        if "skipped" in run:
            rows.append(f"| {name} | not run: {run['skipped']} |||||||||")
            continue
        steer = run.get("steering") or {}
        steering = " / ".join(f"{steer[k]} s" for k in ("pause_s", "resume_s", "checkpoint_s") if k in steer) or "—"
        mfu = f"{run['mfu']:.1%}" if run.get("mfu") is not None else "—"
        error = f"{run['estimate_error']:+.0%}" if run.get("estimate_error") is not None else "—"
        rows.append(f"| {name} | {run.get('tokens_per_s')} | {run.get('step_s')} s | {mfu} | {run.get('peak_memory_gib')} GiB | "
                    f"{run['plan']['estimate_gib']} GiB | {error} | {run.get('gpu_temperature_c_max')} | "
                    f"{run.get('gpu_power_w_median')} | {steering} |")
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("gpu-check"), help="folder for the result files (default %(default)s)")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--size", choices=sorted(SIZES), default=None, help="model size (default: 1b on cuda, smoke on cpu)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the card's dense bf16 peak, when not in the table")
    parser.add_argument("--skip-qlora", action="store_true")
    args = parser.parse_args(argv)
    size = SIZES[args.size or ("1b" if args.device == "cuda" else "smoke")]
    work = args.out.resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("OMNI_RUNNER_CACHE", str(work / "cache"))

    gpu = gpu_identity(args.device)
    peak = args.peak_tflops or peak_tflops(gpu["name"])
    model = build_model(work / "model", size, args.device)
    vram = gpu["memory_gib"] or 8.0
    result: dict[str, Any] = {"gpu": gpu, "size": asdict(size), "model": model, "peak_bf16_tflops": peak, "runs": {}}
    plans = {"lora": False, "qlora": True}
    for name, quantized in plans.items():
        if quantized and (args.skip_qlora or args.device != "cuda" or _missing("bitsandbytes")):
            reason = "--skip-qlora" if args.skip_qlora else "needs CUDA" if args.device != "cuda" else "bitsandbytes is not installed"
            result["runs"][name] = {"skipped": reason}
            continue
        recipe = write_recipe(work / f"{name}.yaml", work / "model", size, args.device, vram, quantized)
        run = train(recipe, work / f"run-{name}", steer=not quantized)
        run["plan"] = plan_estimate(recipe)
        result["runs"][name] = run
    summarise(result, size, peak)
    (work / "gpu_check.json").write_text(json.dumps(result, indent=2))
    table = markdown(result)
    (work / "gpu_check.md").write_text(table)
    print(table)
    failed = [name for name, run in result["runs"].items() if run.get("returncode") not in (None, 0)]
    return 1 if failed else 0


def _missing(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is None


if __name__ == "__main__":
    sys.exit(main())
