"""Media capabilities split over two trainer processes, under DDP and FSDP2 (DeepSpeed ZeRO-2 in
test_media_across_ranks_deepspeed.py, with the recipes' DeepSpeed stage layouts below).

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
from media_runs import RECIPES, assert_two_processes_match_one, one_process  # noqa: F401 (a fixture, found by name)

pytestmark = pytest.mark.slow

# Every recipe under FSDP2, whose units and root hold the most that can go wrong. Under DDP the recipes that
# cover what is its own: parameters some rank leaves unused inside the wrapped model (Qwen3-Omni's towers
# and experts), stages that leave nothing inside it to train (the talker realign, the projectors' alignment
# over several micro-batches: nothing is wrapped), and rank 0 evaluating alone. The parts beside the model
# are averaged by the same code under both. The DeepSpeed cases are in test_media_across_ranks_deepspeed.py.
CASES = [*(("fsdp", recipe) for recipe in sorted(RECIPES) if "," not in recipe), ("ddp", "tiny_qwen3_omni.yaml"),
         ("ddp", "tiny_omni_speech.yaml"), ("ddp", "tiny_omni_encoders.yaml")]


@pytest.mark.parametrize(("strategy", "recipe"), CASES)
def test_media_losses_match_one_process_with_the_same_global_batch(recipe, strategy, one_process, tmp_path):  # noqa: F811
    assert_two_processes_match_one(strategy, recipe, one_process, tmp_path)
