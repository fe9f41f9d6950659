"""Reading JSON, JSONL, Parquet and save_to_disk data; bad records located and counted; max_bad_fraction."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from omni_runner.data.conversation import DataError
from omni_runner.data.readers import StreamedLinesTable, open_table
from omni_runner.data.sources import build_sources


def write_jsonl(path: Path, lines: list[Any]) -> Path:
    """Write records (dicts become JSON, strings are written as they are, e.g. corrupt lines)."""
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


GOOD = {"instruction": "Say hi.", "input": "", "output": "Hi!"}


def recipe_for(path: Path, fmt: str = "alpaca", **spec) -> dict:
    return {
        "datasets": {"d": {"path": str(path), "format": fmt, **spec}},
        "capabilities": {"streaming": {"weight": 1.0, "datasets": ["d"]}},
    }


def test_corrupt_jsonl_line_is_skipped_and_reported_at_its_exact_line(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [GOOD, GOOD, "", '{"instruction": "Say hi.", "out', GOOD, {"instruction": "x"}])
    source = build_sources(recipe_for(path, max_bad_fraction=0.5), tmp_path)["d"]
    assert (source.total, len(source)) == (5, 3)
    assert [(b.location, b.reason.split(" (")[0]) for b in source.bad] == [
        ("a.jsonl:4", "line is not valid JSON"),
        ("a.jsonl:6", "missing field 'output'"),
    ]


def test_streamed_jsonl_reads_the_same_records_and_line_numbers(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [GOOD, "", {"instruction": "Other.", "output": "Yes."}])
    table = StreamedLinesTable(path)
    assert [table.record(i)["instruction"] for i in range(len(table))] == ["Say hi.", "Other."]
    assert table.location(1) == "a.jsonl:3"


def test_too_many_bad_records_fail_with_locations_and_the_setting_to_change(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [GOOD, "not json", {"instruction": 3, "output": "x"}, GOOD])
    with pytest.raises(DataError) as failure:
        build_sources(recipe_for(path, max_bad_fraction=0.25), tmp_path)
    message = str(failure.value)
    assert "dataset 'd': 2 of 4 records are bad (50.0%), more than datasets.d.max_bad_fraction = 0.25" in message
    assert "a.jsonl:2: line is not valid JSON" in message
    assert "a.jsonl:3: field 'instruction' must be str, got int" in message


def test_json_array_records_are_located_by_item(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(json.dumps([GOOD, {"instruction": "x"}]))
    source = build_sources(recipe_for(path, max_bad_fraction=0.5), tmp_path)["d"]
    assert [b.location for b in source.bad] == ["a.json item 1"]


def test_broken_json_array_file_is_a_clear_error(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('[{"instruction": "x",\n')
    with pytest.raises(DataError, match="a.json: not valid JSON .* at line 2"):
        open_table(path, cache_dir=tmp_path / "cache")


def test_parquet_rows_are_read_and_located_by_row(tmp_path):
    import datasets

    path = tmp_path / "a.parquet"
    datasets.Dataset.from_list([GOOD, {**GOOD, "output": ""}]).to_parquet(str(path))
    source = build_sources(recipe_for(path, max_bad_fraction=0.5), tmp_path)["d"]
    assert len(source) == 1
    assert (source.bad[0].location, source.bad[0].reason) == ("a.parquet row 1", "field 'output' is empty")


def test_save_to_disk_folder_with_splits_uses_the_recipe_split(tmp_path):
    import datasets

    folder = tmp_path / "disk"
    datasets.DatasetDict({
        "train": datasets.Dataset.from_list([GOOD]),
        "test": datasets.Dataset.from_list([GOOD, GOOD]),
    }).save_to_disk(str(folder))
    assert len(build_sources(recipe_for(folder, split="test"), tmp_path)["d"]) == 2
    with pytest.raises(DataError, match="no split 'dev' \\(has: train, test\\)"):
        build_sources(recipe_for(folder, split="dev"), tmp_path)


def test_builtin_paths_resolve_to_the_bundled_data(tmp_path):
    recipe = recipe_for("builtin:tool-calling/xlam_heldout.jsonl", "xlam")
    source = build_sources(recipe, tmp_path)["d"]
    assert (len(source), source.bad) == (100, [])


def test_undeclared_dataset_is_a_clear_error(tmp_path):
    recipe = {"datasets": {}, "capabilities": {"cot": {"datasets": ["missing"]}}}
    with pytest.raises(DataError, match="capabilities use dataset 'missing', which is not declared"):
        build_sources(recipe, tmp_path)


def test_relative_media_paths_resolve_against_media_root_or_the_data_folder(tmp_path):
    record = {"conversations": [{"from": "human", "value": "<image>What is it?"}, {"from": "gpt", "value": "A cat."}],
              "images": ["pics/cat.jpg"]}
    path = write_jsonl(tmp_path / "a.jsonl", [record])
    assert build_sources(recipe_for(path, "sharegpt"), tmp_path)["d"].conversation(0).images == [str(tmp_path / "pics/cat.jpg")]
    media = tmp_path / "media"
    source = build_sources(recipe_for(path, "sharegpt", media_root=str(media)), tmp_path)["d"]
    assert source.conversation(0).images == [str(media / "pics/cat.jpg")]


def test_streaming_true_reads_jsonl_lazily_with_the_same_bad_record_locations(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [GOOD, "{broken", GOOD])
    source = build_sources(recipe_for(path, streaming=True, max_bad_fraction=0.5), tmp_path)["d"]
    assert isinstance(source.table, StreamedLinesTable)
    assert (len(source), source.bad[0].location) == (2, "a.jsonl:2")


def test_generation_targets_and_requests_resolve_against_the_media_root(tmp_path):
    edit = {"src_img": "src/1.png", "instruction": "make it blue", "tgt_img": "tgt/1.png"}
    path = write_jsonl(tmp_path / "edits.jsonl", [edit, {**edit, "tgt_img": "/abs/t.png"}])
    source = build_sources(recipe_for(path, "image-edit", media_root=str(tmp_path / "media")), tmp_path)["d"]
    conversation = source.conversation(0)
    assert conversation.images == [str(tmp_path / "media/src/1.png")]
    assert conversation.target.path == str(tmp_path / "media/tgt/1.png")
    assert (conversation.generation.images, conversation.generation.target) == (conversation.images, conversation.target)
    assert source.conversation(1).target.path == "/abs/t.png"


def test_a_caption_records_generation_target_resolves_like_its_image(tmp_path):
    path = write_jsonl(tmp_path / "captions.jsonl", [{"img_path": "pics/1.jpg", "prompt": "a castle"}])
    conversation = build_sources(recipe_for(path, "image-caption"), tmp_path)["d"].conversation(0)
    assert conversation.generation.target.path == conversation.images[0] == str(tmp_path / "pics/1.jpg")
