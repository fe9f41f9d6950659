"""The loss from full logits against the chunked loss from hidden states: peak memory and time, side by side.

    python benchmarks/chunked_loss.py [--tokens 4096] [--hidden 896] [--vocab 151936] [--repeat 3]

Each measurement runs in a fresh process (so one mode's allocations cannot hide the other's peak): the
forward and backward of the language-model loss of one micro-batch at Qwen2.5's vocabulary (fp32, as CPU runs train), with half
the positions prompt tokens (ignored by the loss), as in supervised fine-tuning. Peak memory is the
process's peak resident set above what it held before the loss; on CPU that is where the tensors live.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

_CHILD = """
import json, resource, sys, time
import torch
from omni_runner.train.losses import IGNORE_INDEX, head_token_losses, token_losses
mode, tokens, hidden_size, vocab = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.manual_seed(0)
head = torch.nn.Linear(hidden_size, vocab, bias=False)
hidden = torch.randn(1, tokens, hidden_size, requires_grad=True)
targets = torch.randint(0, vocab, (1, tokens))
targets[:, : tokens // 2] = IGNORE_INDEX
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
losses = token_losses(head(hidden), targets) if mode == "full" else head_token_losses(hidden, head, targets)
losses.sum().backward()
elapsed = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": elapsed, "peak_mib": (peak - before) / 1024, "loss": float(losses.sum())}))
"""


def measure(mode: str, tokens: int, hidden: int, vocab: int) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", _CHILD, mode, str(tokens), str(hidden), str(vocab)],
                          capture_output=True, text=True, check=True, cwd=REPO)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    from report import machine_summary, update_section

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--hidden", type=int, default=256, help="the width feeding the head: it sets the time, not the logits' size")
    parser.add_argument("--vocab", type=int, default=151_936)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    runs: dict[str, list[dict[str, float]]] = {"full": [], "chunked": []}
    for _ in range(args.repeat):
        for mode, rows in runs.items():  # alternate, so drifting machine load falls on both
            rows.append(measure(mode, args.tokens, args.hidden, args.vocab))
    med = {mode: {k: statistics.median(r[k] for r in rows) for k in ("seconds", "peak_mib", "loss")} for mode, rows in runs.items()}
    assert abs(med["full"]["loss"] - med["chunked"]["loss"]) <= 1e-3 * abs(med["full"]["loss"]), med
    table = (
        f"`python benchmarks/chunked_loss.py --tokens {args.tokens} --hidden {args.hidden} --vocab {args.vocab} "
        f"--repeat {args.repeat}` on {machine_summary()}: one micro-batch's LM loss, forward and backward, fp32 as CPU runs train, "
        f"half the positions prompt tokens; medians of {args.repeat} fresh processes per mode, alternating.\n\n"
        "| loss | peak memory above start | time |\n|---|---|---|\n"
        f"| full logits (`token_losses(head(hidden))`) | {med['full']['peak_mib']:.0f} MiB | {med['full']['seconds']:.2f} s |\n"
        f"| chunked from hidden states (`head_token_losses`) | {med['chunked']['peak_mib']:.0f} MiB | {med['chunked']['seconds']:.2f} s |\n"
        f"| ratio chunked / full | {med['chunked']['peak_mib'] / med['full']['peak_mib']:.2f}x | "
        f"{med['chunked']['seconds'] / med['full']['seconds']:.2f}x |\n\n"
        "The two losses agree to float tolerance (the script checks it). The chunked loss computes logits for "
        "target positions only, and keeps none between forward and backward."
    )
    heading = "## Language-model loss without full logits\n\n"
    print(heading + table)
    if not args.no_record:
        update_section("chunked_loss", heading + table)


if __name__ == "__main__":
    main()
