"""Token lengths of a stage's samples, measured without torch, for the plan's `training.packing: auto`.

The planner imports neither torch nor transformers (tests/plan/test_no_heavy_imports.py), and
transformers' tokenizer classes import torch. So the base model's chat template is rendered here with
jinja2 in the environment `apply_chat_template` uses (sandboxed, `trim_blocks`, `lstrip_blocks`, loop
controls, `{% generation %}` blocks, its `tojson`, `raise_exception` and `strftime_now`), the text is counted with the model's
`tokenizer.json` through `tokenizers`, and the messages are built by `render.py`, as the trainer builds
them. A measured length is therefore the length `render_sample` gives the same record
(tests/data/test_lengths.py).

The lengths are those of the stage's first draws of its own mixer (same weights, same seed as
training) over `RECORDS_PER_DATASET` evenly spaced records of each data set, so they come in the
order the trainer would batch them.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from omni_runner.data.adapters import adapt
from omni_runner.data.conversation import RecordError
from omni_runner.data.mixer import Mixer
from omni_runner.data.multimodal import has_media
from omni_runner.data.render import template_for, template_messages, tools_argument
from omni_runner.data.sources import active_capabilities, open_source

# Records measured per data set (evenly spaced); the stage's draws reuse them in the mixer's order.
RECORDS_PER_DATASET = 64
# The template variables `apply_chat_template` passes from the tokenizer's special tokens.
_SPECIAL_TOKENS = ("bos_token", "eos_token", "unk_token", "pad_token")


class TemplateTokenizer:
    """The base model's chat template and tokenizer.json, without transformers' tokenizer classes."""

    def __init__(self, folder: Path) -> None:
        from tokenizers import Tokenizer

        config = json.loads((folder / "tokenizer_config.json").read_text())
        template_file = folder / "chat_template.jinja"
        self.chat_template: str | None = template_file.read_text() if template_file.exists() else config.get("chat_template")
        self._special = {name: _token_text(config[name]) for name in _SPECIAL_TOKENS if config.get(name)}
        self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))

    def apply_chat_template(self, messages: list[dict[str, Any]], tools: Any = None, add_generation_prompt: bool = False) -> str:
        import jinja2

        if not self.chat_template:
            raise RecordError("the base model has no chat template")
        try:
            return _compiled(self.chat_template).render(messages=messages, tools=tools, documents=None,
                                                        add_generation_prompt=add_generation_prompt, **self._special)
        except jinja2.exceptions.TemplateError as error:  # the template refuses the record (raise_exception)
            raise RecordError(f"the chat template refuses the record: {error}") from None

    def count(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)


@cache
def _compiled(chat_template: str) -> Any:
    import jinja2
    from jinja2.ext import Extension, loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationBlocks(Extension):
        """`{% generation %}...{% endgeneration %}` renders its body (transformers uses it to find reply tokens)."""

        tags = {"generation"}

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller: Any) -> str:
            return caller()

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(value: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None, sort_keys: bool = False) -> str:
        return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[GenerationBlocks, loopcontrols])
    environment.filters["tojson"] = tojson
    environment.globals["raise_exception"] = raise_exception
    environment.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return environment.from_string(chat_template)


def _token_text(value: Any) -> str:
    return value["content"] if isinstance(value, dict) else str(value)


def sample_length(conversation: Any, tokenizer: TemplateTokenizer, template: str) -> int:
    """Tokens of the conversation rendered with the capability's template (as `render_sample` renders it)."""
    messages = template_messages(conversation, template)
    tools = tools_argument(tokenizer, conversation.tools, messages)
    return tokenizer.count(tokenizer.apply_chat_template(messages, tools=tools))


class LengthProbe:
    """Measures the token lengths of a stage's first draws; None where lengths cannot be known here
    (a stage whose data has media: its tokens depend on decoding the files)."""

    def __init__(self, recipe: dict[str, Any], base_dir: Path, model_dir: Path, samples: int) -> None:
        self.recipe = recipe
        self.base_dir = base_dir
        self.model_dir = model_dir
        self.samples = samples
        self._tokenizer: TemplateTokenizer | None = None

    def stage_lengths(self, capabilities: list[str]) -> list[int] | None:
        if self._tokenizer is None:
            self._tokenizer = TemplateTokenizer(self.model_dir)
        declared = self.recipe.get("datasets") or {}
        weights, datasets, lengths = {}, {}, {}
        for capability, spec in active_capabilities(self.recipe, capabilities).items():
            weights[capability] = float(spec.get("weight", 1.0))
            datasets[capability] = [n for n in spec.get("datasets", []) if n in declared]
            for name in datasets[capability]:
                if name not in lengths:
                    measured = self._dataset_lengths(name, declared[name], template_for(capability))
                    if measured is None:
                        return None
                    lengths[name] = measured
        datasets = {c: [n for n in names if lengths.get(n)] for c, names in datasets.items()}
        weights = {c: w for c, w in weights.items() if datasets[c]}
        if not weights:
            return None
        mixer = Mixer(weights, {c: datasets[c] for c in weights}, {n: len(v) for n, v in lengths.items()},
                      int((self.recipe.get("training") or {}).get("seed", 42)))
        return [lengths[draw.dataset][draw.position] for draw in (mixer.next() for _ in range(self.samples))]

    def _dataset_lengths(self, name: str, spec: dict[str, Any], template: str) -> list[int] | None:
        source = open_source(name, spec, self.base_dir)
        total = source.total
        count = min(total, RECORDS_PER_DATASET)
        picks = [i * total // count for i in range(count)]
        lengths = []
        for index in picks:
            try:
                conversation = adapt(source.format, source.record(index))
                if has_media(conversation):
                    return None
                lengths.append(sample_length(conversation, self._tokenizer, template))
            except RecordError:
                continue  # a bad record: the trainer skips it too
        return lengths


def packing_probe(recipe: dict[str, Any], base_dir: Path, samples: int) -> LengthProbe | None:
    """The probe `compile_plan` measures with when the recipe says `training.packing: auto` and the base
    model's tokenizer files are on disk (a built-in model not built yet has none: the trainer builds it)."""
    from omni_runner.paths import resolve_model_path

    if (recipe.get("training") or {}).get("packing") != "auto":
        return None
    model_dir = resolve_model_path(str((recipe.get("base_model") or {}).get("path", "")), base_dir)
    if not (model_dir / "tokenizer.json").exists() or not (model_dir / "tokenizer_config.json").exists():
        return None
    return LengthProbe(recipe, base_dir, model_dir, samples)
