#!/usr/bin/env bash
# The GPU check: installs omni-runner from this checkout and runs benchmarks/gpu_check.py on one NVIDIA
# GPU (LoRA bf16, QLoRA where bitsandbytes installs, pause/resume and SIGUSR2, NVML telemetry), in under
# 8 minutes and without downloading a model. Results: OUT/gpu_check.json and OUT/gpu_check.md.
#
#   bash benchmarks/gpu_check.sh [OUT]          # default OUT: gpu-check
#   GPU_CHECK_PYTHON=python3 bash benchmarks/gpu_check.sh   # use an environment that already has the packages
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu-check}"

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu_check: no NVIDIA GPU here (nvidia-smi finds none). For the same flow on CPU:" >&2
  echo "  python benchmarks/gpu_check.py --device cpu --size smoke" >&2
  exit 2
fi
nvidia-smi -L

python="${GPU_CHECK_PYTHON:-}"
if [ -z "$python" ]; then
  python3 -m venv .venv-gpu-check
  .venv-gpu-check/bin/pip install -q -e '.[bnb]' || .venv-gpu-check/bin/pip install -q -e .
  python=.venv-gpu-check/bin/python
fi

PYTHONUNBUFFERED=1 "$python" benchmarks/gpu_check.py --out "$out" --device cuda
