"""Media capabilities split over two trainer processes, under DDP, FSDP2 and (the talker realign) DeepSpeed.

One sample a micro-batch, so in most steps one rank's batch holds a medium the other's lacks:

- the tiny media recipe (images, video, audio, video with its audio track) trains the language model
  in full and its vision merger and audio projection. At step 1 one rank sees a beep clip, the other a
  video without sound, so the audio projection has a gradient on one rank only;
- the tiny Qwen3-Omni trains LoRA adapters on attention and experts, and its vision mergers in full. At
  step 1 one rank's batch is text alone: with frozen embeddings, only the other rank's first decoder
  block has inputs that need a gradient;
- the external-encoder recipe (SigLIP2 and Whisper beside the model) trains their projectors alone for
  two steps (nothing inside the wrapped model trains), then with the language model. One rank's video
  leaves the audio projector unused there, and the other's audio the vision projector. Its ranks take
  two micro-batches a step (one process four), so the projector-only stage, which wraps nothing,
  accumulates without DDP's `no_sync`. Under ZeRO-2 the language model's stage keeps the projectors
  frozen (DeepSpeed trains them only in a stage of their own);
- the generation recipe trains LoRA on the language model, the query tokens, and the connectors into the
  tiny SD3 (with adapters on its transformer) and SVD. The ranks' batches need different decoders, and
  each rank draws the diffusion noise one process would draw for its micro-batch. Under ZeRO-2 the
  query tokens, connectors and adapters train first in a stage of their own, then stay frozen while the
  language model's adapters learn through them;
- the speech recipe realigns the talker, then trains the language model for a step: rank 0 makes the
  original model's codec targets for both ranks, each rank speaks its share of the step's prompts, and
  the talker adapter's gradients are averaged beside the frozen thinker (unwrapped under DDP). The
  realign comes first so that under FSDP2 the thinker's first forward is the talker's conditioning,
  which runs its inner model: the root unit must be settled before that (`sharding.root_gathered`).

DDP finds unused parameters (`find_unused_parameters`). Under FSDP2 the towers are part of the root unit,
a rank without the medium hands in zero gradients, and every rank's embeddings output requires a gradient
so that all ranks reduce their units in the same order. The projectors beside the wrapped model are
averaged at the step boundary (`Ranks.average_gradients`). Each run must equal one process with the same
global batch (grad_accum 2 instead of two ranks of 1).

Tolerance (1e-5 relative, as in test_ddp_run.py): every optimizer step sees the same samples in all
runs, so only float32 summation order differs; a gradient missing on one rank halves that parameter's
update and moves the loss in the 3rd digit by the second step, and collectives out of order fail the run.
"""

from __future__ import annotations

import pytest
from run_watch import events_of
from trainer_processes import REPO, omni_run

from omni_runner.run.rundir import RunDir

pytestmark = pytest.mark.slow

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


def _run(folder, recipe: str, *overrides: str) -> dict[str, dict]:
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
    """Each recipe's one-process run with grad_accum 2, made once."""
    cache: dict[str, dict[str, dict]] = {}

    def seen(recipe: str) -> dict[str, dict]:
        if recipe not in cache:
            cache[recipe] = _run(tmp_path_factory.mktemp("one-process"), recipe,
                                 f"training.grad_accum={2 * ACCUMULATED.get(recipe, 1)}")
        return cache[recipe]

    return seen


def _close(two: float, one: float, tolerance: float) -> bool:
    return abs(two - one) <= tolerance * abs(one)


# Every recipe under FSDP2, whose units and root hold the most that can go wrong. Under DDP the recipes that
# cover what is its own: parameters some rank leaves unused inside the wrapped model (Qwen3-Omni's towers
# and experts), stages that leave nothing inside it to train (the talker realign, the projectors' alignment
# over several micro-batches: nothing is wrapped), and rank 0 evaluating alone. The parts beside the model are averaged by the same code under both.
# Under ZeRO-2 the recipes whose first stage trains only parts beside the model and runs without DeepSpeed's
# engine, and whose next stage builds it: the speech recipe, the encoders with their projectors aligned first, and
# generation with its heads aligned first (media under DeepSpeed are in test_deepspeed_run.py).
CASES = [*(("fsdp", recipe) for recipe in sorted(RECIPES) if "," not in recipe), ("ddp", "tiny_qwen3_omni.yaml"),
         ("ddp", "tiny_omni_speech.yaml"), ("ddp", "tiny_omni_encoders.yaml"), ("deepspeed-zero2", "tiny_omni_speech.yaml"),
         ("deepspeed-zero2", "tiny_omni_encoders.yaml, projectors first"),
         ("deepspeed-zero2", "tiny_omni_generation.yaml, heads first")]


@pytest.mark.parametrize(("strategy", "recipe"), CASES)
def test_media_losses_match_one_process_with_the_same_global_batch(recipe, strategy, one_process, tmp_path):
    two = _run(tmp_path, recipe, f"training.grad_accum={ACCUMULATED.get(recipe, 1)}", "distributed.num_processes=2",
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
