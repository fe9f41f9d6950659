"""Recorded run folders (tests/tui/fixtures/<state>/) and an app factory with a frozen clock."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from omni_tui.app import OmniTUI

from omni_runner.run.rundir import RunDir

FIXTURES = Path(__file__).parent / "fixtures"
FROZEN_NOW = 1_790_000_120.0  # two minutes after the recorded runs started


@pytest.fixture
def recorded_run(tmp_path):
    """A copy of one recorded run folder, so a test may append to it."""

    def copy(state: str) -> RunDir:
        target = tmp_path / state
        shutil.copytree(FIXTURES / state, target)
        return RunDir(target)

    return copy


def dashboard_app(run: RunDir, follow: bool = False, alive: bool = True) -> OmniTUI:
    """The recorded run's processes count as alive (or all gone), as its clock is frozen."""
    return OmniTUI(run=run, clock=lambda: FROZEN_NOW, follow=follow, alive=lambda pid: alive)
