"""`omni-run generate RUN --prompt TEXT --out OUT.png [--edit IN.png] [--video [--image FIRST.png]]`:
draw with what a run trained through its decoders. The model writes its reply to the prompt first
(printed: the generation chain of thought, when it learned one), then its queries condition the SD3
decoder (an image, PNG) or the SVD decoder (a video, MP4, from `--image` or else from an image the
image decoder draws for the same prompt). `models/generate.py` holds the path; this is the command line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omni_runner.commands.run_options import add_runs_dir_option, locate_finished_run

if TYPE_CHECKING:
    from omni_runner.models.generate import Painter

HELP = "Draw an image (or edit one, or make a video) with a finished run's decoders."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", help="run folder or name")
    parser.add_argument("--prompt", required=True, help="what to draw (for --edit: the edit instruction)")
    parser.add_argument("--out", required=True, metavar="FILE", help="where to write the PNG (the MP4 with --video)")
    parser.add_argument("--edit", metavar="IMAGE", default=None, help="edit this image following --prompt")
    parser.add_argument("--video", action="store_true", help="make a video with the run's video decoder")
    parser.add_argument("--image", metavar="FIRST", default=None,
                        help="with --video: the first frame (default: drawn by the image decoder from --prompt)")
    parser.add_argument("--seed", type=int, default=0, help="noise seed; the same seed gives the same file (default 0)")
    parser.add_argument("--steps", type=int, default=28, help="denoising steps (default 28)")
    parser.add_argument("--guidance", type=float, default=1.0,
                        help="classifier-free guidance scale; above 1 the unconditional side is the queries of an "
                             "empty prompt (SD3) or zeros (SVD) (default 1: none)")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="length limit of the reply before drawing (default 256)")
    add_runs_dir_option(parser)


def _input_problem(args: argparse.Namespace) -> str | None:
    if args.edit and args.video:
        return "--edit draws an image; it cannot be combined with --video"
    if args.image and not args.video:
        return "--image is the first frame of a --video; to edit an image use --edit"
    for option, path in (("--edit", args.edit), ("--image", args.image)):
        if path and not Path(path).is_file():
            return f"{option}: no such image file: {path}"
    if args.steps < 1:
        return "--steps must be at least 1"
    return None


def run(args: argparse.Namespace) -> int:
    problem = _input_problem(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    run_dir = locate_finished_run(args.run, args.runs_dir)
    if run_dir is None:
        return 1
    from omni_runner.models.generation import SETTINGS_FILE

    if not (run_dir.final / SETTINGS_FILE).is_file():
        print(f"error: this run has no image decoder ({run_dir.final / SETTINGS_FILE} is missing): train it with "
              "`decoders.image` (and `decoders.video` for videos) and a generation capability", file=sys.stderr)
        return 1

    from omni_runner.data.conversation import RecordError
    from omni_runner.models.export import load_for_inference
    from omni_runner.models.generate import GenerationError, Painter, trained_shapes
    from omni_runner.models.load import ModelLoadError

    try:
        plan = json.loads(run_dir.plan.read_text(encoding="utf-8")) if run_dir.plan.is_file() else {}
        painter = Painter(load_for_inference(run_dir.final, decoders=True), trained_shapes(plan))
        if args.video:
            _video(painter, args)
        else:
            _image(painter, args, args.prompt, args.edit).save(args.out, format="PNG")
    except (GenerationError, ModelLoadError, RecordError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _image(painter: Painter, args: argparse.Namespace, prompt: str, edit: str | None) -> Any:
    """Draw (or edit) one image; the reply comes first on stdout."""
    painter.spec("image")  # refuse early, before the language model writes anything
    drawing = painter.condition("image", prompt, edit, args.max_new_tokens)
    print(drawing.reply)
    negative = painter.condition("image", "", edit, args.max_new_tokens) if args.guidance > 1.0 else None
    return painter.image(drawing, negative, args.seed, args.steps, args.guidance)


def _video(painter: Painter, args: argparse.Namespace) -> None:
    from omni_runner.data.media import load_image, write_video
    from omni_runner.models.generate import GenerationError
    from omni_runner.models.generation import SVD_FPS

    painter.spec("video")
    if args.image:
        first = load_image(args.image)
    elif "image" in painter.heads.kinds:
        first = _image(painter, args, args.prompt, None)
    else:
        raise GenerationError("--video needs a first frame: give one with --image FILE (this run has no image decoder "
                              "to draw it from the prompt)")
    drawing = painter.condition("video", args.prompt, None, args.max_new_tokens)
    print(drawing.reply)
    write_video(args.out, painter.video(drawing, first, args.seed, args.steps, args.guidance), fps=SVD_FPS)
