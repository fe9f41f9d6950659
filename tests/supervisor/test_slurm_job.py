"""The batch script of `omni-run submit --slurm` with the real omni-run: preempted, it checkpoints and asks
SLURM to requeue the job; started again, as SLURM starts a requeued job, it continues the same run to its
end. SLURM is not on CI machines: sbatch and scontrol are stand-ins that record how they were called, and
the test sends the signal SLURM would send."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from omni_run_driver import FAST, SHORT_STEPS, TINY, only_run
from run_watch import events_of, status_of, wait_for

pytestmark = pytest.mark.slow

STEPS = 4


def stand_in(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text(f"#!/bin/bash\n{body}\n")
    path.chmod(0o755)


def test_a_preempted_job_checkpoints_is_requeued_and_its_next_start_finishes_the_same_run(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stand_in(bin_dir, "sbatch", 'echo "Submitted batch job 4242"')
    stand_in(bin_dir, "scontrol", f'echo "$*" >> {tmp_path}/scontrol.argv')
    omni_run = Path(sys.executable).with_name("omni-run")  # the console script, as a job finds it on PATH
    stand_in(bin_dir, "omni-run", f'exec {omni_run} "$@"')
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "SLURM_JOB_ID": "4242"}
    runs = tmp_path / "runs"
    submitted = subprocess.run(
        [sys.executable, "-m", "omni_runner.cli", "submit", TINY, "--slurm", "--runs-dir", str(runs), *FAST, *SHORT_STEPS,
         "--set", f"training.max_steps={STEPS}", "--set", "controller.checkpoint.every_steps=1000"],
        env=env, capture_output=True, text=True, timeout=120, check=False)
    assert submitted.returncode == 0, submitted.stderr
    [run] = runs.iterdir()
    script = run / "slurm" / "submit.sbatch"

    first = subprocess.Popen(["bash", str(script)], env=env, start_new_session=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: (status_of(run).get("step") or 0) >= 1, timeout=240, what="step 1 of the first start")
    os.kill(first.pid, signal.SIGURG)  # what `--signal=B:URG@GRACE` does before the time limit
    output, _ = first.communicate(timeout=240)
    assert first.returncode == 0, output
    stopped_at = status_of(run)["step"]
    assert (status_of(run)["state"], status_of(run)["last_checkpoint"]["step"]) == ("stopped", stopped_at)
    assert (tmp_path / "scontrol.argv").read_text().splitlines() == ["requeue 4242"]

    second = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=300, check=False)
    assert second.returncode == 0, second.stdout + second.stderr
    assert (status_of(run)["state"], status_of(run)["step"]) == ("finished", STEPS)
    assert only_run(runs).path == run
    assert [event["step"] for event in events_of(run, "run_start")][-1] == stopped_at  # continued, not restarted
    assert (tmp_path / "scontrol.argv").read_text().splitlines() == ["requeue 4242"]  # no second requeue
