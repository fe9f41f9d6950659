"""The parent that runs the trainer as a child process, explains how it ended, and restarts it.

Keeping torch out of this process is deliberate: the supervisor must outlive whatever kills the
trainer (CUDA errors, the OOM killer, a segfault in a kernel) and still write down what happened.
The trainer runs in its own session, so a Ctrl-C in the terminal reaches only the supervisor, which
turns it into a graceful stop (the trainer checkpoints and exits 0); a second Ctrl-C stops at once.
On Linux the trainer also gets that graceful stop when the supervisor itself dies (`kill -9`, a
closed session): a trainer nobody watches would otherwise hold a GPU for days with no one to
restart it, report its exit or answer `omni-run ls` truthfully.

The restart budget (`controller.restarts`) belongs to the run, not to one supervisor: the restarts
used and the budget are kept in `status.json`, so `omni-run resume` cannot quietly hand a
crash-looping run a fresh budget; the user grants one explicitly (`--restarts N`).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from omni_runner.plain_yaml import YAMLError, read_plain_yaml
from omni_runner.run.batch_shape import (
    BatchShapeError,
    oom_suggestion,
    read_batch_shapes,
    smaller_shape,
    stage_at_step,
    with_batch_shapes,
    write_batch_shape,
)
from omni_runner.run.events import EventLog
from omni_runner.run.exit_codes import TrainerExit
from omni_runner.run.launcher import first_rank_failure, rank_lines, trainer_command, world_size
from omni_runner.run.rundir import RunDir
from omni_runner.run.status import ACTIVE_STATES, STATUS_FILE, read_status, write_json_atomic

TERMINAL_STATES = ("finished", "stopped", "failed")
# Causes worth another attempt from the last checkpoint under `controller.restarts`: a deterministic NaN
# would only come back. An "oom" with `training.auto_micro_batch` restarts apart from that budget, with a
# smaller micro-batch, until the micro-batch is 1.
RESTARTABLE_CAUSES = ("killed", "error", "oom")
_OOM_MARKERS = ("CUDA out of memory", "OutOfMemoryError", "torch.OutOfMemoryError")
_LOG_TAIL_BYTES = 16_384
# torchrun's own exception when a job scheduler signals it along with every other process of the job.
_LAUNCHER_SIGNALLED = "SignalException"
_POLL_S = 0.2


@dataclass(frozen=True)
class ExitReport:
    """How the trainer ended, in words a person can act on."""

    exit_code: int | None
    signal: str | None
    cause: str  # ok | stopped | interrupted | oom | nan | killed | error
    explanation: str
    suggestion: str | None
    rank: int | None = None  # with several processes: the rank that failed first, and its host
    host: str | None = None

    def to_event(self) -> dict[str, Any]:
        return {
            "exit_code": self.exit_code,
            "signal": self.signal,
            "cause": self.cause,
            "explanation": self.explanation,
            "suggestion": self.suggestion,
            **({"rank": self.rank, "host": self.host} if self.rank is not None else {}),
        }


def classify_exit(returncode: int, final_state: str | None, log_tail: str, plan: dict[str, Any],
                  stage: int = 0) -> ExitReport:
    """Name the cause of a trainer exit from its return code, last state and the end of its log
    (`stage`: the index of the stage that was running, whose shape the advice names)."""
    if returncode < 0:
        name = signal.Signals(-returncode).name
        if -returncode == signal.SIGKILL:
            why = "The trainer was killed with SIGKILL: by `kill -9`, or by the kernel's OOM killer when the host ran out of RAM."
            hint = "Check `dmesg` for 'Out of memory'; if so lower training.micro_batch or dataloading memory."
        else:
            why, hint = f"The trainer was killed by {name}.", None
        return ExitReport(None, name, "killed", why, hint)
    if returncode == TrainerExit.OK:
        if final_state == "stopped":
            return ExitReport(0, None, "stopped", "The run was stopped on request after a checkpoint.", "Continue it with `omni-run resume RUN`.")
        return ExitReport(0, None, "ok", "The run finished.", None)
    if returncode == TrainerExit.OOM or any(marker in log_tail for marker in _OOM_MARKERS):
        return ExitReport(returncode, None, "oom", "The GPU ran out of memory.", oom_suggestion(plan, stage))
    if returncode == TrainerExit.NAN:
        return ExitReport(
            returncode, None, "nan",
            "Training stopped after too many steps in a row with a NaN or infinite loss (training.nan_policy).",
            "Lower training.lr or raise training.warmup_steps, check the data with `omni-run data check`, or let "
            "training.nan_policy.action: rollback go back to the last good checkpoint with a lower learning rate.",
        )
    if returncode == TrainerExit.INTERRUPTED:
        return ExitReport(
            returncode, None, "interrupted",
            "The trainer was stopped at once by a second stop signal, without a checkpoint.",
            "Continue from the last checkpoint with `omni-run resume RUN`; the steps after it are lost.",
        )
    last_error = _last_error_line(log_tail)
    why = f"The trainer failed with exit code {returncode}" + (f": {last_error}" if last_error else ".")
    return ExitReport(returncode, None, "error", why, "See trainer.log in the run folder for the full traceback.")


def classify_launch_exit(returncode: int, final_state: str | None, log_tail: str, plan: dict[str, Any],
                         stage: int = 0) -> ExitReport:
    """`classify_exit` of one trainer start; when a launcher ran several ranks and one failed, the cause is
    that rank's own exit, named with its rank and host (the launcher stopped the others)."""
    failure = first_rank_failure(log_tail) if returncode != 0 else None
    if failure is None and returncode != 0 and final_state == "stopped" and _LAUNCHER_SIGNALLED in log_tail:
        returncode = TrainerExit.OK  # the ranks stopped after their checkpoint; the launcher, signalled too, exits 1
    if failure is None:
        return classify_exit(returncode, final_state, log_tail, plan, stage)
    report = classify_exit(failure.exit_code, final_state, rank_lines(log_tail, failure.rank), plan, stage)
    pid = f", pid {failure.pid}" if failure.pid else ""
    return replace(report, rank=failure.rank, host=failure.host, explanation=(
        f"Rank {failure.rank} on {failure.host}{pid} failed first, and the launcher stopped the other ranks. "
        f"{report.explanation}"))


def lower_micro_batch(report: ExitReport, stage: dict[str, Any]) -> tuple[ExitReport, tuple[int, int] | None]:
    """`training.auto_micro_batch` after an out-of-memory exit in `stage`: the smaller (micro_batch,
    grad_accum) to restart with, or None at micro-batch 1, with the report saying so."""
    lowered = smaller_shape(int(stage["micro_batch"]), int(stage["grad_accum"]))
    if lowered is None:
        report = replace(report, explanation=f"{report.explanation} training.auto_micro_batch cannot go lower: "
                         "the micro-batch is already 1.")
    return report, lowered


def _last_error_line(log_tail: str) -> str | None:
    for line in reversed(log_tail.strip().splitlines()):
        stripped = line.strip()
        if stripped and ("Error" in stripped or "Exception" in stripped or stripped.startswith("error")):
            return stripped
    return None


def read_log_tail(path: Path, size: int = _LOG_TAIL_BYTES, since: int = 0) -> str:
    """The end of the log, no earlier than byte `since` (where this attempt's output began: an earlier
    attempt's out-of-memory text must not name this one's cause)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(max(since, os.path.getsize(path) - size))
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON file holding an object, or {} when it is missing, unreadable or holds something else."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def allowed_restarts(run: RunDir) -> int:
    """`controller.restarts` from the run's resolved recipe (0 when unreadable)."""
    try:
        data = read_plain_yaml(run.recipe)
        return int(data["controller"]["restarts"])
    except (OSError, YAMLError, KeyError, TypeError, ValueError):
        return 0


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def restart_budget(run: RunDir, status: dict[str, Any], granted: int | None = None) -> int:
    """How many automatic restarts the run may use over its whole life.

    The recipe's `controller.restarts` until the run records its own; `granted` (the user's
    `omni-run resume --restarts N`) allows N more from the restarts already used.
    """
    used = _count(status.get("restarts")) or 0
    if granted is not None:
        return used + granted
    recorded = _count(status.get("restart_budget"))
    return allowed_restarts(run) if recorded is None else recorded


def spent_budget(status: dict[str, Any]) -> str | None:
    """Why a failed run should not be resumed without a new budget, or None when it may be.

    A run that failed after using every restart it was given is crash-looping: resuming it again
    would most likely fail again. A budget of 0 (the default) never counts as spent: that user
    asked for no automatic restarts, and a resume is their own decision.
    """
    used, budget = _count(status.get("restarts")) or 0, _count(status.get("restart_budget"))
    if status.get("state") != "failed" or not budget or used < budget:
        return None
    last = status.get("last_exit") if isinstance(status.get("last_exit"), dict) else {}
    cause = last.get("cause") or status.get("reason") or "unknown"
    explanation = f": {last['explanation']}" if last.get("explanation") else ""
    return (f"it used all {used} of its {budget} automatic restart(s) (controller.restarts) and failed again; "
            f"last failure [{cause}]{explanation}")


def auto_micro_batch(run: RunDir) -> bool:
    """`training.auto_micro_batch` from the run's resolved recipe (False when unreadable)."""
    try:
        return read_plain_yaml(run.recipe)["training"]["auto_micro_batch"] is True
    except (OSError, YAMLError, KeyError, TypeError):
        return False


def stages_now(run: RunDir, plan: dict[str, Any]) -> list[dict[str, Any]]:
    """The plan's stages with the micro-batches auto_micro_batch lowered (unreadable record: the plan's;
    the trainer reports that file itself)."""
    try:
        return with_batch_shapes(plan.get("stages") or [], read_batch_shapes(run.path))
    except BatchShapeError:
        return plan.get("stages") or []


def _update_status(folder: Path, **fields: Any) -> None:
    """Read-modify-write of `folder`/status.json, only while no trainer is writing it."""
    data = read_status(folder) or {}
    data.update(fields, updated_at=time.time())
    write_json_atomic(folder / STATUS_FILE, data)


def machine_folder(run: RunDir, machine_rank: int) -> Path:
    """Where machine `machine_rank`'s supervisor keeps its own state: the run folder itself on machine 0,
    whose rank 0 reports the run, else `nodes/machine-K/` (restarts, last exit) beside it."""
    return run.path if machine_rank == 0 else run.path / "nodes" / f"machine-{machine_rank}"


class _Trainer:
    """The running trainer as signals see it: the child, or under a launcher, rank 0 and its peers.

    Control signals go to the process whose controller acts on them: the child itself with one
    process; with several, rank 0 (its pid is in status.json once it is up), which tells the other
    ranks. SIGKILL goes to every rank of this machine and the launcher, so none is left training on its
    own. On machines other than 0 rank 0 is out of reach: pause, checkpoint and the graceful stop are
    steered on machine 0 (a job scheduler signals every machine, and machine 0's stop ends the run
    here too); a second stop here stops this machine's launcher, which fails the whole run.
    """

    def __init__(self, run: RunDir, distributed: bool, machine_rank: int = 0) -> None:
        self.run = run
        self.distributed = distributed
        self.machine_rank = machine_rank
        self.child: subprocess.Popen | None = None

    def send(self, signum: int) -> None:
        """Deliver `signum`; dropped between a crash and its restart, when there is no trainer."""
        if self.child is None or self.child.poll() is not None:
            return
        if not self.distributed:
            self.child.send_signal(signum)
            return
        if self.machine_rank > 0 and signum != signal.SIGKILL:
            if signum == signal.SIGINT:
                self.child.send_signal(signal.SIGTERM)
            return
        status = read_status(self.run.path) or {}
        if signum == signal.SIGKILL:
            for rank in status.get("ranks") or []:
                if isinstance(rank, dict) and rank.get("host") == socket.gethostname() and is_alive(rank.get("pid")):
                    os.kill(rank["pid"], signum)
            self.child.send_signal(signum)
        elif self.machine_rank == 0 and is_alive(status.get("pid")):
            os.kill(status["pid"], signum)
        elif signum in (signal.SIGTERM, signal.SIGINT):
            self.child.send_signal(signum)  # the ranks are still starting: the launcher stops them all


class _StopRequests:
    """Turns Ctrl-C / SIGTERM on the supervisor into graceful, then immediate, stops of the trainer."""

    def __init__(self, trainer: _Trainer) -> None:
        self.count = 0
        self.trainer = trainer

    def __call__(self, signum: int, frame: object) -> None:
        self.count += 1
        # 1st: graceful (checkpoint and stop); 2nd: the controller's "stop at once"; then SIGKILL.
        self.trainer.send({1: signal.SIGTERM, 2: signal.SIGINT}.get(self.count, signal.SIGKILL))


def _forwarder(trainer: _Trainer) -> Callable[[int, object], None]:
    """SIGUSR1 (pause/resume) and SIGUSR2 (checkpoint) sent to `omni-run` reach the trainer, so a user
    may signal either process."""

    def forward(signum: int, frame: object) -> None:
        trainer.send(signum)

    return forward


_PR_SET_PDEATHSIG = 1


def _stop_when_orphaned(supervisor_pid: int) -> Callable[[], None] | None:
    """A `preexec_fn` asking the kernel to send the trainer SIGTERM (checkpoint and stop) when the
    supervisor dies; None where prctl is missing (not Linux), where the trainer then runs on alone
    and `omni-run ls` says `running (no supervisor)`."""
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # the C library the interpreter is linked with
    except (OSError, AttributeError):
        return None

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != supervisor_pid:  # the supervisor died before the request took hold
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def supervise(run: RunDir, resume: bool = False, on_tick: Callable[[], None] | None = None,
              restarts: int | None = None, machine_rank: int = 0) -> int:
    """Run the trainer of `run` to its end, restarting after crashes as the run's budget allows.

    `on_tick` is called about five times a second while the trainer runs (the progress display).
    `restarts` grants that many automatic restarts from now on (`omni-run resume --restarts N`);
    otherwise the run's remaining budget applies. `machine_rank` > 0: this machine's share of a run over
    several machines, which machine 0 reports; its own restarts, exits and trainer log are kept in
    `machine_folder`.
    Returns 0 when the run finished or was stopped cleanly, else the last trainer exit code (or 1).
    """
    plan = read_json_object(run.plan)
    own = machine_folder(run, machine_rank)
    own.mkdir(parents=True, exist_ok=True)
    status = read_status(own) or {}
    restarts_done = _count(status.get("restarts")) or 0
    budget = restart_budget(run, status, restarts)
    trainer = _Trainer(run, distributed=world_size(plan) > 1, machine_rank=machine_rank)
    machine = {"machine_rank": machine_rank} if machine_rank else {}
    trainer_log = own / run.trainer_log.name  # each machine's launcher reports its own ranks
    stops = _StopRequests(trainer)
    previous = {sig: signal.signal(sig, stops) for sig in (signal.SIGINT, signal.SIGTERM)}
    previous.update({sig: signal.signal(sig, _forwarder(trainer)) for sig in (signal.SIGUSR1, signal.SIGUSR2)})
    events = EventLog(run.events)
    try:
        while True:
            # No trainer pid until the new one writes its own: signals must not reach a dead attempt's.
            _update_status(own, supervisor_pid=os.getpid(), restarts=restarts_done, restart_budget=budget,
                           **({} if machine_rank else {"pid": None, "ranks": None}))
            with open(trainer_log, "ab") as log:
                # preexec_fn is unsafe only with threads running, and the supervisor starts none.
                log_start = log.tell()
                trainer.child = subprocess.Popen(
                    trainer_command(run, plan, resume, machine_rank), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    start_new_session=True, preexec_fn=_stop_when_orphaned(os.getpid()),  # noqa: PLW1509
                )
            while trainer.child.poll() is None:
                if on_tick:
                    on_tick()
                time.sleep(_POLL_S)
            if on_tick:
                on_tick()
            status = read_status(run.path) or {}
            step = int(status.get("step") or 0)
            stages = stages_now(run, plan)
            stage = stage_at_step(stages, step) if stages else 0
            report = classify_launch_exit(trainer.child.returncode, status.get("state"),
                                          read_log_tail(trainer_log, since=log_start), {"stages": stages}, stage)
            lowered = None
            if report.cause == "oom" and stops.count == 0 and stages and auto_micro_batch(run):
                report, lowered = lower_micro_batch(report, stages[stage])
            will_restart = lowered is not None or (report.cause in RESTARTABLE_CAUSES and restarts_done < budget and stops.count == 0)
            events.emit("exit", step, **report.to_event(), will_restart=will_restart, **machine)
            _update_status(own, last_exit={**report.to_event(), "step": step})
            if status.get("state") not in TERMINAL_STATES:
                _update_status(own, state="failed", reason=report.cause, pid=None)
            if not will_restart:
                return 0 if report.cause in ("ok", "stopped") else (report.exit_code or 1)
            shape: dict[str, Any] = {}
            if lowered is not None:
                shape = {"stage": stage, "micro_batch": lowered[0], "grad_accum": lowered[1]}
                write_batch_shape(run.path, stage, *lowered)
                events.emit("warning", step, source="auto_micro_batch", **shape, message=(
                    f"out of GPU memory at micro_batch {stages[stage]['micro_batch']} in stage "
                    f"{stages[stage].get('name', stage)!r}: restarting with micro_batch {lowered[0]} and grad_accum "
                    f"{lowered[1]} (the same {lowered[0] * lowered[1]} samples a step), training.auto_micro_batch"))
                budget += 1  # a restart at a lower micro-batch is not a crash: it spends none of the budget
            restarts_done += 1
            checkpoint = (status.get("last_checkpoint") or {}).get("path")
            events.emit("restart", step, attempt=restarts_done + 1, checkpoint=checkpoint, **shape, **machine)
            _update_status(own, state="starting", reason="restart", restarts=restarts_done, restart_budget=budget)
            resume = True
    finally:
        events.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def detach(target: Callable[[], int]) -> int:
    """Run `target` in a daemon (double fork, new session, no terminal) and return the daemon's PID.

    The daemon exits with `target`'s return value; it never returns to the caller's code.
    """
    read_end, write_end = os.pipe()
    first = os.fork()
    if first > 0:
        os.close(write_end)
        os.waitpid(first, 0)
        with os.fdopen(read_end) as pipe:
            return int(pipe.read() or 0)
    os.close(read_end)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    with os.fdopen(write_end, "w") as pipe:
        pipe.write(str(os.getpid()))
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    code = 1
    try:
        code = target()
    finally:
        os._exit(code)


def is_alive(pid: object) -> bool:
    """Whether a process with this PID exists (and is not a zombie we could reap). PIDs come from
    `status.json`, which may be corrupt: anything but a positive int in the C `pid_t` range is no live
    process (and -1 or 0 must never reach `kill`, which would address every process or the group)."""
    if isinstance(pid, bool) or not isinstance(pid, int) or not 0 < pid < 2**31:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return True


def observed_state(status: dict[str, Any], alive: Callable[[object], bool] = is_alive) -> str:
    """The state `status.json` claims, as the processes bear it out (what `ls` and the run picker show).

    An active state whose trainer and supervisor are both gone is `stale (STATE)`: killed without a
    word, or the machine rebooted. A trainer whose supervisor died is `STATE (no supervisor)`: nobody
    will restart it or record how it ends.
    """
    state = status.get("state") if isinstance(status.get("state"), str) else "unknown"
    if state not in ACTIVE_STATES:
        return state
    trainer, supervisor = alive(status.get("pid")), alive(status.get("supervisor_pid"))
    if not (trainer or supervisor):
        return f"stale ({state})"
    if not supervisor and status.get("supervisor_pid") is not None:
        return f"{state} (no supervisor)"
    return state
