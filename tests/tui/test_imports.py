"""The dashboard runs next to training for days: it must never load the training stack."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import omni_tui


def test_no_tui_module_imports_torch_transformers_diffusers_or_nvml():
    modules = ["omni_runner.run.tail"] + [
        info.name for info in pkgutil.walk_packages([str(Path(omni_tui.__file__).parent)], prefix="omni_tui.")
    ]
    probe = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(sorted(m for m in ('torch', 'transformers', 'diffusers', 'peft', 'accelerate', 'pynvml') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout.strip()
    assert "omni_tui.widgets.loss_chart" in modules and "omni_tui.screens.dashboard" in modules
    assert loaded == "[]"
