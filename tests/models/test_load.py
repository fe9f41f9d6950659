"""`load_for_training`: the thinker from an Omni folder, LoRA/full fine-tuning, freezing, clear errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from omni_runner.models.load import (
    ModelLoadError,
    load_for_training,
    lora_target_names,
    resolve_quantization,
    set_trainable_groups,
)


def _lora_parameters(thinker_config, targets, r):
    """Adapter weights per layer: r * (in + out) for each targeted projection."""
    text = thinker_config.text_config
    head_dim = text.hidden_size // text.num_attention_heads
    shapes = {
        "q_proj": (text.hidden_size, text.num_attention_heads * head_dim),
        "k_proj": (text.hidden_size, text.num_key_value_heads * head_dim),
        "v_proj": (text.hidden_size, text.num_key_value_heads * head_dim),
        "o_proj": (text.num_attention_heads * head_dim, text.hidden_size),
    }
    return text.num_hidden_layers * sum(r * (shapes[t][0] + shapes[t][1]) for t in targets)


def test_loads_the_thinker_alone_with_the_checkpoint_weights(tiny_model_dir, recipe):
    from transformers import Qwen2_5OmniForConditionalGeneration

    loaded = load_for_training(recipe(method="full"), tiny_model_dir)
    full = Qwen2_5OmniForConditionalGeneration.from_pretrained(tiny_model_dir)

    assert type(loaded.model).__name__ == "Qwen2_5OmniThinkerForConditionalGeneration"
    assert not hasattr(loaded.model, "talker") and loaded.talker is None
    expected = full.thinker.state_dict()
    assert all(torch.equal(tensor, expected[name]) for name, tensor in loaded.model.state_dict().items())
    assert loaded.dtype == torch.float32 and loaded.device.type == "cpu"


class _TensorReadLog:
    """Wraps safetensors files as transformers opens them and records which tensors are read."""

    def __init__(self, real_safe_open):
        self.real_safe_open = real_safe_open
        self.read: set[str] = set()

    def __call__(self, *args, **kwargs):
        log, handle = self, self.real_safe_open(*args, **kwargs)

        class Slice:
            def __init__(self, key):
                self.key, self.inner = key, handle.get_slice(key)

            def __getitem__(self, item):
                log.read.add(self.key)
                return self.inner[item]

            def __getattr__(self, name):
                return getattr(self.inner, name)

        class File:
            def keys(self):
                return handle.keys()

            def get_slice(self, key):
                return Slice(key)

            def get_tensor(self, key):
                log.read.add(key)
                return handle.get_tensor(key)

            def __getattr__(self, name):
                return getattr(handle, name)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return handle.__exit__(*exc)

        return File()


def test_loading_the_thinker_reads_no_talker_or_token2wav_tensor(tiny_model_dir, recipe, monkeypatch):
    import transformers.modeling_utils

    log = _TensorReadLog(transformers.modeling_utils.safe_open)
    monkeypatch.setattr(transformers.modeling_utils, "safe_open", log)

    loaded = load_for_training(recipe(method="full"), tiny_model_dir)

    assert len(log.read) == len(loaded.thinker.state_dict())
    assert {key.split(".")[0] for key in log.read} == {"thinker"}


def test_text_only_forward_gives_a_finite_loss_and_gradients(tiny_model_dir, recipe):
    loaded = load_for_training(recipe(), tiny_model_dir)
    batch = loaded.processor.apply_chat_template(
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
    )

    output = loaded.model(**batch, labels=batch["input_ids"])
    output.loss.backward()

    assert torch.isfinite(output.loss)
    assert all(p.grad is not None for p in loaded.model.parameters() if p.requires_grad)


def test_lora_adapts_only_the_targeted_language_model_layers(tiny_model_dir, recipe):
    loaded = load_for_training(recipe(), tiny_model_dir)

    trainable = [name for name, p in loaded.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name and ".language_model." in name for name in trainable)
    assert {name.rsplit(".", 1)[-1] for name in loaded.lora_targets} == {"q_proj", "k_proj", "v_proj", "o_proj"}
    assert not any(
        ".visual." in name or ".audio_tower." in name for name, _ in loaded.model.named_parameters() if "lora_" in name
    )
    counts = loaded.parameter_counts()
    assert counts["trainable"] == _lora_parameters(loaded.thinker.config, ["q_proj", "k_proj", "v_proj", "o_proj"], 8)


def test_a_stage_that_trains_the_vision_tower_adds_adapters_there(tiny_model_dir, recipe):
    loaded = load_for_training(recipe(stages=[{"name": "s", "train": ["thinker", "vision_tower"]}]), tiny_model_dir)

    trainable = {name for name, p in loaded.model.named_parameters() if p.requires_grad}
    assert any(".visual." in name for name in trainable)
    assert not any(".audio_tower." in name for name in trainable)


def test_full_fine_tuning_trains_the_listed_groups_and_freezes_the_rest(tiny_model_dir, recipe):
    loaded = load_for_training(recipe(method="full", stages=[{"name": "s", "train": ["audio_tower"]}]), tiny_model_dir)

    trainable = {name for name, p in loaded.model.named_parameters() if p.requires_grad}
    assert trainable == {name for name, _ in loaded.model.named_parameters() if name.startswith("model.audio_tower.")}


def test_set_trainable_groups_switches_between_stages(tiny_model_dir, recipe):
    stages = [{"name": "align", "train": ["vision_tower"]}, {"name": "tune", "train": ["thinker"]}]
    loaded = load_for_training(recipe(method="full", stages=stages), tiny_model_dir)

    set_trainable_groups(loaded, ["thinker"])

    trainable = {name for name, p in loaded.model.named_parameters() if p.requires_grad}
    assert trainable and all(name.startswith(("model.language_model.", "lm_head.")) for name in trainable)


def test_a_stage_that_trains_only_external_projectors_freezes_the_whole_base_model(tiny_model_dir, recipe):
    loaded = load_for_training(
        recipe(method="full", stages=[{"name": "s", "train": ["image_projector"]}]), tiny_model_dir
    )

    assert loaded.parameter_counts()["trainable"] == 0


def test_an_unknown_stage_group_is_a_clear_error(tiny_model_dir, recipe):
    with pytest.raises(ModelLoadError, match="unknown module group.*decoder"):
        load_for_training(recipe(stages=[{"name": "s", "train": ["decoder"]}]), tiny_model_dir)


def test_talker_is_loaded_only_for_a_stage_that_trains_it(tiny_model_dir, recipe):
    loaded = load_for_training(recipe(method="full", stages=[{"name": "s", "train": ["talker"]}]), tiny_model_dir)

    assert type(loaded.talker.get_base_model()).__name__ == "Qwen2_5OmniTalkerForConditionalGeneration"
    trainable = [name for name, p in loaded.talker.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)  # talker_realign trains adapters only
    assert not any(p.requires_grad for p in loaded.model.parameters())


def test_gradient_checkpointing_follows_the_request(tiny_model_dir, recipe):
    on = load_for_training(recipe(), tiny_model_dir, gradient_checkpointing=True)
    off = load_for_training(recipe(), tiny_model_dir)  # auto on a CPU: off

    assert on.thinker.is_activation_checkpointing
    assert not off.thinker.is_activation_checkpointing


def test_missing_model_folder_is_a_clear_error(tmp_path, recipe):
    with pytest.raises(ModelLoadError, match=f"{tmp_path / 'nowhere'} does not exist"):
        load_for_training(recipe(path="nowhere"), tmp_path)


def test_garbage_config_is_a_clear_error(tiny_model_dir, tmp_path, recipe):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "config.json").write_text("{not json")

    with pytest.raises(ModelLoadError, match="config.json is not valid JSON"):
        load_for_training(recipe(path=str(broken)), tmp_path)


def test_a_model_of_another_kind_is_refused(tmp_path, recipe):
    (tmp_path / "llama").mkdir()
    (tmp_path / "llama" / "config.json").write_text(json.dumps({"model_type": "llama"}))

    with pytest.raises(ModelLoadError, match="model_type is 'llama'.*Qwen2.5-Omni"):
        load_for_training(recipe(path="llama"), tmp_path)


def test_a_folder_without_weights_is_refused(tiny_model_dir, tmp_path, recipe):
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(tiny_model_dir / "config.json", partial / "config.json")

    with pytest.raises(ModelLoadError, match="no weights"):
        load_for_training(recipe(path="partial"), tmp_path)


def test_unknown_lora_targets_name_the_available_layers(tiny_model_dir, recipe):
    data = recipe()
    data["training"]["lora"]["target_modules"] = ["q_proj", "query_key_value"]

    with pytest.raises(ModelLoadError, match="query_key_value match no layer.*gate_proj"):
        load_for_training(data, tiny_model_dir)


@pytest.mark.slow
def test_qlora_on_the_cpu_quantizes_the_base_to_4_bits_and_trains_adapters_on_those_layers(tiny_model_dir, recipe):
    from bitsandbytes.nn import Linear4bit
    from peft.tuners.lora.bnb import Linear4bit as LoraOnLinear4bit

    loaded = load_for_training(recipe(method="qlora", dtype="float32"), tiny_model_dir, device="cpu")
    attention = loaded.thinker.model.language_model.layers[0].self_attn
    assert isinstance(attention.q_proj, LoraOnLinear4bit) and isinstance(attention.q_proj.base_layer, Linear4bit)
    assert not isinstance(loaded.thinker.lm_head, Linear4bit)  # the output layer stays in full precision
    ids = torch.randint(0, 100, (1, 12))
    loaded.model(input_ids=ids, labels=ids).loss.backward()
    assert attention.q_proj.lora_B.default.weight.grad.abs().sum() > 0
    assert not any(p.requires_grad for n, p in loaded.thinker.named_parameters() if "lora_" not in n)


def _sole_load_imports_bitsandbytes(method: str, model_dir: Path, recipe_data: dict) -> bool:
    """Whether a process that loads only this model (`sole=True`, as the trainer child does) imports bitsandbytes."""
    script = (
        "import importlib.util, json, sys\n"
        "from omni_runner.models.load import load_for_training\n"
        "assert importlib.util.find_spec('bitsandbytes') is not None, 'the test extra installs bitsandbytes'\n"
        f"load_for_training(json.loads({json.dumps(recipe_data)!r}), {str(model_dir)!r}, device='cpu', sole=True)\n"
        "print(sys.modules.get('bitsandbytes') is not None)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (method, result.stderr[-2000:])
    return result.stdout.strip().splitlines()[-1] == "True"


@pytest.mark.parametrize(("method", "imported"), [("lora", False), ("qlora", True)])
def test_the_trainer_imports_bitsandbytes_only_for_a_model_it_quantizes(tiny_model_dir, recipe, method: str, imported: bool):
    """peft imports bitsandbytes whenever it is installed (over a second of every trainer's start)."""
    assert _sole_load_imports_bitsandbytes(method, tiny_model_dir, recipe(method=method, dtype="float32")) is imported


def test_bitsandbytes_too_old_for_the_cpu_says_which_version_to_install(tiny_model_dir, monkeypatch, recipe):
    """Simulation: an installed bitsandbytes older than its CPU backend."""
    import importlib.metadata

    real_version = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.45.5" if name == "bitsandbytes" else real_version(name))
    with pytest.raises(ModelLoadError, match=r"on the CPU needs bitsandbytes 0.50 or later.*0.45.5 is installed"):
        load_for_training(recipe(method="qlora"), tiny_model_dir, device="cpu")


def test_bitsandbytes_missing_on_a_simulated_gpu_machine_says_what_to_install(tiny_model_dir, monkeypatch, recipe):
    """Simulation: torch is told a GPU exists; the error must come before anything touches it."""
    import importlib.util

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real_find_spec(name, *a)
    )

    with pytest.raises(ModelLoadError, match=r"pip install 'omni-runner\[bnb\]'"):
        load_for_training(recipe(method="qlora", dtype="float32"), tiny_model_dir, device="cuda")


def test_gptq_without_the_backend_says_which_extra_to_install(tiny_model_dir, monkeypatch, recipe):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "gptqmodel" else real_find_spec(name, *a)
    )

    with pytest.raises(ModelLoadError, match=r"pip install omni-runner\[gptq\]"):
        load_for_training(recipe(method="qlora", quantization="gptq-int4"), tiny_model_dir)


def test_full_fine_tuning_of_quantized_weights_is_refused(tiny_model_dir, recipe):
    with pytest.raises(ModelLoadError, match="method full cannot update bnb-4bit"):
        load_for_training(recipe(method="full", quantization="bnb-4bit"), tiny_model_dir)


REAL_7B = Path(__file__).resolve().parents[1] / "fixtures" / "models" / "qwen2.5-omni-7b"


def test_lora_targets_for_the_real_7b_thinker_are_its_language_model_attention_projections():
    """The 7B architecture from its real config.json, built on the meta device (no weights, no memory)."""
    from transformers import Qwen2_5OmniConfig, Qwen2_5OmniThinkerForConditionalGeneration

    config = Qwen2_5OmniConfig.from_pretrained(REAL_7B).thinker_config
    with torch.device("meta"):
        thinker = Qwen2_5OmniThinkerForConditionalGeneration(config)

    names = lora_target_names(thinker, ["q_proj", "k_proj", "v_proj", "o_proj"], ("thinker",))

    assert len(names) == 4 * config.text_config.num_hidden_layers
    assert all(name.startswith("model.language_model.layers.") for name in names)


@pytest.mark.parametrize(
    ("fixture", "method", "expected"),
    [
        ("qwen2.5-omni-7b-gptq-int4", "qlora", "gptq-int4"),
        ("qwen2.5-omni-7b", "qlora", "bnb-4bit"),
        ("qwen2.5-omni-7b", "lora", "none"),
    ],
)
def test_auto_quantization_follows_the_checkpoint_then_the_method(fixture, method, expected):
    config = json.loads((REAL_7B.parent / fixture / "config.json").read_text())

    assert resolve_quantization("auto", method, config) == expected


def test_the_processor_loads_on_first_use_and_the_tokenizer_alone_renders_as_its_tokenizer(tiny_model_dir, recipe):
    loaded = load_for_training(recipe(method="full"), tiny_model_dir)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi <|IMAGE|>"},
                {"role": "assistant", "content": "Hello."}]

    alone = loaded.tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False)
    assert loaded.loaded_processor is None  # a text-only run never imports the media processors for it

    processor = loaded.processor
    assert processor is loaded.processor and type(processor).__name__ == "Qwen2_5OmniProcessor"
    assert processor.tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False) == alone
    assert loaded.tokenizer is processor.tokenizer
