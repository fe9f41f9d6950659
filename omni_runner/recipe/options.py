"""The recipe options every recipe-taking command shares: `--set KEY=VALUE` and `--capabilities a,b`.

One definition so `validate`, `plan` and `train` spell and parse them the same way.
"""

from __future__ import annotations

import argparse


def add_recipe_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe field, e.g. --set training.lr=1e-4 (VALUE is read as YAML; repeatable)",
    )
    parser.add_argument(
        "--capabilities",
        type=comma_separated,
        default=None,
        metavar="A,B",
        help="train only these capabilities of the recipe (comma-separated)",
    )


def comma_separated(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]
