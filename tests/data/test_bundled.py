"""The bundled data sets: reproducible from the generator, readable by their adapters, held-out unseen."""

from __future__ import annotations

import json
import random
from pathlib import Path

from omni_runner.data.bundled.generate import SEED, generate, is_reserved, xlam_records
from omni_runner.paths import BUNDLED_DATA_DIR


def _content(path: Path) -> object:
    """What a file holds: text byte for byte; Arrow and Parquet as tables (their bytes carry the
    writer's version); the save_to_disk fingerprint is a hash of the writer's state, not of the data."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    if path.suffix == ".arrow":
        import pyarrow as pa

        return pa.ipc.open_stream(path.read_bytes()).read_all().to_pylist()
    if path.name == "state.json":
        return {k: v for k, v in json.loads(path.read_text()).items() if k != "_fingerprint"}
    return path.read_bytes()


def test_generator_reproduces_the_committed_files(tmp_path):
    for path in generate(tmp_path):
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            committed = BUNDLED_DATA_DIR / file.relative_to(tmp_path)
            assert _content(file) == _content(committed), f"{committed} differs: rerun python -m omni_runner.data.bundled.generate"


def _calls(record: dict) -> list[tuple[str, dict]]:
    return [(call["name"], call["arguments"]) for call in json.loads(record["answers"])]


def _hermes_calls(record: dict) -> list[tuple[str, dict]]:
    calls = []
    for turn in record["conversations"]:
        if turn["from"] == "gpt" and "<tool_call>" in turn["value"]:
            call = json.loads(turn["value"].split("<tool_call>")[1].split("</tool_call>")[0])
            calls.append((call["name"], call["arguments"]))
    return calls


def test_heldout_tool_queries_never_repeat_a_training_call_combination():
    train, heldout = xlam_records(random.Random(SEED))
    key = lambda record: json.dumps(json.loads(record["answers"]), sort_keys=True)  # noqa: E731
    assert not {key(r) for r in heldout} & {key(r) for r in train}
    assert len(heldout) == 100 and len({r["query"] for r in heldout}) == 100


def test_reserved_calls_appear_in_no_training_file_and_in_every_heldout_query():
    hermes = json.loads((BUNDLED_DATA_DIR / "tool-calling" / "hermes_function_calling.json").read_text())
    train = [json.loads(line) for line in (BUNDLED_DATA_DIR / "tool-calling" / "xlam_train.jsonl").open()]
    heldout = [json.loads(line) for line in (BUNDLED_DATA_DIR / "tool-calling" / "xlam_heldout.jsonl").open()]
    training_calls = [c for r in train for c in _calls(r)] + [c for r in hermes for c in _hermes_calls(r)]
    assert training_calls and not any(is_reserved(call) for call in training_calls)
    assert all(any(is_reserved(call) for call in _calls(r)) for r in heldout)


def test_every_heldout_argument_value_is_trained_in_the_same_slot():
    train, heldout = xlam_records(random.Random(SEED))
    trained = {(name, slot, json.dumps(value)) for r in train for name, args in _calls(r) for slot, value in args.items()}
    for record in heldout:
        for name, args in _calls(record):
            for slot, value in args.items():
                assert (name, slot, json.dumps(value)) in trained, (record["query"], slot, value)


def _quickstart_requests(name: str) -> list[tuple[str, str, dict]]:
    """(query, function, arguments) of each record of a quick-start file, xLAM or Hermes layout."""
    import pyarrow.parquet as pq

    requests = []
    for record in pq.read_table(BUNDLED_DATA_DIR / "tool-calling" / name).to_pylist():
        if "conversations" in record:
            query = next(turn["value"] for turn in record["conversations"] if turn["from"] == "human")
            [call] = _hermes_calls(record)
        else:
            query, [call] = record["query"], _calls(record)
        requests.append((query, *call))
    return requests


def _phrasing(query: str, arguments: dict) -> str:
    """The request with its argument values replaced by their slot names: the phrasing template."""
    for slot, value in arguments.items():
        query = query.replace(f" {value}", f" {{{slot}}}")
    return query


def test_quickstart_heldout_requests_share_no_phrasing_and_no_argument_combination_with_training():
    train = _quickstart_requests("quickstart_xlam.parquet") + _quickstart_requests("quickstart_hermes.parquet")
    heldout = _quickstart_requests("quickstart_heldout.parquet")
    combination = lambda function, arguments: (function, json.dumps(arguments, sort_keys=True))
    trained_phrasings = {_phrasing(query, arguments) for query, _, arguments in train}
    trained_combinations = {combination(function, arguments) for _, function, arguments in train}
    trained_values = {(function, slot, value) for _, function, arguments in train for slot, value in arguments.items()}
    assert len(heldout) == 30 and len({query for query, _, _ in heldout}) == 30
    for query, function, arguments in heldout:
        assert "{" in _phrasing(query, arguments) and _phrasing(query, arguments) not in trained_phrasings, query
        assert combination(function, arguments) not in trained_combinations, query
        # each value is trained in its slot: the skill is composing known values, not guessing new ones
        assert all((function, slot, value) in trained_values for slot, value in arguments.items()), query
