"""The media-across-ranks runs both test files share (test_media_across_ranks.py says what each recipe
covers and why the tolerance): a recipe's run with one sample a micro-batch, the one-process references,
and the comparison of two processes with one process of the same global batch."""

from __future__ import annotations

import pytest
from run_watch import events_of
from trainer_processes import REPO, omni_run

from omni_runner.run.rundir import RunDir

TOLERANCE = 1e-5
STEPS = 3
ONE_SAMPLE_STEPS = [f"training.max_steps={STEPS}", "training.packing=false", "training.micro_batch=1",
                    "training.warmup_steps=1", "eval.at_end=false", "controller.checkpoint.every_steps=1000"]
RECIPES = {
    "tiny_omni_media.yaml": ["training.method=full",
                             "stages=[{name: media, train: [thinker, vision_merger, audio_projection]}]"],
    "tiny_qwen3_omni.yaml": [],  # LoRA on attention and experts, the vision mergers in full
    # The external SigLIP2 and Whisper: their projectors alone, then with the language model (full).
    "tiny_omni_encoders.yaml": [("stages=[{name: align, capabilities: [video-understanding, podcast], "
                                 "train: [vision_projector, audio_projector]}, "
                                 "{name: instruct, train: [thinker, vision_projector, audio_projector]}]")],
    # The same encoders as DeepSpeed trains them: the projectors align in a stage of their own (no engine), then
    # the language model trains (under the engine) with them frozen.
    "tiny_omni_encoders.yaml, projectors first": [
        ("stages=[{name: align, capabilities: [video-understanding, podcast], "
         "train: [vision_projector, audio_projector]}, {name: instruct, train: [thinker]}]")],
    # Images and video out: query tokens, connectors and the SD3 transformer's adapters beside the model.
    "tiny_omni_generation.yaml": ["training.lora.dropout=0.0",
                                  ("stages=[{name: generate, train: [thinker, image_projector, video_projector, "
                                   f"query_tokens], max_steps: {STEPS}}}]")],
    # The same as DeepSpeed trains it: the query tokens, connectors and adapters align in a stage of their own (no
    # engine), then the language model's adapters train (under the engine) through them, frozen.
    "tiny_omni_generation.yaml, heads first": [
        "training.lora.dropout=0.0",
        (f"stages=[{{name: connect, train: [image_projector, video_projector, query_tokens], max_steps: {STEPS - 1}}}, "
         "{name: generate, train: [thinker], max_steps: 1}]")],
    # Speech out: the talker realign (its LoRA adapters beside the model), then a step of the language model.
    # It also evaluates between the stages (held-out loss, replies, talker consistency): every rank of a
    # split model evaluates in step; rank 0 alone reports.
    "tiny_omni_speech.yaml": ["decoders.speech.max_codec_tokens=12", f"eval.every_steps={STEPS - 1}", "eval.max_samples=2",
                              (f"stages=[{{name: talker_realign, train: [talker], max_steps: {STEPS - 1}, lr: 5.0e-3}}, "
                               "{name: answer, train: [thinker], max_steps: 1}]")],
}


# Micro-batches a step on each of the two ranks (one process takes twice as many); one unless named.
ACCUMULATED = {"tiny_omni_encoders.yaml": 2, "tiny_omni_encoders.yaml, projectors first": 2}


def run_recipe(folder, recipe: str, *overrides: str) -> dict[str, dict]:
    """Every step's loss, and every evaluation's metrics by (step, data set or suite)."""
    run = RunDir(folder / "run")
    args = [arg for override in (*ONE_SAMPLE_STEPS, *RECIPES[recipe], *overrides) for arg in ("--set", override)]
    recipe_file = recipe.split(",")[0]  # a key names the recipe file, then how it is set up
    process = omni_run(folder / "omni-run.log", "train", str(REPO / "recipes" / recipe_file), "--run-dir", str(run.path), *args)
    assert process.wait(timeout=600) == 0, run.trainer_log.read_text()[-3000:]
    assert events_of(run, "run_start")[0].get("world_size", 1) == (2 if "distributed.num_processes=2" in overrides else 1)
    return {"losses": {e["step"]: e["loss"] for e in events_of(run, "step")},
            "evals": {(e["step"], e.get("dataset") or e["suite"]): e["metrics"] for e in events_of(run, "eval")}}


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """Each recipe's one-process run with grad_accum 2, made once per test file that imports this fixture."""
    cache: dict[str, dict[str, dict]] = {}

    def seen(recipe: str) -> dict[str, dict]:
        if recipe not in cache:
            cache[recipe] = run_recipe(tmp_path_factory.mktemp("one-process"), recipe,
                                       f"training.grad_accum={2 * ACCUMULATED.get(recipe, 1)}")
        return cache[recipe]

    return seen


def _close(two: float, one: float, tolerance: float) -> bool:
    return abs(two - one) <= tolerance * abs(one)


def assert_two_processes_match_one(strategy: str, recipe: str, one_process, folder) -> None:
    """Two processes under `strategy` against one process with the same global batch: every step's loss
    within TOLERANCE, and every evaluation's metrics within ten times that."""
    two = run_recipe(folder, recipe, f"training.grad_accum={ACCUMULATED.get(recipe, 1)}", "distributed.num_processes=2",
                     f"distributed.strategy={strategy}")
    one = one_process(recipe)
    assert sorted(two["losses"]) == list(range(1, STEPS + 1)) == sorted(one["losses"])
    assert all(_close(two["losses"][s], one["losses"][s], TOLERANCE) for s in one["losses"]), (two, one)
    # An evaluation reads weights that float noise has already moved, so its losses get ten times the room.
    assert sorted(two["evals"]) == sorted(one["evals"])
    for key, metrics in one["evals"].items():
        assert sorted(two["evals"][key]) == sorted(metrics), key
        assert all(_close(two["evals"][key][name], value, 10 * TOLERANCE) if isinstance(value, float)
                   else two["evals"][key][name] == value for name, value in metrics.items()), (key, two["evals"][key], metrics)
