"""Packing: no sample split, samples isolated by the block-diagonal mask (packed loss == per-sample
losses with the tiny model), padded batches for comparison, micro-batches resume exactly."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from omni_runner.data.packing import (
    PAD_SEQUENCE_ID,
    Sample,
    block_diagonal_causal_mask,
    collate_packed,
    collate_padded,
    collate_varlen,
    first_fit,
)
from omni_runner.data.sources import build_sources
from omni_runner.data.stream import MicroBatches, SampleStream, mixer_for

RECIPE = {
    "datasets": {
        "xlam": {"path": "builtin:tool-calling/xlam_train.jsonl", "format": "xlam"},
        "cot": {"path": "builtin:cot/cot_collection.jsonl", "format": "cot-collection"},
        "chat": {"path": "builtin:streaming/sharegpt.jsonl", "format": "sharegpt"},
    },
    "capabilities": {
        "tool-calling": {"weight": 1.0, "datasets": ["xlam"]},
        "cot": {"weight": 1.0, "datasets": ["cot"]},
        "streaming": {"weight": 1.0, "datasets": ["chat"]},
    },
    "training": {"seed": 3},
}


def test_first_fit_never_splits_and_stops_at_the_first_item_that_fits_nowhere():
    rows, placed = first_fit([60, 30, 50, 40, 70], seq_len=100, rows=2)
    assert rows == [[0, 1], [2, 3]] and placed == 4
    with pytest.raises(ValueError, match="item 0 has 101 tokens, more than seq_len 100"):
        first_fit([101], seq_len=100, rows=1)


@given(st.lists(st.integers(1, 64), max_size=30), st.integers(1, 4))
def test_first_fit_places_a_prefix_of_the_items_each_once_within_seq_len(lengths, rows):
    packed, placed = first_fit(lengths, seq_len=64, rows=rows)
    assert sorted(i for row in packed for i in row) == list(range(placed))
    assert len(packed) <= rows and all(sum(lengths[i] for i in row) <= 64 for row in packed)
    if placed < len(lengths):
        assert all(sum(lengths[i] for i in row) + lengths[placed] > 64 for row in packed) and len(packed) == rows


def test_block_diagonal_mask_lets_tokens_see_only_earlier_tokens_of_their_own_sample():
    import torch

    mask = block_diagonal_causal_mask(torch.tensor([[0, 0, 1, 1, 1, PAD_SEQUENCE_ID]]))
    allowed = (mask[0, 0] == 0).int().tolist()
    assert allowed == [
        [1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [0, 0, 1, 0, 0, 0],
        [0, 0, 1, 1, 0, 0],
        [0, 0, 1, 1, 1, 0],
        [0, 0, 0, 0, 0, 1],
    ]


@pytest.fixture(scope="module")
def stream_factory(tokenizer, tmp_path_factory):
    sources = build_sources(RECIPE, Path("."))

    def make(seq_len: int = 512, micro_batch: int = 2, packing: bool = True) -> MicroBatches:
        return MicroBatches(SampleStream(sources, mixer_for(RECIPE, sources), tokenizer, seq_len), micro_batch, seq_len, packing)

    return make


def test_packed_rows_respect_seq_len_and_positions_restart_per_sample(stream_factory, tokenizer):
    rows = next(stream_factory(seq_len=512))
    assert all(sum(len(s) for s in row) <= 512 for row in rows)
    batch = collate_packed(rows, tokenizer.pad_token_id)
    assert batch["position_ids"].shape == (3, *batch["input_ids"].shape)
    second_start = len(rows[0][0])
    assert batch["position_ids"][0, 0, second_start].item() == 0
    assert batch["labels"][0, second_start].item() == -100


def test_micro_batches_resume_exactly_from_their_state(stream_factory):
    uninterrupted = stream_factory()
    for _ in range(3):
        next(uninterrupted)
    state = json.loads(json.dumps(uninterrupted.state_dict()))
    expected = [[[s.location for s in row] for row in next(uninterrupted)] for _ in range(3)]
    resumed = stream_factory()
    resumed.load_state_dict(state)
    assert [[[s.location for s in row] for row in next(resumed)] for _ in range(3)] == expected


@pytest.fixture(scope="module")
def thinker(_omni_runner_cache):
    """The tiny model's thinker (sdpa, fp32, eval), which has sliding-window layers."""
    import torch
    from transformers import Qwen2_5OmniForConditionalGeneration

    from omni_runner.models.tiny import ensure_tiny_model

    return Qwen2_5OmniForConditionalGeneration.from_pretrained(str(ensure_tiny_model()), dtype=torch.float32).thinker.eval()


@pytest.fixture(scope="module")
def row_across_the_window(stream_factory, thinker):
    """The first of 20 packed rows that holds several samples, one of them longer than the sliding window."""
    from omni_runner.models.load import sliding_window

    window = sliding_window(thinker)
    assert window is not None
    rows = next((rows for rows in itertools.islice(stream_factory(seq_len=384, micro_batch=1), 20)
                 if len(rows[0]) > 1 and max(map(len, rows[0])) > window), None)
    assert rows is not None, "the test needs a row holding several samples, one longer than the window"
    return rows


def _mean_loss(thinker, batches) -> tuple[float, int]:
    """The token-mean next-token loss over `batches`, and how many tokens it averages."""
    import torch

    total, tokens = 0.0, 0
    with torch.no_grad():
        for batch in batches:
            logits = thinker(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask"),
                             position_ids=batch["position_ids"], use_cache=False).logits
            labels = batch["labels"][:, 1:]
            total += torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), labels.flatten(), reduction="sum").item()
            tokens += int((labels != -100).sum())
    return total / tokens, tokens


@pytest.mark.slow
def test_packed_loss_equals_the_per_sample_losses(thinker, row_across_the_window, tokenizer):
    from omni_runner.models.load import sliding_window

    rows = row_across_the_window
    packed = collate_packed(rows, tokenizer.pad_token_id, sliding_window=sliding_window(thinker))
    alone = [collate_padded([s], tokenizer.pad_token_id) for s in rows[0]]
    packed_loss, packed_tokens = _mean_loss(thinker, [packed])
    single_loss, single_tokens = _mean_loss(thinker, alone)
    assert packed_tokens == single_tokens
    assert abs(packed_loss - single_loss) < 1e-5


@pytest.mark.slow
def test_varlen_row_isolates_samples_by_its_position_restarts_alone(thinker, row_across_the_window, tokenizer):
    """No mask travels with a varlen row: transformers cuts attention where the text positions restart
    (here into an sdpa mask, on a GPU into flash-attention's cu_seqlens), sliding window included."""
    rows = row_across_the_window
    varlen = collate_varlen(rows, tokenizer.pad_token_id)
    assert "attention_mask" not in varlen
    alone = [collate_padded([s], tokenizer.pad_token_id) for s in rows[0]]
    varlen_loss, varlen_tokens = _mean_loss(thinker, [varlen])
    single_loss, single_tokens = _mean_loss(thinker, alone)
    assert varlen_tokens == single_tokens
    assert abs(varlen_loss - single_loss) < 1e-5


def _flash_attention_missing() -> bool:
    import importlib.util

    import torch

    return not torch.cuda.is_available() or importlib.util.find_spec("flash_attn") is None


@pytest.mark.slow
@pytest.mark.skipif(_flash_attention_missing(), reason="needs a CUDA GPU with flash-attn installed")
def test_flash_attention_varlen_row_equals_the_per_sample_losses(row_across_the_window, tokenizer):
    import torch
    from transformers import Qwen2_5OmniForConditionalGeneration

    from omni_runner.models.tiny import ensure_tiny_model

    flash = Qwen2_5OmniForConditionalGeneration.from_pretrained(
        str(ensure_tiny_model()), dtype=torch.bfloat16, attn_implementation="flash_attention_2").thinker.eval().cuda()
    rows = row_across_the_window
    on_gpu = [{k: v.cuda() if torch.is_tensor(v) else v for k, v in batch.items()}
              for batch in [collate_varlen(rows, tokenizer.pad_token_id), *[collate_padded([s], tokenizer.pad_token_id) for s in rows[0]]]]
    varlen_loss, _ = _mean_loss(flash, on_gpu[:1])
    single_loss, _ = _mean_loss(flash, on_gpu[1:])
    assert abs(varlen_loss - single_loss) < 2e-2  # bf16 on both sides


def test_varlen_positions_give_flash_attention_one_sequence_per_sample():
    import torch
    from transformers.modeling_flash_attention_utils import (
        _is_packed_sequence,
        prepare_fa_kwargs_from_position_ids,
    )

    rows = [[Sample([5, 6, 7, 8], [-100, 6, 7, 8], "c", "d", "d:1"), Sample([5, 6], [-100, 6], "c", "d", "d:2")],
            [Sample([5, 6, 7], [-100, 6, 7], "c", "d", "d:3")]]
    batch = collate_varlen(rows, pad_id=0)
    assert batch["input_ids"].shape == (1, 9) and batch["position_ids"].shape == (4, 1, 9)
    text_positions = batch["position_ids"][0]
    assert text_positions.tolist() == [[0, 1, 2, 3, 0, 1, 0, 1, 2]]
    assert batch["labels"].tolist() == [[-100, 6, 7, 8, -100, 6, -100, 6, 7]]
    assert _is_packed_sequence(text_positions, batch_size=1)
    (cu_seqlens, _), _ = prepare_fa_kwargs_from_position_ids(text_positions)
    assert cu_seqlens.tolist() == [0, 4, 6, 9]
    assert torch.equal(batch["position_ids"][1:], text_positions.expand(3, 1, 9))  # text samples' rotary ids


def test_fractional_positions_of_a_media_sample_survive_every_layout():
    """Qwen3-Omni places a video's frames at their times: half positions stay halves, in any batch layout."""
    import torch

    video = Sample([5, 6, 7, 8], [-100, 6, 7, 8], "c", "d", "d:1", media={"video_grid_thw": torch.tensor([[1, 2, 2]])},
                   positions=torch.tensor([0.0, 1.0, 1.5, 2.5]).expand(3, 4))
    text = Sample([5, 6], [-100, 6], "c", "d", "d:2")
    for batch in (collate_packed([[video, text]], 0), collate_padded([video, text], 0), collate_varlen([[video, text]], 0)):
        assert batch["position_ids"].dtype == torch.float32
        assert batch["position_ids"][-1, 0, :4].tolist() == [0.0, 1.0, 1.5, 2.5]
    assert collate_packed([[text]], 0)["position_ids"].dtype == torch.long


def test_sliding_window_mask_sees_only_the_last_window_tokens_of_the_same_sample():
    import torch

    mask = block_diagonal_causal_mask(torch.tensor([[0, 0, 0, 0, 1, 1, 1, PAD_SEQUENCE_ID]]), window=2)
    seen = (mask[0, 0] == 0).nonzero().tolist()
    assert seen == [[0, 0], [1, 0], [1, 1], [2, 1], [2, 2], [3, 2], [3, 3], [4, 4], [5, 4], [5, 5], [6, 5], [6, 6], [7, 7]]


def test_packed_batches_for_a_sliding_window_model_carry_one_mask_per_layer_type():
    import torch

    rows = [[Sample([5, 6, 7, 8], [-100, 6, 7, 8], "c", "d", "d:1"), Sample([5, 6, 7], [-100, 6, 7], "c", "d", "d:2")]]
    sequence_ids = torch.tensor([[0, 0, 0, 0, 1, 1, 1]])
    masks = collate_packed(rows, pad_id=0, sliding_window=2)["attention_mask"]
    assert torch.equal(masks["full_attention"], block_diagonal_causal_mask(sequence_ids))
    assert torch.equal(masks["sliding_attention"], block_diagonal_causal_mask(sequence_ids, window=2))
    assert torch.is_tensor(collate_packed(rows, pad_id=0)["attention_mask"])


def test_padded_batches_mask_padding_out_of_attention_and_loss(tokenizer):
    short = Sample([5, 6, 7], [-100, 6, 7], "cot", "d", "d:1")
    long = Sample([5, 6, 7, 8, 9], [-100, -100, 7, 8, 9], "streaming", "d", "d:2")
    batch = collate_padded([short, long], pad_id=0)
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert batch["labels"][0].tolist() == [-100, 6, 7, -100, -100]
    assert batch["capabilities"] == ["cot", "streaming"] and batch["token_capability"][1, 0].item() == 1


def test_records_too_long_to_render_are_skipped_counted_and_kept_across_resume(tokenizer):
    sources = build_sources(RECIPE, Path("."))
    batches = MicroBatches(SampleStream(sources, mixer_for(RECIPE, sources), tokenizer, 120), 2, 120, True)
    rows = [next(batches) for _ in range(4)]
    assert all(s.capability != "tool-calling" for batch in rows for row in batch for s in row)
    report = batches.stream.report()
    assert report["skipped"]["xlam"] > 0 and report["skipped"]["cot"] == 0
    assert report["bad_records"][0]["reason"].endswith("more than training.seq_len = 120")
    state = json.loads(json.dumps(batches.state_dict()))
    resumed = MicroBatches(SampleStream(sources, mixer_for(RECIPE, sources), tokenizer, 120), 2, 120, True)
    resumed.load_state_dict(state)
    remembered = [reason for records in state["unrenderable"].values() for _, reason in records]
    assert remembered and [b["reason"] for b in resumed.stream.report()["bad_records"]] == remembered
