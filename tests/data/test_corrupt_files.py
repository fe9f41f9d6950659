"""Corrupt data files through the real readers: a truncated or wrongly encoded file is either a bad
record at its `file:line` or one DataError naming the file and what to do, never another exception."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omni_runner.data.conversation import DataError, RecordError
from omni_runner.data.readers import open_table
from omni_runner.data.sources import build_sources

pytestmark = pytest.mark.timeout(60)

GOOD = {"instruction": "Say hi.", "input": "", "output": "Hi!"}
ACCENTED = {"instruction": "Dites «café».", "input": "", "output": "Olé!"}


def jsonl(records: list[dict]) -> str:
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)


def recipe_for(path: Path, **spec) -> dict:
    return {
        "datasets": {"d": {"path": str(path), "format": "alpaca", "max_bad_fraction": 0.5, **spec}},
        "capabilities": {"streaming": {"datasets": ["d"]}},
    }


def bad_records(path: Path, **spec) -> list[tuple[str, str]]:
    source = build_sources(recipe_for(path, **spec), path.parent)["d"]
    return [(bad.location, bad.reason) for bad in source.bad]


@pytest.mark.parametrize("streaming", [False, True])
def test_a_half_written_last_line_is_one_bad_record_at_its_line(tmp_path, streaming):
    path = tmp_path / "cut.jsonl"
    path.write_text(jsonl([GOOD] * 3) + json.dumps(GOOD)[:15])
    assert bad_records(path, streaming=streaming) == [("cut.jsonl:4", "line is not valid JSON (Expecting value, column 16)")]


@pytest.mark.parametrize("streaming", [False, True])
def test_latin1_lines_are_bad_records_naming_the_byte_not_replacement_characters(tmp_path, streaming):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(jsonl([GOOD, GOOD, GOOD]).encode() + jsonl([ACCENTED]).encode("latin-1"))
    assert bad_records(path, streaming=streaming) == [
        ("latin1.jsonl:4", "line is not UTF-8 text (byte 0xab at column 24); save the file as UTF-8")
    ]


def test_a_utf8_byte_order_mark_is_not_part_of_the_first_record(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + jsonl([ACCENTED, GOOD]).encode())
    assert bad_records(path) == [] and bad_records(path, streaming=True) == []


@pytest.mark.parametrize(("name", "content", "message"), [
    ("utf16.jsonl", jsonl([GOOD]).encode("utf-16"), "the file is UTF-16 text; save it as UTF-8"),
    ("utf16le.jsonl", jsonl([GOOD]).encode("utf-16-le"), "the file holds NUL bytes, so it is not UTF-8 JSON text"),
    ("empty.jsonl", b"", "the file is empty (no records)"),
    ("blank.jsonl", b"\n  \r\n\t\n", "the file is empty (no records)"),
    ("empty.json", b"", "the file is empty (no records)"),
    ("latin1.json", json.dumps([GOOD, ACCENTED], indent=1, ensure_ascii=False).encode("latin-1"),
     "latin1.json:8: the file is not UTF-8 text (byte 0xab); save it as UTF-8"),
], ids=["utf16", "utf16-without-bom", "empty", "blank", "empty-json", "latin1-json-array"])
def test_a_text_file_that_cannot_hold_records_is_one_error_naming_it(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError, match="^" + str(tmp_path).replace("/", ".")) as failure:
        build_sources(recipe_for(path), tmp_path)
    assert message in str(failure.value)


def parquet_bytes(tmp_path: Path) -> bytes:
    path = tmp_path / "good.parquet"
    pq.write_table(pa.Table.from_pylist([GOOD, ACCENTED] * 10), path, compression="none")
    return path.read_bytes()


@pytest.mark.parametrize("cut", ["empty", "half", "footer"])
def test_a_truncated_parquet_file_is_one_error_naming_it_and_what_to_do(tmp_path, cut):
    whole = parquet_bytes(tmp_path)
    path = tmp_path / "cut.parquet"
    path.write_bytes({"empty": b"", "half": whole[: len(whole) // 2], "footer": whole[:-3]}[cut])
    with pytest.raises(DataError) as failure:
        build_sources(recipe_for(path), tmp_path)
    message = str(failure.value)
    assert message.startswith(f"{path}: cannot be read as a Parquet file, it may be truncated or corrupt (")
    assert message.endswith("write it again from its source, or check the path")


def test_a_truncated_arrow_file_in_a_saved_dataset_is_one_error_naming_the_folder(tmp_path):
    import datasets

    folder = tmp_path / "saved"
    datasets.Dataset.from_list([GOOD] * 40).save_to_disk(str(folder))
    for arrow in folder.glob("*.arrow"):
        arrow.write_bytes(arrow.read_bytes()[:300])
    with pytest.raises(DataError, match="saved: cannot be read as a datasets save_to_disk folder, it may be truncated"):
        build_sources(recipe_for(folder), tmp_path)


def read_everything(path: Path, cache: Path, streaming: bool = False) -> None:
    """Open the file and read every record, letting only the project's own errors through."""
    try:
        table = open_table(path, streaming=streaming, cache_dir=cache)
    except DataError:
        return
    for index in range(len(table)):
        table.location(index)
        try:
            table.record(index)
        except RecordError:
            pass


mutations = st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=8)


def mutated(whole: bytes, changes: list[tuple[float, int]], keep: float) -> bytes:
    data = bytearray(whole[: max(0, int(len(whole) * keep))])
    for where, byte in changes:
        if data:
            data[int(where * len(data))] = byte
    return bytes(data)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=mutations, keep=st.floats(0, 1), streaming=st.booleans())
def test_byte_mutations_of_a_jsonl_file_give_only_the_projects_errors(tmp_path, changes, keep, streaming):
    whole = jsonl([GOOD, ACCENTED] * 5).encode()
    path = tmp_path / f"m{abs(hash((tuple(changes), keep, streaming)))}.jsonl"
    path.write_bytes(mutated(whole, changes, keep))
    read_everything(path, tmp_path / "cache", streaming)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=mutations, keep=st.sampled_from([1.0, 1.0, 0.99, 0.5]))
def test_byte_mutations_of_a_parquet_file_give_only_the_projects_errors(tmp_path, changes, keep):
    path = tmp_path / f"m{abs(hash((tuple(changes), keep)))}.parquet"
    path.write_bytes(mutated(parquet_bytes(tmp_path), changes, keep))
    read_everything(path, tmp_path / "cache")


@pytest.mark.timeout(180)  # the first test to need the tokenizer loads transformers and the tiny model
def test_data_check_names_a_truncated_parquet_file_and_what_to_do_without_a_traceback(tmp_path, tokenizer, capsys):
    from tests.data.test_data_command import run_data

    whole = parquet_bytes(tmp_path)
    (tmp_path / "chat.parquet").write_bytes(whole[: len(whole) // 2])
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("name: cut\nbase_model: {path: builtin:tiny-qwen2.5-omni}\n"
                      "datasets: {chat: {path: chat.parquet, format: alpaca}}\n"
                      "capabilities: {streaming: {datasets: [chat]}}\n")
    assert run_data("check", str(recipe)) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path / 'chat.parquet'}: cannot be read as a Parquet file, it may be truncated")
    assert "Traceback" not in err
