"""`omni-run chat RUN [--prompt TEXT]`: talk to what a run produced (its `final/` adapter or merged model)."""

from __future__ import annotations

import argparse
import sys

from omni_runner.commands.run_options import add_runs_dir_option, locate_run

HELP = "Generate from a finished run's final model (one prompt, or an interactive chat)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", help="run folder or name")
    parser.add_argument("--prompt", default=None, help="one message to answer; without it, chat on stdin")
    parser.add_argument("--system", default=None, help="an optional system message")
    parser.add_argument("--max-new-tokens", type=int, default=128, help="reply length limit (default 128)")
    add_runs_dir_option(parser)


def run(args: argparse.Namespace) -> int:
    from omni_runner.run.rundir import resolve_run

    run_dir = locate_run(lambda: resolve_run(args.run, args.runs_dir))
    if run_dir is None:
        return 1
    if not run_dir.final.is_dir():
        print(f"error: {run_dir.path.name} has no final/ model yet (it is written when training finishes); "
              f"see `omni-run ls` for its state", file=sys.stderr)
        return 1

    from omni_runner.models.export import generate_text, load_for_inference
    from omni_runner.models.load import ModelLoadError

    try:
        loaded = load_for_inference(run_dir.final)
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    messages = [{"role": "system", "content": args.system}] if args.system else []

    def answer(text: str) -> str:
        messages.append({"role": "user", "content": text})
        reply = generate_text(loaded.model, loaded.processor, messages, max_new_tokens=args.max_new_tokens)
        messages.append({"role": "assistant", "content": reply})
        return reply

    if args.prompt is not None:
        print(answer(args.prompt))
        return 0
    interactive = sys.stdin.isatty()
    while True:
        if interactive:
            print("you> ", end="", flush=True)
        line = sys.stdin.readline()
        if not line:
            return 0
        if line.strip():
            print(("model> " if interactive else "") + answer(line.strip()), flush=True)
