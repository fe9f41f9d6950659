"""Putting written files on disk before a rename publishes them.

`fsync_path(path)` flushes one file or folder; `fsync_tree(root)` every file and folder under `root`.
Both flush only what they name: `os.sync()` would also wait for every other process's pending writes,
which on a machine busy writing (other runs, a test suite) took seconds at each saved folder.
"""

from __future__ import annotations

import os
from pathlib import Path


def fsync_path(path: Path) -> None:
    """Flush a file's data, or a folder's entries, to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """Flush every regular file and folder under `root`, `root` included (deepest first). Symbolic links
    are left alone: what they point at is not part of the tree."""
    for folder, _, files in os.walk(root, topdown=False):
        for name in files:
            path = Path(folder) / name
            if not path.is_symlink():
                fsync_path(path)
        fsync_path(Path(folder))
