"""The thinker's output head, set aside during a training forward.

The Omni thinker's forward always applies `lm_head` to every position. At a real vocabulary that is
the largest tensor of the step (2.5 GB of fp32 logits for one 4,096-token row), and most positions
are prompt tokens the loss ignores. With the head set aside the forward returns the final hidden
states (after the last norm) in `.logits`, and the trainer computes the loss from them in chunks
(`train/losses.py`, `head_token_losses`), through the same head module, so adapters on it still train.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch


@contextmanager
def deferred_output_head(thinker: Any) -> Iterator[torch.nn.Module]:
    """Within the block, `thinker`'s forward returns final hidden states as `.logits`; yields the head."""
    head = thinker.lm_head
    thinker.lm_head = torch.nn.Identity()
    try:
        yield head
    finally:
        thinker.lm_head = head
