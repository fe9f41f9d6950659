"""Planning a Qwen3-Omni base: every expert resident in the weights, the routed ones' activations, LoRA on
attention and (on request) on the experts, and a refusal at its line for each part not trained yet."""

from __future__ import annotations

from pathlib import Path

import pytest
from recipe_lines import line_of

from omni_runner.param_count import expert_lora_parameters
from omni_runner.plan import compile_plan
from omni_runner.plan.memory import GIB
from omni_runner.plan.modules import lora_parameters
from omni_runner.recipe import RecipeError, load_recipe

BASE = "base_model: {path: /absent/Qwen3-Omni-30B-A3B-Instruct, architecture: qwen3-omni-30b-a3b-instruct, dtype: bfloat16}\n"
DATA = "datasets:\n  chat: {path: chat.jsonl, format: sharegpt}\ncapabilities:\n  cot: {datasets: [chat]}\n"
LORA = "training:\n  seq_len: 1024\n  micro_batch: 1\n  gradient_checkpointing: \"off\"\n  lora: {r: 16, dropout: 0.0, target_modules: [q_proj, k_proj, v_proj, o_proj]%s}\n"
CARD = "hardware: {device: cpu}\n"  # no knob turned: the estimate of exactly this shape


def _plan(write_recipe, text: str) -> dict:
    return compile_plan(load_recipe(write_recipe(text))).to_json()


def _errors(path: Path) -> list:
    with pytest.raises(RecipeError) as caught:
        compile_plan(load_recipe(path))
    return [d for d in caught.value.diagnostics if d.severity == "error"]


def _group(stage: dict, kind: str, module: str) -> dict:
    return next(g for g in stage[kind] if g["module"] == module)


def test_every_expert_is_in_the_weights(write_recipe):
    stage = _plan(write_recipe, "name: q3\n" + BASE + DATA + LORA % "" + CARD)["stages"][0]
    thinker = _group(stage, "frozen", "thinker")
    assert thinker["parameters"] == pytest.approx(30.5e9, rel=0.02)  # 128 experts, not the 8 a token uses
    assert stage["memory"]["breakdown"]["weights"] * GIB >= 2 * thinker["parameters"] * 0.99


def test_lora_targets_attention_and_the_experts_on_request(write_recipe):
    attention = _plan(write_recipe, "name: q3\n" + BASE + DATA + LORA % "" + CARD)["stages"][0]
    experts = _plan(write_recipe, "name: q3\n" + BASE + DATA + LORA % ", target_experts: true" + CARD)["stages"][0]
    from omni_runner.plan.architectures import known_detection

    lm = known_detection("qwen3-omni-30b-a3b-instruct", "x").components["thinker"]
    only = lora_parameters(lm, 16, ["q_proj", "k_proj", "v_proj", "o_proj"])
    assert _group(attention, "trainable", "thinker.lora")["parameters"] == only
    assert _group(experts, "trainable", "thinker.lora")["parameters"] == only + expert_lora_parameters(lm, 16)
    assert expert_lora_parameters(lm, 16) == 48 * 128 * 16 * ((2048 + 2 * 768) + (768 + 2048))
    assert [d["what"] for d in attention["decisions"]] == ["LoRA on attention only: the experts stay frozen"]
    assert experts["decisions"][0]["what"] == "LoRA on attention and on every expert (training.lora.target_experts)"
    # per layer: the merged expert weights and the adapters cast to bf16; per routed pair: the adapted matmuls' inputs
    added = experts["memory"]["breakdown"]["activations"] - attention["memory"]["breakdown"]["activations"]
    per_layer = 2 * (128 * 3 * 2048 * 768 + 16 * 128 * ((2048 + 2 * 768) + (768 + 2048)))
    assert added * GIB == pytest.approx(48 * (per_layer + 1024 * 2 * 8 * (2048 + 768)), rel=0.01)


def test_experts_need_no_dropout_and_have_no_dense_mlp(write_recipe):
    path = write_recipe("name: q3\n" + BASE + DATA
                        + "training:\n  lora:\n    dropout: 0.05\n    target_modules: [q_proj, gate_proj]\n    target_experts: true\n")
    assert [(e.field, e.location.line) for e in _errors(path)] == [
        ("training.lora.dropout", line_of(path, "dropout:")),
        ("training.lora.target_modules[1]", line_of(path, "target_modules:")),
    ]


def test_target_experts_on_a_dense_model_is_refused(write_recipe):
    path = write_recipe("name: q25\nbase_model: {path: /absent/Qwen2.5-Omni-7B, architecture: qwen2.5-omni-7b}\n" + DATA
                        + "training:\n  lora: {dropout: 0.0, target_experts: true}\n")
    assert [e.field for e in _errors(path)] == ["training.lora.target_experts"]


@pytest.mark.parametrize(("extra", "field", "needle"), [
    ("stages:\n  - {name: s, train: [thinker]}\n  - {name: t, train: [talker]}\ndecoders:\n  speech: {freeze: false}\n",
     "stages[1].train[0]", "talker]"),
    ("training: {method: qlora}\n", "training.method", "method:"),
])
def test_parts_qwen3_omni_does_not_train_are_refused_at_their_line(write_recipe, extra, field, needle):
    path = write_recipe("name: q3\n" + BASE + DATA + extra)
    errors = [e for e in _errors(path) if e.field == field]
    assert errors and errors[0].location.line == line_of(path, needle) and "Qwen3-Omni" in errors[0].message


@pytest.mark.parametrize("training", ["training: {method: full}\n", LORA % ", target_experts: true"])
def test_full_fine_tuning_and_merging_the_adapters_are_planned(write_recipe, training):
    plan = _plan(write_recipe, "name: q3\n" + BASE + DATA + training + "output: {merge: true}\nhardware: {device: cpu}\n")
    assert plan["stages"][0]["trainable"]


def test_external_encoders_and_generation_decoders_are_planned(write_recipe):
    extra = ("encoders:\n  vision: {path: /absent/siglip2-so400m-patch16-512, architecture: siglip2-so400m-patch16-512}\n"
             "decoders:\n  image: {path: /absent/sd3, architecture: sd3-medium}\n"
             "datasets:\n  drawings: {path: d.jsonl, format: image-caption}\n  chat: {path: chat.jsonl, format: sharegpt}\n"
             "capabilities:\n  vision-qa: {datasets: [chat]}\n  image-generation: {datasets: [drawings]}\n"
             "stages:\n  - {name: s, train: [thinker, vision_projector, image_projector, query_tokens]}\n")
    stage = _plan(write_recipe, "name: q3\n" + BASE + extra + "hardware: {device: cpu}\n")["stages"][0]
    assert {"vision_projector", "image_projector", "query_tokens.image"} <= {g["module"] for g in stage["trainable"]}


def test_speech_out_is_refused_and_a_videos_audio_track_is_planned(write_recipe):
    path = write_recipe("name: q3\n" + BASE + "datasets:\n  talk: {path: t.jsonl, format: sharegpt, use_audio_in_video: true}\n"
                        + "capabilities:\n  podcast: {datasets: [talk]}\n  video-understanding: {datasets: [talk]}\n")
    assert {e.field for e in _errors(path)} == {"capabilities.podcast"}
