"""atomic_folder: a folder appears whole, on disk, or not at all."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from omni_runner.models.folders import atomic_folder


@pytest.fixture
def flushed(monkeypatch: pytest.MonkeyPatch) -> set[int]:
    """The inodes `os.fsync` is called on (inodes survive the rename); `os.sync` fails the test."""
    inodes: set[int] = set()
    real_fsync = os.fsync

    def record(fd: int) -> None:
        inodes.add(os.fstat(fd).st_ino)
        real_fsync(fd)

    def refuse() -> None:
        raise AssertionError("os.sync() waits for every process's writes; flush the folder's own files")

    monkeypatch.setattr(os, "fsync", record)
    monkeypatch.setattr(os, "sync", refuse)
    return inodes


def test_a_published_folder_has_flushed_its_own_files_and_nothing_else(tmp_path: Path, flushed: set[int]) -> None:
    target = tmp_path / "model"
    with atomic_folder(target) as staging:
        (staging / "config.json").write_text("{}")
        (staging / "sub").mkdir()
        (staging / "sub" / "weights.bin").write_bytes(b"\0" * 64)

    written = [target / "config.json", target / "sub" / "weights.bin", target / "sub", target, tmp_path]
    assert {path.stat().st_ino for path in written} <= flushed


def test_a_failed_build_leaves_the_previous_folder_in_place(tmp_path: Path) -> None:
    target = tmp_path / "model"
    target.mkdir()
    (target / "config.json").write_text("old")

    with pytest.raises(RuntimeError), atomic_folder(target) as staging:
        (staging / "config.json").write_text("new")
        raise RuntimeError("build failed")

    assert (target / "config.json").read_text() == "old"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model"]
