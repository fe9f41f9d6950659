"""Pack rendered samples into rows of at most `seq_len` tokens, and collate rows into tensors.

Packing is first-fit within one micro-batch: each sample goes into the first of the batch's rows
with room left; the first sample that fits in none closes the batch and opens the next one. No
sample is ever split across rows; a sample longer than `seq_len` never gets here (rendering counts
it as a bad record, reason "N tokens after rendering, more than training.seq_len").

Attention must not cross sample boundaries. With transformers 5.x and sdpa, restarting
`position_ids` per sample does not isolate packed Qwen2.5-Omni samples, so packed rows carry a 4D
block-diagonal causal mask (`block_diagonal_causal_mask`) as well as per-sample positions; for
Qwen2.5-Omni's multimodal rope the positions are repeated over its 3 axes: (3, batch, seq).
A model with sliding-window layers gets one such mask per layer type (`packed_attention_mask`).
The first label of every sample is -100: the shifted loss would otherwise ask the previous sample's
last token to predict it. torch is imported inside the functions that need it.

Media samples carry their processor tensors (`Sample.media`); a batch concatenates them in the order
their placeholders occur in the flattened (row-major) batch, which is the order the thinker scatters
features into placeholder tokens. Their positions (`Sample.positions`) come from the model's own
`get_rope_index`, computed when the sample is prepared, since a media sample's rotary ids are not a
plain count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omni_runner.data.generation import generation_batch
from omni_runner.data.render import IGNORE_INDEX

PAD_SEQUENCE_ID = -1
VARLEN_ATTENTION = ("flash_attention_2", "flash_attention_3")  # attention kernels that take `collate_varlen` rows
MROPE_AXES = 3


@dataclass
class Sample:
    """A rendered training sample and where it came from."""

    input_ids: list[int]
    labels: list[int]
    capability: str
    dataset: str
    location: str
    media: dict[str, Any] | None = None  # processor tensors (multimodal.MEDIA_KEYS) for this sample alone
    use_audio_in_video: bool = False
    positions: Any = None  # (3, len) multimodal rotary positions of a media sample
    generation: Any = None  # data.generation.GenerationTarget: the image or video its query positions produce

    def __len__(self) -> int:
        return len(self.input_ids)


def first_fit(lengths: list[int], seq_len: int, rows: int) -> tuple[list[list[int]], int]:
    """Place items (by length, in order) first-fit into at most `rows` rows of `seq_len` tokens.

    Returns the rows (item indices) and how many items were placed: placement stops at the first
    item that fits nowhere, so the order of the stream is kept. Pure.
    """
    packed: list[list[int]] = []
    free: list[int] = []
    for index, length in enumerate(lengths):
        if length > seq_len:
            raise ValueError(f"item {index} has {length} tokens, more than seq_len {seq_len}")
        row = next((r for r, room in enumerate(free) if room >= length), None)
        if row is None:
            if len(packed) == rows:
                return packed, index
            packed.append([])
            free.append(seq_len)
            row = len(packed) - 1
        packed[row].append(index)
        free[row] -= length
    return packed, len(lengths)


def block_diagonal_causal_mask(sequence_ids: Any, dtype: Any = None, window: int | None = None) -> Any:
    """The 4D additive mask (batch, 1, seq, seq): token i sees token j iff j <= i in the same sample
    (and, with `window`, i - j < window: what a sliding-window layer sees, as transformers defines it).

    `sequence_ids` (batch, seq) numbers the samples of each row; padding is PAD_SEQUENCE_ID and sees
    only itself, so no softmax row is empty (an all-masked row would give NaN).
    """
    import torch

    dtype = dtype or torch.float32
    length = sequence_ids.shape[-1]
    same = sequence_ids[:, :, None] == sequence_ids[:, None, :]
    causal = torch.ones(length, length, dtype=torch.bool, device=sequence_ids.device).tril()
    if window is not None:
        causal = causal.triu(-(window - 1))
    allowed = same & causal & (sequence_ids[:, None, :] != PAD_SEQUENCE_ID)
    allowed |= torch.eye(length, dtype=torch.bool, device=sequence_ids.device)
    mask = torch.zeros(allowed.shape, dtype=dtype, device=sequence_ids.device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[:, None, :, :]


def packed_attention_mask(sequence_ids: Any, dtype: Any = None, sliding_window: int | None = None) -> Any:
    """The mask a packed batch hands the model.

    A prepared 4D mask reaches every layer unchanged, so a model with sliding-window layers would
    let them see the whole sample in training but only the window at inference. For such a model
    the mask is a dict by layer type, the form transformers' decoders accept in place of a tensor.
    """
    full = block_diagonal_causal_mask(sequence_ids, dtype)
    if sliding_window is None:
        return full
    return {"full_attention": full, "sliding_attention": block_diagonal_causal_mask(sequence_ids, dtype, sliding_window)}


def _sample_positions(sample: Sample) -> Any:
    """(3, len) positions of one sample: the model's multimodal ids for media, a count for text."""
    import torch

    if sample.media:
        if sample.positions is None:
            raise ValueError(f"{sample.location}: a media sample was prepared without its rotary positions")
        return sample.positions
    return torch.arange(len(sample))[None].expand(MROPE_AXES, len(sample))


def _positions_dtype(samples: list[Sample]) -> Any:
    """Integer positions, unless a sample's own are fractional: Qwen3-Omni places a video's frames at
    their times (half positions at 2 frames a second, say) and the text after it at the next fraction,
    which integer positions would floor into another rotation than the model's at inference."""
    import torch

    fractional = any(s.positions is not None and torch.is_floating_point(s.positions) for s in samples)
    return torch.float32 if fractional else torch.long


def media_batch(samples: list[Sample]) -> dict[str, Any]:
    """The samples' media tensors concatenated in sample order (empty when none has media)."""
    import torch

    from omni_runner.data.external import EXTERNAL_KEYS
    from omni_runner.data.multimodal import MEDIA_KEYS

    batch = {}
    for key in (*MEDIA_KEYS, *EXTERNAL_KEYS):
        parts = [s.media[key] for s in samples if s.media and key in s.media]
        if key in ("input_features", "feature_attention_mask") and parts:
            # Audio features are as long as each sample's longest clip; the mask marks the real frames.
            frames = max(part.shape[-1] for part in parts)
            parts = [torch.nn.functional.pad(part, (0, frames - part.shape[-1])) for part in parts]
        if parts:
            batch[key] = torch.cat(parts)
    return batch


def _capability_index(rows: list[list[Sample]]) -> list[str]:
    return sorted({s.capability for row in rows for s in row})


def _packed_rows(rows: list[list[Sample]], pad_id: int) -> dict[str, Any]:
    """The tensors every packed layout shares: input_ids, labels (the first of each sample -100),
    position_ids (3, B, L) restarting per sample, text_positions (B, L) counting each sample's
    tokens, sequence_ids, token_capability, capabilities, and the media and generation parts."""
    import torch

    length = max(sum(len(s) for s in row) for row in rows)
    capabilities = _capability_index(rows)
    shape = (len(rows), length)
    input_ids = torch.full(shape, pad_id, dtype=torch.long)
    labels = torch.full(shape, IGNORE_INDEX, dtype=torch.long)
    position_ids = torch.zeros((MROPE_AXES, *shape), dtype=_positions_dtype([s for row in rows for s in row]))
    text_positions = torch.zeros(shape, dtype=torch.long)
    sequence_ids = torch.full(shape, PAD_SEQUENCE_ID, dtype=torch.long)
    token_capability = torch.full(shape, -1, dtype=torch.long)
    placed = []
    for r, row in enumerate(rows):
        start = 0
        for number, sample in enumerate(row):
            end = start + len(sample)
            input_ids[r, start:end] = torch.tensor(sample.input_ids)
            labels[r, start:end] = torch.tensor(sample.labels)
            labels[r, start] = IGNORE_INDEX
            position_ids[:, r, start:end] = _sample_positions(sample)
            text_positions[r, start:end] = torch.arange(len(sample))
            sequence_ids[r, start:end] = number
            token_capability[r, start:end] = capabilities.index(sample.capability)
            placed.append((r * length + end, sample))
            start = end
    return {
        "input_ids": input_ids,
        "labels": labels,
        "position_ids": position_ids,
        "text_positions": text_positions,
        "sequence_ids": sequence_ids,
        "token_capability": token_capability,
        "capabilities": capabilities,
        **media_batch([sample for row in rows for sample in row]),
        **generation_batch(placed),
    }


def collate_packed(
    rows: list[list[Sample]], pad_id: int, *, mrope: bool = True, dtype: Any = None, sliding_window: int | None = None,
) -> dict[str, Any]:
    """Tensors for packed rows: input_ids, labels, position_ids (restarting per sample; (3, B, L) with
    `mrope`, a media sample's own), attention_mask (`packed_attention_mask`: 4D
    block-diagonal causal, by layer type when the model has sliding-window layers of `sliding_window`
    tokens), sequence_ids, token_capability (index into `capabilities`, -1 on padding) for
    per-capability losses, and the media tensors (`media_batch`)."""
    batch = _packed_rows(rows, pad_id)
    text_positions = batch.pop("text_positions")
    if not mrope:
        batch["position_ids"] = text_positions
    batch["attention_mask"] = packed_attention_mask(batch["sequence_ids"], dtype, sliding_window)
    return batch


def collate_varlen(rows: list[list[Sample]], pad_id: int, *, mrope: bool = True) -> dict[str, Any]:
    """Tensors for variable-length attention (flash-attention's varlen kernels): every sample of the
    micro-batch end to end in one row, with no padding and no attention mask.

    transformers finds the samples from the restarts of the text positions: with one row and no
    mask, its flash-attention path turns them into `cu_seqlens`, so each sample attends only to
    itself at no cost for the others, and sliding-window layers keep their window. Qwen-Omni thinkers
    take those text positions as the first of four position rows, (4, 1, N), ahead of their
    multimodal ones; without `mrope` the text positions are the position_ids."""
    import torch

    batch = _packed_rows([[sample for row in rows for sample in row]], pad_id)
    text_positions = batch.pop("text_positions")
    multimodal = batch["position_ids"]
    batch["position_ids"] = torch.cat([text_positions[None].to(multimodal.dtype), multimodal]) if mrope else text_positions
    return batch


def collate_padded(samples: list[Sample], pad_id: int, *, mrope: bool = True) -> dict[str, Any]:
    """Tensors for one sample per row, right-padded to the longest: the baseline packing is measured
    against. attention_mask is the usual 2D 1/0 padding mask; media as in `collate_packed`."""
    import torch

    length = max(len(s) for s in samples)
    capabilities = _capability_index([samples])
    shape = (len(samples), length)
    input_ids = torch.full(shape, pad_id, dtype=torch.long)
    labels = torch.full(shape, IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros(shape, dtype=torch.long)
    token_capability = torch.full(shape, -1, dtype=torch.long)
    for r, sample in enumerate(samples):
        input_ids[r, : len(sample)] = torch.tensor(sample.input_ids)
        labels[r, : len(sample)] = torch.tensor(sample.labels)
        attention_mask[r, : len(sample)] = 1
        token_capability[r, : len(sample)] = capabilities.index(sample.capability)
    position_ids = torch.arange(length, dtype=_positions_dtype(samples)).expand(MROPE_AXES, *shape).clone()
    for r, sample in enumerate(samples):
        if sample.media:
            position_ids[:, r, : len(sample)] = _sample_positions(sample)
    return {
        "input_ids": input_ids,
        "labels": labels,
        "position_ids": position_ids if mrope else position_ids[0],
        "attention_mask": attention_mask,
        "token_capability": token_capability,
        "capabilities": capabilities,
        **media_batch(samples),
        **generation_batch([(r * length + len(sample), sample) for r, sample in enumerate(samples)]),
    }
