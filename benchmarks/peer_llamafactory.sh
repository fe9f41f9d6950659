#!/usr/bin/env bash
# omni-run against LLaMA-Factory and a plain PyTorch loop, side by side on the same work
# (benchmarks/peer_llamafactory.py says what is run and how; flags pass through, --help lists them).
# The first run builds LLaMA-Factory's venv under the cache folder ($OMNI_RUNNER_CACHE/peer/).
#
#     bash benchmarks/peer_llamafactory.sh [--steps 30] [--repeat 2] [--no-record]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-$(command -v python3 || command -v python)}"
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
exec "$python" "$repo/benchmarks/peer_llamafactory.py" "$@"
