"""`training.packing: auto`: pack or pad, decided from the measured token lengths of a stage's samples.

Both layouts are simulated on the measured lengths, in stream order, exactly as `MicroBatches` forms
micro-batches: padded rows pad every sample of a micro-batch to its longest; packed rows take
samples first-fit into at most `micro_batch` rows of `seq_len` tokens, and collation pads the rows
to the longest row. The *fill* of a layout is the share of real tokens in the tensors it hands the
model, so fill is what the model's work buys. Packing wins when its fill beats padding's by more
than what the packed path costs on its own: its dense block-diagonal mask keeps sdpa off its fast
causal path. That cost was measured where packing can gain nothing (80-token samples that cannot
share 128-token rows: 92.7 against 100.1 samples/s, issue 19), about 8 %, so packing is chosen only
above `PACKED_PATH_COST`.

Under flash-attention (`base_model.attn_implementation: flash_attention_2`) packed samples go end to
end in one row with no mask (`collate_varlen`): nothing is padded and nothing costs extra, so packing
wins whenever padding would waste a token. `auto` attention is decided on the machine that trains,
so the plan counts it as the mask path. Pure: no I/O, no torch.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from omni_runner.data.packing import first_fit

PACKED_PATH_COST = 0.10  # packed fill must beat padded fill by this fraction
MEASURED_SAMPLES = 256  # draws of the stage's mixture whose lengths are measured


@dataclass(frozen=True)
class PackingChoice:
    pack: bool
    padded_fill: float
    packed_fill: float
    samples: int
    median: float
    p95: int
    per_row: float  # samples a packed row holds on average
    varlen: bool = False

    def decision(self, seq_len: int) -> dict[str, str]:
        """The plan's decision entry: what was chosen, and the measured numbers it was chosen from."""
        gain = self.packed_fill / self.padded_fill if self.padded_fill else 0.0
        lengths = (f"{self.samples} samples of the stage's mixture measured: median {self.median:g} tokens, "
                   f"95th percentile {self.p95}, seq_len {seq_len}")
        layout = "one flash-attention varlen row" if self.varlen else f"{self.per_row:.1f} samples a row"
        fills = (f"real tokens in the batch tensors: {self.packed_fill:.0%} packed ({layout}) "
                 f"against {self.padded_fill:.0%} padded, {gain:.2f}x")
        rule = ("packing is chosen when that is above 1x (flash-attention's varlen rows need no mask)" if self.varlen else
                f"packing is chosen when that is above {1 + PACKED_PATH_COST:.2f}x (the cost of its block-diagonal mask)")
        return {"what": f"packing {'on' if self.pack else 'off'} (training.packing: auto)", "why": f"{lengths}; {fills}; {rule}"}


def padded_fill(lengths: list[int], micro_batch: int) -> float:
    """Share of real tokens when every micro-batch of `micro_batch` samples is padded to its longest."""
    batches = [lengths[i:i + micro_batch] for i in range(0, len(lengths), micro_batch)]
    return sum(lengths) / sum(len(batch) * max(batch) for batch in batches)


def packed_rows(lengths: list[int], seq_len: int, micro_batch: int) -> list[list[int]]:
    """The packed micro-batches (rows of sample lengths) `MicroBatches` forms from these lengths in order."""
    batches: list[list[int]] = []
    start = 0
    while start < len(lengths):
        rows, placed = first_fit(lengths[start:], seq_len, micro_batch)
        batches.append([sum(lengths[start + i] for i in row) for row in rows])
        start += placed
    return batches


def packed_fill(lengths: list[int], seq_len: int, micro_batch: int) -> float:
    """Share of real tokens when packed rows are padded to the longest row of their micro-batch."""
    batches = packed_rows(lengths, seq_len, micro_batch)
    return sum(lengths) / sum(len(rows) * max(rows) for rows in batches)


def decide_packing(lengths: list[int], seq_len: int, micro_batch: int, varlen: bool = False) -> PackingChoice:
    """Pack when packed rows carry more than `PACKED_PATH_COST` more real tokens than padded ones, or
    with `varlen` (flash-attention) when padding wastes any token.

    `lengths`: measured token lengths in stream order (samples longer than `seq_len` are left out: the
    trainer skips them as bad records).
    """
    kept = [length for length in lengths if 0 < length <= seq_len]
    if not kept:
        raise ValueError(f"no measured sample fits seq_len {seq_len}")
    padded = padded_fill(kept, micro_batch)
    packed = 1.0 if varlen else packed_fill(kept, seq_len, micro_batch)
    rows = sum(len(batch) for batch in packed_rows(kept, seq_len, micro_batch))
    ordered = sorted(kept)
    return PackingChoice(
        pack=packed > padded * (1 if varlen else 1 + PACKED_PATH_COST),
        padded_fill=padded,
        packed_fill=packed,
        samples=len(kept),
        median=statistics.median(kept),
        p95=ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
        per_row=len(kept) / rows,
        varlen=varlen,
    )
