"""YAML that holds plain data (a run's resolved recipe, a NeMo model_config.yaml), read and written one way.

Every reader outside the recipe loader comes here, so all of them use ruamel's safe loader in its
pure-Python form: no tag can construct a Python object, and no C extension decides what parses.
Recipes themselves go through `recipe/yaml_source.py`, which also keeps each value's line and column.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

__all__ = ["YAMLError", "dump_plain_yaml", "load_plain_yaml", "read_plain_yaml"]


def load_plain_yaml(text: str) -> Any:
    """Plain data from YAML text; raises `YAMLError` (with the line) when it does not parse."""
    return YAML(typ="safe", pure=True).load(text)


def read_plain_yaml(path: Path) -> Any:
    """Plain data from a YAML file; raises `OSError` or `YAMLError`."""
    return load_plain_yaml(Path(path).read_text(encoding="utf-8"))


def dump_plain_yaml(data: Any) -> str:
    """Block-style YAML with mappings in their own order, as a person would write the file."""
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False
    buffer = io.StringIO()
    yaml.dump(data, buffer)
    return buffer.getvalue()
