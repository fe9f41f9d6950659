"""Test harness (not product code): a plain step loop steered by the real Controller.

It stands in for the trainer where a test is about the controller alone — signals, socket, cooldowns,
thermal pauses — so those tests do not pay for loading a model. Each "step" sleeps; each checkpoint
is a real folder with a file in it.

    python controlled_loop.py RUN_DIR STEPS STEP_SECONDS CONTROLLER_JSON
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from omni_runner.control.controller import Controller
from omni_runner.run.events import EventLog
from omni_runner.run.status import RunStatus


def main() -> int:
    run_dir, steps, step_seconds, config = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), json.loads(sys.argv[4])
    events = EventLog(run_dir / "events.jsonl")
    status = RunStatus(run_dir, name="harness", state="starting", step=0, total_steps=steps)
    controller = Controller(run_dir, config, events, status)

    def save_checkpoint(reason: str) -> Path:
        folder = run_dir / "checkpoints" / f"step-{controller.step}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "state.json").write_text(json.dumps({"step": controller.step, "reason": reason}))
        return folder

    controller.start()
    for step in range(1, steps + 1):
        time.sleep(step_seconds)
        events.emit("step", step, loss=1.0 / step)
        status.update(step=step)
        if not controller.at_step_boundary(step, save_checkpoint):
            controller.close("stopped", "user")
            return 0
    controller.close("finished", "done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
