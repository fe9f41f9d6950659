"""`omni-run data check RECIPE` and `omni-run data preview RECIPE --capability C -n N`.

`check` prepares every record the recipe's capabilities use as training does (adapted, rendered,
media decoded and expanded by the model's processor) and reports counts, bad records with their
locations (unreadable media included), token-length and media statistics and the effective
mixture; it exits 1 when a data set passes its `max_bad_fraction`. `preview` shows rendered samples
with the trained (assistant) tokens made visible (highlighted on a terminal, `[[...]]` otherwise),
each media placeholder with the tokens it expands into (`<|IMAGE|>×4`), and below the sample where
each medium's tokens sit in the expanded sequence. `prepare` transcribes speech-transcript records
that have no text with the recipe's `encoders.asr` into a cache beside the data (training reads it),
and reports the recogniser's word error rate against the records that have transcripts; it also
encodes every target image and video of the generation capabilities with their decoder's VAE into
the latent cache, at the plan's sizes, so training reads them and loads no VAE.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omni_runner.recipe.options import add_recipe_options

if TYPE_CHECKING:
    from omni_runner.data.check import PlacedMedium, Preview
    from omni_runner.data.conversation import RecordError

HELP = ("Check a recipe's data (counts, bad records, token lengths, media, mixture), preview rendered samples, "
        "or prepare it (transcribe speech that has no text, encode generation targets into the latent cache).")

TRAINED_START, TRAINED_END = "[[", "]]"
HIGHLIGHT_START, HIGHLIGHT_END = "\x1b[1;32m", "\x1b[0m"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = actions.add_parser("check", help="prepare every record as training does; report problems and statistics")
    preview = actions.add_parser("preview", help="show rendered samples with the loss mask visible")
    prepare = actions.add_parser("prepare", help="transcribe speech records without text with encoders.asr (report WER); "
                                 "encode generation targets into the latent cache")
    for sub in (check, preview, prepare):
        sub.add_argument("recipe", metavar="RECIPE", type=Path, help="recipe YAML file")
        add_recipe_options(sub)
    for sub in (check, prepare):
        sub.add_argument("--json", action="store_true", help="print the report as JSON")
    prepare.add_argument("--batch-size", type=int, default=8, help="audio files per recogniser batch (default 8)")
    prepare.add_argument("--score", type=int, default=16, metavar="N",
                         help="also transcribe the first N records that have transcripts and report the word error "
                              "rate against them (default 16; 0 skips scoring)")
    preview.add_argument("--capability", required=True, help="capability whose samples to show")
    preview.add_argument("-n", type=int, default=3, help="number of samples (default 3)")


def _marked(text: str, spans: list[tuple[int, int]], start: str, end: str) -> str:
    pieces, last = [], 0
    for a, b in spans:
        pieces += [text[last:a], start, text[a:b], end]
        last = b
    return "".join(pieces) + text[last:]


def _spread(values: dict[str, Any], unit: str = "") -> str:
    return " ".join(f"{key} {values[key]:g}{unit}" for key in ("min", "median", "max"))


def _media_line(kind: str, media: dict[str, Any]) -> str:
    """One kind's statistics, e.g. `audio 300: seconds min 1 median 1 max 1; sample rate 22050 Hz`."""
    facts = []
    if "resolution" in media:
        facts.append("resolution " + " ".join(f"{key} {media['resolution'][key]}" for key in ("min", "median", "max")))
    if "duration_s" in media:
        facts.append("seconds " + _spread(media["duration_s"]))
    if "sample_rates" in media:
        facts.append("sample rate " + ", ".join(f"{rate} Hz" for rate in media["sample_rates"]))
    if media.get("frames"):
        facts.append("frames " + _spread(media["frames"]))
    if "with_audio" in media:
        facts.append(f"{media['with_audio']} with an audio track")
    return f"{kind} {media['count']}: " + "; ".join(facts)


def _print_check(report: dict[str, Any]) -> None:
    print(f"seq_len {report['seq_len']}")
    for name, info in report["datasets"].items():
        tokens = info["tokens"]
        lengths = (f"tokens min {tokens['min']} median {tokens['median']:g} p95 {tokens['p95']} max {tokens['max']}"
                   if tokens else "no usable records")
        verdict = "ok" if info["ok"] else f"TOO MANY BAD (limit {info['max_bad_fraction']:g})"
        print(f"{name} ({info['format']}, {info['capability']}): {info['usable']}/{info['records']} usable, "
              f"{info['bad']} bad ({info['bad_fraction']:.1%}) {verdict}")
        print(f"  {info['path']}")
        print(f"  {lengths}")
        for kind, media in info["media"].items():
            print(f"  {_media_line(kind, media)}")
    if report["bad_records"]:
        print("bad records:")
        for bad in report["bad_records"]:
            print(f"  {bad['dataset']}: {bad['location']}: {bad['reason']}")
    print("mixture (share of draws):")
    for capability, entry in report["mixture"].items():
        shares = ", ".join(f"{n} {p:.1%}" for n, p in entry["datasets"].items())
        print(f"  {capability} {entry['probability']:.1%}: {shares}")


def _collapsed(text: str, media: list[PlacedMedium]) -> str:
    """`text` with each medium's placeholder (once per medium, in order) replaced by the token runs
    it expands into, e.g. `<|VIDEO|>×16<|AUDIO|>×53`, so a sample with hundreds of media tokens stays readable."""
    pieces, last = [], 0
    for medium in media:
        at = text.index(medium.placeholder, last)
        pieces += [text[last:at], "".join(f"{token}×{count}" for token, count in medium.runs)]
        last = at + len(medium.placeholder)
    return "".join(pieces) + text[last:]


def _describe(medium: PlacedMedium) -> str:
    """`image 1 (images/shape0003.png, 56x56): 4 tokens at 15-18`."""
    info = medium.info
    facts = [medium.path]
    if "width" in info:
        facts.append(f"{info['width']}x{info['height']}")
    if "duration_s" in info:
        facts.append(f"{info['duration_s']:.2f} s")
    if info.get("has_audio"):
        facts.append("audio track")
    counts = " + ".join(f"{count} {token}" for token, count in medium.runs) if len(medium.runs) > 1 else ""
    tokens = f"{medium.tokens} tokens" + (f" ({counts})" if counts else "")
    return f"{medium.kind} {medium.number} ({', '.join(facts)}): {tokens} at {medium.start}-{medium.end}"


def _print_preview(previews: list[tuple[str, Preview | RecordError]], start: str, end: str) -> None:
    for location, sample in previews:
        print(f"--- {location}")
        if isinstance(sample, Exception):
            print(f"(bad record: {sample})")
            continue
        rendered = sample.rendered
        # Mark first: the trained spans are character spans of the unexpanded text.
        print(_collapsed(_marked(rendered.text, rendered.trained_spans, start, end), sample.media))
        for medium in sample.media:
            print(_describe(medium))
        print(f"({sample.length} tokens, {rendered.trained_tokens} trained)")


def _print_prepare(report: dict[str, Any]) -> None:
    if not report["datasets"] and not report["latents"]:
        print("no speech-transcript data set among the recipe's enabled capabilities: nothing to transcribe")
    for name, info in report["datasets"].items():
        wer = "-" if info["wer"] is None else f"{info['wer']:.3f}"
        print(f"{name} ({info['format']}): {info['records']} records with audio, {info['without_text']} without text")
        print(f"  transcribed now {info['transcribed']}, taken from the cache {info['from_cache']}")
        print(f"  WER {wer} over {info['scored']} records with their own transcripts (lower-cased, punctuation removed)")
        for example in info["examples"]:
            print(f"    {example['reference']!r} -> {example['transcript']!r}")
        print(f"  cache {info['cache']}")
        for failure in info["failures"]:
            print(f"  not transcribed: {failure['location']}: {failure['reason']}")
    if report["latents"]:
        _print_latents(report["latents"])


def _print_latents(report: dict[str, Any]) -> None:
    for info in report["targets"].values():
        frames = f", {info['frames']} frames" if info["kind"] == "video" else ""
        print(f"{info['kind']} targets at {info['pixel_side']} px{frames}: encoded now {info['encoded']}, "
              f"already cached {info['cached']}")
        print(f"  cache {info['cache']}")
    if report["failures"]:
        print(f"generation targets not encoded: {len(report['failures'])}")
    for failure in report["failures"]:
        print(f"  {failure['dataset']}: {failure['location']}: {failure['reason']}")


def _prepare(recipe: Any, args: argparse.Namespace) -> int:
    from omni_runner.data.transcribe import prepare_transcripts, speech_datasets
    from omni_runner.models.asr import AsrLoadError, load_asr, resolve_asr_path

    section = (recipe.data.get("encoders") or {}).get("asr")
    if speech_datasets(recipe.data) and not section:
        print("error: the recipe has speech-transcript data but no encoders.asr to transcribe it with; add "
              "`encoders: {asr: {path: <Parakeet folder or .nemo file>}}` (builtin:tiny-parakeet for a test)", file=sys.stderr)
        return 1
    base_dir = Path(recipe.source).parent
    on_cpu = (recipe.data.get("hardware") or {}).get("device") == "cpu"

    def load() -> Any:
        import torch

        device = "cuda" if torch.cuda.is_available() and not on_cpu else "cpu"
        return load_asr(resolve_asr_path(str(section["path"]), base_dir), section.get("kind", "parakeet"), device)

    try:
        report = prepare_transcripts(recipe.data, base_dir, load, batch_size=args.batch_size, score=args.score)
    except AsrLoadError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    report["latents"] = _prepare_latents(recipe, base_dir, on_cpu)
    report["ok"] = report["ok"] and (report["latents"] or {}).get("ok", True)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_prepare(report)
    return 0 if report["ok"] else 1


def _prepare_latents(recipe: Any, base_dir: Path, on_cpu: bool) -> dict[str, Any] | None:
    """The generation targets encoded into the latent cache at the plan's sizes; None without decoders."""
    if not recipe.data.get("decoders"):
        return None
    import torch

    from omni_runner.models.latent_prepare import prepare_latents
    from omni_runner.plan import compile_plan

    stages = compile_plan(recipe).to_json()["stages"]
    device = torch.device("cuda" if torch.cuda.is_available() and not on_cpu else "cpu")
    return prepare_latents(recipe.data, base_dir, stages, device)


def run(args: argparse.Namespace) -> int:
    from omni_runner.data.conversation import DataError
    from omni_runner.models.load import ModelLoadError
    from omni_runner.recipe import RecipeError, load_recipe

    try:
        recipe = load_recipe(args.recipe, overrides=args.overrides, capabilities=args.capabilities)
        from omni_runner.models.hf_env import offline_hub

        offline_hub()
        if args.action == "prepare":
            return _prepare(recipe, args)
        from omni_runner.data.check import check_data, preview_samples

        base_dir = Path(recipe.source).parent
        from omni_runner.models.encoders import external_features_for
        from omni_runner.models.generation import recipe_generation_samples
        from omni_runner.models.load import load_recipe_processor

        processor = load_recipe_processor(recipe.data, base_dir)
        external = external_features_for(recipe.data, base_dir, processor)
        generation = recipe_generation_samples(recipe.data, base_dir, processor.tokenizer.pad_token_id)
        if args.action == "check":
            report = check_data(recipe.data, base_dir, processor, external=external, generation=generation)
            if args.json:
                print(json.dumps(report, indent=2))
            else:
                _print_check(report)
            return 0 if report["ok"] else 1
        tty = sys.stdout.isatty()
        start, end = (HIGHLIGHT_START, HIGHLIGHT_END) if tty else (TRAINED_START, TRAINED_END)
        _print_preview(preview_samples(recipe.data, base_dir, processor, args.capability, args.n, external, generation),
                       start, end)
        return 0
    except (RecipeError, DataError, ModelLoadError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
