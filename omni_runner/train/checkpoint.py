"""Atomic, verifiable checkpoints: `RUN/checkpoints/step-N/`.

A checkpoint is either complete and verifiable or it is never used. Files are written into a
temporary folder inside `checkpoints/` (same file system, so the final rename is atomic), each one
fsynced; `manifest.json` with the sha256 and size of every file is written last; then the folder is
renamed to `step-N` and `checkpoints/` is fsynced. A crash at any point leaves either a `.tmp-*`
folder (ignored, removed by the next save) or a `step-N` whose manifest does not verify (skipped).

Everything is stored so that `torch.load(..., weights_only=True)` can read it back: no pickled
classes, only tensors, numbers, strings, lists, tuples and dicts. That is why the numpy RNG state is
converted to a tensor.

torch is imported inside the functions that move tensors: finding and verifying checkpoints (and
reading `trainer_state.json`) is plain file work that `omni-run resume` does before it starts a
supervisor, which must stay free of torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from omni_runner.durable import fsync_path

if TYPE_CHECKING:
    import torch

WEIGHTS_FILE = "weights.safetensors"  # the trainable parameters (adapter, projectors, or all weights)
OPTIMIZER_FILE = "optimizer.pt"
TRAINING_STATE_FILE = "training_state.pt"  # scheduler, grad scaler, RNG states
TRAINER_STATE_FILE = "trainer_state.json"  # counters, data position, recipe/plan hashes (readable)
MANIFEST_FILE = "manifest.json"

_STEP_DIR = re.compile(r"^step-(\d+)$")
_TMP_PREFIX = ".tmp-"
_HASH_CHUNK = 1 << 20


@dataclass
class CheckpointContents:
    """What exact resume needs, in memory."""

    weights: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    scaler: dict[str, Any] | None
    rng: dict[str, Any]
    trainer_state: dict[str, Any]  # JSON: step, stage, tokens, samples, skipped_steps, data, hashes
    rank_rng: list[dict[str, Any]] = field(default_factory=list)  # every rank's RNG state; empty with one process


@dataclass(frozen=True)
class SavedCheckpoint:
    path: Path
    step: int
    bytes: int


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used; the message says which file and why."""


def step_of(path: Path) -> int | None:
    match = _STEP_DIR.match(path.name)
    return int(match.group(1)) if match else None


# ---------------------------------------------------------------- RNG states


def capture_rng_state() -> dict[str, Any]:
    """Every random generator the loop may draw from (dropout, shuffles, sampling)."""
    import torch

    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (np_name, torch.from_numpy(np_keys.astype(np.int64)), np_pos, np_has_gauss, np_gauss),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    import torch

    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    np.random.set_state((np_name, np_keys.numpy().astype(np.uint32), np_pos, np_has_gauss, np_gauss))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------- writing


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _write_files(folder: Path, contents: CheckpointContents) -> None:
    """Write every file; a failing write (disk full, quota, I/O error) raises OSError with its errno."""
    _save_weights({name: t.detach().contiguous().cpu() for name, t in contents.weights.items()}, folder / WEIGHTS_FILE)
    _save_torch(contents.optimizer, folder / OPTIMIZER_FILE)
    _save_torch({"scheduler": contents.scheduler, "scaler": contents.scaler, "rng": contents.rng,
                 "rank_rng": contents.rank_rng}, folder / TRAINING_STATE_FILE)
    (folder / TRAINER_STATE_FILE).write_text(json.dumps(contents.trainer_state, indent=2, sort_keys=True))


_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def _save_weights(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """safetensors reports a failed write as a SafetensorError naming the OS error: made an OSError again."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file as save_safetensors

    try:
        save_safetensors(tensors, str(path))
    except SafetensorError as exc:
        found = _OS_ERROR.search(str(exc))
        if found is None:
            raise
        code = int(found.group(1))
        raise OSError(code, os.strerror(code), str(path)) from None


class _WriteRecorder:
    """A binary file that remembers the OSError of a failed write: torch.save reports it only as an
    opaque RuntimeError ("unexpected pos ..."), which would hide that the disk is full."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self.handle.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self.handle.flush()


def _save_torch(value: Any, path: Path) -> None:
    import torch

    with open(path, "wb") as handle:
        recorder = _WriteRecorder(handle)
        try:
            torch.save(value, recorder)
        except RuntimeError:
            if recorder.error is None:
                raise
            raise OSError(recorder.error.errno, recorder.error.strerror, str(path)) from None


def save_checkpoint(checkpoints_dir: Path, step: int, contents: CheckpointContents) -> SavedCheckpoint:
    """Write `checkpoints_dir/step-<step>/` atomically and return where it is and its size."""
    checkpoints_dir = Path(checkpoints_dir)
    checkpoints_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(checkpoints_dir)
    tmp = checkpoints_dir / f"{_TMP_PREFIX}step-{step}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        _write_files(tmp, contents)
        files = {}
        for path in sorted(tmp.iterdir()):
            fsync_path(path)
            files[path.name] = {"sha256": _sha256(path), "bytes": path.stat().st_size}
        manifest = {"step": step, "created_at": time.time(), "files": files}
        with open(tmp / MANIFEST_FILE, "w") as handle:
            json.dump(manifest, handle, indent=2, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        fsync_path(tmp)
        final = checkpoints_dir / f"step-{step}"
        superseded = None
        if final.exists():
            # Left by a crashed attempt that got this far before (we resumed from an older one), or
            # the checkpoint a NaN rollback went back to: superseded by the one we just wrote, and
            # deleted only once the new one is in place.
            superseded = checkpoints_dir / f"{_TMP_PREFIX}superseded-{step}-{os.getpid()}"
            os.rename(final, superseded)
        os.rename(tmp, final)
        fsync_path(checkpoints_dir)
        if superseded is not None:
            shutil.rmtree(superseded, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    total = sum(entry["bytes"] for entry in files.values()) + (final / MANIFEST_FILE).stat().st_size
    return SavedCheckpoint(path=final, step=step, bytes=total)


def _remove_stale_temporaries(checkpoints_dir: Path) -> None:
    """Temporary folders of writes that never finished (a crash, a kill) are garbage."""
    for path in checkpoints_dir.iterdir():
        if path.name.startswith(_TMP_PREFIX) and path.is_dir():
            shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------- verifying and finding


def verify_checkpoint(path: Path, *, checksums: bool = True) -> str | None:
    """None when the checkpoint is complete and intact, else the reason it cannot be used.

    With `checksums=False` only presence and sizes are checked (cheap, for pruning decisions).
    """
    path = Path(path)
    try:
        manifest = json.loads((path / MANIFEST_FILE).read_text())
        files = manifest["files"]
        if not isinstance(files, dict):
            raise TypeError("files is not a mapping")
    except FileNotFoundError:
        return "no manifest.json (the write did not finish)"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"unreadable manifest.json ({exc})"
    for required in (WEIGHTS_FILE, OPTIMIZER_FILE, TRAINING_STATE_FILE, TRAINER_STATE_FILE):
        if required not in files:
            return f"manifest.json does not list {required}"
    for name, entry in files.items():
        file = path / name
        if not file.is_file():
            return f"{name} is missing"
        if file.stat().st_size != entry.get("bytes"):
            return f"{name} has {file.stat().st_size} bytes, the manifest says {entry.get('bytes')}"
        if checksums and _sha256(file) != entry.get("sha256"):
            return f"{name} does not match its sha256 checksum"
    return None


def list_checkpoints(checkpoints_dir: Path) -> list[Path]:
    """The `step-N` folders, newest (highest step) first."""
    checkpoints_dir = Path(checkpoints_dir)
    if not checkpoints_dir.is_dir():
        return []
    found = [p for p in checkpoints_dir.iterdir() if p.is_dir() and step_of(p) is not None]
    return sorted(found, key=lambda p: step_of(p) or 0, reverse=True)


def find_resumable(run_dir: Path, warn: Callable[[str], None] = lambda message: None,
                   at_most_step: int | None = None) -> Path | None:
    """The newest checkpoint whose manifest verifies (of those at `at_most_step` or before, when given);
    each one skipped is reported through `warn`."""
    for path in list_checkpoints(Path(run_dir) / "checkpoints"):
        if at_most_step is not None and (step_of(path) or 0) > at_most_step:
            continue
        problem = verify_checkpoint(path)
        if problem is None:
            return path
        warn(f"skipping checkpoint {path.name}: {problem}")
    return None


def discard_after(checkpoints_dir: Path, step: int) -> list[Path]:
    """Delete the checkpoints of steps after `step` and return them: a NaN rollback to `step` abandoned
    the steps they hold, and a resume must not pick them over the rollback."""
    discarded = [path for path in list_checkpoints(checkpoints_dir) if (step_of(path) or 0) > step]
    for path in discarded:
        shutil.rmtree(path, ignore_errors=True)
    return discarded


def prune_checkpoints(checkpoints_dir: Path, keep_last: int, newest_verified: Path) -> list[Path]:
    """Delete checkpoints beyond the `keep_last` newest complete ones; return what was deleted.

    Only called after `newest_verified` was written and verified, so the checkpoint a run resumed
    from is never deleted before a newer one is known to be good. Incomplete `step-N` folders are
    removed too: they can never be resumed from.
    """
    if keep_last <= 0:
        return []
    kept: list[Path] = [newest_verified]
    deleted: list[Path] = []
    for path in list_checkpoints(checkpoints_dir):
        if path == newest_verified:
            continue
        if len(kept) < keep_last and verify_checkpoint(path, checksums=False) is None:
            kept.append(path)
            continue
        shutil.rmtree(path, ignore_errors=True)
        deleted.append(path)
    return deleted


# ---------------------------------------------------------------- reading


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> CheckpointContents:
    """Read a verified checkpoint back (safe loading only: no pickled code runs)."""
    import torch
    from safetensors.torch import load_file as load_safetensors

    path = Path(path)
    try:
        weights = load_safetensors(str(path / WEIGHTS_FILE), device="cpu")
        optimizer = torch.load(path / OPTIMIZER_FILE, map_location=map_location, weights_only=True)
        training_state = torch.load(path / TRAINING_STATE_FILE, map_location="cpu", weights_only=True)
        trainer_state = json.loads((path / TRAINER_STATE_FILE).read_text())
    except (OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    return CheckpointContents(
        weights=weights,
        optimizer=optimizer,
        scheduler=training_state["scheduler"],
        scaler=training_state["scaler"],
        rng=training_state["rng"],
        trainer_state=trainer_state,
        rank_rng=training_state.get("rank_rng") or [],
    )


# ---------------------------------------------------------------- ranks


@dataclass(frozen=True)
class RankShare:
    """What one rank resumes from a checkpoint besides the shared weights: its data position and RNG."""

    data: dict[str, Any]
    rng: dict[str, Any] | None  # None: this rank's generators are not restored (a different world size)
    note: str | None  # why the resume is not exact, for the user


def rank_share(contents: CheckpointContents, rank: int, world_size: int) -> RankShare:
    """Rank `rank`'s part of a checkpoint written by `trainer_state["world_size"]` processes (1 if absent).

    The same world size resumes exactly: each rank continues its own shard. Another world size shards
    the draws differently, so every rank continues from the furthest data position any rank reached:
    the few draws the slower shards had not taken yet are skipped, none is repeated, and the random
    generators start afresh from the seed.
    """
    state = contents.trainer_state
    saved = int(state.get("world_size", 1))
    positions = state.get("rank_data") or [state["progress"]["data"]]
    if saved == world_size:
        if world_size == 1:
            return RankShare(state["progress"]["data"], contents.rng, None)
        return RankShare(positions[rank], contents.rank_rng[rank], None)
    furthest = max(positions, key=lambda data: int((data.get("mixer") or {}).get("draws", 0)))
    note = (f"the checkpoint was written by {saved} process(es) and this run has {world_size}: every rank "
            f"continues from the furthest data position ({furthest['mixer']['draws']} draws), with fresh random "
            f"generators; the losses will not match an uninterrupted run exactly")
    return RankShare(furthest, None, note)
