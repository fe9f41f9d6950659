"""`omni-run submit RECIPE --slurm`: the batch script it writes, what it submits, and what that script does
when SLURM signals it (run by bash against stand-ins for omni-run, scontrol and sbatch that record how
they were called: SLURM itself is not on CI machines)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from omni_runner.cli import main
from omni_runner.run.prepare import prepare_run
from omni_runner.run.slurm import (
    SlurmJob,
    SlurmOptionError,
    check_job,
    sbatch_script,
    submitted_job_id,
    time_limit_seconds,
)

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "recipes" / "tiny_omni.yaml"

pytestmark = pytest.mark.timeout(60)


def job(tmp_path: Path, **options) -> SlurmJob:
    return SlurmJob(run_dir=tmp_path / "run", recipe=RECIPE, workdir=tmp_path, job_name="tiny-omni",
                    train_options=("--set", "training.lr=1e-4"), **options)


def directives(script: str) -> list[str]:
    return [line.removeprefix("#SBATCH ") for line in script.splitlines() if line.startswith("#SBATCH ")]


def fake_command(bin_dir: Path, name: str, body: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / name
    path.write_text(f"#!/bin/bash\n{body}\n")
    path.chmod(0o755)


# ---------------------------------------------------------------- the script, as text


def test_the_script_asks_for_the_resources_and_is_requeued_with_a_warning_before_the_time_limit(tmp_path):
    script = sbatch_script(job(tmp_path, gpus_per_node=4, time_limit="12:00:00", partition="gpu", account="lab",
                               cpus_per_task=32, preempt_grace_s=600))
    assert directives(script) == [
        "--job-name=tiny-omni", "--nodes=1", "--ntasks-per-node=1", "--gpus-per-node=4", "--cpus-per-task=32",
        "--time=12:00:00", "--partition=gpu", "--account=lab", f"--chdir={tmp_path}",
        f"--output={tmp_path / 'run' / 'slurm' / '%j.out'}", "--open-mode=append", "--requeue", "--signal=B:URG@600",
    ]


def test_options_not_given_leave_slurm_its_defaults(tmp_path):
    written = {line.split("=")[0] for line in directives(sbatch_script(job(tmp_path)))}
    assert not written & {"--time", "--partition", "--account", "--cpus-per-task"}
    assert "--signal=B:URG@300" in directives(sbatch_script(job(tmp_path)))


def test_the_script_is_valid_bash(tmp_path):
    path = tmp_path / "submit.sbatch"
    path.write_text(sbatch_script(job(tmp_path, time_limit="1-00:00")))
    result = subprocess.run(["bash", "-n", str(path)], check=False, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(("text", "seconds"), [("90", 5400), ("90:30", 5430), ("2:00:00", 7200), ("1-12", 129600),
                                               ("1-00:30", 88200), ("2-01:00:05", 176405)])
def test_time_limits_are_read_in_every_form_sbatch_takes(text, seconds):
    assert time_limit_seconds(text) == seconds


def test_a_grace_as_long_as_the_time_limit_is_refused(tmp_path):
    with pytest.raises(SlurmOptionError, match="--preempt-grace 300 s is not shorter than --time 5"):
        check_job(job(tmp_path, time_limit="5"))
    with pytest.raises(SlurmOptionError, match="not a SLURM time limit"):
        check_job(job(tmp_path, time_limit="two hours"))


def test_the_job_id_is_read_from_sbatch_s_reply():
    assert submitted_job_id("Submitted batch job 4242\n") == "4242"
    assert submitted_job_id("sbatch: error: Batch job submission failed: Invalid account\n") is None


# ---------------------------------------------------------------- omni-run submit


@pytest.fixture
def fake_sbatch(tmp_path, monkeypatch) -> Path:
    """An sbatch first on PATH that records its arguments and the script it got, and accepts the job."""
    record = tmp_path / "sbatch-record"
    record.mkdir()
    fake_command(tmp_path / "bin", "sbatch",
                 f'printf "%s\\n" "$@" > {record}/args\ncp "$1" {record}/script\necho "Submitted batch job 4242"')
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.chdir(tmp_path)
    return record


def test_a_dry_run_prints_the_script_and_writes_and_submits_nothing(tmp_path, fake_sbatch, capsys):
    assert main(["submit", str(RECIPE), "--slurm", "--dry-run", "--time", "1:00:00"]) == 0
    printed = capsys.readouterr()
    assert printed.out.startswith("#!/bin/bash\n") and "#SBATCH --signal=B:URG@300" in printed.out
    assert f"omni-run train {RECIPE} --run-dir {tmp_path / 'runs' / 'tiny-omni-'}" in printed.out
    assert "dry run: nothing written or submitted" in printed.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin", "sbatch-record"]
    assert not any(fake_sbatch.iterdir())


def test_submit_runs_on_a_login_node_without_importing_torch(tmp_path):
    child = ("import sys; from omni_runner.cli import main; code = main(sys.argv[1:]); "
             "print('torch' in sys.modules, file=sys.stderr); sys.exit(code)")
    result = subprocess.run([sys.executable, "-c", child, "submit", str(RECIPE), "--slurm", "--dry-run"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[-1] == "False"


def test_submit_hands_sbatch_the_script_in_the_run_folder_and_records_the_job_id(tmp_path, fake_sbatch, capsys):
    assert main(["submit", str(RECIPE), "--slurm", "--runs-dir", "queued", "--set", "training.lr=1e-4"]) == 0
    [run] = (tmp_path / "queued").iterdir()
    script = run / "slurm" / "submit.sbatch"
    assert (fake_sbatch / "args").read_text().splitlines() == [str(script)]
    assert (fake_sbatch / "script").read_text() == script.read_text()
    assert "--set training.lr=1e-4 --set distributed.num_processes=1 --set distributed.num_machines=1" in script.read_text()
    [record] = [json.loads(line) for line in (run / "slurm" / "jobs.jsonl").read_text().splitlines()]
    assert record["job_id"] == "4242" and record["script"] == str(script)
    out = capsys.readouterr().out
    assert "submitted SLURM job 4242" in out and f"omni-tui attach {run}" in out and "squeue -j 4242" in out


def test_a_job_sbatch_refuses_is_reported_with_its_reason_and_the_script_is_kept(tmp_path, fake_sbatch, capsys):
    fake_command(tmp_path / "bin", "sbatch", 'echo "sbatch: error: Batch job submission failed: Invalid account" >&2; exit 1')
    assert main(["submit", str(RECIPE), "--slurm", "--account", "nope"]) == 1
    err = capsys.readouterr().err
    [run] = (tmp_path / "runs").iterdir()
    assert "Invalid account" in err and f"sbatch {run / 'slurm' / 'submit.sbatch'}" in err
    assert not (run / "slurm" / "jobs.jsonl").exists()


def test_several_nodes_start_the_run_on_node_0_and_join_it_from_the_others(tmp_path, fake_sbatch, capsys):
    assert main(["submit", str(RECIPE), "--slurm", "--nodes", "2", "--gpus-per-node", "2", "--dry-run"]) == 0
    script = capsys.readouterr().out
    assert "--nodes=2" in directives(script) and "--ntasks-per-node=1" in directives(script)
    assert "--set distributed.num_processes=4 --set distributed.num_machines=2" in script
    assert 'export OMNI_RUNNER_MAIN_PROCESS_IP="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"' in script
    assert "srun --ntasks-per-node=1" in script and "join" in script
    assert subprocess.run(["bash", "-n"], input=script, text=True, check=False).returncode == 0


def test_a_process_count_the_plan_refuses_is_printed_as_plan_prints_it_with_the_option_that_set_it(fake_sbatch, tmp_path,
                                                                                                    capsys):
    recipe = tmp_path / "fsdp.yaml"  # FSDP2 has no effect with one process, and refuses fp16 with several
    recipe.write_text(f"extends: {REPO / 'recipes' / 'tiny_omni.yaml'}\ntraining:\n  precision: fp16\n"
                      "distributed:\n  strategy: fsdp\n")
    assert main(["submit", str(recipe), "--slurm", "--gpus-per-node", "2"]) == 1
    err = capsys.readouterr().err
    assert "fsdp.yaml:3:" in err and "error: training.precision fp16 under strategy fsdp with 2 processes" in err
    assert err.rstrip().endswith("note: planned with distributed.num_processes=2, from --nodes 1 and --gpus-per-node 2 (docs/slurm.md)")
    assert not any(fake_sbatch.iterdir())


def test_without_sbatch_on_path_submit_says_so_and_points_to_the_dry_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.chdir(tmp_path)
    assert main(["submit", str(RECIPE), "--slurm"]) == 1
    err = capsys.readouterr().err
    assert "sbatch is not on PATH" in err and "--dry-run" in err
    assert not any(tmp_path.iterdir())


def test_a_run_folder_made_at_submission_takes_its_run_when_the_job_starts(tmp_path):
    (tmp_path / "run" / "slurm").mkdir(parents=True)
    run = prepare_run(RECIPE, run_dir=tmp_path / "run")
    assert run.plan.is_file() and run.recipe.is_file()


# ---------------------------------------------------------------- the script under SLURM's signals


class BatchJob:
    """The generated script run by bash as SLURM would run it, with omni-run and scontrol stand-ins.

    The omni-run stand-in records its arguments, then waits; on SIGTERM it records the signal, writes the
    status.json a stopped (or, with `state_on_stop`, finished) run has, and exits 0 as omni-run does."""

    def __init__(self, tmp_path: Path, state_on_stop: str = "stopped", nodes: int = 1) -> None:
        self.run_dir = tmp_path / "run"
        self.record = tmp_path / "record"
        self.record.mkdir(exist_ok=True)
        bin_dir = tmp_path / "bin"
        fake_command(bin_dir, "omni-run", f"""
echo "$*${{OMNI_RUNNER_MAIN_PROCESS_IP:+ (main ip $OMNI_RUNNER_MAIN_PROCESS_IP)}}" >> {self.record}/omni-run.argv
on_term() {{ echo TERM >> {self.record}/omni-run.signals; echo '{{"state": "{state_on_stop}"}}' > {self.run_dir}/status.json; exit 0; }}
trap on_term TERM
touch {self.record}/omni-run.started
while :; do sleep 0.05; done""")
        fake_command(bin_dir, "scontrol", f"""
if [ "$1 $2" = "show hostnames" ]; then printf 'node-a\\nnode-b\\n'; exit 0; fi
echo "$*" >> {self.record}/scontrol.argv""")
        # srun: its command once a node, each with its SLURM_NODEID, and SIGTERM passed on to all of them.
        fake_command(bin_dir, "srun", """
while [ "${1#--}" != "$1" ]; do shift; done
SLURM_NODEID=0 "$@" & first=$!
SLURM_NODEID=1 "$@" & second=$!
trap 'kill -TERM $first $second' TERM
wait $first; wait $first; wait $second""")
        self.script = tmp_path / "submit.sbatch"
        self.script.write_text(sbatch_script(job(tmp_path, nodes=nodes)))
        self.env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "SLURM_JOB_ID": "4242", "SLURM_JOB_NODELIST": "node-[a-b]"}
        self.run_dir.mkdir(exist_ok=True)

    def start(self) -> subprocess.Popen:
        (self.record / "omni-run.started").unlink(missing_ok=True)
        process = subprocess.Popen(["bash", str(self.script)], env=self.env, start_new_session=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 20
        while not (self.record / "omni-run.started").exists():
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()[0]
            time.sleep(0.02)
        return process

    def lines(self, name: str) -> list[str]:
        path = self.record / name
        return path.read_text().splitlines() if path.exists() else []


def test_the_preemption_signal_checkpoints_through_omni_run_then_requeues_the_job(tmp_path):
    batch = BatchJob(tmp_path)
    process = batch.start()
    os.kill(process.pid, signal.SIGURG)  # `--signal=B:URG@...`: SLURM signals the batch shell alone
    assert process.wait(timeout=20) == 0
    assert batch.lines("omni-run.argv") == [
        f"train {RECIPE} --run-dir {batch.run_dir} --set training.lr=1e-4"]
    assert batch.lines("omni-run.signals") == ["TERM"]
    assert batch.lines("scontrol.argv") == ["requeue 4242"]


def test_scancel_stops_the_run_through_omni_run_s_own_sigterm_and_does_not_requeue(tmp_path):
    batch = BatchJob(tmp_path)
    process = batch.start()
    os.killpg(process.pid, signal.SIGTERM)  # scancel: SLURM signals every process of the job
    assert process.wait(timeout=20) == 0
    assert batch.lines("omni-run.signals") == ["TERM"]  # once: a second SIGTERM would mean "stop at once"
    assert batch.lines("scontrol.argv") == []


def test_a_requeued_job_resumes_the_run_it_started(tmp_path):
    batch = BatchJob(tmp_path)
    (batch.run_dir / "status.json").write_text('{"state": "stopped"}')
    process = batch.start()
    assert batch.lines("omni-run.argv") == [f"resume {batch.run_dir}"]
    os.killpg(process.pid, signal.SIGTERM)
    assert process.wait(timeout=20) == 0


def test_a_run_that_finished_as_the_preemption_signal_came_is_not_requeued(tmp_path):
    batch = BatchJob(tmp_path, state_on_stop="finished")
    process = batch.start()
    os.kill(process.pid, signal.SIGURG)
    assert process.wait(timeout=20) == 0
    assert batch.lines("scontrol.argv") == []


def test_on_several_nodes_node_0_starts_the_run_the_others_join_and_preemption_still_requeues(tmp_path):
    batch = BatchJob(tmp_path, nodes=2)
    process = batch.start()
    try:
        deadline = time.monotonic() + 20
        while len(batch.lines("omni-run.argv")) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sorted(batch.lines("omni-run.argv")) == [
            f"join {batch.run_dir} --machine-rank 1 (main ip node-a)",
            f"train {RECIPE} --run-dir {batch.run_dir} --set training.lr=1e-4 (main ip node-a)"]
        os.kill(process.pid, signal.SIGURG)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)  # the stand-ins, which would otherwise wait for ever
    assert batch.lines("omni-run.signals") == ["TERM", "TERM"]
    assert batch.lines("scontrol.argv") == ["requeue 4242"]
