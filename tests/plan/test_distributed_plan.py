"""`distributed:` in the plan: which process layouts the trainer runs and which are refused at their line,
the global batch over processes, and the per-device memory of each strategy."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from recipe_lines import line_of

from omni_runner.plan import compile_plan, support
from omni_runner.plan.fit import Shape, fit_stage
from omni_runner.plan.memory import GIB, STRATEGY_SHARDS, MemoryEstimate, gathered_bytes, per_device, sharding
from omni_runner.recipe import RecipeError, load_recipe

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def _plan(recipe: Path | str, overrides: list[str], environ: dict[str, str] | None = None) -> dict:
    return compile_plan(load_recipe(recipe, overrides=overrides, environ=environ or {})).to_json()


def _errors(recipe: Path | str, overrides: list[str] = ()) -> list:
    with pytest.raises(RecipeError) as caught:
        compile_plan(load_recipe(recipe, overrides=list(overrides), environ={}))
    return [d for d in caught.value.diagnostics if d.severity == "error"]


def _tiny(write_recipe, distributed: str) -> Path:
    """recipes/tiny_omni.yaml with a `distributed:` block written in the file (so errors have a line)."""
    return write_recipe(f"extends: {RECIPES / 'tiny_omni.yaml'}\ndistributed:\n{distributed}")


def test_ddp_over_the_processes_of_one_machine_is_planned(write_recipe):
    plan = _plan(_tiny(write_recipe, "  num_processes: 2\n"), [])
    assert plan["distributed"]["strategy"] == "ddp" and plan["distributed"]["world_size"] == 2
    assert not [w for w in plan["warnings"] if w.startswith("distributed")]


def test_fsdp_over_the_processes_of_one_machine_is_planned(write_recipe):
    plan = _plan(_tiny(write_recipe, "  strategy: fsdp\n  num_processes: 2\n"), [])
    assert (plan["distributed"]["strategy"], plan["distributed"]["world_size"]) == ("fsdp", 2)
    assert not [w for w in plan["warnings"] if w.startswith("distributed")]


@pytest.fixture
def deepspeed_installed(monkeypatch):
    """The plan as it is where the deepspeed extra is installed (the test extra installs it; this keeps the
    refusals below about the recipe, not the environment)."""
    monkeypatch.setattr(support, "deepspeed_installed", lambda: True)


@pytest.mark.parametrize("strategy", ["deepspeed-zero2", "deepspeed-zero3"])
def test_deepspeed_over_the_processes_of_one_machine_is_planned(write_recipe, deepspeed_installed, strategy: str):
    plan = _plan(_tiny(write_recipe, f"  strategy: {strategy}\n  num_processes: 2\n"), [])
    assert (plan["distributed"]["strategy"], plan["distributed"]["world_size"]) == (strategy, 2)
    assert not [w for w in plan["warnings"] if w.startswith("distributed")]


def test_deepspeed_not_installed_is_refused_at_the_strategy_with_the_extra_to_install(write_recipe, monkeypatch):
    monkeypatch.setattr(support, "deepspeed_installed", lambda: False)
    path = _tiny(write_recipe, "  strategy: deepspeed-zero3\n  num_processes: 2\n")
    [problem] = _errors(path)
    assert (problem.field, problem.location.line) == ("distributed.strategy", line_of(path, "strategy:"))
    assert "DeepSpeed is not installed" in problem.message and "omni-runner[deepspeed]" in problem.hint


_CONNECT_THEN_GENERATE = ("stages=[{name: connect, train: [image_projector, video_projector, query_tokens], max_steps: 2}, "
                          "{name: generate, train: [thinker], max_steps: 1}]")


def test_zero3_refuses_generation_at_its_capabilities_pointing_at_zero2_and_fsdp(deepspeed_installed):
    problems = _errors(RECIPES / "tiny_omni_generation.yaml", ["distributed.num_processes=2",
                                                              "distributed.strategy=deepspeed-zero3", _CONNECT_THEN_GENERATE])
    assert [p.field for p in problems] == ["capabilities.image-generation", "capabilities.image-editing",
                                           "capabilities.video-generation"], [p.message for p in problems]
    assert "generates" in problems[0].message and "split the embedding weights" in problems[0].message
    assert "deepspeed-zero2" in problems[0].hint and "strategy: fsdp" in problems[0].hint


def test_zero2_plans_generation_whose_heads_train_in_a_stage_of_their_own(deepspeed_installed):
    plan = _plan(RECIPES / "tiny_omni_generation.yaml", ["distributed.num_processes=2", "distributed.strategy=deepspeed-zero2",
                                                        _CONNECT_THEN_GENERATE])
    assert [stage["name"] for stage in plan["stages"]] == ["connect", "generate"]


def test_zero2_refuses_generation_heads_trained_with_the_thinker_at_their_train_entries(deepspeed_installed):
    # The recipe's own stage trains [thinker, image_projector, video_projector, query_tokens].
    problems = _errors(RECIPES / "tiny_omni_generation.yaml", ["distributed.num_processes=2",
                                                              "distributed.strategy=deepspeed-zero2"])
    assert [p.field for p in problems] == ["stages[0].train[1]", "stages[0].train[2]", "stages[0].train[3]"], \
        [p.message for p in problems]
    assert "trains query_tokens with the thinker" in problems[2].message
    assert "a stage before this one" in problems[2].hint


_ALIGN_THEN_INSTRUCT = ("stages=[{name: align, capabilities: [video-understanding, podcast], "
                        "train: [vision_projector, audio_projector]}, {name: instruct, train: [thinker]}]")


def test_zero2_plans_external_encoders_whose_projectors_train_in_a_stage_of_their_own(deepspeed_installed):
    plan = _plan(RECIPES / "tiny_omni_encoders.yaml", ["distributed.num_processes=2", "distributed.strategy=deepspeed-zero2",
                                                      _ALIGN_THEN_INSTRUCT])
    assert plan["distributed"]["strategy"] == "deepspeed-zero2"


def test_zero2_refuses_a_projector_trained_with_the_thinker_at_its_train_entry(deepspeed_installed):
    # The recipe's own instruct stage trains [thinker, vision_projector, audio_projector].
    problems = _errors(RECIPES / "tiny_omni_encoders.yaml", ["distributed.num_processes=2",
                                                            "distributed.strategy=deepspeed-zero2"])
    assert [p.field for p in problems] == ["stages[1].train[1]", "stages[1].train[2]"], [p.message for p in problems]
    assert "trains vision_projector with the thinker" in problems[0].message
    assert "a stage before this one" in problems[0].hint and "strategy: fsdp" in problems[0].hint


def test_zero3_refuses_external_encoders_at_their_line(deepspeed_installed):
    problems = _errors(RECIPES / "tiny_omni_encoders.yaml", ["distributed.num_processes=2", "distributed.strategy=deepspeed-zero3",
                                                            _ALIGN_THEN_INSTRUCT])
    assert {p.field for p in problems} == {"encoders.vision", "encoders.audio"}
    assert "deepspeed-zero2" in problems[0].hint


@pytest.mark.parametrize("strategy", ["deepspeed-zero2", "deepspeed-zero3"])
def test_deepspeed_plans_media_read_by_frozen_towers(deepspeed_installed, strategy: str):
    plan = _plan(RECIPES / "tiny_omni_media.yaml", ["distributed.num_processes=2", f"distributed.strategy={strategy}"])
    assert plan["distributed"]["strategy"] == strategy


@pytest.mark.parametrize("strategy", ["deepspeed-zero2", "deepspeed-zero3"])
def test_deepspeed_plans_qwen3_omni_experts_with_its_towers_frozen(deepspeed_installed, strategy: str):
    overrides = ["distributed.num_processes=2", f"distributed.strategy={strategy}",
                 "stages=[{name: text-images-video, train: [thinker]}]"]
    assert _plan(RECIPES / "tiny_qwen3_omni.yaml", overrides)["distributed"]["strategy"] == strategy
    # The recipe's own stage trains the vision mergers and the audio projection.
    merger, projection = _errors(RECIPES / "tiny_qwen3_omni.yaml", overrides[:2])
    assert merger.field == "stages[0].train[1]" and "trains vision_merger" in merger.message
    assert projection.field == "stages[0].train[2]" and "trains audio_projection" in projection.message


@pytest.mark.parametrize("group", ["vision_merger", "audio_tower"])
def test_deepspeed_refuses_a_stage_that_trains_a_tower_at_its_train_entry(deepspeed_installed, group: str):
    problems = _errors(RECIPES / "tiny_omni_media.yaml", ["distributed.num_processes=2", "distributed.strategy=deepspeed-zero2",
                                                          f"stages=[{{name: media, train: [thinker, {group}]}}]"])
    [tower] = problems
    assert tower.field == "stages[0].train[1]" and f"trains {group}" in tower.message
    assert "remove it from train" in tower.hint


_ANSWER_THEN_REALIGN = "stages=[{name: answer, max_steps: 2}, {name: realign, train: [talker], max_steps: 2}]"


def test_zero3_refuses_a_talker_stage_after_one_that_trains_the_thinker_at_its_train_entry(deepspeed_installed):
    problems = _errors(RECIPES / "tiny_omni_speech.yaml", ["distributed.num_processes=2", "distributed.strategy=deepspeed-zero3",
                                                             "eval.every_steps=0", _ANSWER_THEN_REALIGN])
    [talker] = [p for p in problems if "under strategy deepspeed-zero3 with 2 processes" in p.message]
    assert talker.field == "stages[1].train[0]" and "after a stage that trains the thinker" in talker.message
    assert "talker stages before the others" in talker.hint


@pytest.mark.parametrize(("strategy", "stages"), [
    ("deepspeed-zero2", _ANSWER_THEN_REALIGN),
    ("deepspeed-zero3", "stages=[{name: realign, train: [talker], max_steps: 2}, {name: answer, max_steps: 2}]"),
])
def test_deepspeed_plans_the_talker_realign_where_the_thinker_is_whole(deepspeed_installed, strategy: str, stages: str):
    plan = _plan(RECIPES / "tiny_omni_speech.yaml", ["distributed.num_processes=2", f"distributed.strategy={strategy}",
                                                        "eval.every_steps=0", stages])
    assert plan["distributed"]["strategy"] == strategy


def test_zero3_refuses_evaluation_during_training_and_zero2_plans_it(write_recipe, deepspeed_installed):
    every = "eval:\n  every_steps: 10\n"
    zero3 = write_recipe(f"extends: {RECIPES / 'tiny_omni.yaml'}\n{every}distributed:\n  strategy: deepspeed-zero3\n"
                         "  num_processes: 2\n")
    [problem] = _errors(zero3)
    assert (problem.field, problem.location.line) == ("eval.every_steps", line_of(zero3, "every_steps:"))
    assert "deepspeed-zero2" in problem.hint
    zero2 = write_recipe(f"extends: {RECIPES / 'tiny_omni.yaml'}\n{every}distributed:\n  strategy: deepspeed-zero2\n"
                         "  num_processes: 2\n")
    assert _plan(zero2, [])["distributed"]["strategy"] == "deepspeed-zero2"


def test_deepspeed_refuses_fp16_and_a_quantized_base(deepspeed_installed):
    fp16 = _errors(RECIPES / "tiny_omni.yaml", ["distributed.num_processes=2", "distributed.strategy=deepspeed-zero2",
                                                "training.precision=fp16"])
    assert [p.field for p in fp16] == ["training.precision"] and "loss scaling under DeepSpeed" in fp16[0].message
    quantized = _errors(RECIPES / "tiny_omni.yaml", ["distributed.num_processes=2", "distributed.strategy=deepspeed-zero3",
                                                     "training.method=qlora"])
    assert [p.field for p in quantized] == ["training.method"] and "strategy: ddp" in quantized[0].hint


def test_fsdp_refuses_fp16_at_its_line_and_plans_evaluation_during_training(write_recipe):
    path = write_recipe(f"""extends: {RECIPES / 'tiny_omni.yaml'}
training:
  precision: fp16
eval:
  every_steps: 10
distributed:
  strategy: fsdp
  num_processes: 2
""")
    [problem] = _errors(path)
    assert (problem.field, problem.location.line) == ("training.precision", line_of(path, "precision:"))
    assert "loss scaling of sharded gradients is not wired" in problem.message and "bf16" in problem.hint


def test_fsdp_refuses_a_quantized_base():
    quantized = _errors(RECIPES / "tiny_omni.yaml", ["distributed.num_processes=2", "distributed.strategy=fsdp",
                                                     "training.method=qlora"])
    assert [p.field for p in quantized] == ["training.method"]
    assert "packed 4-bit weights are not split" in quantized[0].message and "strategy: ddp" in quantized[0].hint


def test_media_capabilities_are_planned_under_both_strategies():
    for strategy in ("ddp", "fsdp"):
        plan = _plan(RECIPES / "tiny_omni_media.yaml", ["distributed.num_processes=2", f"distributed.strategy={strategy}"])
        assert (plan["distributed"]["strategy"], plan["distributed"]["world_size"]) == (strategy, 2)


def test_fsdp_holds_the_towers_a_stage_runs_whole_on_every_device():
    seven_b = ["base_model.path=Qwen/Qwen2.5-Omni-7B", "base_model.architecture=qwen2.5-omni-7b", "training.method=lora",
               "training.precision=bf16", "hardware.device=cuda", "hardware.vram_gb=80", "distributed.num_processes=4",
               "distributed.strategy=fsdp"]
    text, media = (_plan(RECIPES / recipe, seven_b)["stages"][0] for recipe in ("tiny_omni.yaml", "tiny_omni_media.yaml"))
    towers = sum(m["parameters"] for m in media["frozen"] if m.get("resident") and m["module"].endswith("_tower"))
    assert towers > 1.2e9  # Qwen2.5-Omni-7B's vision and audio towers
    added = media["memory"]["breakdown"]["gathered"] - text["memory"]["breakdown"]["gathered"]
    assert added == pytest.approx(towers * 2 / 2**30, abs=0.02)  # bf16, whole on each of the 4 devices


def test_a_sharding_strategy_with_one_process_is_a_warning_that_it_changes_nothing(write_recipe):
    plan = _plan(_tiny(write_recipe, "  strategy: fsdp\n"), [])
    assert "distributed.strategy: distributed.strategy is 'fsdp', which has no effect with one process (it trains on one device)" in plan["warnings"]
    assert (plan["distributed"]["strategy"], plan["distributed"]["world_size"]) == ("fsdp", 1)


def test_ddp_over_several_machines_is_planned_with_their_processes_each(write_recipe):
    plan = _plan(_tiny(write_recipe, "  num_processes: 4\n  num_machines: 2\n  main_process_ip: 10.0.0.1\n"), [])
    section = plan["distributed"]
    assert (section["world_size"], section["num_machines"], section["processes_per_machine"]) == (4, 2, 2)
    assert (section["main_process_ip"], section["main_process_port"]) == ("10.0.0.1", 29500)
    assert not [w for w in plan["warnings"] if w.startswith("distributed")]


def test_a_recipe_naming_another_machine_than_0_is_refused_there_pointing_at_join(write_recipe):
    path = _tiny(write_recipe, "  num_processes: 2\n  num_machines: 2\n  machine_rank: 1\n  main_process_ip: 10.0.0.1\n")
    [problem] = _errors(path)
    assert (problem.field, problem.location.line) == ("distributed.machine_rank", line_of(path, "machine_rank:"))
    assert "omni-run join RUN --machine-rank K" in problem.hint


def test_the_address_and_port_change_nothing_on_one_machine_and_are_warnings(write_recipe):
    plan = _plan(_tiny(write_recipe, "  num_processes: 2\n  main_process_ip: 10.0.0.1\n  main_process_port: 29600\n"), [])
    warnings = [w for w in plan["warnings"] if w.startswith("distributed")]
    assert warnings == [
        "distributed.main_process_ip: distributed.main_process_ip is '10.0.0.1', which has no effect on one machine (its processes meet on it)",
        "distributed.main_process_port: distributed.main_process_port is 29600, which has no effect on one machine "
        "(the launcher picks a free port, so two runs never share one)",
    ]


def test_external_encoders_generation_and_the_talker_realign_are_planned_under_both_strategies():
    for recipe in ("tiny_omni_encoders.yaml", "tiny_omni_generation.yaml", "tiny_omni_speech.yaml"):
        for strategy in ("ddp", "fsdp"):
            plan = _plan(RECIPES / recipe, ["distributed.num_processes=2", f"distributed.strategy={strategy}"])
            assert plan["distributed"]["world_size"] == 2, (recipe, strategy)


def test_the_global_batch_and_the_mixture_grow_with_the_processes_because_the_batch_is_per_process():
    one, four = (_plan(RECIPES / "tiny_omni.yaml", [f"distributed.num_processes={n}"]) for n in (1, 4))
    [stage] = four["stages"]
    per_process = stage["micro_batch"] * stage["grad_accum"]
    assert one["distributed"]["global_batch"] == {stage["name"]: per_process}
    layout = four["distributed"]
    assert (layout["world_size"], layout["processes_per_machine"]) == (4, 4)
    assert layout["global_batch"] == {stage["name"]: 4 * per_process}
    one_samples = sum(c["expected_samples"] for c in one["stages"][0]["mixture"].values())
    assert sum(c["expected_samples"] for c in stage["mixture"].values()) == pytest.approx(4 * one_samples, rel=0.01)
    batch = next(d for d in stage["decisions"] if d["what"].startswith("global batch"))
    assert batch["what"] == f"global batch {4 * per_process} = micro_batch {stage['micro_batch']} x grad_accum {stage['grad_accum']} x 4 processes"
    assert "per process" in batch["why"]
    assert not any(d["what"].startswith("global batch") for d in one["stages"][0]["decisions"])


def test_the_plan_command_shows_the_processes_and_each_stage_s_global_batch(capsys):
    from omni_runner.commands import plan as plan_command

    plan = _plan(RECIPES / "tiny_omni.yaml", ["distributed.num_processes=2"])
    text = plan_command.render(plan)
    assert "on 2 devices of" in text and "(ddp, 2 processes on each of 1 machine(s); micro_batch and grad_accum are per process)" in text
    assert f"global batch {plan['distributed']['global_batch'][plan['stages'][0]['name']]}" in text
    assert "decision: ddp over 2 processes: every device holds the whole model" in text


# One process's training state in GiB, to split: full fine-tuning of a model of 8 B parameters in bf16.
WHOLE = MemoryEstimate(weights=16 * GIB, optimizer=96 * GIB, gradients=16 * GIB, activations=4 * GIB, decoders=2 * GIB)
GATHERED = 3 * GIB


def _gib(estimate: MemoryEstimate) -> tuple[float, ...]:
    return tuple(getattr(estimate, part) / GIB for part in ("weights", "optimizer", "gradients", "activations", "decoders", "gathered"))


@pytest.mark.parametrize("strategy", list(STRATEGY_SHARDS))
def test_one_process_splits_nothing_whatever_the_strategy(strategy: str):
    assert per_device(WHOLE, sharding(strategy, 1), GATHERED) == WHOLE


def test_ddp_holds_everything_on_every_device_and_its_buckets_copy_the_gradients():
    assert _gib(per_device(WHOLE, sharding("ddp", 4), GATHERED)) == (16, 96, 32, 4, 2, 0)


def test_zero2_splits_gradients_and_optimizer_state_over_the_processes():
    assert _gib(per_device(WHOLE, sharding("deepspeed-zero2", 4), GATHERED)) == (16, 24, 4, 4, 2, 0)


@pytest.mark.parametrize("strategy", ["deepspeed-zero3", "fsdp"])
def test_zero3_and_fsdp_split_the_parameters_too_and_hold_what_they_gather(strategy: str):
    """Activations (each process's own micro-batch) and the frozen generation decoders stay whole."""
    assert _gib(per_device(WHOLE, sharding(strategy, 4), GATHERED)) == (4, 24, 4, 4, 2, 3)


def test_a_device_gathers_the_embeddings_and_head_and_two_decoder_blocks():
    language_model = {"parameters": 1_000 + 10 * 300, "quantizable": 10 * 300, "layers": 10}
    assert gathered_bytes(language_model, 2.0) == (1_000 + 2 * 300) * 2.0


def test_the_fit_check_compares_one_device_s_share_with_the_card():
    """7B full fine-tuning does not fit one 80 GB card, and does under ZeRO-3 over 4 (the estimate is
    there for refused strategies too: docs/distributed.md's table uses it)."""
    plan = compile_plan(load_recipe(RECIPES / "text_only.yaml", environ={}, overrides=[
        "base_model.path=/absent/qwen2.5-omni-7b", "base_model.architecture=qwen2.5-omni-7b", "base_model.quantization=none",
        "training.method=full", "training.gradient_checkpointing=on", "hardware.vram_gb=1000"]))
    [stage] = plan.stages
    shape = Shape(micro_batch=1, grad_accum=1, seq_len=4096, checkpointing=True)
    one = fit_stage(stage.modules, shape, plan.precision, 80, "on")
    sharded = fit_stage(stage.modules, shape, plan.precision, 80, "on", sharding("deepspeed-zero3", 4))
    assert not one.fits and sharded.fits
    assert sharded.estimate.total < one.estimate.total / 3


def test_the_strategy_table_in_the_docs_is_what_the_planner_says():
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "distributed_memory_table.py"
    spec = importlib.util.spec_from_file_location("distributed_memory_table", script)
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    doc = (script.parents[1] / "docs" / "distributed.md").read_text()
    shown = doc.split("<!-- distributed_memory_table: begin -->\n")[1].split("\n<!-- distributed_memory_table: end -->")[0]
    assert shown == table.page(), "docs/distributed.md's table is stale: run python benchmarks/distributed_memory_table.py"


def test_a_ddp_stage_that_does_not_fit_says_more_processes_would_not_help(write_recipe):
    path = write_recipe(f"extends: {RECIPES / 'text_only.yaml'}\nhardware:\n  vram_gb: 6\ndistributed:\n  num_processes: 4\n")
    with pytest.raises(RecipeError) as caught:
        compile_plan(load_recipe(path, environ={"OMNI_DATA": "/absent"}))
    [problem] = [d for d in caught.value.diagnostics if d.severity == "error"]
    assert problem.field == "hardware.vram_gb" and "GB per device" in problem.message
    assert "with ddp, every process holds the whole model: more processes do not lower it" in problem.hint
