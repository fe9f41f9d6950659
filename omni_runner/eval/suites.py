"""The `omni-run eval` suites, as data: what each one measures, what the model must take in or put
out to be scored by it, and the module that runs it.

    SUITES["function-calling"].module  # "omni_runner.eval.function_calling", whose run(context) scores

A suite module keeps its metric as pure functions (unit-tested on hand-computed cases) apart from
`run(context: SuiteContext) -> dict[str, dict]`, which reads the data, generates with the model and
returns one entry per scored data set (or task): numbers are metrics, `n` the records scored, other
keys details (`failures`, `note`). A suite whose inputs the model cannot take is refused before any
weights load (`refusal`). Adding a suite is one `Suite` entry here and its module.

No heavy imports here: the command's argument parsing and its refusals stay fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omni_runner.capabilities import describe_missing


class SuiteError(Exception):
    """A suite cannot run on this target or data; the message says what is missing and what to do."""


@dataclass(frozen=True)
class Suite:
    name: str
    module: str
    needs: frozenset[str]  # modalities the model must have (capabilities.MODALITIES names)
    summary: str


SUITES: dict[str, Suite] = {
    suite.name: suite
    for suite in (
        Suite("function-calling", "omni_runner.eval.function_calling", frozenset({"text_in", "text_out"}),
              "tool calls: exact match and BFCL-style AST match on held-out xLAM/Hermes records"),
        Suite("lm-eval", "omni_runner.eval.harness", frozenset({"text_in", "text_out"}),
              "lm-evaluation-harness tasks (MMLU, HellaSwag, ...) from local files"),
        Suite("vqa", "omni_runner.eval.vqa", frozenset({"text_out", "image_in"}),
              "VQAv2-style normalised accuracy on local image QA records"),
        Suite("audio", "omni_runner.eval.audio", frozenset({"text_out", "audio_in"}),
              "word error rate of transcriptions (jiwer), accuracy of audio QA"),
        Suite("generation", "omni_runner.eval.generation", frozenset({"text_in", "image_out"}),
              "CLIP score of generated images against their prompts (needs --clip)"),
        Suite("perplexity", "omni_runner.eval.perplexity", frozenset({"text_in", "text_out"}),
              "each capability's held-out loss and perplexity, as the trainer computes them during training"),
        Suite("talker", "omni_runner.eval.talker", frozenset({"audio_out"}),
              "talker consistency: the talker's codec loss reading the tuned thinker, against the base floor"),
    )
}


@dataclass
class SuiteContext:
    """What a suite's `run` gets: the loaded model (`models.load.LoadedModel`), the run's resolved
    recipe and the folder its relative paths start from (None for a bare model folder), the run
    folder (None likewise), and the command's options."""

    loaded: Any
    recipe: dict[str, Any] | None
    recipe_dir: Path
    run_dir: Path | None = None
    max_samples: int = 16
    max_new_tokens: int = 64
    data: tuple[str, str] | None = None  # --data PATH --format F: score this file instead of the recipe's sets
    options: dict[str, Any] = field(default_factory=dict)  # suite-specific: clip, tasks, include, base_dir


def parse_suites(text: str) -> list[Suite]:
    """`--suite a,b` as registry entries; SuiteError names the unknown ones and lists the known."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in SUITES]
    if unknown or not names:
        raise SuiteError(f"unknown suite {', '.join(map(repr, unknown)) or '(none given)'}; "
                         f"the suites are: {', '.join(SUITES)}")
    return [SUITES[name] for name in dict.fromkeys(names)]


def refusal(suite: Suite, modalities: tuple[str, ...] | set[str], what: str) -> str | None:
    """Why the model `what` (a phrase naming it) cannot be scored by `suite`, or None when it can."""
    missing = [modality for modality in sorted(suite.needs) if modality not in modalities]
    if not missing:
        return None
    return (f"suite {suite.name} needs {', '.join(missing)}, which {what} does not have "
            f"({'; '.join(describe_missing(m) for m in missing)})")


def run_suite(suite: Suite, context: SuiteContext) -> dict[str, dict[str, Any]]:
    """Run one suite on the context's model (imports the suite's module, with its heavy imports)."""
    import importlib

    return importlib.import_module(suite.module).run(context)
