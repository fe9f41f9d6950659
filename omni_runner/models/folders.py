"""Folders that appear complete or not at all: write beside the target, then rename into place.

Public API:
- `atomic_folder(target)`: a context yielding an empty staging folder next to `target`; on success
  it replaces `target` (an existing one is moved aside first and removed after), on error it is
  removed and `target` is left as it was. Files are flushed to disk before the rename.
- `ensure_built(folder, fingerprint, read_stamp, build)`: the cached build in `folder`, built when its
  stamp's fingerprint differs; safe when several processes ask at once (a file lock serialises builds).
- `read_stamp_file(folder, name)`: a build's JSON stamp, or None when the folder is not a complete build.
- `build_target(out_dir, read_stamp, what)`: `out_dir` resolved, refused (FileExistsError) when it holds
  anything but a `what` build, so a build never replaces a folder it did not make.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_folder(target: Path) -> Iterator[Path]:
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.building-", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the result is an ordinary folder
    try:
        yield staging
        os.sync()  # the files must be on disk before the rename makes the folder visible
        if target.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            target.rename(retired / target.name)
            staging.rename(target)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def _build_lock(folder: Path) -> Iterator[None]:
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def ensure_built(
    folder: Path, fingerprint: str, read_stamp: Callable[[Path], dict[str, Any] | None], build: Callable[[Path], Any]
) -> Path:
    """`folder`, built by `build(folder)` unless its stamp already carries `fingerprint`."""

    def current() -> bool:
        stamp = read_stamp(folder)
        return stamp is not None and stamp.get("fingerprint") == fingerprint

    if not current():
        with _build_lock(folder):
            if not current():  # another process may have built it while we waited
                build(folder)
    return folder


def read_stamp_file(folder: Path, name: str) -> dict[str, Any] | None:
    try:
        return json.loads((Path(folder) / name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def build_target(out_dir: Path, read_stamp: Callable[[Path], dict[str, Any] | None], what: str) -> Path:
    out_dir = Path(out_dir).expanduser().resolve()
    if out_dir.exists() and any(out_dir.iterdir()) and read_stamp(out_dir) is None:
        raise FileExistsError(f"{out_dir} already exists and is not a {what} build; choose an empty or new folder.")
    return out_dir
