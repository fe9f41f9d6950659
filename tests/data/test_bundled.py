"""The bundled data sets: reproducible from the generator, readable by their adapters, held-out unseen."""

from __future__ import annotations

import json
import random
from pathlib import Path

from omni_runner.data.bundled.generate import SEED, generate, xlam_records
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


def test_heldout_tool_queries_never_repeat_a_training_call_combination():
    train, heldout = xlam_records(random.Random(SEED))
    key = lambda record: json.dumps(json.loads(record["answers"]), sort_keys=True)  # noqa: E731
    assert not {key(r) for r in heldout} & {key(r) for r in train}
    assert len(heldout) == 100
