"""The `omni-run` command line.

Each sub-command lives in its own module under `omni_runner.commands` and exposes
`HELP`, `add_arguments(parser)` and `run(args) -> int`. Command modules keep heavy
imports (torch, transformers) inside `run`, so `omni-run validate` stays fast.

`omni-run RECIPE.yaml [options]` without a sub-command means `omni-run train RECIPE.yaml`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from omni_runner import __version__

# name -> module; the order is the order of `omni-run --help`.
COMMANDS: dict[str, str] = {
    "train": "omni_runner.commands.train",
    "submit": "omni_runner.commands.submit",
    "validate": "omni_runner.commands.validate",
    "plan": "omni_runner.commands.plan",
    "capabilities": "omni_runner.commands.capabilities",
    "detect": "omni_runner.commands.detect",
    "data": "omni_runner.commands.data",
    "tiny-model": "omni_runner.commands.tiny_model",
    "ls": "omni_runner.commands.ls",
    "logs": "omni_runner.commands.logs",
    "pause": "omni_runner.commands.control",
    "resume": "omni_runner.commands.control",
    "checkpoint": "omni_runner.commands.control",
    "stop": "omni_runner.commands.control",
    "chat": "omni_runner.commands.chat",
    "generate": "omni_runner.commands.generate",
    "eval": "omni_runner.commands.eval",
    "join": "omni_runner.commands.join",
}

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; with `only`, just that command's module is imported (fast start-up)."""
    parser = argparse.ArgumentParser(
        prog="omni-run",
        description="Validate, plan, run and steer omni-model training recipes.",
        epilog="`omni-run RECIPE.yaml` is short for `omni-run train RECIPE.yaml`.",
    )
    parser.add_argument("--version", action="version", version=f"omni-run {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        if only is not None and name != only:
            continue
        module = importlib.import_module(module_name)
        help_text = getattr(module, "HELPS", {}).get(name, getattr(module, "HELP", None))
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        if getattr(module, "PER_COMMAND", False):
            module.add_arguments(command_parser, name)
        else:
            module.add_arguments(command_parser)
        command_parser.set_defaults(_module=module)
    return parser


def _with_default_command(argv: list[str]) -> list[str]:
    """Insert `train` when the first word is a recipe file rather than a command."""
    if argv and argv[0] not in COMMANDS and not argv[0].startswith("-"):
        return ["train", *argv]
    return argv


def main(argv: Sequence[str] | None = None) -> int:
    args_list = _with_default_command(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser(only=args_list[0] if args_list and args_list[0] in COMMANDS else None)
    if not args_list:
        parser.print_help()
        return EXIT_USAGE
    args = parser.parse_args(args_list)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args._module.run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`omni-run capabilities | head`); stay quiet like other Unix tools.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
