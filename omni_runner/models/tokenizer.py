"""A small byte-level BPE tokenizer, trained locally, that behaves like Qwen2.5-Omni's.

Why train one: the real Qwen vocabulary (152k tokens) would make the tiny model's embedding and
output layers dwarf everything else, and downloading it is not allowed. This tokenizer uses the same
pre-tokenisation (Qwen2's split regex, byte-level alphabet, NFC) and the same special tokens, so
everything downstream (chat template, processor, rope index, loss masks) works as with the real one.

Public API:
- `SPECIAL_TOKENS`, `NON_SPECIAL_ADDED_TOKENS`: the added tokens, in id order after the BPE vocabulary.
- `MEDIA_TOKENS`: tokenizer attribute name -> token (`image_token` -> `<|IMAGE|>`, ...).
- `training_corpus(bundled_dir) -> list[str]`: the deterministic corpus (built-in text plus every
  string in the bundled JSON/JSONL data sets).
- `train_tokenizer(corpus, vocab_size) -> Qwen2Tokenizer`: the transformers tokenizer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import Qwen2Tokenizer

SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|AUDIO|>",
    "<|audio_bos|>",
    "<|audio_eos|>",
    "<|vision_bos|>",
    "<|vision_eos|>",
    "<|vision_pad|>",
    "<|IMAGE|>",
    "<|VIDEO|>",
)
# Like Qwen's own `<tool_call>`: kept in decoded text (skip_special_tokens leaves them), never split.
NON_SPECIAL_ADDED_TOKENS: tuple[str, ...] = (
    "<tool_call>",
    "</tool_call>",
    "<tool_response>",
    "</tool_response>",
    "<think>",
    "</think>",
)
# The attributes Qwen2_5OmniProcessor reads from its tokenizer.
MEDIA_TOKENS: dict[str, str] = {
    "image_token": "<|IMAGE|>",
    "audio_token": "<|AUDIO|>",
    "video_token": "<|VIDEO|>",
    "vision_bos_token": "<|vision_bos|>",
    "vision_eos_token": "<|vision_eos|>",
    "audio_bos_token": "<|audio_bos|>",
    "audio_eos_token": "<|audio_eos|>",
}

# Qwen2's pre-tokenisation: contractions, letter runs, single digits, punctuation runs, newlines.
QWEN2_SPLIT_REGEX = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""

_SENTENCES = (
    "You are a helpful assistant.",
    "Answer the question briefly and correctly.",
    "Let me think about this step by step.",
    "First, we find the total. Then we divide by the number of items.",
    "Therefore, the answer is 42.",
    "The weather in Paris is sunny with a high of 24 degrees.",
    "Please convert 100 US dollars to euros.",
    "What is the capital of France? The capital of France is Paris.",
    "Summarise the following text in one sentence.",
    "I need to call a function to answer this request.",
    "The function returned the following result.",
    "Here is the information you asked for.",
    "Sorry, I cannot help with that request.",
    "If a train travels 60 kilometres in 45 minutes, what is its average speed?",
    "The image shows a cat sitting on a red chair next to a window.",
    "The audio clip contains a person speaking about the weather.",
    "In the video, a dog runs across a field and catches a ball.",
    "Translate the sentence into German, French and Spanish.",
    "Explain why the sky is blue in simple words.",
    "The sum of 17 and 25 is 42, and their product is 425.",
    "Schedule a meeting with Alice on Monday at 10:30.",
    "Search the web for recent news about renewable energy.",
    "Send an email to bob@example.com with the subject Project update.",
    "Set a timer for 15 minutes and remind me to check the oven.",
    "Book a table for two people at 7 pm tomorrow.",
    "Look up the stock price of ACME Corporation.",
    "Calculate the area of a circle with a radius of 3.5 metres.",
    "The user wants to know the distance between two cities.",
    "Streaming answer: the reply arrives in short pieces, one after another.",
    "Step 1: read the question. Step 2: plan. Step 3: answer.",
)

_TOOL_SCHEMAS = (
    {
        "name": "get_weather",
        "description": "Get the current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
    {
        "name": "convert_currency",
        "description": "Convert an amount between currencies.",
        "parameters": {
            "type": "object",
            "properties": {"amount": {"type": "number"}, "from": {"type": "string"}, "to": {"type": "string"}},
            "required": ["amount", "from", "to"],
        },
    },
    {
        "name": "search_web",
        "description": "Search the web and return the top results.",
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}},
            "required": ["query"],
        },
    },
    {
        "name": "create_event",
        "description": "Create a calendar event.",
        "parameters": {
            "type": "object",
            "properties": {
                "title": {"type": "string"},
                "date": {"type": "string"},
                "time": {"type": "string"},
                "all_day": {"type": "boolean"},
            },
            "required": ["title", "date"],
        },
    },
)

_TOOL_CALLS = (
    {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}},
    {"name": "get_weather", "arguments": {"city": "Tokyo"}},
    {"name": "convert_currency", "arguments": {"amount": 100, "from": "USD", "to": "EUR"}},
    {"name": "search_web", "arguments": {"query": "renewable energy news", "limit": 5}},
    {
        "name": "create_event",
        "arguments": {"title": "Meeting with Alice", "date": "2025-03-10", "time": "10:30", "all_day": False},
    },
)


def _builtin_corpus() -> Iterator[str]:
    """Chat, tool-call, JSON and think-tag text the tiny model will meet in every recipe."""
    from omni_runner.models.chat_template import DEFAULT_SYSTEM_PROMPT, TOOLS_PREAMBLE

    # The template's own text opens every tool-calling sample: it should cost few tokens.
    yield from [f"system\n{DEFAULT_SYSTEM_PROMPT}\n\n{TOOLS_PREAMBLE}\n</tools>"] * 4
    yield from _SENTENCES
    for schema in _TOOL_SCHEMAS:
        yield json.dumps(schema)
        yield json.dumps({"type": "function", "function": schema}, indent=2)
    for call in _TOOL_CALLS:
        yield json.dumps(call)
        yield json.dumps({"name": call["name"], "arguments": json.dumps(call["arguments"])})
    for index, sentence in enumerate(_SENTENCES):
        following = _SENTENCES[(index + 7) % len(_SENTENCES)]
        yield f"system\n{_SENTENCES[0]}\nuser\n{sentence}\nassistant\n{following}\n"
        yield f"\nLet me reason.\n{sentence}\n\n\n{following}"
        yield f'{{"role": "user", "content": "{sentence}"}}'
    yield " ".join(str(number) for number in range(0, 1000, 7))
    yield "0123456789 +-*/=()[]{}<>:;,.!?'\"`~@#$%^&_|\\ \t\n"


def _strings_in(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings_in(item)


def _bundled_corpus(bundled_dir: Path) -> Iterator[str]:
    """Every string in the bundled JSON/JSONL data, in sorted file order (deterministic)."""
    if not bundled_dir.is_dir():
        return
    for path in sorted(bundled_dir.rglob("*")):
        if path.suffix == ".jsonl":
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    yield from _strings_in(json.loads(line))
        elif path.suffix == ".json":
            yield from _strings_in(json.loads(path.read_text(encoding="utf-8")))


def training_corpus(bundled_dir: Path) -> list[str]:
    """The tokenizer's training text; the same files always give the same list."""
    return [*_builtin_corpus(), *_bundled_corpus(bundled_dir)]


def train_tokenizer(corpus: list[str], vocab_size: int) -> Qwen2Tokenizer:
    """Train byte-level BPE on `corpus`, then add Qwen's special tokens after the learned vocabulary."""
    from tokenizers import (
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        trainers,
    )
    from transformers import AddedToken, Qwen2Tokenizer

    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    added = SPECIAL_TOKENS + NON_SPECIAL_ADDED_TOKENS
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(added),
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus, trainer=trainer)

    model_state = json.loads(bpe.to_str())["model"]
    vocab: dict[str, int] = dict(model_state["vocab"])
    for token in added:
        vocab[token] = len(vocab)
    merges = [tuple(merge) if isinstance(merge, list) else tuple(merge.split(" ")) for merge in model_state["merges"]]

    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=MEDIA_TOKENS,
        model_max_length=32768,
        errors="replace",
    )
    tokenizer.add_tokens(
        [AddedToken(token, special=True, normalized=False) for token in SPECIAL_TOKENS], special_tokens=True
    )
    tokenizer.add_tokens([AddedToken(token, special=False, normalized=False) for token in NON_SPECIAL_ADDED_TOKENS])
    return tokenizer
