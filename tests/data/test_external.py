"""Splicing the external encoders' tokens into a sample: counts, masked labels, and text-like positions."""

from __future__ import annotations

import pytest
import torch

from omni_runner.data.conversation import RecordError
from omni_runner.data.external import splice_external
from omni_runner.data.render import IGNORE_INDEX

IMG, AUD = 900, 901  # placeholder ids of an externally encoded image and audio clip


def _text_positions(length: int) -> torch.Tensor:
    return torch.arange(length)[None].expand(3, -1)


def test_each_external_placeholder_becomes_its_count_of_masked_tokens():
    rendered = [1, IMG, 2, 3, AUD, 4]
    labels = [IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, 3, IGNORE_INDEX, 4]
    own = [1, 2, 3, 4]
    own_labels = [IGNORE_INDEX, IGNORE_INDEX, 3, 4]
    ids, spliced_labels, _ = splice_external(rendered, labels, own, own_labels, _text_positions(4), {IMG, AUD}, [3, 2])
    assert ids == [1, IMG, IMG, IMG, 2, 3, AUD, AUD, 4]
    assert spliced_labels == [IGNORE_INDEX] * 5 + [3, IGNORE_INDEX, IGNORE_INDEX, 4]


def test_spliced_tokens_take_consecutive_positions_and_shift_everything_after_them():
    rendered = [1, IMG, 2]
    ids, _, positions = splice_external(rendered, [IGNORE_INDEX] * 3, [1, 2], [IGNORE_INDEX] * 2,
                                        _text_positions(2), {IMG}, [3])
    assert positions.shape == (3, len(ids))
    assert positions[0].tolist() == [0, 1, 2, 3, 4]
    assert torch.equal(positions[0], positions[2])


def test_tokens_the_base_processor_inserted_keep_their_own_positions():
    """An own-tower audio clip expanded to three tokens (positions 1-3) before an external image."""
    rendered = [1, AUD, IMG, 2]
    own = [1, AUD, AUD, AUD, 2]
    own_positions = torch.tensor([[0, 1, 2, 3, 4]] * 3)
    ids, labels, positions = splice_external(rendered, [IGNORE_INDEX] * 4, own, [IGNORE_INDEX] * 5, own_positions,
                                             {IMG}, [2])
    assert ids == [1, AUD, AUD, AUD, IMG, IMG, 2]
    assert positions[0].tolist() == [0, 1, 2, 3, 4, 5, 6]


def test_a_rendering_the_base_expansion_does_not_contain_is_a_bad_record():
    with pytest.raises(RecordError, match="does not contain the rendered text"):
        splice_external([1, 5], [IGNORE_INDEX] * 2, [1, 2], [IGNORE_INDEX] * 2, _text_positions(2), {IMG}, [])
