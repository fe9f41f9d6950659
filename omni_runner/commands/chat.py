"""`omni-run chat RUN [--prompt TEXT] [--tools FILE] [--image F] [--audio F] [--video F] [--audio-out WAV]`:
talk to what a run produced (its `final/` adapter or merged model), with tools listed the way training
listed them and media decoded the way training decoded them. The media go with the first message.
`--audio-out` also speaks the reply (the talker, with a realign stage's adapter, and token2wav of the
base model) into a 24 kHz WAV file."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from omni_runner.commands.run_options import add_runs_dir_option, locate_finished_run

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
    parser.add_argument("--audio-out", metavar="WAV", default=None,
                        help="also speak the reply into this WAV file (24 kHz; needs --prompt)")
    parser.add_argument("--speaker", default=None, help="the voice for --audio-out (default: Chelsie)")
    parser.add_argument("--max-codec-tokens", type=int, default=4096,
                        help="speech length limit for --audio-out, in codec tokens (default 4096)")
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
    try:
        tools = read_tools(args.tools) if args.tools else None
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    missing = [path for path in (*args.images, *args.audios, *args.videos) if not Path(path).is_file()]
    if missing:
        print(f"error: no such media file: {', '.join(missing)}", file=sys.stderr)
        return 1

    if args.audio_out and args.prompt is None:
        print("error: --audio-out speaks one reply: give the message with --prompt", file=sys.stderr)
        return 1

    run_dir = locate_finished_run(args.run, args.runs_dir)
    if run_dir is None:
        return 1

    from omni_runner.data.conversation import RecordError
    from omni_runner.data.render import tools_argument
    from omni_runner.models.export import generate_text, load_for_inference
    from omni_runner.models.load import ModelLoadError
    from omni_runner.models.speech import SpeechError

    try:
        loaded = load_for_inference(run_dir.final)
        voice = _voice(run_dir.final, loaded, args) if args.audio_out else None
    except (ModelLoadError, SpeechError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    messages = [{"role": "system", "content": args.system}] if args.system else []
    media = {"images": args.images, "videos": args.videos, "audios": args.audios}
    parts = [{"type": kind} for kind in ("image", "video", "audio") for _ in media[kind + "s"]]

    def answer(text: str) -> str:
        first = not any(m["role"] == "user" for m in messages)
        messages.append({"role": "user", "content": [*parts, {"type": "text", "text": text}] if first and parts else text})
        prompt = list(messages)  # the tool listing may join the system turn of this copy only
        listed = tools_argument(loaded.tokenizer, tools, prompt)
        reply = generate_text(loaded.model, loaded.processor, prompt, max_new_tokens=args.max_new_tokens,
                              tools=listed, media=media, external=loaded.external)
        messages.append({"role": "assistant", "content": reply})
        if voice is not None:
            voice(prompt, listed, media, reply)
        return reply

    try:
        return _converse(answer, args.prompt)
    except (RecordError, SpeechError) as exc:  # an unreadable --image/--audio/--video file; a silent talker
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _voice(final_dir: Path, loaded: Any, args: argparse.Namespace) -> Any:
    """A function that speaks a reply into `args.audio_out`: the talker (with the run's realign adapter,
    if any) and token2wav of the folder the final model speaks with."""
    import soundfile

    from omni_runner.models.export import (
        TALKER_ADAPTER_DIR,
        prompt_features,
        speech_folder,
    )
    from omni_runner.models.speech import (
        DEFAULT_SPEAKER,
        SAMPLE_RATE,
        load_speech_parts,
        speak,
    )

    adapter = final_dir / TALKER_ADAPTER_DIR
    parts = load_speech_parts(speech_folder(final_dir), loaded.device, loaded.dtype,
                              adapter_dir=adapter if adapter.is_dir() else None)

    def say(messages: list[dict[str, Any]], tools: Any, media: dict[str, list[str]], reply: str) -> None:
        inputs = prompt_features(loaded.processor, messages, tools, media, model=loaded.model, external=loaded.external)
        reply_ids = loaded.tokenizer(reply, add_special_tokens=False)["input_ids"] or [loaded.tokenizer.eos_token_id]
        wave = speak(loaded.thinker, parts, inputs, reply_ids, args.speaker or DEFAULT_SPEAKER, args.max_codec_tokens)
        soundfile.write(args.audio_out, wave.numpy(), SAMPLE_RATE)
        print(f"speech: {args.audio_out} ({wave.numel() / SAMPLE_RATE:.2f} s)", file=sys.stderr)

    return say


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
