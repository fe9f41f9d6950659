"""Faults a long run meets, injected for real: SIGKILL at random moments (inside checkpoint writes and
inside training), and a disk that fills up during a checkpoint. Nothing written before the fault is
lost, a half-written checkpoint is never chosen, and a resumed run computes what the uninterrupted
one did."""

from __future__ import annotations

import random
import resource
import signal
import subprocess
import sys

import pytest

from checkpoint_writer import check_after_kill, kill_writer_at_random
from conftest import prepare, status, trainer, wait_for
from omni_runner.run.events import read_events
from omni_runner.train.checkpoint import find_resumable

KILL_TRIALS, SEED = 20, 20261202


def test_a_checkpoint_writer_killed_at_random_moments_never_leaves_a_half_written_checkpoint_to_resume(tmp_path):
    rng = random.Random(SEED)
    resumable = []
    for trial in range(KILL_TRIALS):
        kill_writer_at_random(tmp_path / f"trial-{trial}", rng)
        resumable.append(check_after_kill(tmp_path / f"trial-{trial}"))
    assert sum(step is not None for step in resumable) >= KILL_TRIALS // 2, resumable


def _with_a_small_disk(limit_bytes: int):
    """For the child: files may not grow past `limit_bytes` (RLIMIT_FSIZE), and a write that would is an
    EFBIG error rather than the default SIGXFSZ kill: a full disk, as the process meets it."""
    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return limit


@pytest.mark.slow
def test_a_checkpoint_that_fills_the_disk_pauses_the_run_and_keeps_the_earlier_one(tmp_path):
    run = prepare(tmp_path)
    process = trainer(run)
    wait_for(lambda: find_resumable(run.path), what="the first checkpoint")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 0
    earlier = find_resumable(run.path)

    log = open(run.trainer_log, "ab")
    process = subprocess.Popen([sys.executable, "-m", "omni_runner.train", str(run.path), "--resume"], stdout=log,
                               stderr=subprocess.STDOUT, preexec_fn=_with_a_small_disk(256 * 1024))
    try:
        wait_for(lambda: status(run).get("reason") == "checkpoint_failed", timeout=180, what="the paused run")
        [error] = [e for e in read_events(run.events) if e["type"] == "error" and e.get("source") == "checkpoint"]
        assert "File too large" in error["message"] and "omni-run resume" in error["message"]
        assert earlier.name in error["message"]
        assert status(run)["state"] == "paused"
        assert find_resumable(run.path) == earlier  # intact, and still the one to resume from
        assert not [p for p in run.checkpoints.iterdir() if p.name.startswith(".tmp-")]  # no partial folder
    finally:
        process.kill()
        process.wait(timeout=60)
