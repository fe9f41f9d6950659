"""One reading of a checkpoint's quantization_config, shared by `detect` (the plan) and the loader."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from omni_runner.detect import detect
from omni_runner.models.load import (
    ModelLoadError,
    load_for_training,
    resolve_quantization,
)
from omni_runner.models.quantization import stored_quantization

GPTQ_FOLDER = Path(__file__).resolve().parents[1] / "fixtures" / "models" / "qwen2.5-omni-7b-gptq-int4"
# quantization_config blocks as AutoAWQ and transformers' BitsAndBytesConfig write them into config.json.
AWQ = {"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True, "version": "gemm"}
BNB_4BIT = {"quant_method": "bitsandbytes", "load_in_4bit": True, "load_in_8bit": False, "bnb_4bit_quant_type": "nf4"}
BNB_8BIT = {"quant_method": "bitsandbytes", "load_in_4bit": False, "load_in_8bit": True}


def _omni_config(quantization_config: dict | None) -> dict:
    """The real Qwen2.5-Omni-7B-GPTQ-Int4 config.json with another quantization_config in its place."""
    config = json.loads((GPTQ_FOLDER / "config.json").read_text())
    config.pop("quantization_config", None)
    if quantization_config is not None:
        config["quantization_config"] = quantization_config
    return config


@pytest.mark.parametrize(
    ("quantization_config", "expected"),
    [
        (None, None),
        (json.loads((GPTQ_FOLDER / "config.json").read_text())["quantization_config"], "gptq-int4"),
        (AWQ, "awq-int4"),
        (BNB_4BIT, "bnb-4bit"),
        (BNB_8BIT, "bnb-8bit"),
    ],
    ids=["unquantized", "gptq", "awq", "bnb-4bit", "bnb-8bit"],
)
def test_the_plan_and_the_loader_name_a_checkpoints_quantization_alike(quantization_config, expected, tmp_path):
    config = _omni_config(quantization_config)
    (tmp_path / "config.json").write_text(json.dumps(config))

    assert detect(tmp_path).quantization == expected
    assert resolve_quantization("auto", "lora", config) == (expected or "none")


def test_a_quantization_config_inside_the_thinker_config_is_read_and_located():
    config = _omni_config(None)
    config["thinker_config"]["quantization_config"] = AWQ

    stored = stored_quantization(config)

    assert stored.name == "awq-int4" and stored.key == "thinker_config.quantization_config"
    assert stored.describe() == "awq (bits 4, group_size 128)"


def test_an_awq_checkpoint_is_refused_by_name_with_what_the_loader_takes(tiny_model_dir, tmp_path, recipe):
    # The loader's own parser used to call this 'awq' and then reject it as an unknown value.
    folder = tmp_path / "tiny-awq"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config["thinker_config"]["quantization_config"] = AWQ
    (folder / "config.json").write_text(json.dumps(config))

    with pytest.raises(ModelLoadError, match=r"awq \(bits 4, group_size 128\)\) asks for awq-int4 weights, which the loader cannot load: it loads gptq-int4"):
        load_for_training(recipe(path=str(folder)), tmp_path)
