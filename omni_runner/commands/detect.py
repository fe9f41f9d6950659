"""`omni-run detect PATH`: what a model folder can take in and put out, and why we think so."""

from __future__ import annotations

import argparse
import json
import sys

HELP = "Detect a model folder's role, modalities, quantization and size from its config files."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH", help="model folder, diffusers pipeline folder or .nemo file")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON (a list when several paths)")


def run(args: argparse.Namespace) -> int:
    from omni_runner.detect import DetectionError, detect

    detections, failed = [], False
    for path in args.paths:
        try:
            detections.append(detect(path))
        except DetectionError as error:
            print(f"error: {error}", file=sys.stderr)
            failed = True
    if args.json:
        payload = [d.to_json() for d in detections]
        print(json.dumps(payload[0] if len(args.paths) == 1 and payload else payload, indent=2))
    else:
        for detection in detections:
            print(render(detection))
    return 1 if failed else 0


def render(detection) -> str:
    size = f"~{detection.parameters / 1e9:.2f} B parameters" if detection.parameters else "size unknown"
    lines = [
        detection.path,
        f"  {detection.role} · {detection.model_type} · {detection.quantization or 'not quantized'} · {size}",
        f"  modalities: {', '.join(detection.modalities) or '(none)'}",
        "  evidence:",
    ]
    lines += [f"    {e.file} [{e.key}]: {e.conclusion}" for e in detection.evidence]
    return "\n".join(lines)
