"""Shared by the benchmark scripts: print a result and record it in docs/performance.md.

Each benchmark owns one section of that page, fenced by `<!-- bench:NAME -->` markers,
so scripts can be re-run in any order without disturbing each other's figures.
"""

from __future__ import annotations

import argparse
import platform
import re
import statistics
import time
from pathlib import Path

PERFORMANCE_PAGE = Path(__file__).resolve().parents[1] / "docs" / "performance.md"
_HEADER = "# Performance\n\nFigures written by the scripts in `benchmarks/`; each section says how to reproduce it.\n"


def block_parser(doc: str, *, blocks: int, steps: int) -> argparse.ArgumentParser:
    """The arguments every side-by-side benchmark takes: alternating blocks of each kind, optimizer steps
    a block, and whether to record the result (a script adds its own on top)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=blocks, help="blocks of each kind (default %(default)s)")
    parser.add_argument("--steps", type=int, default=steps, help="optimizer steps a block (default %(default)s)")
    parser.add_argument("--no-record", action="store_true", help="print only; leave docs/performance.md alone")
    return parser


def machine_summary() -> str:
    import os

    return f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def median_seconds(fn, repeat: int) -> float:
    """Median wall time of `fn()` over `repeat` calls."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def update_section(name: str, markdown: str, page: Path = PERFORMANCE_PAGE) -> None:
    """Replace (or append) the section `name` of `page` (docs/performance.md unless said) with `markdown`."""
    text = page.read_text() if page.exists() else _HEADER
    block = f"<!-- bench:{name} -->\n{markdown.strip()}\n<!-- /bench:{name} -->"
    pattern = re.compile(rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    page.write_text(text)
