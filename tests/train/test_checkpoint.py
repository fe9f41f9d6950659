"""Checkpoints are atomic and verified: only a complete, intact `step-N` is ever resumed from."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from omni_runner.train.checkpoint import (
    MANIFEST_FILE,
    OPTIMIZER_FILE,
    WEIGHTS_FILE,
    CheckpointContents,
    capture_rng_state,
    find_resumable,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    restore_rng_state,
    save_checkpoint,
    verify_checkpoint,
)


def _contents(step: int) -> CheckpointContents:
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    return CheckpointContents(
        weights={name: p.detach().clone() for name, p in model.named_parameters()},
        optimizer=optimizer.state_dict(),
        scheduler=scheduler.state_dict(),
        scaler=torch.amp.GradScaler("cpu", enabled=False).state_dict(),
        rng=capture_rng_state(),
        trainer_state={"step": step, "data": {"position": step * 3}},
    )


def _save_steps(checkpoints: Path, *steps: int) -> None:
    for step in steps:
        save_checkpoint(checkpoints, step, _contents(step))


def test_saved_checkpoint_round_trips_weights_optimizer_and_counters(tmp_path: Path) -> None:
    contents = _contents(7)
    saved = save_checkpoint(tmp_path / "checkpoints", 7, contents)
    assert saved.path == tmp_path / "checkpoints" / "step-7"
    assert verify_checkpoint(saved.path) is None
    loaded = load_checkpoint(saved.path)
    for name, tensor in contents.weights.items():
        assert torch.equal(loaded.weights[name], tensor)
    assert loaded.optimizer["state"][0]["step"] == contents.optimizer["state"][0]["step"]
    assert torch.equal(loaded.optimizer["state"][0]["exp_avg"], contents.optimizer["state"][0]["exp_avg"])
    assert loaded.trainer_state == {"step": 7, "data": {"position": 21}}
    assert saved.bytes == sum(p.stat().st_size for p in saved.path.iterdir())


def test_restored_rng_states_replay_the_same_random_draws(tmp_path: Path) -> None:
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    contents = _contents(1)
    expected = (random.random(), np.random.rand(), torch.rand(3))
    random.random(), np.random.rand(), torch.rand(5)  # the generators move on
    saved = save_checkpoint(tmp_path, 1, contents)
    restore_rng_state(load_checkpoint(saved.path).rng)
    replay = (random.random(), np.random.rand(), torch.rand(3))
    assert replay[:2] == expected[:2] and torch.equal(replay[2], expected[2])


def test_manifest_lists_the_checksum_of_every_other_file(tmp_path: Path) -> None:
    saved = save_checkpoint(tmp_path, 3, _contents(3))
    manifest = json.loads((saved.path / MANIFEST_FILE).read_text())
    assert set(manifest["files"]) == {p.name for p in saved.path.iterdir()} - {MANIFEST_FILE}
    assert all(len(entry["sha256"]) == 64 for entry in manifest["files"].values())


def test_newest_intact_checkpoint_is_resumable(tmp_path: Path) -> None:
    _save_steps(tmp_path / "checkpoints", 2, 4, 6)
    assert find_resumable(tmp_path) == tmp_path / "checkpoints" / "step-6"


def test_checkpoint_without_manifest_is_skipped_with_a_warning(tmp_path: Path) -> None:
    _save_steps(tmp_path / "checkpoints", 2, 4)
    (tmp_path / "checkpoints" / "step-4" / MANIFEST_FILE).unlink()
    warnings: list[str] = []
    assert find_resumable(tmp_path, warnings.append) == tmp_path / "checkpoints" / "step-2"
    assert warnings == ["skipping checkpoint step-4: no manifest.json (the write did not finish)"]


def test_checkpoint_with_a_corrupted_file_is_skipped(tmp_path: Path) -> None:
    _save_steps(tmp_path / "checkpoints", 2, 4)
    weights = tmp_path / "checkpoints" / "step-4" / WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # same size, different content
    weights.write_bytes(bytes(data))
    warnings: list[str] = []
    assert find_resumable(tmp_path, warnings.append) == tmp_path / "checkpoints" / "step-2"
    assert "weights.safetensors does not match its sha256 checksum" in warnings[0]


def test_checkpoint_with_a_missing_file_is_skipped(tmp_path: Path) -> None:
    _save_steps(tmp_path / "checkpoints", 2, 4)
    (tmp_path / "checkpoints" / "step-4" / OPTIMIZER_FILE).unlink()
    assert find_resumable(tmp_path) == tmp_path / "checkpoints" / "step-2"


def test_interrupted_write_leaves_only_a_temporary_folder_that_is_never_picked(tmp_path: Path) -> None:
    checkpoints = tmp_path / "checkpoints"
    _save_steps(checkpoints, 2)
    # A write killed half-way: the temporary folder holds files but no manifest and was never renamed.
    interrupted = checkpoints / ".tmp-step-4-999"
    shutil.copytree(checkpoints / "step-2", interrupted)
    (interrupted / MANIFEST_FILE).unlink()
    assert find_resumable(tmp_path) == checkpoints / "step-2"
    assert list_checkpoints(checkpoints) == [checkpoints / "step-2"]
    _save_steps(checkpoints, 6)
    assert not interrupted.exists(), "the next save removes the garbage of the interrupted one"


def test_no_checkpoint_means_nothing_to_resume(tmp_path: Path) -> None:
    assert find_resumable(tmp_path) is None


def test_a_failed_write_leaves_no_step_folder(tmp_path: Path) -> None:
    contents = _contents(5)
    contents.trainer_state = {"not json": object()}
    with pytest.raises(TypeError):
        save_checkpoint(tmp_path, 5, contents)
    assert list(tmp_path.iterdir()) == []


def test_pruning_keeps_the_newest_complete_checkpoints(tmp_path: Path) -> None:
    checkpoints = tmp_path / "checkpoints"
    _save_steps(checkpoints, 2, 4, 6, 8)
    deleted = prune_checkpoints(checkpoints, keep_last=2, newest_verified=checkpoints / "step-8")
    assert sorted(p.name for p in deleted) == ["step-2", "step-4"]
    assert list_checkpoints(checkpoints) == [checkpoints / "step-8", checkpoints / "step-6"]


def test_pruning_does_not_count_an_incomplete_checkpoint_as_kept(tmp_path: Path) -> None:
    checkpoints = tmp_path / "checkpoints"
    _save_steps(checkpoints, 2, 4, 6)
    (checkpoints / "step-4" / MANIFEST_FILE).unlink()
    prune_checkpoints(checkpoints, keep_last=2, newest_verified=checkpoints / "step-6")
    assert list_checkpoints(checkpoints) == [checkpoints / "step-6", checkpoints / "step-2"]


def test_a_superseded_incomplete_checkpoint_of_the_same_step_is_replaced(tmp_path: Path) -> None:
    checkpoints = tmp_path / "checkpoints"
    (checkpoints / "step-4").mkdir(parents=True)  # unusable leftover of the attempt before a resume
    saved = save_checkpoint(checkpoints, 4, _contents(4))
    assert verify_checkpoint(saved.path) is None
