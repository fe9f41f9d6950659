"""The bundled data sets: reproducible from the generator, readable by their adapters, held-out unseen."""

from __future__ import annotations

import json
import random

from omni_runner.data.bundled.generate import generate, xlam_records, SEED
from omni_runner.paths import BUNDLED_DATA_DIR


def test_generator_reproduces_the_committed_files_byte_for_byte(tmp_path):
    for path in generate(tmp_path):
        relative = path.relative_to(tmp_path)
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            assert file.read_bytes() == (BUNDLED_DATA_DIR / file.relative_to(tmp_path)).read_bytes(), relative


def test_heldout_tool_queries_never_repeat_a_training_call_combination():
    train, heldout = xlam_records(random.Random(SEED))
    key = lambda record: json.dumps(json.loads(record["answers"]), sort_keys=True)  # noqa: E731
    assert not {key(r) for r in heldout} & {key(r) for r in train}
    assert len(heldout) == 100
