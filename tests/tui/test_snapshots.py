"""How the dashboard looks, pinned as SVG snapshots (review them with `--snapshot-report`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from omni_runner.run.rundir import RunDir
from tests.tui.conftest import FIXTURES, dashboard_app


@pytest.mark.parametrize("state", ["running", "cooling", "failed"])
@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
def test_dashboard_snapshot(snap_compare, tmp_path: Path, state: str, size: tuple[int, int]):
    run = tmp_path / "run"
    shutil.copytree(FIXTURES / state, run)
    assert snap_compare(dashboard_app(RunDir(run)), terminal_size=size)
