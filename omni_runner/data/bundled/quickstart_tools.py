"""The quick start's tool-calling set: a skill the tiny model learns in minutes, scored on unseen requests.

`recipes/tiny_omni.yaml` trains on `builtin:tool-calling/quickstart_{xlam,hermes}.parquet` and scores
`quickstart_heldout.parquet` at the end. `generate.generate()` writes them with the other bundled files
(`python -m omni_runner.data.bundled.generate`), deterministically.

The skill: pick the right one of three functions and copy both argument values out of the request
into the right slots (`get_weather(city, unit)`, `find_restaurants(cuisine, city)`,
`translate_text(text, target_language)`). A random-init model has neither; the tiny model learns it
from a few hundred samples because each slot draws on six values (two units) the tokenizer already
writes as one token, and the request and reply fit the tiny model's 64-token sliding window. The
bundled 8-function set (`xlam_train.jsonl`) is the harder, longer curve of `tiny_tool_calling.yaml`.

Honestly held out, twice over:
- phrasing: each function's `HELDOUT_TEMPLATES` never occur in training (training uses `TRAINING_TEMPLATES`);
- arguments: the value pairs `is_reserved` picks (a third of each grid, every value keeping training
  partners in its slot) never occur in training.
Every held-out record has both a held-out template and a reserved pair, so it matches no training
record in phrasing, in arguments, or in their combination.

Parquet, not JSON: the tiny model's tokenizer is trained on every bundled JSON/JSONL string, so a new
JSON file would change the tiny model itself.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

SEED = 20261202
TRAIN_XLAM_RECORDS = 600
TRAIN_HERMES_RECORDS = 300
HELDOUT_PER_FUNCTION = 10

CITIES = ["Paris", "Tokyo", "Oslo", "Cairo", "Rome", "Lima"]
UNITS = ["celsius", "fahrenheit"]
CUISINES = ["thai", "italian", "mexican", "indian", "sushi", "vegan"]
WORDS = ["apple", "river", "candle", "garden", "pencil", "rocket"]
LANGUAGES = ["French", "German", "Spanish", "Italian", "Japanese", "Korean"]


@dataclass(frozen=True)
class Function:
    """One callable function: its xLAM definition, the values each slot takes, and its phrasings."""

    name: str
    description: str
    slots: dict[str, tuple[str, list[str]]]  # slot -> (description, values)
    training_templates: tuple[str, ...]
    heldout_templates: tuple[str, ...]

    def xlam_tool(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description,
                "parameters": {slot: {"description": text, "type": "str"} for slot, (text, _) in self.slots.items()}}

    def json_schema_tool(self) -> dict[str, Any]:
        """The OpenAI / Hermes layout of the same definition."""
        properties = {slot: {"type": "string", "description": text} for slot, (text, _) in self.slots.items()}
        return {"type": "function", "function": {"name": self.name, "description": self.description, "parameters": {
            "type": "object", "properties": properties, "required": list(self.slots)}}}

    def pairs(self) -> list[tuple[int, int]]:
        """Every (first value, second value) index pair of the function's two slots."""
        first, second = (values for _, values in self.slots.values())
        return [(i, j) for i in range(len(first)) for j in range(len(second))]

    def arguments(self, pair: tuple[int, int]) -> dict[str, str]:
        return {slot: values[index] for (slot, (_, values)), index in zip(self.slots.items(), pair)}


# Every value in a template follows a space, so it is the same token wherever it stands.
FUNCTIONS = (
    Function(
        "get_weather", "Current weather for a city.",
        {"city": ("City name.", CITIES), "unit": ("celsius or fahrenheit.", UNITS)},
        training_templates=(
            "What's the weather in {city} in {unit}?",
            "Weather for {city}, in {unit} please.",
            "How warm is it in {city}? Answer in {unit}.",
            "Give me the {unit} temperature in {city}.",
            "Is it cold in {city} right now, in {unit}?",
            "Tell me the {city} forecast in {unit}.",
        ),
        heldout_templates=(
            "I'm visiting {city}: how hot is it there, in {unit}?",
            "Current conditions in {city}, with degrees in {unit}.",
            "Do I need a coat in {city}? Show {unit}.",
        ),
    ),
    Function(
        "find_restaurants", "Find restaurants by cuisine in a city.",
        {"cuisine": ("Kind of food.", CUISINES), "city": ("City name.", CITIES)},
        training_templates=(
            "Find {cuisine} food in {city}.",
            "Any good {cuisine} places in {city}?",
            "Show me {cuisine} restaurants in {city}.",
            "Where can I eat {cuisine} in {city}?",
            "I want {cuisine} tonight, I'm in {city}.",
            "Book me a {cuisine} restaurant in {city}.",
        ),
        heldout_templates=(
            "Looking for a {cuisine} dinner somewhere in {city}.",
            "Which places in {city} serve {cuisine} dishes?",
            "We are in {city} and crave {cuisine}.",
        ),
    ),
    Function(
        "translate_text", "Translate a short text.",
        {"text": ("Text to translate.", WORDS), "target_language": ("Language to translate into.", LANGUAGES)},
        training_templates=(
            "Translate {text} into {target_language}.",
            "How do you say {text} in {target_language}?",
            "What is {text} in {target_language}?",
            "Give me the {target_language} word for {text}.",
            "Say {text} in {target_language}, please.",
            "I need {text} translated to {target_language}.",
        ),
        heldout_templates=(
            "What's the {target_language} for the word {text}?",
            "In {target_language}, how would one write {text}?",
            "My friend speaks {target_language}; tell her {text}.",
        ),
    ),
)


def is_reserved(pair: tuple[int, int]) -> bool:
    """Whether a value pair is kept out of training: a third of each grid, two pairs in every row and
    column of a 6x6 grid (so each value keeps four training partners in its slot)."""
    first, second = pair
    return (first + 2 * second) % 3 == 0


@dataclass(frozen=True)
class Request:
    """One generated request: which function, which phrasing, which values. It offers the called
    function alone: each listed tool costs some 90 tokens of the tiny model's prompt, and more samples
    in the quick start's minutes matter more than a distractor."""

    function: Function
    template: str
    pair: tuple[int, int]

    @property
    def query(self) -> str:
        return self.template.format(**self.function.arguments(self.pair))

    @property
    def call(self) -> dict[str, Any]:
        return {"name": self.function.name, "arguments": self.function.arguments(self.pair)}


def training_requests(rng: random.Random, count: int) -> list[Request]:
    """`count` requests, each function equally likely, from training phrasings and unreserved pairs."""
    requests = []
    for _ in range(count):
        function = rng.choice(FUNCTIONS)
        pair = rng.choice([p for p in function.pairs() if not is_reserved(p)])
        requests.append(Request(function, rng.choice(function.training_templates), pair))
    return requests


def heldout_requests(rng: random.Random) -> list[Request]:
    """`HELDOUT_PER_FUNCTION` distinct requests a function, each a held-out phrasing of a reserved pair."""
    requests = []
    for function in FUNCTIONS:
        unseen = [(t, p) for t in function.heldout_templates for p in function.pairs() if is_reserved(p)]
        for template, pair in rng.sample(unseen, HELDOUT_PER_FUNCTION):
            requests.append(Request(function, template, pair))
    rng.shuffle(requests)
    return requests


def xlam_record(index: int, request: Request) -> dict[str, Any]:
    """xLAM's layout: `id`, `query`, and `tools` and `answers` as JSON strings."""
    tools = [request.function.xlam_tool()]
    return {"id": index, "query": request.query, "tools": json.dumps(tools), "answers": json.dumps([request.call])}


def hermes_record(index: int, request: Request) -> dict[str, Any]:
    """Hermes function calling's single-turn layout: the system turn lists `<tools>`, the reply is a `<tool_call>`."""
    tools = [request.function.json_schema_tool()]
    system = ("You are a function calling AI model. You are provided with function signatures within <tools> "
              "</tools> XML tags. <tools> " + json.dumps(tools) + " </tools>")
    return {
        "id": f"quickstart-hermes-{index}",
        "conversations": [
            {"from": "system", "value": system},
            {"from": "human", "value": request.query},
            {"from": "gpt", "value": "<tool_call>\n" + json.dumps(request.call) + "\n</tool_call>"},
        ],
        "category": "Assistant",
        "subcategory": request.function.name,
        "task": "quick-start single tool call",
    }


def quickstart_records() -> dict[str, list[dict[str, Any]]]:
    """File name (under `tool-calling/`) -> its records."""
    rng = random.Random(SEED)
    xlam_train = [xlam_record(i, r) for i, r in enumerate(training_requests(rng, TRAIN_XLAM_RECORDS))]
    hermes_train = [hermes_record(i, r) for i, r in enumerate(training_requests(rng, TRAIN_HERMES_RECORDS))]
    heldout = [xlam_record(i, r) for i, r in enumerate(heldout_requests(rng))]
    return {"quickstart_xlam.parquet": xlam_train, "quickstart_hermes.parquet": hermes_train,
            "quickstart_heldout.parquet": heldout}
