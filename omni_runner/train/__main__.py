"""`python -m omni_runner.train RUN_DIR [--resume]`: the trainer child that the supervisor starts."""

from __future__ import annotations

import argparse
import sys


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m omni_runner.train", description=__doc__)
    parser.add_argument("run_dir", help="run folder prepared by `omni-run RECIPE` (recipe.yaml, plan.json)")
    parser.add_argument("--resume", action="store_true", help="continue from the newest valid checkpoint")
    args = parser.parse_args()

    from omni_runner.models.hf_env import offline_hub
    from omni_runner.train.loop import run_trainer

    offline_hub()
    return run_trainer(args.run_dir, args.resume)


if __name__ == "__main__":
    sys.exit(main())
