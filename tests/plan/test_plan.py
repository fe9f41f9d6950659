"""The compiled plan: its JSON shape, stages, module groups, mixture, memory decisions and errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from recipe_lines import line_of

from omni_runner.commands import plan as plan_command
from omni_runner.plan import compile_plan
from omni_runner.plan.memory import weight_bytes_per_param
from omni_runner.plan.modules import lora_parameters
from omni_runner.recipe import RecipeError, load_recipe

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
CHAT_AND_COT = "datasets:\n  chat: {path: chat.jsonl, format: sharegpt}\ncapabilities:\n  cot: {datasets: [chat]}\n"


@pytest.fixture
def no_data_root(tmp_path: Path) -> dict[str, str]:
    """An OMNI_DATA with nothing in it: every seed model is planned from the known-architecture table."""
    return {"OMNI_DATA": str(tmp_path / "absent")}


def _full_omni(environ, overrides=()) -> dict:
    return compile_plan(load_recipe(RECIPES / "full_omni.yaml", overrides=list(overrides), environ=environ)).to_json()


def _cot_recipe(write_recipe, base_model: str) -> Path:
    """A one-capability recipe around `base_model` (a YAML flow mapping); base_model is on line 2."""
    return write_recipe(f"name: probe\nbase_model: {base_model}\n" + CHAT_AND_COT)


def _errors(path: Path, environ: dict[str, str] | None = None) -> list:
    with pytest.raises(RecipeError) as caught:
        compile_plan(load_recipe(path, environ=environ))
    return [d for d in caught.value.diagnostics if d.severity == "error"]


def _stage(plan: dict, name: str) -> dict:
    return next(s for s in plan["stages"] if s["name"] == name)


def test_plan_json_has_the_documented_shape(no_data_root):
    plan = _full_omni(no_data_root)
    assert {"stages", "mixture", "warnings", "models", "total_steps"} <= plan.keys()
    stage = plan["stages"][0]
    assert {"name", "capabilities", "trainable", "frozen", "micro_batch", "grad_accum", "seq_len",
            "gradient_checkpointing", "memory", "decisions"} <= stage.keys()
    assert set(stage["memory"]["breakdown"]) == {"weights", "adapters", "optimizer", "gradients", "activations", "decoders", "gathered", "overhead"}
    assert stage["memory"]["estimate_gb"] == pytest.approx(sum(stage["memory"]["breakdown"].values()), abs=0.05)
    json.dumps(plan)


def test_stages_follow_the_recipe_and_split_the_steps(no_data_root):
    plan = _full_omni(no_data_root)
    assert [s["name"] for s in plan["stages"]] == ["text", "understanding", "omni", "images", "video"]
    assert [s["max_steps"] for s in plan["stages"]] == [1600, 1600, 1600, 1600, 1600]
    assert plan["total_steps"] == 8000


def test_on_16_gb_text_capabilities_train_without_checkpointing(no_data_root):
    text = _stage(_full_omni(no_data_root), "text")
    assert text["gradient_checkpointing"] is False and text["decisions"] == []
    assert text["memory"]["estimate_gb"] <= 16


def test_on_16_gb_tri_streaming_halves_the_micro_batch_keeping_the_global_batch(no_data_root):
    plan = _full_omni(no_data_root, ["training.micro_batch=8", "training.grad_accum=2"])
    omni = _stage(plan, "omni")
    assert (omni["micro_batch"], omni["grad_accum"], omni["gradient_checkpointing"]) == (4, 4, True)
    assert [d["what"] for d in omni["decisions"]][-1] == "micro_batch 8 -> 4, grad_accum 2 -> 4"


def test_speech_capabilities_train_the_text_reply_and_say_so_in_the_stage_decisions(no_data_root):
    plan = _full_omni(no_data_root)
    omni = _stage(plan, "omni")
    assert omni["decisions"][0]["what"] == "audio_out not trained (tri-streaming)"
    assert "the speech reply has no ground-truth target" in omni["decisions"][0]["why"]
    assert "talker_consistency" in omni["decisions"][0]["why"]
    assert {g["module"]: g["resident"] for g in omni["frozen"]}["talker"] is True  # it scores talker consistency
    assert any(w.startswith("capabilities.podcast: the speech reply has no ground-truth target") for w in plan["warnings"])


def test_gradient_checkpointing_off_is_respected_and_the_batch_is_lowered_instead(no_data_root):
    overrides = ["training.gradient_checkpointing=off", "training.micro_batch=4", "training.grad_accum=4"]
    plan = compile_plan(load_recipe(RECIPES / "text_only.yaml", overrides=overrides, environ=no_data_root)).to_json()
    [stage] = plan["stages"]
    assert (stage["gradient_checkpointing"], stage["micro_batch"], stage["grad_accum"]) == (False, 1, 16)
    assert [d["what"] for d in stage["decisions"]] == ["micro_batch 4 -> 2, grad_accum 4 -> 8", "micro_batch 2 -> 1, grad_accum 8 -> 16"]


def test_plan_that_cannot_fit_is_an_error_at_the_vram_line(write_recipe, no_data_root):
    path = write_recipe(f"extends: {RECIPES / 'text_only.yaml'}\nname: small-card\nhardware:\n  vram_gb: 6\n")
    with pytest.raises(RecipeError) as caught:
        compile_plan(load_recipe(path, environ=no_data_root))
    [problem] = [d for d in caught.value.diagnostics if d.severity == "error"]
    assert (problem.location.file, problem.location.line) == (path, line_of(path, "vram_gb"))
    assert "needs about" in problem.message and "6 GB card" in problem.message


def test_missing_models_are_planned_from_the_known_table_and_the_plan_says_so(no_data_root):
    plan = _full_omni(no_data_root)
    assert plan["models"]["base_model"]["planned_from_table"] == "qwen2.5-omni-7b-gptq-int4"
    assert plan["models"]["base_model"]["quantization"] == "gptq-int4"
    assert any("planned from the known-architecture table (qwen2.5-omni-7b-gptq-int4)" in w for w in plan["warnings"])


def test_models_on_disk_are_detected_not_looked_up(models: Path, write_recipe):
    path = _cot_recipe(write_recipe, "{path: {models}/qwen2.5-omni-7b-gptq-int4}")
    plan = compile_plan(load_recipe(path)).to_json()
    assert plan["models"]["base_model"]["planned_from_table"] is None
    assert plan["models"]["base_model"]["quantization"] == "gptq-int4"
    assert not any("known-architecture" in w for w in plan["warnings"])


def test_an_awq_base_model_is_refused_at_its_path_because_the_loader_cannot_load_it(models: Path, write_recipe, tmp_path: Path):
    config = json.loads((models / "qwen2.5-omni-7b-gptq-int4" / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True, "version": "gemm"}
    (tmp_path / "awq-model").mkdir()
    (tmp_path / "awq-model" / "config.json").write_text(json.dumps(config))

    [problem] = _errors(_cot_recipe(write_recipe, f"{{path: {tmp_path / 'awq-model'}}}"))

    assert problem.field == "base_model.path" and problem.location.line == 2
    assert "weights are awq-int4, which the loader cannot load" in problem.message


def test_text_stage_trains_lora_only_and_keeps_media_modules_unloaded(no_data_root):
    text = _stage(_full_omni(no_data_root), "text")
    assert [g["module"] for g in text["trainable"]] == ["thinker.lora"]
    resident = {g["module"] for g in text["frozen"] if g["resident"]}
    assert resident == {"thinker"}


def test_lora_parameters_follow_projection_shapes():
    dims = {"hidden_size": 3584, "heads": 28, "kv_heads": 4, "head_dim": 128, "intermediate_size": 18944, "layers": 28}
    per_layer = 16 * ((3584 + 3584) + 2 * (3584 + 512) + (3584 + 3584))
    assert lora_parameters(dims, 16, ["q_proj", "k_proj", "v_proj", "o_proj"]) == 28 * per_layer


def test_gptq_int4_costs_half_a_byte_plus_group_scales():
    assert weight_bytes_per_param("gptq-int4", group_size=128) == pytest.approx(0.5 + 2.5 / 128)
    assert weight_bytes_per_param(None, "bfloat16") == 2.0


def test_activations_grow_with_the_micro_batch_but_the_loss_holds_one_chunk_of_logits(no_data_root):
    from omni_runner.plan import memory

    one = _stage(_full_omni(no_data_root), "text")["memory"]["breakdown"]["activations"]
    two = _stage(_full_omni(no_data_root, ["training.micro_batch=2", "hardware.vram_gb=80"]), "text")["memory"]["breakdown"]["activations"]
    vocab = 152_064  # Qwen2.5-Omni-7B's
    chunk = memory.loss_chunk_tokens(vocab) * vocab * memory.LOGIT_BYTES_PER_ENTRY / 2**30
    assert two == pytest.approx(2 * one - chunk, rel=0.01)


def test_mixture_expected_samples_are_steps_times_global_batch_times_weight(no_data_root):
    plan = _full_omni(no_data_root)
    text = _stage(plan, "text")
    global_batch = text["micro_batch"] * text["grad_accum"]
    # weights 1, 1, 1, 1, 0.5 -> tool-calling gets 1/4.5 of the text stage
    entry = text["mixture"]["tool-calling"]
    assert entry["weight"] == pytest.approx(1 / 4.5, rel=1e-5)
    assert entry["expected_samples"] == round(1600 * global_batch / 4.5)
    assert [d["name"] for d in entry["datasets"]] == ["xlam", "hermes", "gorilla"]
    assert sum(plan["mixture"][c]["weight"] for c in plan["mixture"]) == pytest.approx(1.0, abs=1e-4)


def test_unknown_architecture_gets_a_did_you_mean(write_recipe):
    [problem] = _errors(_cot_recipe(write_recipe, "{path: /nowhere/model, architecture: qwen2.5-omni-7b-gptq-int8}"))
    assert problem.field == "base_model.architecture" and problem.location.line == 2
    assert "did you mean 'qwen2.5-omni-7b-gptq-int4'" in problem.hint


def test_missing_folder_with_no_known_architecture_says_how_to_plan_it(write_recipe):
    [problem] = _errors(_cot_recipe(write_recipe, "{path: /nowhere/my-model}"))
    assert "is not on disk and matches no known architecture" in problem.message
    assert "set base_model.architecture to one of" in problem.hint


def test_unreadable_model_folder_is_an_error_at_its_path(write_recipe, tmp_path: Path):
    (tmp_path / "empty-model").mkdir()
    [problem] = _errors(_cot_recipe(write_recipe, f"{{path: {tmp_path / 'empty-model'}}}"))
    assert problem.field == "base_model.path" and problem.location.line == 2
    assert "no config.json" in problem.message


def test_full_fine_tuning_of_a_gptq_base_is_refused(no_data_root):
    with pytest.raises(RecipeError, match="full fine-tuning cannot update gptq-int4 weights"):
        _full_omni(no_data_root, ["training.method=full"])


def test_plan_command_prints_a_readable_summary(no_data_root, monkeypatch, capsys):
    monkeypatch.setenv("OMNI_DATA", no_data_root["OMNI_DATA"])
    import argparse

    parser = argparse.ArgumentParser()
    plan_command.add_arguments(parser)
    assert plan_command.run(parser.parse_args([str(RECIPES / "text_only.yaml")])) == 0
    out = capsys.readouterr().out
    assert "stage 1 'train'" in out and "gradient checkpointing off" in out and "memory: ~" in out
    assert "planned from the known-architecture table" in out


def test_plan_command_reports_recipe_errors_without_a_traceback(write_recipe, capsys):
    import argparse

    path = _cot_recipe(write_recipe, "{path: /nowhere/my-model}")
    parser = argparse.ArgumentParser()
    plan_command.add_arguments(parser)
    assert plan_command.run(parser.parse_args([str(path)])) == 1
    err = capsys.readouterr().err
    assert f"{path}:2:" in err and "Traceback" not in err


def test_cpu_recipe_is_planned_without_a_cuda_context(no_data_root):
    plan = compile_plan(load_recipe(RECIPES / "tiny_omni.yaml")).to_json()
    stage = plan["stages"][0]
    assert stage["memory"]["estimate_gb"] < 1
    # no 0.75 GB CUDA context: only the allocator's few percent
    assert stage["memory"]["breakdown"]["overhead"] <= 0.05 * stage["memory"]["estimate_gb"] + 0.005
    assert plan["models"]["base_model"]["model_type"] == "qwen2_5_omni"


def test_qlora_on_an_unquantized_base_is_planned_as_nf4(models: Path, write_recipe):
    path = _cot_recipe(write_recipe, "{path: {models}/qwen2.5-omni-7b}")
    lora = compile_plan(load_recipe(path, overrides=["hardware.vram_gb=80"])).to_json()["stages"][0]
    qlora = compile_plan(load_recipe(path, overrides=["hardware.vram_gb=80", "training.method=qlora"])).to_json()["stages"][0]
    assert qlora["memory"]["breakdown"]["weights"] < 0.4 * lora["memory"]["breakdown"]["weights"]


def test_stage_training_a_group_its_data_never_reaches_is_an_error_at_its_train_list(write_recipe, no_data_root):
    path = write_recipe(
        f"extends: {RECIPES / 'text_only.yaml'}\nname: odd-stage\n"
        "stages:\n  - name: text\n    train: [thinker, vision_merger]\n"
    )
    [problem] = _errors(path, no_data_root)
    assert problem.field == "stages[0].train" and problem.location.line == line_of(path, "train:")
    assert "trains vision_merger, but none of its capabilities (cot, tool-calling) feeds it" in problem.message
    assert "vision-qa" in problem.hint and "remove vision_merger" in problem.hint


def test_stage_whose_samples_reach_no_trained_group_is_an_error(write_recipe, no_data_root):
    path = write_recipe(
        f"extends: {RECIPES / 'full_omni.yaml'}\nname: towers-only\n"
        "stages:\n  - name: see\n    capabilities: [cot, vision-qa]\n    train: [vision_tower]\n"
    )
    [problem] = _errors(path, no_data_root)
    assert problem.field == "stages[0].train"
    assert "samples of 'cot' never reach" in problem.message and "add thinker" in problem.hint


def test_audio_groups_are_fed_by_videos_only_with_their_audio_track(write_recipe, no_data_root):
    stage = "stages:\n  - name: watch\n    capabilities: [video-understanding]\n    train: [thinker, audio_projection]\n"
    path = write_recipe(f"extends: {RECIPES / 'full_omni.yaml'}\nname: watch\n" + stage)
    [problem] = _errors(path, no_data_root)
    assert "trains audio_projection, but none of its capabilities (video-understanding) feeds it" in problem.message
    assert "use_audio_in_video: true" in problem.hint
    with_audio = write_recipe(
        f"extends: {RECIPES / 'full_omni.yaml'}\nname: watch\n" + stage
        + "datasets:\n  msr-vtt: {path: /nowhere/msr-vtt, format: video-caption, use_audio_in_video: true}\n",
        name="with_audio.yaml",
    )
    [planned] = compile_plan(load_recipe(with_audio, environ=no_data_root)).stages
    assert [g.module for g in planned.modules.trainable] == ["thinker.lora", "audio_projection"]


def test_a_stage_cannot_train_a_group_the_trainer_does_not_have(write_recipe, no_data_root):
    path = write_recipe(
        f"extends: {RECIPES / 'full_omni.yaml'}\nname: odd\n"
        "stages:\n  - name: speak\n    capabilities: [podcast]\n    train: [thinker, talker, audio_projector]\n"
    )
    problems = _errors(path, no_data_root)
    by_field = {p.field: [q for q in problems if q.field == p.field] for p in problems}
    assert sorted(by_field) == ["stages[0].train[1]", "stages[0].train[2]"]
    assert all(p.location.line == line_of(path, "train:") for p in problems)
    assert "train audio_projection" in by_field["stages[0].train[2]"][0].hint
    talker = " ".join(f"{p.message} {p.hint}" for p in by_field["stages[0].train[1]"])
    assert "realigns the talker alone" in talker and "decoders.speech.freeze: false" in talker


def test_a_talker_realign_stage_plans_talker_adapters(write_recipe, no_data_root):
    path = write_recipe(
        f"extends: {RECIPES / 'full_omni.yaml'}\nname: realign\ndecoders: {{speech: {{freeze: false}}}}\n"
        "stages:\n  - {name: omni, capabilities: [podcast], train: [thinker]}\n"
        "  - {name: talker_realign, capabilities: [podcast], train: [talker]}\n"
    )
    plan = compile_plan(load_recipe(path, environ=no_data_root)).to_json()
    realign = _stage(plan, "talker_realign")
    assert [g["module"] for g in realign["trainable"]] == ["talker.lora"]



def test_recovery_settings_with_nothing_to_act_on_are_warned_about(no_data_root):
    plan = _full_omni(no_data_root, ["training.nan_policy.action=rollback", "controller.checkpoint.every_steps=0",
                                     "training.auto_micro_batch=true", "training.micro_batch=1"])
    assert any(w.startswith("training.nan_policy.action: a rollback goes back to a checkpoint") for w in plan["warnings"])
    assert any(w.startswith("training.auto_micro_batch: micro_batch is already 1") for w in plan["warnings"])
    assert not any("training.nan_policy" in w or "auto_micro_batch" in w for w in _full_omni(no_data_root)["warnings"])


def test_output_merge_on_a_gptq_base_is_refused_at_its_line(write_recipe, no_data_root):
    path = write_recipe(f"extends: {RECIPES / 'full_omni.yaml'}\noutput:\n  merge: true\n")
    [problem] = [e for e in _errors(path, no_data_root) if e.field == "output.merge"]
    assert problem.location.line == 3 and "cannot be de-quantized" in problem.message
    assert "bnb-4bit" in problem.hint


def test_output_merge_on_a_thinker_only_base_is_refused_at_its_line(models: Path, write_recipe, tmp_path: Path):
    config = json.loads((models / "qwen2.5-omni-7b" / "config.json").read_text())
    thinker = tmp_path / "thinker-only"
    thinker.mkdir()
    (thinker / "config.json").write_text(json.dumps({**config["thinker_config"], "model_type": "qwen2_5_omni_thinker",
                                                     "architectures": ["Qwen2_5OmniThinkerForConditionalGeneration"]}))
    path = write_recipe(f"name: probe\nbase_model: {{path: {thinker}}}\n" + CHAT_AND_COT + "output:\n  merge: true\n")
    [problem] = [e for e in _errors(path) if e.field == "output.merge"]
    assert "holds only a thinker" in problem.message


def test_output_merge_with_full_fine_tuning_is_a_warning_that_it_does_nothing(models: Path, write_recipe):
    path = write_recipe(f"name: probe\nbase_model: {{path: {models / 'qwen2.5-omni-7b'}}}\n" + CHAT_AND_COT
                        + "training:\n  method: full\noutput:\n  merge: true\nhardware:\n  vram_gb: 200\n")
    warnings = compile_plan(load_recipe(path)).to_json()["warnings"]
    assert any("output.merge has no effect with training.method full" in w for w in warnings)
