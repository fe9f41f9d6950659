"""The whole training loop, data included, against plain PyTorch loops over the same records.

Every runner is a fresh process on the same work: the tiny Qwen2.5-Omni (full fine-tuning of its
language model, the towers frozen), the same generated ShareGPT tool-call records (one system prompt,
about 80 tokens each), the same micro-batch, sequence length, steps, learning rate, warm-up, cosine
schedule, weight decay and clipping:

- omni-run: the real trainer child (`python -m omni_runner.train RUN_DIR`, prepared by `prepare_run`
  as `omni-run RECIPE` prepares it), once per `--workers` count (`training.num_workers`); its
  samples/s come from its own step events;
- plain loop: `AutoTokenizer` + the thinker class's `from_pretrained`, and a loop that reads the
  records, renders them with the same chat template (assistant-only labels, as omni-run trains)
  and pads them inside the loop, then forward with `labels`, backward, clip, AdamW;
- plain loop over pre-tokenised tensors: the same, with every record tokenised before the first step
  (the upper bound: no data work in the loop at all).

Runners alternate, `--repeat` rounds; figures are medians over the rounds. Samples/s are over the
steady-state steps (after `--warmup` steps); time to first step is from starting the process to the
end of its first optimizer step (`prepare_run`, which the omni-run parent does before starting the
child, is timed on its own). Goal: omni-run at least 0.97x the plain loop, data included.

    python benchmarks/end_to_end.py [--records 4000] [--steps 60] [--repeat 2] [--workers 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine_summary, update_section

REPO = Path(__file__).resolve().parents[1]
GOAL = 0.97
SYSTEM = "Call one tool: get_weather, convert_currency or find_flights."
CITIES = ["Paris", "Lima", "Oslo", "Cairo", "Tokyo", "Quito", "Perth", "Dakar", "Hanoi", "Bern"]
CURRENCIES = ["EUR", "USD", "JPY", "GBP", "CHF", "NOK"]


def generate_records(path: Path, count: int) -> None:
    """`count` ShareGPT tool-call records with one system prompt, deterministic."""
    lines = []
    for i in range(count):
        a, b = CITIES[i % len(CITIES)], CITIES[(i * 7 + 3) % len(CITIES)]
        kind = i % 3
        if kind == 0:
            ask = f"What is the weather in {a} today, in {'celsius' if i % 2 else 'fahrenheit'}?"
            call = {"name": "get_weather", "arguments": {"city": a, "unit": "celsius" if i % 2 else "fahrenheit"}}
        elif kind == 1:
            source, target = CURRENCIES[i % 6], CURRENCIES[(i + 1 + i // 6) % 6]
            ask = f"Convert {10 + i % 990} {source} to {target}, please."
            call = {"name": "convert_currency", "arguments": {"amount": 10 + i % 990, "source": source, "target": target}}
        else:
            ask = f"Find me flights from {a} to {b} next week."
            call = {"name": "find_flights", "arguments": {"origin": a, "destination": b}}
        reply = "<tool_call>\n" + json.dumps(call) + "\n</tool_call>"
        lines.append(json.dumps({"system": SYSTEM, "conversations": [{"from": "human", "value": ask},
                                                                     {"from": "gpt", "value": reply}]}))
    path.write_text("\n".join(lines) + "\n")


def recipe_overrides(records: Path, args: argparse.Namespace, workers: int) -> list[str]:
    return [
        "datasets={calls: {path: " + json.dumps(str(records)) + ", format: sharegpt}}",
        "capabilities={tool-calling: {weight: 1.0, datasets: [calls]}}",
        "training.method=full", f"training.micro_batch={args.batch}", "training.grad_accum=1",
        f"training.seq_len={args.seq_len}", f"training.max_steps={args.steps}", f"training.lr={args.lr}",
        f"training.packing={args.packing}", f"training.num_workers={workers}", "training.log_every=1",
        "eval.at_end=false", "eval.datasets=[]", "controller.checkpoint.every_steps=0", "controller.cooldown.every_steps=0",
    ]


def run_omni(tmp: Path, records: Path, args: argparse.Namespace, workers: int, round_: int) -> dict[str, float]:
    from omni_runner.run.events import read_events
    from omni_runner.run.prepare import prepare_run

    started = time.perf_counter()
    run = prepare_run(REPO / "recipes" / "tiny_omni.yaml", recipe_overrides(records, args, workers), None,
                      run_dir=tmp / f"omni-w{workers}-{round_}")
    prepare_s = time.perf_counter() - started
    spawned = time.time()
    peak = _child([sys.executable, "-m", "omni_runner.train", str(run.path)])
    steps = [e for e in read_events(run.events) if e["type"] == "step"]
    waiting = statistics.median(e["data_wait_s"] / e["step_s"] for e in steps[args.warmup:])
    samples = [e["samples_per_s"] * e["step_s"] for e in steps]  # packed rows hold several samples
    return {**_rates([e["t"] for e in steps], spawned, args, samples), "prepare_s": prepare_s, "data_wait": waiting,
            "peak_rss_mib": peak}


def run_plain(tmp: Path, records: Path, args: argparse.Namespace, pretokenised: bool, round_: int) -> dict[str, float]:
    out = tmp / f"plain-{pretokenised}-{round_}.json"
    command = [sys.executable, __file__, "--plain-child", str(records), str(out), "--batch", str(args.batch),
               "--seq-len", str(args.seq_len), "--steps", str(args.steps), "--lr", str(args.lr)]
    spawned = time.time()
    peak = _child([*command, *(["--pretokenised"] if pretokenised else [])])
    return {**_rates(json.loads(out.read_text()), spawned, args), "peak_rss_mib": peak}


def _child(command: list[str], env: dict[str, str] | None = None) -> float:
    """Run one runner's process to its end (in `env`, else this one's with the repository importable) and
    return its peak resident memory in MiB; its output is shown only when it fails."""
    env = env or {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode:
            output.seek(0)
            sys.exit(f"{' '.join(command)} failed ({process.returncode}):\n{output.read()[-6000:].decode(errors='replace')}")
    return usage.ru_maxrss / 1024  # kilobytes on Linux


def _rates(ends: list[float], spawned: float, args: argparse.Namespace,
           samples: list[float] | None = None) -> dict[str, float]:
    """Samples/s over the steps after the first `args.warmup` (`samples`: each step's, when not `args.batch`
    rows of one sample each, as with packing), the same as the median of the steps' own rates (which a
    shared machine's bursts of load move less), and the seconds from `spawned` to the end of the first step."""
    steady = ends[args.warmup:]
    counted = (samples or [args.batch] * len(ends))[args.warmup + 1:]
    step_rates = [n / (b - a) for n, a, b in zip(counted, steady[:-1], steady[1:], strict=True)]
    return {"samples_per_s": sum(counted) / (steady[-1] - steady[0]), "median_step_samples_per_s": statistics.median(step_rates),
            "first_step_s": ends[0] - spawned}


def plain_child(argv: list[str]) -> None:
    """A plain PyTorch loop (what a person writes in an afternoon), in its own process."""
    parser = argparse.ArgumentParser()
    parser.add_argument("records")
    parser.add_argument("out")
    for name in ("batch", "seq-len", "steps"):
        parser.add_argument(f"--{name}", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--pretokenised", action="store_true")
    args = parser.parse_args(argv)

    import torch
    import transformers

    from omni_runner.models.tiny import ensure_tiny_model

    torch.manual_seed(42)
    folder = ensure_tiny_model()
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(
        folder, dtype=torch.float32, attn_implementation="sdpa")
    model.config.use_cache = False
    for name, parameter in model.named_parameters():  # the language model trains, the towers stay frozen
        parameter.requires_grad = not name.startswith(("model.visual.", "model.audio_tower."))
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=args.lr, weight_decay=0.0)
    scheduler = transformers.get_cosine_schedule_with_warmup(optimizer, 5, args.steps)

    def tokenise(line: str) -> tuple[list[int], list[int]]:
        record = json.loads(line)
        roles = {"human": "user", "gpt": "assistant"}
        messages = [{"role": "system", "content": record["system"]}]
        messages += [{"role": roles[turn["from"]], "content": turn["value"]} for turn in record["conversations"]]
        prompt = tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True, tokenize=True, return_dict=False)
        full = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False)[:args.seq_len]
        return full, [-100] * len(prompt) + full[len(prompt):]

    def collate(pairs: list[tuple[list[int], list[int]]]) -> dict[str, torch.Tensor]:
        length = max(len(ids) for ids, _ in pairs)
        input_ids = torch.full((len(pairs), length), tokenizer.pad_token_id)
        labels = torch.full((len(pairs), length), -100)
        mask = torch.zeros((len(pairs), length), dtype=torch.long)
        for row, (ids, targets) in enumerate(pairs):
            input_ids[row, :len(ids)], labels[row, :len(ids)], mask[row, :len(ids)] = (
                torch.tensor(ids), torch.tensor(targets), 1)
        return {"input_ids": input_ids, "labels": labels, "attention_mask": mask}

    lines = Path(args.records).read_text().splitlines()
    tokenised = [tokenise(line) for line in lines] if args.pretokenised else None
    ends = []
    for step in range(args.steps):
        picks = [(step * args.batch + i) % len(lines) for i in range(args.batch)]
        batch = collate([tokenised[i] for i in picks] if tokenised else [tokenise(lines[i]) for i in picks])
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        float(loss.detach())  # read the loss every step, as a training loop that logs does
        ends.append(time.time())
    Path(args.out).write_text(json.dumps(ends))


def main() -> int:
    if sys.argv[1:2] == ["--plain-child"]:
        plain_child(sys.argv[2:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=4000, help="generated records (default %(default)s)")
    parser.add_argument("--batch", type=int, default=32, help="micro-batch (default %(default)s)")
    parser.add_argument("--seq-len", type=int, default=128, help="training.seq_len (default %(default)s)")
    parser.add_argument("--steps", type=int, default=60, help="optimizer steps a run (default %(default)s)")
    parser.add_argument("--warmup", type=int, default=10, help="first steps left out of samples/s (default %(default)s)")
    parser.add_argument("--lr", type=float, default=2e-3, help="learning rate (default %(default)s)")
    parser.add_argument("--packing", default="false", help="omni-run's training.packing (default %(default)s)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0], help="omni-run training.num_workers to run")
    parser.add_argument("--repeat", type=int, default=2, help="rounds of every runner (default %(default)s)")
    parser.add_argument("--no-record", action="store_true", help="print only; leave docs/performance.md alone")
    args = parser.parse_args()

    from omni_runner.models.tiny import ensure_tiny_model

    ensure_tiny_model()
    runners = {**{f"omni-run, num_workers {w}": w for w in args.workers}, "plain loop": "plain",
               "plain loop, pre-tokenised": "pretokenised"}
    results: dict[str, list[dict[str, float]]] = {name: [] for name in runners}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        records = tmp / "calls.jsonl"
        generate_records(records, args.records)
        for round_ in range(args.repeat):
            for name, kind in runners.items():
                if isinstance(kind, int):
                    result = run_omni(tmp, records, args, kind, round_)
                else:
                    result = run_plain(tmp, records, args, kind == "pretokenised", round_)
                results[name].append(result)
                print(f"round {round_ + 1} {name}: {result['samples_per_s']:.1f} samples/s, "
                      f"first step after {result['first_step_s']:.1f} s", flush=True)

    median = {name: {key: statistics.median(r[key] for r in rows) for key in rows[0]} for name, rows in results.items()}
    plain = median["plain loop"]
    lines = []
    for name, row in median.items():
        ratio = row["samples_per_s"] / plain["samples_per_s"]
        prepare = f" (+ {row['prepare_s']:.2f} s prepare_run)" if "prepare_s" in row else ""
        waiting = f"{row['data_wait']:.1%}" if "data_wait" in row else "not measured"
        lines.append(f"| {name} | {row['samples_per_s']:.1f} | {ratio:.3f} | {row['first_step_s']:.1f} s{prepare} | {waiting} |")
    best = max((n for n in median if n.startswith("omni-run")), key=lambda n: median[n]["samples_per_s"])
    ratio = median[best]["samples_per_s"] / plain["samples_per_s"]
    verdict = f"{best}: {ratio:.3f}x the plain loop (goal ≥ {GOAL}x: {'meets' if ratio >= GOAL else 'misses'})"
    table = ("| runner | samples/s | × plain loop | time to first step | step waiting on data |\n|---|---|---|---|---|\n"
             + "\n".join(lines))
    print(table + "\n" + verdict)
    if not args.no_record:
        command = " ".join(["python benchmarks/end_to_end.py", *sys.argv[1:]])
        update_section("end_to_end", f"""
## End to end, data included, against a plain PyTorch loop

`{command}` on {machine_summary()} (1-minute load average at the end: {os.getloadavg()[0]:.1f}):
{args.records} generated ShareGPT tool calls (one system prompt, ~80 tokens each), the tiny Qwen2.5-Omni
(full fine-tuning of its language model), micro-batch {args.batch}, seq_len {args.seq_len}, packing {args.packing},
{args.steps} steps, lr {args.lr}; every runner a fresh process, runners alternating, medians of {args.repeat} rounds;
samples/s over the steps after the first {args.warmup}.

{table}

{verdict}.
""")
    return 0


if __name__ == "__main__":
    sys.exit(main())
