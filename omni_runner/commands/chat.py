"""`omni-run chat RUN [--prompt TEXT] [--tools FILE] [--image F] [--audio F] [--video F]`: talk to what a
run produced (its `final/` adapter or merged model), with tools listed the way training listed them and
media decoded the way training decoded them. The media go with the first message."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from omni_runner.commands.run_options import add_runs_dir_option, locate_run

HELP = "Generate from a finished run's final model (one prompt, or an interactive chat)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", help="run folder or name")
    parser.add_argument("--prompt", default=None, help="one message to answer; without it, chat on stdin")
    parser.add_argument("--system", default=None, help="an optional system message")
    parser.add_argument("--tools", metavar="FILE", default=None,
                        help="a JSON list of function definitions (OpenAI or xLAM layout) to offer the model")
    parser.add_argument("--max-new-tokens", type=int, default=128, help="reply length limit (default 128)")
    for kind in ("image", "audio", "video"):
        parser.add_argument(f"--{kind}", dest=f"{kind}s", metavar="FILE", action="append", default=[],
                            help=f"an {kind} file for the first message (repeatable)" if kind != "video"
                            else "a video file for the first message (repeatable; frames at 2 fps)")
    add_runs_dir_option(parser)


def read_tools(path: str) -> list[dict[str, Any]]:
    """The function definitions in a `--tools` file; ValueError says what is wrong and where."""
    from omni_runner.data.adapters import function_schemas
    from omni_runner.data.conversation import RecordError

    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read --tools file {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON ({exc.msg})") from None
    try:
        return function_schemas(value, "the --tools list")
    except RecordError as exc:
        raise ValueError(f"{path}: {exc}; --tools takes a JSON list like "
                         '[{"name": "get_weather", "description": "...", "parameters": {...}}]') from None


def run(args: argparse.Namespace) -> int:
    from omni_runner.run.rundir import resolve_run

    try:
        tools = read_tools(args.tools) if args.tools else None
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    missing = [path for path in (*args.images, *args.audios, *args.videos) if not Path(path).is_file()]
    if missing:
        print(f"error: no such media file: {', '.join(missing)}", file=sys.stderr)
        return 1

    run_dir = locate_run(lambda: resolve_run(args.run, args.runs_dir))
    if run_dir is None:
        return 1
    if not run_dir.final.is_dir():
        print(f"error: {run_dir.path.name} has no final/ model yet (it is written when training finishes); "
              f"see `omni-run ls` for its state", file=sys.stderr)
        return 1

    from omni_runner.data.conversation import RecordError
    from omni_runner.data.render import tools_argument
    from omni_runner.models.export import generate_text, load_for_inference
    from omni_runner.models.load import ModelLoadError

    try:
        loaded = load_for_inference(run_dir.final)
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    messages = [{"role": "system", "content": args.system}] if args.system else []
    media = {"images": args.images, "videos": args.videos, "audios": args.audios}
    parts = [{"type": kind} for kind in ("image", "video", "audio") for _ in media[kind + "s"]]

    def answer(text: str) -> str:
        first = not any(m["role"] == "user" for m in messages)
        messages.append({"role": "user", "content": [*parts, {"type": "text", "text": text}] if first and parts else text})
        prompt = list(messages)  # the tool listing may join the system turn of this copy only
        reply = generate_text(loaded.model, loaded.processor, prompt, max_new_tokens=args.max_new_tokens,
                              tools=tools_argument(loaded.tokenizer, tools, prompt), media=media,
                              external=loaded.external)
        messages.append({"role": "assistant", "content": reply})
        return reply

    try:
        return _converse(answer, args.prompt)
    except RecordError as exc:  # an unreadable --image/--audio/--video file
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _converse(answer: Any, prompt: str | None) -> int:
    """One reply to `prompt`, or a chat on stdin until it ends."""
    if prompt is not None:
        print(answer(prompt))
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
