"""Final output: the adapter, the merged complete Omni folder, and loading either back for chat."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch

from omni_runner.models.export import MERGED_DIR, generate_text, load_for_inference, save_final
from omni_runner.models.load import ModelLoadError, load_for_training
from omni_runner.models.tiny import read_stamp

MESSAGES = [{"role": "user", "content": "What is the weather in Paris?"}]


def _logits(model, processor):
    batch = processor.apply_chat_template(
        MESSAGES, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    with torch.no_grad():
        return model(**batch).logits


def _nonzero_adapters(model) -> None:
    """Random LoRA B matrices (peft starts them at zero), as after training; the model in eval mode."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.05)
    model.eval()


@pytest.fixture(scope="module")
def tuned(tiny_model_dir, tmp_path_factory):
    """A LoRA run's final folder with a merged copy; the adapters are non-zero, as after training."""
    data = {
        "base_model": {"path": "builtin:tiny-qwen2.5-omni"},
        "training": {
            "method": "lora",
            "lora": {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
        },
    }
    loaded = load_for_training(data, tiny_model_dir)
    _nonzero_adapters(loaded.model)
    final = save_final(loaded, tmp_path_factory.mktemp("run") / "final", merge=True)
    return loaded, final, _logits(loaded.model, loaded.processor)


def test_final_folder_holds_the_adapter_processor_and_manifest(tuned, tiny_model_dir):
    _, final, _ = tuned

    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "chat_template.jinja"):
        assert (final / name).is_file()
    manifest = json.loads((final / "omni_runner_final.json").read_text())
    assert manifest == {
        "kind": "adapter",
        "base_model": str(tiny_model_dir),
        "method": "lora",
        "base_fingerprint": read_stamp(tiny_model_dir)["fingerprint"],
    }


def test_an_adapter_on_the_tiny_model_loads_after_the_cache_was_cleared(tuned, tmp_path, monkeypatch):
    _, final, expected = tuned
    cache = tmp_path / "fresh-cache"
    monkeypatch.setenv("OMNI_RUNNER_CACHE", str(cache))
    copy = shutil.copytree(final, tmp_path / "final", ignore=shutil.ignore_patterns(MERGED_DIR))
    manifest = json.loads((copy / "omni_runner_final.json").read_text())
    rebuilt_base = cache / "models" / "tiny-qwen2.5-omni"
    (copy / "omni_runner_final.json").write_text(json.dumps({**manifest, "base_model": str(rebuilt_base)}))

    loaded = load_for_inference(copy)

    assert loaded.model_dir == rebuilt_base
    torch.testing.assert_close(_logits(loaded.model, loaded.processor), expected, atol=1e-5, rtol=1e-5)


def test_an_adapter_for_another_build_of_the_tiny_model_is_refused(tuned, tmp_path):
    _, final, _ = tuned
    copy = shutil.copytree(final, tmp_path / "final", ignore=shutil.ignore_patterns(MERGED_DIR))
    manifest = json.loads((copy / "omni_runner_final.json").read_text())
    (copy / "omni_runner_final.json").write_text(json.dumps({**manifest, "base_fingerprint": "older build"}))

    with pytest.raises(ModelLoadError, match="another build of the tiny model"):
        load_for_inference(copy)


def test_merged_folder_loads_with_the_real_class_and_matches_base_plus_adapter(tuned):
    from transformers import AutoProcessor, Qwen2_5OmniForConditionalGeneration

    _, final, expected = tuned
    merged = Qwen2_5OmniForConditionalGeneration.from_pretrained(final / MERGED_DIR)

    logits = _logits(merged.thinker, AutoProcessor.from_pretrained(final / MERGED_DIR))

    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)


def test_merged_folder_keeps_the_original_talker_and_token2wav(tuned, tiny_model_dir):
    from transformers import Qwen2_5OmniForConditionalGeneration

    _, final, _ = tuned
    merged = Qwen2_5OmniForConditionalGeneration.from_pretrained(final / MERGED_DIR)
    base = Qwen2_5OmniForConditionalGeneration.from_pretrained(tiny_model_dir)

    for part in ("talker", "token2wav"):
        original = getattr(base, part).state_dict()
        assert all(torch.equal(t, original[n]) for n, t in getattr(merged, part).state_dict().items())
    assert set(merged.speaker_map) == set(base.speaker_map)


@pytest.mark.parametrize("where", ["adapter", "merged"])
def test_load_for_inference_reproduces_the_tuned_model(tuned, where):
    _, final, expected = tuned

    loaded = load_for_inference(final if where == "adapter" else final / MERGED_DIR)

    torch.testing.assert_close(_logits(loaded.model, loaded.processor), expected, atol=1e-5, rtol=1e-5)
    assert not any(p.requires_grad for p in loaded.model.parameters())


def test_generate_text_returns_only_the_reply(tuned):
    loaded, final, _ = tuned
    reloaded = load_for_inference(final)

    reply = generate_text(reloaded.model, reloaded.processor, MESSAGES, max_new_tokens=6)

    batch = reloaded.processor.apply_chat_template(
        MESSAGES, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    with torch.no_grad():
        full = reloaded.model.generate(**batch, max_new_tokens=6, do_sample=False)
    assert reply == reloaded.tokenizer.decode(full[0, batch["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "<|im_start|>" not in reply and "What is the weather" not in reply


# The built-in tiny model of each family: its fixture, and the class a complete folder of it loads as.
FAMILIES = {"tiny-qwen2.5-omni": ("tiny_model_dir", "Qwen2_5OmniForConditionalGeneration"),
            "tiny-qwen3-omni": ("tiny_qwen3_omni_dir", "Qwen3OmniMoeForConditionalGeneration")}


@pytest.mark.parametrize("builtin", sorted(FAMILIES))
def test_full_fine_tuning_writes_a_complete_omni_folder_with_the_tuned_weights(builtin, request, tmp_path):
    import transformers

    fixture, complete_class = FAMILIES[builtin]
    data = {
        "base_model": {"path": f"builtin:{builtin}"},
        "training": {"method": "full"},
        "stages": [{"name": "s", "train": ["thinker"]}],
    }
    loaded = load_for_training(data, request.getfixturevalue(fixture))
    tuned = loaded.thinker.lm_head.weight
    with torch.no_grad():
        tuned.mul_(2.0)

    final = save_final(loaded, tmp_path / "final")

    reloaded = getattr(transformers, complete_class).from_pretrained(final)
    assert torch.equal(reloaded.get_parameter("thinker.lm_head.weight"), tuned)
    assert json.loads((final / "omni_runner_final.json").read_text())["kind"] == "merged"


def test_a_realigned_talker_lands_as_an_adapter_beside_the_original_talker(tiny_model_dir, tmp_path):
    from peft import PeftModel
    from transformers import Qwen2_5OmniForConditionalGeneration

    from omni_runner.models.speech import load_talker

    data = {
        "base_model": {"path": "builtin:tiny-qwen2.5-omni"},
        "training": {"method": "full", "lora": {"r": 4, "target_modules": ["q_proj", "v_proj"]}},
        "stages": [{"name": "t", "train": ["thinker"]}, {"name": "realign", "train": ["talker"]}],
    }
    loaded = load_for_training(data, tiny_model_dir)
    adapter = next(p for name, p in loaded.talker.named_parameters() if "lora_B" in name)
    with torch.no_grad():
        adapter.add_(0.5)

    final = save_final(loaded, tmp_path / "final")

    original = Qwen2_5OmniForConditionalGeneration.from_pretrained(tiny_model_dir)
    kept = Qwen2_5OmniForConditionalGeneration.from_pretrained(final)
    assert torch.equal(kept.talker.codec_head.weight, original.talker.codec_head.weight)
    reloaded = load_talker(final, torch.float32, torch.device("cpu"), adapter_dir=final / "talker_adapter")
    assert isinstance(reloaded, PeftModel)
    assert torch.equal(dict(reloaded.named_parameters())[next(n for n, p in loaded.talker.named_parameters() if p is adapter)], adapter)


def test_inference_from_a_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_for_inference(tmp_path / "final")


def test_generate_text_on_a_training_model_is_deterministic_and_keeps_it_training(tiny_model_dir):
    data = {
        "base_model": {"path": "builtin:tiny-qwen2.5-omni"},
        "training": {"method": "lora", "lora": {"r": 8, "alpha": 16, "dropout": 0.5, "target_modules": ["q_proj"]}},
    }
    loaded = load_for_training(data, tiny_model_dir)
    with torch.no_grad():  # non-zero adapters, so that dropout would change the output
        for name, parameter in loaded.model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.5)

    replies = [generate_text(loaded.model, loaded.processor, MESSAGES, max_new_tokens=6) for _ in range(2)]

    assert replies[0] == replies[1]
    assert loaded.model.training


def test_saving_a_model_leaves_deepspeed_unimported(tmp_path):
    """`save_pretrained` unwraps through accelerate, which would import DeepSpeed (seconds, at every final
    save) whenever it is installed, as the test extra installs it."""
    script = (
        "import importlib.util, sys\n"
        "from transformers import Qwen2Config, Qwen2ForCausalLM\n"
        "from omni_runner.models.hf_env import saving_without_deepspeed_probe\n"
        "assert importlib.util.find_spec('deepspeed') is not None, 'the test extra installs deepspeed'\n"
        "model = Qwen2ForCausalLM(Qwen2Config(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,\n"
        "                                     num_attention_heads=2, num_key_value_heads=1))\n"
        "with saving_without_deepspeed_probe():\n"
        f"    model.save_pretrained({str(tmp_path)!r})\n"
        "print('deepspeed' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "False"
    assert (tmp_path / "model.safetensors").exists()


QWEN3_LORA = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"], "target_experts": True}


def test_qwen3_omni_merges_attention_and_expert_adapters_into_a_complete_folder(tiny_qwen3_omni_dir, tmp_path):
    from transformers import AutoProcessor, Qwen3OmniMoeForConditionalGeneration

    loaded = load_for_training({"base_model": {"path": "builtin:tiny-qwen3-omni"},
                                "training": {"method": "lora", "lora": QWEN3_LORA}}, tiny_qwen3_omni_dir)
    _nonzero_adapters(loaded.model)
    expected = _logits(loaded.model, loaded.processor)

    final = save_final(loaded, tmp_path / "final", merge=True)

    merged = Qwen3OmniMoeForConditionalGeneration.from_pretrained(final / MERGED_DIR)
    base = Qwen3OmniMoeForConditionalGeneration.from_pretrained(tiny_qwen3_omni_dir)
    torch.testing.assert_close(_logits(merged.thinker, AutoProcessor.from_pretrained(final / MERGED_DIR)), expected,
                               atol=1e-5, rtol=1e-5)
    experts = "thinker.model.language_model.layers.0.mlp.experts.gate_up_proj"
    assert not torch.equal(merged.get_parameter(experts), base.get_parameter(experts))  # the experts' adapters merged
    torch.testing.assert_close(_logits(load_for_inference(final / MERGED_DIR).model, loaded.processor), expected,
                               atol=1e-5, rtol=1e-5)

