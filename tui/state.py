"""What the dashboard knows about a run, folded from its events: pure data, no widgets, no I/O.

The TUI feeds every event it reads into `RunView.apply`; widgets render from the view. Histories are
bounded (`SeriesHistory` halves its resolution when full), so a run of a million steps costs the
same memory as one of a few thousand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omni_runner.run.progress import format_eval
from omni_runner.run.status import ACTIVE_STATES

MAX_POINTS = 1024
MAX_LOG_LINES = 500
ENDED_STATES = ("finished", "stopped", "failed")
STALE = "stale"  # said to be active, but its trainer and supervisor are gone (`omni-run ls` says the same)
STALE_REASON = "trainer and supervisor gone; `omni-run resume` continues from the last checkpoint"


class SeriesHistory:
    """(step, value) points, at most `max_points`; when full, neighbours are averaged pairwise."""

    def __init__(self, max_points: int = MAX_POINTS) -> None:
        self.max_points = max_points
        self.steps: list[float] = []
        self.values: list[float] = []
        self._stride = 1  # how many raw points each stored point stands for
        self._pending: list[tuple[float, float]] = []

    def add(self, step: float, value: float) -> None:
        self._pending.append((step, value))
        if len(self._pending) < self._stride:
            return
        steps, values = zip(*self._pending)
        self.steps.append(sum(steps) / len(steps))
        self.values.append(sum(values) / len(values))
        self._pending.clear()
        if len(self.steps) >= self.max_points:
            self._halve()

    def _halve(self) -> None:
        self.steps = [(a + b) / 2 for a, b in zip(self.steps[::2], self.steps[1::2])]
        self.values = [(a + b) / 2 for a, b in zip(self.values[::2], self.values[1::2])]
        self._stride *= 2

    def prepend(self, older: SeriesHistory) -> None:
        """Put history read later but lying earlier (the background scan of an old file) in front."""
        if not older.steps:
            return
        self.steps = older.steps + self.steps
        self.values = older.values + self.values
        self._stride = max(self._stride, older._stride)
        while len(self.steps) >= self.max_points:
            self._halve()

    def __len__(self) -> int:
        return len(self.steps)


def smooth(values: list[float], weight: float = 0.9) -> list[float]:
    """Exponential moving average (the TensorBoard-style smoothing users expect), bias-corrected."""
    out, average = [], 0.0
    for i, value in enumerate(values, start=1):
        average = weight * average + (1 - weight) * value
        out.append(average / (1 - weight**i))
    return out


@dataclass
class CapabilityView:
    weight: float | None = None
    samples_seen: int | None = None
    loss: float | None = None  # its reply tokens' cross-entropy
    denoising: float | None = None  # its decoder's loss (generation capabilities)


@dataclass
class EvalResult:
    """The latest result of one evaluated subject (a data set, or a suite's capability) and its step."""

    step: int
    metrics: dict[str, Any]


def eval_subject(event: dict[str, Any]) -> str:
    """An `eval` event's label: its data set (with the capability scored), else its suite and capability
    (`perplexity tool-calling`: the held-out loss), else the capability alone (runs from before either)."""
    if event.get("dataset"):
        return f"{event['dataset']} ({event['capability']})" if event.get("capability") else str(event["dataset"])
    return " ".join(str(part) for part in (event.get("suite"), event.get("capability")) if part) or "eval"


@dataclass
class RunView:
    """The dashboard's model of one run."""

    name: str = ""
    state: str = "starting"
    reason: str | None = None
    detail: str | None = None
    step: int = 0
    total_steps: int | None = None
    epoch: float | None = None
    loss: float | None = None
    lr: float | None = None
    grad_norm: float | None = None
    tokens_per_s: float | None = None
    samples_per_s: float | None = None
    eta_s: float | None = None
    started_t: float | None = None
    last_t: float | None = None
    ended_t: float | None = None
    last_checkpoint: dict[str, Any] | None = None
    restarts: int = 0
    gpus: list[dict[str, Any]] = field(default_factory=list)  # with several machines, each carries its `host`
    machine_gpus: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # by machine rank
    gpu_source: str | None = None
    gpu_note: str | None = None
    cpu_pct: float | None = None
    ram_used_mb: float | None = None
    ram_total_mb: float | None = None
    thermal_limit_c: float | None = None
    thermal_resume_c: float | None = None
    cooldown_every: int | None = None
    cooldown_seconds: float | None = None
    exit: dict[str, Any] | None = None
    loss_history: SeriesHistory = field(default_factory=SeriesHistory)
    capability_history: dict[str, SeriesHistory] = field(default_factory=dict)
    capabilities: dict[str, CapabilityView] = field(default_factory=dict)
    evals: dict[str, EvalResult] = field(default_factory=dict)  # by `eval_subject`, the latest of each
    log: list[tuple[float, str, str]] = field(default_factory=list)  # (t, level, text)
    log_count: int = 0  # lines ever logged, so a log widget knows which ones it has not shown
    corrupt_lines: int = 0
    events_seen: int = 0

    # ------------------------------------------------------------ set-up from the run folder

    def apply_plan(self, plan: dict[str, Any]) -> None:
        """Capability weights and thermal settings come from plan.json, not from events."""
        mixture = plan.get("mixture") or {}
        entries = mixture.get("capabilities", mixture) if isinstance(mixture, dict) else {}
        for name, entry in (entries.items() if isinstance(entries, dict) else []):
            weight = entry.get("weight") if isinstance(entry, dict) else entry
            self.capabilities.setdefault(name, CapabilityView()).weight = weight if isinstance(weight, (int, float)) else None
        if plan.get("total_steps"):
            self.total_steps = plan["total_steps"]

    def apply_recipe(self, recipe: dict[str, Any]) -> None:
        controller = recipe.get("controller") or {}
        thermal = controller.get("thermal") or {}
        cooldown = controller.get("cooldown") or {}
        self.thermal_limit_c = thermal.get("limit_c")
        self.thermal_resume_c = thermal.get("resume_c")
        self.cooldown_every = cooldown.get("every_steps") or None
        self.cooldown_seconds = cooldown.get("seconds")
        self.name = self.name or recipe.get("name", "")

    def apply_status(self, status: dict[str, Any]) -> None:
        """status.json fills what the events have not said yet (e.g. a run killed before its end event)."""
        self.name = self.name or status.get("name") or ""
        if status.get("state") and (self.events_seen == 0 or status["state"] in ENDED_STATES):
            self.state = status["state"]
            self.reason = status.get("reason") or self.reason
        self.restarts = max(self.restarts, status.get("restarts") or 0)
        self.last_checkpoint = status.get("last_checkpoint") or self.last_checkpoint
        self.total_steps = self.total_steps or status.get("total_steps")

    def apply_processes(self, trainer_alive: bool, supervisor_alive: bool) -> None:
        """A run that looks active with neither process alive was killed without a word: say so
        rather than show `running` forever; once a process is back (a resume), follow it again."""
        if self.state in ACTIVE_STATES and not (trainer_alive or supervisor_alive):
            self.state, self.reason, self.detail = STALE, STALE_REASON, None
            self._log({"t": self.last_t}, "error", f"run {STALE}: {STALE_REASON}")
        elif self.state == STALE and (trainer_alive or supervisor_alive):
            self.state, self.reason = "starting", None

    # ------------------------------------------------------------ events

    def apply(self, event: dict[str, Any]) -> None:
        self.events_seen += 1
        t = event.get("t")
        if isinstance(t, (int, float)):
            self.last_t = t
            self.started_t = self.started_t if self.started_t is not None else t
        if isinstance(event.get("step"), int):
            self.step = max(self.step, event["step"]) if event.get("type") != "run_start" else event["step"]
        handler = getattr(self, f"_on_{event.get('type')}", None)
        if handler:
            handler(event)

    def _on_run_start(self, event: dict[str, Any]) -> None:
        self.name = event.get("name") or self.name
        self.total_steps = event.get("total_steps") or self.total_steps
        resumed = f" (resumed from {event['resumed_from']})" if event.get("resumed_from") else ""
        self._log(event, "info", f"run started{resumed}")
        self.ended_t = None

    def _on_step(self, event: dict[str, Any]) -> None:
        for name in ("loss", "lr", "grad_norm", "tokens_per_s", "samples_per_s", "eta_s", "epoch"):
            if isinstance(event.get(name), (int, float)):
                setattr(self, name, event[name])
        self.total_steps = event.get("total_steps") or self.total_steps
        if isinstance(self.loss, (int, float)):
            self.loss_history.add(event["step"], self.loss)
        for cap, value in (event.get("capability_losses") or {}).items():
            if isinstance(value, (int, float)):
                self.capability_history.setdefault(cap, SeriesHistory()).add(event["step"], value)
                self.capabilities.setdefault(cap, CapabilityView()).loss = value
        for cap, value in (event.get("denoising_losses") or {}).items():
            if isinstance(value, (int, float)):
                self.capabilities.setdefault(cap, CapabilityView()).denoising = value
        if self.state in ("starting",):
            self.state = "running"

    def _on_state(self, event: dict[str, Any]) -> None:
        self.state = event.get("to") or self.state
        self.reason = event.get("reason")
        self.detail = event.get("detail")
        text = f"{event.get('from')} → {event.get('to')}: {event.get('reason')}"
        self._log(event, "state", text + (f" ({self.detail})" if self.detail else ""))

    def _on_checkpoint(self, event: dict[str, Any]) -> None:
        self.last_checkpoint = {"path": event.get("path"), "step": event.get("step"), "t": event.get("t")}
        self._log(event, "info", f"checkpoint {event.get('path')} ({event.get('reason')})")

    def _on_telemetry(self, event: dict[str, Any]) -> None:
        """One machine's reading; a run over several machines has one a machine (`machine_rank`, `host`), and
        the GPU list holds every machine's newest, in machine order."""
        self.gpu_source = event.get("source")
        gpus = [g for g in event.get("gpus") or [] if isinstance(g, dict)]
        machine = event.get("machine_rank")
        if isinstance(machine, int):
            self.machine_gpus[machine] = [{**g, "host": str(event.get("host") or f"machine {machine}")} for g in gpus]
            self.gpus = [g for rank in sorted(self.machine_gpus) for g in self.machine_gpus[rank]]
            if machine != 0:
                return  # the note and host readings shown are machine 0's
        else:
            self.gpus = gpus
        self.gpu_note = event.get("note")
        self.cpu_pct = event.get("cpu_pct")
        self.ram_used_mb = event.get("ram_used_mb")
        self.ram_total_mb = event.get("ram_total_mb")

    def _on_data(self, event: dict[str, Any]) -> None:
        for cap, seen in (event.get("seen") or {}).items():
            self.capabilities.setdefault(cap, CapabilityView()).samples_seen = seen
        skipped = sum(v for v in (event.get("skipped") or {}).values() if isinstance(v, int))
        if skipped:
            self._log(event, "warning", f"{skipped} bad records skipped")

    def _on_warning(self, event: dict[str, Any]) -> None:
        self._log(event, "warning", str(event.get("message")))

    def _on_error(self, event: dict[str, Any]) -> None:
        self._log(event, "error", str(event.get("message")))

    def _on_eval(self, event: dict[str, Any]) -> None:
        self._log(event, "info", f"eval {format_eval(event)}")
        if isinstance(event.get("metrics"), dict):
            self.evals[eval_subject(event)] = EvalResult(event.get("step") or 0, event["metrics"])

    def _on_run_end(self, event: dict[str, Any]) -> None:
        self.state = event.get("state") or self.state
        self.reason = event.get("reason")
        self.detail = event.get("detail")
        self.ended_t = event.get("t")
        self._log(event, "error" if self.state == "failed" else "info", f"run {self.state}: {self.reason}")

    def _on_exit(self, event: dict[str, Any]) -> None:
        self.exit = event
        level = "info" if event.get("cause") in ("ok", "stopped") else "error"
        text = f"trainer exit [{event.get('cause')}]: {event.get('explanation')}"
        if event.get("suggestion"):
            text += f" → {event['suggestion']}"
        self._log(event, level, text)
        if level == "error" and not event.get("will_restart"):
            self.state, self.reason = "failed", event.get("cause")
            self.ended_t = event.get("t")

    def _on_restart(self, event: dict[str, Any]) -> None:
        self.restarts = max(self.restarts, (event.get("attempt") or 1) - 1)
        self.state, self.reason, self.ended_t = "starting", "restart", None
        self._log(event, "warning", f"restart attempt {event.get('attempt')} from {event.get('checkpoint') or 'last checkpoint'}")

    def _log(self, event: dict[str, Any], level: str, text: str) -> None:
        self.log.append((event.get("t") or 0.0, level, text))
        self.log_count += 1
        del self.log[:-MAX_LOG_LINES]

    def merge_older(self, older: RunView) -> None:
        """Fold in the loss history of the file's older part, scanned after the first paint."""
        self.loss_history.prepend(older.loss_history)
        for cap, history in older.capability_history.items():
            self.capability_history.setdefault(cap, SeriesHistory()).prepend(history)
        if older.started_t is not None:
            self.started_t = older.started_t if self.started_t is None else min(self.started_t, older.started_t)

    # ------------------------------------------------------------ derived

    @property
    def ended(self) -> bool:
        return self.state in ENDED_STATES

    def elapsed_s(self, now: float) -> float | None:
        if self.started_t is None:
            return None
        return (self.ended_t or now) - self.started_t

    def next_cooldown_step(self) -> int | None:
        if not self.cooldown_every:
            return None
        return (self.step // self.cooldown_every + 1) * self.cooldown_every

    def state_text(self) -> str:
        """`running`, `paused: user`, `cooling: thermal (GPU 0 at 86 °C …)`."""
        if self.state in ("running", "starting", "finished") or not self.reason:
            return self.state
        return f"{self.state}: {self.reason}" + (f" ({self.detail})" if self.detail and self.state == "cooling" else "")
