"""Generate omni-runner's bundled text data sets, deterministically, in the real layouts of the seed's data.

Run `python -m omni_runner.data.bundled.generate` to rewrite the files next to this module; the
output is byte-identical on every run (fixed seed, sorted keys), so the committed files can be
checked against it. Recipes name them `builtin:<folder>/<file>`.

The tasks are small and checkable on purpose: a tiny model trained for minutes on CPU must be able
to learn them, and tool calls must be scored by exact match. Tool calling uses a fixed catalogue
of eight functions with typed arguments (each query offers the functions it needs plus one
distractor), each argument drawn from a small fixed vocabulary.

The held-out file tests composition, not memory: one in `RESERVED_ONE_IN` calls with two or more
arguments (weather in Oslo in fahrenheit, 50 EUR to JPY, ...) is reserved and never occurs in any
training file (xLAM or Hermes), while every value in it does occur in training in the same slot.
Every held-out query (each a distinct text) holds at least one reserved call, so its (function,
arguments) combination is new. Unseen values (a date or number never written in training) are not held out: copying unseen
digit strings is what a few-million-parameter model does not learn in minutes (measured in
docs/data.md).

The quick start's own smaller tool-calling set (three functions, held-out phrasings and value pairs)
comes from `quickstart_tools.py`, written here as Parquet beside the others.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omni_runner.data.bundled.quickstart_tools import quickstart_records

HERE = Path(__file__).resolve().parent
SEED = 20260127
TRAIN_TOOL_QUERIES = 2000
HELDOUT_TOOL_QUERIES = 100
RESERVED_ONE_IN = 8

CITIES = ["Paris", "Tokyo", "Lima", "Oslo", "Cairo", "Delhi", "Rome", "Seoul", "Berlin", "Madrid",
          "Dublin", "Nairobi", "Quito", "Hanoi", "Lisbon", "Prague", "Vienna", "Sydney", "Toronto", "Denver"]
CURRENCIES = ["USD", "EUR", "JPY", "GBP", "INR", "CAD", "CHF", "BRL"]
SYMBOLS = ["AAPL", "MSFT", "NVDA", "TSLA", "AMZN", "GOOG", "META", "IBM"]
LANGUAGES = ["French", "German", "Spanish", "Italian", "Japanese", "Korean"]
PHRASES = ["good morning", "thank you", "see you soon", "happy birthday", "where is the station", "how much is it"]
CUISINES = ["thai", "italian", "mexican", "indian", "sushi", "vegan"]
CONTACTS = ["ana@example.com", "bo@example.com", "kim@example.org", "li@example.net", "sam@example.com"]
SUBJECTS = ["lunch", "the report", "the invoice", "tomorrow", "the trip", "the budget"]
EVENTS = ["dentist", "team sync", "gym", "book club", "flight", "concert"]
WORDS = ["apple", "river", "candle", "garden", "pencil", "rocket", "window", "silver", "tiger", "basket",
         "planet", "forest", "button", "cloud", "ladder", "mirror", "orange", "pillow", "saddle", "tunnel"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
ITEMS = ["pens", "apples", "stamps", "cards", "marbles", "books"]
NAMES = ["Sam", "Mia", "Leo", "Ana", "Kai", "Zoe", "Ben", "Ivy"]
DATES = ["2026-01-14", "2026-02-09", "2026-03-21", "2026-04-02", "2026-05-17", "2026-06-30",
         "2026-07-08", "2026-08-25", "2026-09-11", "2026-10-06", "2026-11-19", "2026-12-24"]
MINUTES = [5, 10, 15, 20, 25, 30, 40, 45, 60, 90]
AMOUNTS = [5, 10, 20, 25, 50, 75, 100, 120, 200, 250, 500, 1000]


def _param(type_name: str, description: str, default: Any = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"description": description, "type": type_name}
    if default is not None:
        spec["default"] = default
    return spec


# The API catalogue in xLAM's own tool layout: parameters as {name: {type, description, default?}}.
CATALOGUE: dict[str, dict[str, Any]] = {
    "get_weather": {
        "description": "Current weather for a city.",
        "parameters": {
            "city": _param("str", "City name."),
            "unit": _param("str, optional", "celsius or fahrenheit.", "celsius"),
        },
    },
    "convert_currency": {
        "description": "Convert an amount between currencies.",
        "parameters": {
            "amount": _param("float", "Amount to convert."),
            "from_currency": _param("str", "ISO code to convert from."),
            "to_currency": _param("str", "ISO code to convert to."),
        },
    },
    "set_timer": {
        "description": "Start a countdown timer.",
        "parameters": {"minutes": _param("int", "Length in minutes.")},
    },
    "get_stock_price": {
        "description": "Latest price of a stock.",
        "parameters": {"symbol": _param("str", "Ticker symbol.")},
    },
    "translate_text": {
        "description": "Translate a short text.",
        "parameters": {
            "text": _param("str", "Text to translate."),
            "target_language": _param("str", "Language to translate into."),
        },
    },
    "find_restaurants": {
        "description": "Find restaurants by cuisine in a city.",
        "parameters": {
            "cuisine": _param("str", "Kind of food."),
            "city": _param("str", "City name."),
        },
    },
    "send_email": {
        "description": "Send a short email.",
        "parameters": {
            "to": _param("str", "Recipient address."),
            "subject": _param("str", "Subject line."),
        },
    },
    "add_event": {
        "description": "Add an event to the calendar.",
        "parameters": {
            "title": _param("str", "Event title."),
            "date": _param("str", "Date as YYYY-MM-DD."),
        },
    },
}

Call = tuple[str, dict[str, Any]]


def _weather(rng: random.Random) -> tuple[str, Call]:
    city = rng.choice(CITIES)
    if rng.random() < 0.4:
        unit = rng.choice(["celsius", "fahrenheit"])
        query = rng.choice(["Weather in {c} in {u}?", "How warm is {c} in {u}?", "{c} temperature in {u}, please."])
        return query.format(c=city, u=unit), ("get_weather", {"city": city, "unit": unit})
    query = rng.choice(["What's the weather in {c}?", "Is it raining in {c}?", "Weather for {c} today?"])
    return query.format(c=city), ("get_weather", {"city": city})


def _currency(rng: random.Random) -> tuple[str, Call]:
    amount = rng.choice(AMOUNTS)
    source, target = rng.sample(CURRENCIES, 2)
    query = rng.choice(["Convert {a} {f} to {t}.", "How much is {a} {f} in {t}?", "{a} {f} in {t}?"])
    return query.format(a=amount, f=source, t=target), (
        "convert_currency", {"amount": amount, "from_currency": source, "to_currency": target})


def _timer(rng: random.Random) -> tuple[str, Call]:
    minutes = rng.choice(MINUTES)
    query = rng.choice(["Set a timer for {m} minutes.", "Timer {m} min please.", "Start a {m} minute timer."])
    return query.format(m=minutes), ("set_timer", {"minutes": minutes})


def _stock(rng: random.Random) -> tuple[str, Call]:
    symbol = rng.choice(SYMBOLS)
    query = rng.choice(["Price of {s} stock?", "How is {s} trading?", "Quote for {s}."])
    return query.format(s=symbol), ("get_stock_price", {"symbol": symbol})


def _translate(rng: random.Random) -> tuple[str, Call]:
    phrase, language = rng.choice(PHRASES), rng.choice(LANGUAGES)
    query = rng.choice(["Translate '{p}' into {l}.", "How do you say '{p}' in {l}?", "'{p}' in {l}?"])
    return query.format(p=phrase, l=language), ("translate_text", {"text": phrase, "target_language": language})


def _restaurants(rng: random.Random) -> tuple[str, Call]:
    cuisine, city = rng.choice(CUISINES), rng.choice(CITIES)
    query = rng.choice(["Find {k} food in {c}.", "Any good {k} places in {c}?", "{k} restaurants in {c}?"])
    return query.format(k=cuisine, c=city), ("find_restaurants", {"cuisine": cuisine, "city": city})


def _email(rng: random.Random) -> tuple[str, Call]:
    contact, subject = rng.choice(CONTACTS), rng.choice(SUBJECTS)
    query = rng.choice(["Email {to} about {s}.", "Send {to} a note about {s}.", "Write to {to} re {s}."])
    return query.format(to=contact, s=subject), ("send_email", {"to": contact, "subject": subject})


def _event(rng: random.Random) -> tuple[str, Call]:
    title, date = rng.choice(EVENTS), rng.choice(DATES)
    query = rng.choice(["Add {t} on {d} to my calendar.", "Schedule {t} for {d}.", "Put {t} on {d}."])
    return query.format(t=title, d=date), ("add_event", {"title": title, "date": date})


SINGLE_CALLS: list[Callable[[random.Random], tuple[str, Call]]] = [
    _weather, _currency, _timer, _stock, _translate, _restaurants, _email, _event]


def is_reserved(call: Call) -> bool:
    """Whether a call is kept out of training for the held-out set (a fixed hash, so stable)."""
    name, arguments = call
    digest = hashlib.sha256(json.dumps([name, arguments], sort_keys=True).encode()).digest()
    return len(arguments) >= 2 and digest[0] % RESERVED_ONE_IN == 0


def _tool_query(rng: random.Random) -> tuple[str, list[Call]]:
    """One query and its calls; about one in eight asks for two things at once (parallel calls)."""
    first_query, first_call = rng.choice(SINGLE_CALLS)(rng)
    if rng.random() < 0.125:
        second_query, second_call = rng.choice(SINGLE_CALLS)(rng)
        if second_call != first_call:
            return f"{first_query.rstrip('.?')} and {second_query[0].lower()}{second_query[1:]}", [first_call, second_call]
    return first_query, [first_call]


def _training_call(rng: random.Random) -> tuple[str, Call]:
    """One single-call query whose call is not reserved."""
    while True:
        query, call = rng.choice(SINGLE_CALLS)(rng)
        if not is_reserved(call):
            return query, call


def _tools_for(rng: random.Random, calls: list[Call]) -> list[str]:
    """The called functions plus one distractor, in a shuffled order (short prompts for a tiny model)."""
    names = sorted({name for name, _ in calls})
    others = [n for n in CATALOGUE if n not in names]
    names.append(rng.choice(others))
    rng.shuffle(names)
    return names


def xlam_records(rng: random.Random) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Training and held-out records in xLAM's layout (`id`, `query`, `tools`, `answers` as JSON strings)."""
    def record(index: int, query: str, calls: list[Call]) -> dict[str, Any]:
        tools = [{"name": n, **CATALOGUE[n]} for n in _tools_for(rng, calls)]
        answers = [{"name": n, "arguments": args} for n, args in calls]
        return {"id": index, "query": query, "answers": json.dumps(answers), "tools": json.dumps(tools)}

    train = []
    while len(train) < TRAIN_TOOL_QUERIES:
        query, calls = _tool_query(rng)
        if not any(is_reserved(call) for call in calls):
            train.append(record(len(train), query, calls))
    heldout, seen = [], set()
    while len(heldout) < HELDOUT_TOOL_QUERIES:
        query, calls = _tool_query(rng)
        if any(is_reserved(call) for call in calls) and query not in seen:
            seen.add(query)
            heldout.append(record(len(heldout), query, calls))
    return train, heldout


def _tool_result(call: Call) -> tuple[dict[str, Any], str]:
    """A deterministic fake API result and the assistant's one-line summary of it."""
    name, args = call
    if name == "get_weather":
        degrees = 5 + len(args["city"]) * 3
        return {"city": args["city"], "temp": degrees, "sky": "clear"}, f"It is {degrees} degrees and clear in {args['city']}."
    if name == "convert_currency":
        value = round(args["amount"] * 1.5, 2)
        return {"result": value}, f"{args['amount']} {args['from_currency']} is {value} {args['to_currency']}."
    if name == "set_timer":
        return {"status": "started"}, f"Your {args['minutes']} minute timer is running."
    if name == "get_stock_price":
        price = 100 + 7 * len(args["symbol"])
        return {"symbol": args["symbol"], "price": price}, f"{args['symbol']} trades at {price} dollars."
    if name == "translate_text":
        return {"translation": f"[{args['target_language']}] {args['text']}"}, "Here is the translation."
    if name == "find_restaurants":
        return {"count": 3}, f"I found 3 {args['cuisine']} places in {args['city']}."
    if name == "send_email":
        return {"status": "sent"}, f"Your email to {args['to']} is sent."
    return {"status": "added"}, f"Added {args['title']} on {args['date']}."


def hermes_records(rng: random.Random, count: int = 200) -> list[dict[str, Any]]:
    """Hermes function-calling layout: ShareGPT `conversations` with `<tools>`, `<tool_call>`, `<tool_response>`."""
    records = []
    for index in range(count):
        query, call = _training_call(rng)
        names = _tools_for(rng, [call])
        tools = [
            {"type": "function", "function": {"name": n, "description": CATALOGUE[n]["description"],
                                              "parameters": _json_schema(CATALOGUE[n]["parameters"])}}
            for n in names
        ]
        result, summary = _tool_result(call)
        system = ("You can call functions. The available tools are listed here: <tools> "
                  + json.dumps(tools) + " </tools> Answer with <tool_call></tool_call> blocks when a tool helps.")
        records.append({
            "id": f"bundled-hermes-{index}",
            "conversations": [
                {"from": "system", "value": system},
                {"from": "human", "value": query},
                {"from": "gpt", "value": "<tool_call>\n" + json.dumps({"name": call[0], "arguments": call[1]}) + "\n</tool_call>"},
                {"from": "tool", "value": "<tool_response>\n" + json.dumps(result) + "\n</tool_response>"},
                {"from": "gpt", "value": summary},
            ],
            "category": "Assistant",
            "subcategory": call[0],
            "task": "bundled single tool call",
        })
    return records


def _json_schema(parameters: dict[str, Any]) -> dict[str, Any]:
    python_to_json = {"str": "string", "int": "integer", "float": "number"}
    properties = {
        name: {"type": python_to_json[spec["type"].split(",")[0]], "description": spec["description"]}
        for name, spec in parameters.items()
    }
    required = [name for name, spec in parameters.items() if "optional" not in spec["type"]]
    return {"type": "object", "properties": properties, "required": required}


def cot_records(rng: random.Random, count: int = 400) -> list[dict[str, Any]]:
    """CoT-Collection layout: `source`, `target`, `rationale`, `task`, `type`."""
    records = []
    for _ in range(count):
        name, item = rng.choice(NAMES), rng.choice(ITEMS)
        a, b = rng.randint(2, 12), rng.randint(2, 12)
        kind = rng.choice(["add", "subtract", "multiply"])
        if kind == "add":
            source = f"{name} has {a} {item} and gets {b} more. How many {item} does {name} have now?"
            rationale = f"{name} starts with {a} {item} and gets {b} more, so {a} + {b} = {a + b}."
            target = str(a + b)
        elif kind == "subtract":
            total = a + b
            source = f"{name} has {total} {item} and gives away {b}. How many {item} are left?"
            rationale = f"{name} had {total} {item} and gave away {b}, so {total} - {b} = {a}."
            target = str(a)
        else:
            source = f"{name} has {a} boxes with {b} {item} in each. How many {item} is that?"
            rationale = f"There are {a} boxes of {b} {item}, so {a} * {b} = {a * b}."
            target = str(a * b)
        records.append({"source": source, "target": target, "rationale": rationale,
                        "task": f"bundled_arithmetic_{kind}", "type": "CoT"})
    return records


def openo1_records(rng: random.Random, count: int = 300) -> list[dict[str, Any]]:
    """OpenO1-SFT layout: `instruction`, `output` with `<Thought>` and `<Output>` sections."""
    records = []
    for _ in range(count):
        name, item = rng.choice(NAMES), rng.choice(ITEMS)
        price, quantity = rng.randint(2, 9), rng.randint(2, 6)
        paid = price * quantity + rng.randint(1, 20)
        cost = price * quantity
        instruction = (f"{item.capitalize()} cost {price} dollars each. {name} buys {quantity} and pays "
                       f"with {paid} dollars. How much change does {name} get?")
        output = (f"<Thought>\nFirst the cost: {quantity} * {price} = {cost} dollars.\n"
                  f"Then the change: {paid} - {cost} = {paid - cost} dollars.\n</Thought>\n"
                  f"<Output>\n{paid - cost} dollars\n</Output>")
        records.append({"instruction": instruction, "output": output})
    return records


def thinking_records(rng: random.Random, count: int = 300) -> list[dict[str, Any]]:
    """OpenAI `messages` whose assistant turns start with `<think>...</think>` (R1-distill style)."""
    records = []
    for _ in range(count):
        kind = rng.choice(["larger", "parity", "weekday"])
        if kind == "larger":
            a, b = rng.sample(range(10, 100), 2)
            question = f"Which is larger, {a} or {b}?"
            thought = f"Compare {a} and {b}: {max(a, b)} is more than {min(a, b)}."
            answer = str(max(a, b))
        elif kind == "parity":
            n = rng.randint(1, 99)
            question = f"Is {n} even or odd?"
            thought = f"{n} divided by 2 leaves {n % 2}, so it is {'odd' if n % 2 else 'even'}."
            answer = "odd" if n % 2 else "even"
        else:
            day, shift = rng.randrange(7), rng.randint(1, 6)
            question = f"What day is {shift} days after {WEEKDAYS[day]}?"
            thought = f"Count {shift} days forward from {WEEKDAYS[day]}: it lands on {WEEKDAYS[(day + shift) % 7]}."
            answer = WEEKDAYS[(day + shift) % 7]
        records.append({"messages": [
            {"role": "user", "content": question},
            {"role": "assistant", "content": f"<think>\n{thought}\n</think>\n\n{answer}"},
        ]})
    return records


def sharegpt_records(rng: random.Random, count: int = 300) -> list[dict[str, Any]]:
    """ShareGPT layout (`conversations` of {from, value}): short multi-turn replies for streaming."""
    records = []
    for _ in range(count):
        word = rng.choice(WORDS)
        start = rng.randint(1, 20)
        turns = [
            ("human", f"Spell {word} backwards."), ("gpt", word[::-1]),
            ("human", "How many letters is that?"), ("gpt", str(len(word))),
        ]
        if rng.random() < 0.5:
            turns += [("human", f"Count from {start} to {start + 4}."),
                      ("gpt", ", ".join(str(n) for n in range(start, start + 5)))]
        records.append({"conversations": [{"from": s, "value": v} for s, v in turns]})
    return records


def alpaca_records(rng: random.Random, count: int = 200) -> list[dict[str, Any]]:
    """Alpaca layout: `instruction`, `input`, `output`."""
    tasks = [
        ("Write this word in capital letters.", str.upper),
        ("Give the first letter of this word.", lambda w: w[0]),
        ("Repeat this word twice.", lambda w: f"{w} {w}"),
    ]
    records = []
    for _ in range(count):
        word = rng.choice(WORDS)
        instruction, transform = rng.choice(tasks)
        records.append({"instruction": instruction, "input": word, "output": transform(word)})
    return records


def _write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records), encoding="utf-8")


def _write_json(path: Path, records: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records, sort_keys=True) + "\n", encoding="utf-8")


def generate(out: Path = HERE) -> list[Path]:
    """Write every bundled data set under `out`; returns the paths written."""
    import datasets

    rng = random.Random(SEED)
    train, heldout = xlam_records(rng)
    written = []
    for path, records in (
        (out / "tool-calling" / "xlam_train.jsonl", train),
        (out / "tool-calling" / "xlam_heldout.jsonl", heldout),
        (out / "cot" / "cot_collection.jsonl", cot_records(rng)),
        (out / "reasoning" / "openo1_sft.jsonl", openo1_records(rng)),
        (out / "streaming" / "sharegpt.jsonl", sharegpt_records(rng)),
    ):
        _write_jsonl(path, records)
        written.append(path)
    hermes_path = out / "tool-calling" / "hermes_function_calling.json"
    _write_json(hermes_path, hermes_records(rng))
    thinking_path = out / "thinking" / "messages.parquet"
    thinking_path.parent.mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_list(thinking_records(rng)).to_parquet(str(thinking_path))
    alpaca_path = out / "streaming" / "alpaca_disk"
    datasets.Dataset.from_list(alpaca_records(rng)).save_to_disk(str(alpaca_path))
    quickstart_paths = []
    for name, records in quickstart_records().items():
        quickstart_paths.append(out / "tool-calling" / name)
        datasets.Dataset.from_list(records).to_parquet(str(quickstart_paths[-1]))
    return [*written, hermes_path, thinking_path, alpaca_path, *quickstart_paths]


if __name__ == "__main__":
    for written_path in generate():
        print(written_path.relative_to(HERE))
