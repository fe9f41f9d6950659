"""`python -m omni_runner.train RUN_DIR [--resume]`: the trainer child that the supervisor starts."""

from __future__ import annotations

import argparse
import gc
import sys


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m omni_runner.train", description=__doc__)
    parser.add_argument("run_dir", help="run folder prepared by `omni-run RECIPE` (recipe.yaml, plan.json)")
    parser.add_argument("--resume", action="store_true", help="continue from the newest valid checkpoint")
    args = parser.parse_args()

    from omni_runner.models.hf_env import offline_hub
    from omni_runner.train.loop import run_trainer

    offline_hub()
    code = run_trainer(args.run_dir, args.resume, sole=True)
    # The run's files are closed by now. The interpreter's last garbage collection would walk every
    # object torch and transformers made (over a second, and the supervisor waits for it at each
    # restart); frozen, they are released by reference counting alone.
    gc.freeze()
    return code


if __name__ == "__main__":
    sys.exit(main())
