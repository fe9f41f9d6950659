"""What `omni-run data check` and `data preview` compute: every record read, adapted and rendered.

Separate from the command module so the trainer's start-up and tests can call it without argparse.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from omni_runner.data.conversation import BadRecord, DataError, RecordError
from omni_runner.data.render import Rendered, render_sample, template_for
from omni_runner.data.sources import DataSource, active_capabilities, build_sources
from omni_runner.data.stream import mixer_for
from omni_runner.paths import builtin_name, is_builtin, resolve_model_path


def load_tokenizer(recipe: dict[str, Any], base_dir: Path) -> Any:
    """The base model's tokenizer (building the built-in tiny model first if needed)."""
    from transformers import AutoTokenizer

    from omni_runner.models.hf_env import quiet_transformers

    value = str((recipe.get("base_model") or {}).get("path", ""))
    if is_builtin(value):
        from omni_runner.models.tiny import TINY_MODEL_NAME, ensure_tiny_model

        if builtin_name(value) != TINY_MODEL_NAME:
            raise DataError(f"base_model.path: unknown built-in model '{value}' (known: builtin:{TINY_MODEL_NAME})")
        folder = ensure_tiny_model()
    else:
        folder = resolve_model_path(value, base_dir)
    with quiet_transformers():
        return AutoTokenizer.from_pretrained(str(folder))


def _capability_of(recipe: dict[str, Any], capabilities: list[str] | None) -> dict[str, str]:
    """Each data set's (first) capability: it decides the template the data set is rendered with."""
    owner: dict[str, str] = {}
    for capability, spec in active_capabilities(recipe, capabilities).items():
        for name in spec.get("datasets", []):
            owner.setdefault(name, capability)
    return owner


def _length_stats(lengths: list[int]) -> dict[str, float] | None:
    if not lengths:
        return None
    ordered = sorted(lengths)
    return {
        "min": ordered[0],
        "median": statistics.median(ordered),
        "p95": ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))],
        "max": ordered[-1],
    }


def _render_all(source: DataSource, tokenizer: Any, template: str, seq_len: int) -> tuple[list[int], list[BadRecord]]:
    lengths, bad = [], []
    for position in range(len(source)):
        try:
            rendered = render_sample(source.conversation(position), tokenizer, template, max_tokens=seq_len)
        except RecordError as exc:
            bad.append(BadRecord(source.name, source.location(position), str(exc)))
        else:
            lengths.append(len(rendered.input_ids))
    return lengths, bad


def check_data(
    recipe: dict[str, Any], base_dir: Path, tokenizer: Any, capabilities: list[str] | None = None
) -> dict[str, Any]:
    """Counts, bad records with locations, token-length statistics and the effective mixture."""
    seq_len = int((recipe.get("training") or {}).get("seq_len", 2048))
    sources = build_sources(recipe, base_dir, capabilities=capabilities, strict=False)
    owners = _capability_of(recipe, capabilities)
    datasets, all_bad, ok = {}, [], True
    for name, source in sources.items():
        lengths, render_bad = _render_all(source, tokenizer, template_for(owners[name]), seq_len)
        bad = [*source.bad, *render_bad]
        checked = len(source.good) + len(source.bad)
        fraction = len(bad) / checked if checked else 1.0
        passes = bool(lengths) and fraction <= source.max_bad_fraction
        ok &= passes
        all_bad += bad
        datasets[name] = {
            "path": str(source.table.path),
            "format": source.format,
            "capability": owners[name],
            "records": source.total,
            "usable": len(lengths),
            "bad": len(bad),
            "bad_fraction": round(fraction, 4),
            "max_bad_fraction": source.max_bad_fraction,
            "ok": passes,
            "tokens": _length_stats(lengths),
        }
    usable = {n: d["usable"] for n, d in datasets.items() if d["usable"]}
    mixture = mixer_for(recipe, {n: sources[n] for n in usable}, capabilities).mixture() if usable else {}
    return {
        "ok": ok,
        "seq_len": seq_len,
        "datasets": datasets,
        "bad_records": [b.to_json() for b in all_bad],
        "mixture": mixture,
    }


def preview_samples(
    recipe: dict[str, Any], base_dir: Path, tokenizer: Any, capability: str, count: int
) -> list[tuple[str, Rendered | RecordError]]:
    """The first `count` records of the capability's data sets, rendered (or the reason they are bad)."""
    spec = (recipe.get("capabilities") or {}).get(capability)
    if spec is None:
        known = ", ".join(recipe.get("capabilities") or {}) or "none"
        raise DataError(f"capability '{capability}' is not in the recipe (it has: {known})")
    seq_len = int((recipe.get("training") or {}).get("seq_len", 2048))
    sources = build_sources(recipe, base_dir, capabilities=[capability], strict=False)
    previews: list[tuple[str, Rendered | RecordError]] = []
    for source in sources.values():
        for position in range(min(count - len(previews), len(source))):
            location = f"{source.name} {source.location(position)}"
            try:
                previews.append((location, render_sample(
                    source.conversation(position), tokenizer, template_for(capability), max_tokens=seq_len)))
            except RecordError as exc:
                previews.append((location, exc))
    return previews
