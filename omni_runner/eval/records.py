"""The records a suite scores: the recipe's held-out `eval.datasets` it can read, or one file given
with `--data PATH --format F`, and the model's reply to each.

Suites choose data sets by what their records are (`wanted`), so one recipe's evaluation sets serve
every suite that can score them; a suite that finds none says so rather than scoring nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omni_runner.data.conversation import Conversation, DataError, Message, RecordError
from omni_runner.data.sources import DataSource, open_source
from omni_runner.eval.suites import SuiteContext, SuiteError


def eval_sources(context: SuiteContext, wanted: Callable[[DataSource], bool], what: str) -> list[DataSource]:
    """The scanned data sets (up to `max_samples` records each) the suite scores: `--data` when given
    (refused when its records are not `what`), else the recipe's eval data sets whose records are."""
    if context.data is not None:
        path, fmt = context.data
        source = _scanned(Path(path).stem, {"path": path, "format": fmt}, Path.cwd(), context.max_samples)
        if not wanted(source):
            raise SuiteError(f"--data {path} (format {fmt}) does not hold {what}")
        return [source]
    if context.recipe is None:
        raise SuiteError(f"a model folder has no recipe to name its held-out data: give the {what} "
                         "with --data PATH --format F")
    recipe = context.recipe
    names = (recipe.get("eval") or {}).get("datasets") or []
    sources = [_scanned(name, recipe["datasets"][name], context.recipe_dir, context.max_samples) for name in names]
    chosen = [source for source in sources if wanted(source)]
    if not chosen:
        listed = ", ".join(f"{s.name} ({s.format})" for s in sources) or "none"
        raise SuiteError(f"no eval data set of the recipe holds {what} (eval.datasets: {listed}); "
                         "add one to eval.datasets, or give --data PATH --format F")
    return chosen


def _scanned(name: str, spec: dict[str, Any], base_dir: Path, max_samples: int) -> DataSource:
    try:
        source = open_source(name, spec, base_dir)
    except (OSError, DataError, ValueError) as exc:
        raise SuiteError(f"data set {name} ({spec.get('path')}): {exc}") from None
    source.scan(max_samples)
    if not len(source):
        reasons = "; ".join(f"{bad.location}: {bad.reason}" for bad in source.bad[:3])
        raise SuiteError(f"data set {name} ({spec.get('path')}) has no usable {spec.get('format')} records"
                         + (f" ({reasons})" if reasons else ""))
    return source


@dataclass
class Answer:
    """One scored record: the model's reply, the reply the record holds, and the record itself."""

    position: int
    location: str
    generated: str
    expected: Message
    conversation: Conversation
    raw: Any


def answers(context: SuiteContext, source: DataSource, skipped: list[dict[str, str]]) -> Iterator[Answer]:
    """The model's greedy reply to each record of a scanned data set; records whose media cannot be
    read go to `skipped` with the reason."""
    from omni_runner.data.render import template_for
    from omni_runner.eval import answer_record, capability_for_format, record_needs

    capability = capability_for_format(source.format, (context.recipe or {}).get("capabilities") or {}, record_needs(source))
    template = template_for(capability or "")
    for position in range(len(source)):
        try:
            generated, expected = answer_record(context.loaded, source, position, template, context.max_new_tokens)
        except RecordError as exc:
            skipped.append({"location": source.location(position), "reason": str(exc)})
            continue
        yield Answer(position, source.location(position), generated, expected, source.conversation(position),
                     source.record(source.good[position]))
