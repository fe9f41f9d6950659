"""The training loss: next-token cross-entropy, token-weighted, split by capability without changing it."""

from __future__ import annotations

import pytest
import torch

from omni_runner.plan import memory
from omni_runner.train.losses import (
    IGNORE_INDEX,
    capability_sums,
    count_targets,
    head_token_losses,
    shifted_targets,
    token_losses,
)


def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 6, 11, generator=generator)
    labels = torch.randint(0, 11, (2, 6), generator=generator)
    labels[0, :2] = IGNORE_INDEX  # a prompt
    labels[1, 4:] = IGNORE_INDEX  # padding
    capabilities = torch.tensor([[0, 0, 0, 1, 1, 1], [1, 1, 1, 1, -1, -1]])
    return logits, labels, capabilities


def test_the_loss_equals_mean_next_token_cross_entropy_over_counted_targets():
    logits, labels, capabilities = batch()
    targets, _ = shifted_targets(labels, capabilities)
    loss = token_losses(logits, targets).sum() / count_targets(labels)
    expected = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 11), labels[:, 1:].reshape(-1))
    assert torch.allclose(loss, expected)


def test_targets_keep_the_logits_shape_and_the_last_position_predicts_nothing():
    logits, labels, capabilities = batch()
    targets, target_capabilities = shifted_targets(labels, capabilities)
    assert targets.shape == logits.shape[:2] == target_capabilities.shape
    assert (targets[:, -1] == IGNORE_INDEX).all()
    assert count_targets(labels) == int((targets != IGNORE_INDEX).sum())


def test_capability_sums_split_the_same_loss_by_capability():
    logits, labels, capabilities = batch()
    targets, target_capabilities = shifted_targets(labels, capabilities)
    losses = token_losses(logits, targets)
    sums, counts = capability_sums(losses, targets, target_capabilities.clamp(min=0), 2)
    assert int(counts.sum()) == count_targets(labels)
    assert torch.allclose(sums.sum().float(), losses.sum())
    # Position t carries token t+1 and its capability: row 0 → labels 2..5 (capabilities 0, 1, 1, 1),
    # row 1 → labels 1..3 (capability 1).
    assert counts.tolist() == [1.0, 6.0]


def _head_and_hidden() -> tuple[torch.nn.Linear, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    head = torch.nn.Linear(8, 11, bias=False)
    hidden = torch.randn(2, 6, 8, requires_grad=True)
    _, labels, capabilities = batch()
    return head, hidden, shifted_targets(labels, capabilities)[0]


@pytest.mark.parametrize("chunk_entries", [memory.LOSS_CHUNK_ENTRIES, 11 * 2], ids=["one chunk", "chunks of two tokens"])
def test_the_chunked_loss_from_hidden_states_equals_the_loss_from_full_logits(monkeypatch, chunk_entries):
    monkeypatch.setattr(memory, "LOSS_CHUNK_ENTRIES", chunk_entries)
    head, hidden, targets = _head_and_hidden()
    chunked = head_token_losses(hidden, head, targets)
    chunked.sum().backward()
    chunked_grads = hidden.grad.clone(), head.weight.grad.clone()
    hidden.grad, head.weight.grad = None, None
    full = token_losses(head(hidden), targets)
    full.sum().backward()
    torch.testing.assert_close(chunked, full)
    torch.testing.assert_close(chunked_grads, (hidden.grad, head.weight.grad))


def test_a_chunk_holds_at_most_the_chunk_budget_of_logits():
    assert memory.loss_chunk_tokens(151_936) * 151_936 <= memory.LOSS_CHUNK_ENTRIES
    assert memory.loss_chunk_tokens(10**9) == 1


def test_a_batch_without_targets_has_zero_losses_and_no_gradient():
    head, hidden, targets = _head_and_hidden()
    losses = head_token_losses(hidden, head, torch.full_like(targets, IGNORE_INDEX))
    assert not losses.any() and not losses.requires_grad
