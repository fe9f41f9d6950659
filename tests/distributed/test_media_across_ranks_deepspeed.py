"""Media capabilities split over two DeepSpeed ZeRO-2 processes (test_media_across_ranks.py explains the
recipes and the tolerance): the recipes whose first stage trains only parts beside the model and runs
without DeepSpeed's engine, and whose next stage builds it. The speech recipe realigns the talker first;
the external encoders align their projectors first; generation aligns its query tokens, connectors and
adapters first. Each must equal one process with the same global batch. (Media read by frozen towers
under DeepSpeed are in test_deepspeed_run.py.) A file of its own, so that the two test workers share the
distributed runs."""

from __future__ import annotations

import pytest
from media_runs import assert_two_processes_match_one, one_process  # noqa: F401 (a fixture, found by name)

pytestmark = pytest.mark.slow

CASES = ["tiny_omni_speech.yaml", "tiny_omni_encoders.yaml, projectors first", "tiny_omni_generation.yaml, heads first"]


@pytest.mark.parametrize("recipe", CASES)
def test_zero2_media_losses_match_one_process_with_the_same_global_batch(recipe, one_process, tmp_path):  # noqa: F811
    assert_two_processes_match_one("deepspeed-zero2", recipe, one_process, tmp_path)
