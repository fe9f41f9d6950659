"""Suite-wide set-up: one cache folder for generated artefacts (the tiny model, its tokenizer).

The cache lives in the checkout (`.cache/tests/`, git-ignored) so repeated local runs reuse the
tiny model; a clean CI clone builds it once. Child processes inherit it through the environment.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TEST_CACHE = REPO / ".cache" / "tests"

# Two xdist workers share CI's two cores, and most tests start trainer processes. With torch's default of
# a thread per core each trainer spreads over both cores, and OpenMP threads spin while they wait, taking
# CPU from the other worker's trainer: one thread each cut the suite's CPU time by about a fifth. Set
# before any test module imports torch; trainer children inherit it. A distributed launch sets it too.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Longest files first, so that the two workers (`-n 2 --dist loadfile`, which hands out files in
    this order: `--no-loadscope-reorder` in pyproject.toml) end together on short ones rather than one
    waiting for the other's last long file. Files that start several trainer processes
    (tests/distributed) take longest, then files with a `slow` test (each starts trainers), then the
    rest; within each, files with more tests first. A file's tests stay together and in their order."""
    counts: dict[Path, int] = {}
    slow: set[Path] = set()
    for item in items:
        counts[item.path] = counts.get(item.path, 0) + 1
        if item.get_closest_marker("slow"):
            slow.add(item.path)

    def longest_first(item: pytest.Item) -> tuple[bool, bool, int]:
        return "distributed" not in item.path.parts, item.path not in slow, -counts[item.path]

    items.sort(key=longest_first)


@pytest.fixture(autouse=True, scope="session")
def _omni_runner_cache() -> Path:
    TEST_CACHE.mkdir(parents=True, exist_ok=True)
    os.environ["OMNI_RUNNER_CACHE"] = str(TEST_CACHE)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    return TEST_CACHE


@pytest.fixture(scope="session")
def tiny_asr_dir(_omni_runner_cache: Path) -> Path:
    """The built-in tiny Parakeet (`builtin:tiny-parakeet`), built once into the test cache."""
    from omni_runner.models.tiny_asr import ensure_tiny_asr

    return ensure_tiny_asr()


@pytest.fixture(scope="session")
def tiny_sd3_dir(_omni_runner_cache: Path) -> Path:
    """The built-in tiny SD3 pipeline (`builtin:tiny-sd3`), built once into the test cache."""
    from omni_runner.models.tiny_decoders import ensure_tiny_decoder

    return ensure_tiny_decoder("tiny-sd3")


@pytest.fixture(scope="session")
def tiny_svd_dir(_omni_runner_cache: Path) -> Path:
    """The built-in tiny SVD pipeline (`builtin:tiny-svd`), built once into the test cache."""
    from omni_runner.models.tiny_decoders import ensure_tiny_decoder

    return ensure_tiny_decoder("tiny-svd")


@pytest.fixture(scope="session")
def tiny_qwen3_omni_dir(_omni_runner_cache: Path) -> Path:
    """The built-in tiny Qwen3-Omni (`builtin:tiny-qwen3-omni`), built once into the test cache."""
    from omni_runner.models.tiny_qwen3 import ensure_tiny_qwen3_omni

    return ensure_tiny_qwen3_omni()
