"""How recipe paths become folders: plain paths, and `builtin:` names for what ships with omni-runner.

`builtin:<model>` names a model that omni-runner builds locally on first use (never downloads),
kept under the cache folder; `builtin:<dataset>` names a data set bundled inside the package.
"""

from __future__ import annotations

import os
from pathlib import Path

BUILTIN_PREFIX = "builtin:"
BUNDLED_DATA_DIR = Path(__file__).resolve().parent / "data" / "bundled"
# Built-in data sets generated into the cache on first use instead of shipped (media files).
TINY_MEDIA = "tiny-media"
GENERATED_DATA = (TINY_MEDIA,)


def cache_dir() -> Path:
    """Where generated artefacts live: `$OMNI_RUNNER_CACHE`, else `~/.cache/omni-runner`."""
    configured = os.environ.get("OMNI_RUNNER_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "omni-runner"


def is_builtin(value: str) -> bool:
    return value.startswith(BUILTIN_PREFIX)


def builtin_name(value: str) -> str:
    return value[len(BUILTIN_PREFIX):]


def resolve_model_path(value: str, base_dir: Path) -> Path:
    """A model folder: `builtin:NAME` lives in the cache; relative paths are relative to the recipe."""
    if is_builtin(value):
        return cache_dir() / "models" / builtin_name(value)
    return (Path(base_dir) / os.path.expanduser(value)).resolve()


def is_generated_data(value: str) -> bool:
    """Whether `value` names a built-in data set that is generated on first use (`builtin:tiny-media/...`)."""
    return is_builtin(value) and builtin_name(value).split("/")[0] in GENERATED_DATA


def resolve_data_path(value: str, base_dir: Path) -> Path:
    """A data file or folder: `builtin:NAME` is bundled in the package (or generated into the cache);
    others are relative to the recipe."""
    if is_generated_data(value):
        return cache_dir() / "data" / builtin_name(value)
    if is_builtin(value):
        return BUNDLED_DATA_DIR / builtin_name(value)
    return (Path(base_dir) / os.path.expanduser(value)).resolve()
