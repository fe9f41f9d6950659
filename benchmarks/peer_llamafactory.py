"""omni-run against LLaMA-Factory and a plain PyTorch loop, side by side on the same work.

The same tiny Qwen2.5-Omni folder (full fine-tuning of its language model, the towers frozen), the same
records, micro-batch, sequence length, steps, learning rate, warm-up, cosine schedule, weight decay,
clipping and seed, in three runners, each a fresh process, alternating over `--repeat` rounds:

- omni-run: its real trainer child, prepared as `omni-run RECIPE` prepares it (benchmarks/end_to_end.py's
  `run_omni`); samples/s from its step events (a packed row counts the samples it holds);
- LLaMA-Factory: `run_exp` (what `llamafactory-cli train` runs) with a callback that records when each
  optimizer step ends; the same records as a sharegpt data set with the same system prompt, template
  qwen2_omni; a packed step counts the training set's records per packed row;
- the plain PyTorch loop of benchmarks/end_to_end.py (it pads and never packs).

Two kinds of work: end_to_end's tool-call records (~80 tokens, no packing anywhere), and conversations of
1-6 tool calls (~80-400 tokens) with packing (omni-run `training.packing=true`; LLaMA-Factory both
`neat_packing`, which keeps attention inside each sample as omni-run does, and plain `packing`, where packed
samples attend to each other). A runner that fails on a configuration is recorded with the reason and
left out of the later rounds. Then loss continuity: each runner uninterrupted and stopped-and-resumed.
Figures are medians; the table goes into docs/performance.md (section peer_llamafactory).

    bash benchmarks/peer_llamafactory.sh [--steps 30] [--repeat 2] [--resume-steps 10] [--no-record]

Setup is part of the script: LLaMA-Factory gets its own virtual environment under the cache folder
(`$OMNI_RUNNER_CACHE/peer/llamafactory-venv`), built once with `PINS` below. torch and torchvision
are pinned to the releases the project's own environment runs, so all runners share one torch.
torchaudio (a hard requirement of llamafactory 0.9.5) has no release for that torch, and nothing on
the text path calls it, so the venv gets a placeholder distribution named torchaudio (`PLACEHOLDER`)
whose module raises as soon as anything in it is used.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from end_to_end import (
    REPO,
    SYSTEM,
    _child,
    _rates,
    generate_records,
    recipe_overrides,
    run_omni,
    run_plain,
)
from report import machine_summary, update_section

# The samples/s the table and the goals use: the median of the steady steps' own rates. On a machine shared
# with bursts of other work a window's mean moves with when the bursts fell; both are printed.
RATE = "median_step_samples_per_s"
# The rate each goal is judged on. A packed step holds as many samples as fit its rows, so packed steps' own
# rates differ with their samples, not only with the machine, and their median is not the throughput: the
# packing goal is judged on the whole window's rate (samples over seconds), which needs a quiet machine.
GOAL_RATE = {"padded": RATE, "packed": "samples_per_s"}
# The goals: omni-run's samples/s over LLaMA-Factory's without and with packing (on varied lengths).
GOALS = {"padded": 1.3, "packed": 1.8}

# LLaMA-Factory 0.9.5 caps transformers at 5.6, peft at 0.18.1, accelerate at 1.11 and datasets at 4.0.
PINS = ["llamafactory==0.9.5", "transformers==5.6.0", "peft==0.18.1", "accelerate==1.11.0", "datasets==4.0.0",
        "torch==2.14.1", "torchvision==0.29.1"]
PLACEHOLDER_VERSION = "2.14.1+placeholder"
PLACEHOLDER = '''"""Placeholder for torchaudio (omni-runner's benchmarks/peer_llamafactory.py).

torchaudio has no release for this venv's torch; LLaMA-Factory imports it but its text path never
calls it. Any use fails loudly here instead of giving wrong figures.
"""
__version__ = "{version}"


def __getattr__(name):
    raise RuntimeError(f"torchaudio.{{name}}: this venv has a placeholder torchaudio (text-only benchmark)")
'''


def venv_dir() -> Path:
    from omni_runner.paths import cache_dir

    return cache_dir() / "peer" / "llamafactory-venv"


def ensure_venv() -> Path:
    """LLaMA-Factory's python, its venv built on first use (a stamp file records the pins it has)."""
    venv = venv_dir()
    python, stamp = venv / "bin" / "python", venv / "omni-runner-pins.txt"
    wanted = "\n".join([*PINS, f"torchaudio placeholder {PLACEHOLDER_VERSION}"])
    if stamp.exists() and stamp.read_text() == wanted:
        return python
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    source = venv / "placeholder-torchaudio"
    (source / "torchaudio").mkdir(parents=True)
    (source / "torchaudio" / "__init__.py").write_text(PLACEHOLDER.format(version=PLACEHOLDER_VERSION))
    (source / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n\n'
        f'[project]\nname = "torchaudio"\nversion = "{PLACEHOLDER_VERSION}"\n\n'
        '[tool.setuptools]\npackages = ["torchaudio"]\n')
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "--upgrade", "pip", "setuptools", "wheel"], check=True)
    subprocess.run([*pip, "--no-build-isolation", str(source)], check=True)
    subprocess.run([*pip, *PINS], check=True)
    stamp.write_text(wanted)
    return python


# The child LLaMA-Factory runs in: `run_exp` is what `llamafactory-cli train CONFIG` calls, given a
# callback that records when each optimizer step ends, the logged losses, and how many rows the (possibly
# packed) training set has. `--stop-after K` ends training gracefully once checkpoint K is saved.
LF_CHILD = '''
import json, sys, time
from transformers import TrainerCallback
from llamafactory.train.tuner import run_exp

config, out, stop_after = json.loads(open(sys.argv[1]).read()), sys.argv[2], int(sys.argv[3])
seen = {"ends": [], "losses": {}, "rows": None}


class Recorder(TrainerCallback):
    def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):
        seen["rows"] = len(train_dataloader.dataset)

    def on_step_end(self, args, state, control, **kwargs):
        seen["ends"].append(time.time())

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            seen["losses"][state.global_step] = logs["loss"]

    def on_save(self, args, state, control, **kwargs):
        if stop_after and state.global_step >= stop_after:
            control.should_training_stop = True


run_exp(config, callbacks=[Recorder()])
open(out, "w").write(json.dumps(seen))
'''


def varied_records(path: Path, count: int) -> None:
    """`count` conversations of 1 to 6 tool-call exchanges each (end_to_end's records strung together,
    deterministic): about 80 to 400 tokens, the mix packing is for."""
    singles = path.with_suffix(".singles.jsonl")
    generate_records(singles, count * 6)
    turns = [json.loads(line)["conversations"] for line in singles.read_text().splitlines()]
    singles.unlink()
    lines, at = [], 0
    for i in range(count):
        exchanges = 1 + (i * 5) % 6
        lines.append(json.dumps({"system": SYSTEM, "conversations": [t for pair in turns[at:at + exchanges] for t in pair]}))
        at += exchanges
    path.write_text("\n".join(lines) + "\n")


def record_tokens(records: Path) -> float:
    """Mean tokens of a record as all three runners render it (the model's chat template, the record's
    system prompt): tokens/s are samples/s times this."""
    import transformers

    from omni_runner.models.tiny import ensure_tiny_model

    tokenizer = transformers.AutoTokenizer.from_pretrained(ensure_tiny_model())
    roles = {"human": "user", "gpt": "assistant"}
    counts = []
    for line in records.read_text().splitlines():
        record = json.loads(line)
        messages = [{"role": "system", "content": record["system"]}]
        messages += [{"role": roles[t["from"]], "content": t["value"]} for t in record["conversations"]]
        counts.append(len(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False)))
    return statistics.mean(counts)


def lf_config(work: Path, records: Path, a: argparse.Namespace, packing: str, **extra) -> dict:
    """LLaMA-Factory's training arguments for the same work as omni-run's recipe overrides. `packing`:
    "no", "neat" (attention kept inside each sample, as omni-run packs) or "plain" (packed samples attend
    to each other)."""
    from omni_runner.models.tiny import ensure_tiny_model

    (records.parent / "dataset_info.json").write_text(json.dumps({"calls": {
        "file_name": records.name, "formatting": "sharegpt", "columns": {"messages": "conversations", "system": "system"}}}))
    return {
        "model_name_or_path": str(ensure_tiny_model()), "stage": "sft", "do_train": True, "finetuning_type": "full",
        "freeze_vision_tower": True, "freeze_multi_modal_projector": True,  # as omni-run: the language model trains
        "dataset": "calls", "dataset_dir": str(records.parent), "template": "qwen2_omni", "cutoff_len": a.seq_len,
        "overwrite_cache": True, "packing": packing != "no", "neat_packing": packing == "neat",
        "output_dir": str(work), "overwrite_output_dir": True, "logging_steps": 1, "save_strategy": "no",
        "per_device_train_batch_size": a.batch, "gradient_accumulation_steps": 1, "learning_rate": a.lr,
        "max_steps": a.steps, "lr_scheduler_type": "cosine", "warmup_steps": 5, "weight_decay": 0.0,
        "max_grad_norm": 1.0, "seed": 42, "report_to": "none", "dataloader_num_workers": 0, "bf16": False,
        "fp16": False, "plot_loss": False, **extra,
    }


def run_lf(python: Path, work: Path, config: dict, stop_after: int = 0) -> dict:
    """One LLaMA-Factory run in its own process; what it saw, the spawn time and its peak memory."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "config.json").write_text(json.dumps(config))
    (work / "child.py").write_text(LF_CHILD)
    out = work / "seen.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_CACHE": str(work / "datasets-cache"),
           "DISABLE_VERSION_CHECK": "1"}
    env.pop("PYTHONPATH", None)
    spawned = time.time()
    peak = _child([str(python), str(work / "child.py"), str(work / "config.json"), str(out), str(stop_after)], env)
    return {**json.loads(out.read_text()), "spawned": spawned, "peak_rss_mib": peak}


def lf_rates(seen: dict, a: argparse.Namespace, records: int) -> dict[str, float]:
    per_row = records / seen["rows"]  # a packed row holds records / rows samples on average (1 unpacked)
    return {**_rates(seen["ends"], seen["spawned"], a, [a.batch * per_row] * len(seen["ends"])),
            "peak_rss_mib": seen["peak_rss_mib"], "samples_per_row": per_row}


def failure(error: SystemExit) -> str:
    """The line that says why a child failed (the last error-looking line of its output)."""
    lines = [line.strip() for line in str(error.code).splitlines() if line.strip()]
    errors = [line for line in lines if "Error" in line or "error:" in line]
    return (errors or lines or ["no output"])[-1][:300]


# LLaMA-Factory's runs on each configuration: without packing; on the varied lengths also with its two kinds
# of packing, and without packing on the same rows a step (one sample a row, padded to the batch's longest).
LF_RUNNERS = {"padded": {"LLaMA-Factory": "no"},
              "packed": {"LLaMA-Factory, neat_packing": "neat", "LLaMA-Factory, no packing": "no",
                         "LLaMA-Factory, packing": "plain"}}
# The goals' yardstick on each configuration: the first of these that ran. Each trains every sample on its own,
# as omni-run's packing does; plain `packing` lets packed samples attend to each other, so it trains the model
# on different sequences, and is reported beside it, not measured against.
YARDSTICK = {"padded": ["LLaMA-Factory"], "packed": ["LLaMA-Factory, neat_packing", "LLaMA-Factory, no packing"]}
# What every runner imports before its first step: torch, transformers' Qwen2.5-Omni model code, datasets.
# A fresh process that imports only these, in this venv, is the floor under any runner's time to first step.
IMPORT_FLOOR = "import torch, datasets, transformers.models.qwen2_5_omni.modeling_qwen2_5_omni"


def throughput(a: argparse.Namespace, tmp: Path, python: Path | None) -> tuple[dict, dict, dict, float]:
    """Every runner on both configurations, alternating, `a.repeat` rounds, each round opened by a process that
    only imports the libraries (`IMPORT_FLOOR`): per configuration and runner the medians, the mean tokens of
    a record, why a runner could not run, and the median seconds of that import."""
    configs = {
        "padded": (argparse.Namespace(**{**vars(a), "packing": "false"}), generate_records, a.records),
        "packed": (argparse.Namespace(**{**vars(a), "packing": "true", "batch": a.packed_batch,
                                          "seq_len": a.packed_seq_len}), varied_records, a.varied_records),
    }
    results: dict[str, dict[str, list[dict]]] = {name: {} for name in configs}
    tokens, failed, floor = {}, {}, []
    for name, (_, generate, count) in configs.items():
        (tmp / f"data-{name}").mkdir()
        generate(tmp / f"data-{name}" / "calls.jsonl", count)
        tokens[name] = record_tokens(tmp / f"data-{name}" / "calls.jsonl")
    for round_ in range(a.repeat):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", IMPORT_FLOOR], check=True)
        floor.append({"round": round_, "first_step_s": time.perf_counter() - started})
        print(f"round {round_ + 1}: importing the libraries alone took {floor[-1]['first_step_s']:.1f} s", flush=True)
        for name, (c, _, count) in configs.items():
            runners = {"omni-run": "omni", **LF_RUNNERS[name], "plain loop": "loop"}
            for runner, kind in runners.items():
                if kind not in ("omni", "loop") and python is None:
                    failed[(name, runner)] = "its venv could not be built (the output above says why)"
                if (name, runner) in failed:
                    continue
                try:
                    result = run_one(kind, tmp, f"{name}-{round_}", c, count, python)
                except SystemExit as error:
                    failed[(name, runner)] = failure(error)
                    print(f"round {round_ + 1} {name} {runner}: failed: {failed[(name, runner)]}", flush=True)
                    continue
                results[name].setdefault(runner, []).append({**result, "round": round_})
                print(f"round {round_ + 1} {name} {runner}: {result[RATE]:.1f} samples/s (median step; "
                      f"{result['samples_per_s']:.1f} over the window), first step after "
                      f"{result['first_step_s'] + result.get('prepare_s', 0):.1f} s, peak {result['peak_rss_mib']:.0f} MiB"
                      + (f", {result['samples_per_row']:.2f} samples a row" if "samples_per_row" in result else ""),
                      flush=True)
    medians = {name: {runner: {key: statistics.median(r[key] for r in rows) for key in rows[0]}
                      for runner, rows in runners.items()} for name, runners in results.items()}
    for name, runners in results.items():  # ratios: omni-run's over another runner's in the same round
        for other, rows in runners.items():
            omni = {r["round"]: r for r in runners.get("omni-run", [])}
            paired = [(omni[r["round"]], r) for r in rows if r["round"] in omni]
            if other != "omni-run" and paired:
                medians[name][other]["over"] = {key: statistics.median(o[key] / r[key] for o, r in paired)
                                                for key in ("samples_per_s", RATE, "peak_rss_mib")}
                medians[name][other]["over"]["first_step_s"] = statistics.median(
                    (o["first_step_s"] + o["prepare_s"]) / r["first_step_s"] for o, r in paired)
                medians[name][other]["floor_over"] = statistics.median(
                    floor[r["round"]]["first_step_s"] / r["first_step_s"] for r in rows)
    return medians, tokens, failed, statistics.median(f["first_step_s"] for f in floor)


def run_one(kind: str, tmp: Path, tag: str, c: argparse.Namespace, count: int, python: Path | None) -> dict:
    """One run of one runner (`kind`: omni, loop, or LLaMA-Factory's packing mode) on configuration `c`."""
    records = tmp / f"data-{tag.split('-')[0]}" / "calls.jsonl"
    if kind == "omni":
        return run_omni(tmp, records, c, 0, tag)
    if kind == "loop":  # the plain loop pads; it never packs
        return run_plain(tmp, records, argparse.Namespace(**{**vars(c), "batch": c.plain_batch}), False, tag)
    work = tmp / f"lf-{kind}-{tag}"
    return lf_rates(run_lf(python, work, lf_config(work, records, c, kind)), c, count)


def continuity(a: argparse.Namespace, tmp: Path, python: Path | None) -> dict[str, dict]:
    """Loss continuity across a stop and resume, on the padded records: each runner once uninterrupted and
    once stopped after its checkpoint at step `a.resume_at` and resumed; the largest difference between the
    two runs' losses for the steps after the checkpoint. omni-run's trainer is SIGKILLed once it has a
    resumable checkpoint (and resumed with `--resume`); LLaMA-Factory stops itself once checkpoint
    `a.resume_at` is saved and resumes with `resume_from_checkpoint`."""
    from kill_soak import _losses, _trainer

    from omni_runner.run.prepare import prepare_run
    from omni_runner.train.checkpoint import find_resumable, step_of

    c = argparse.Namespace(**{**vars(a), "packing": "false", "steps": a.resume_steps})
    records = tmp / "data-padded" / "calls.jsonl"
    outcome = {}
    overrides = [*recipe_overrides(records, c, 0), f"controller.checkpoint.every_steps={a.resume_at}",
                 "controller.checkpoint.keep_last=10"]
    runs = [prepare_run(REPO / "recipes" / "tiny_omni.yaml", overrides, None, run_dir=tmp / f"resume-omni-{kind}")
            for kind in ("whole", "stopped")]
    if _trainer(runs[0]).wait():
        outcome["omni-run"] = {"failed": f"the uninterrupted run failed (see {runs[0].trainer_log})"}
    else:
        process = _trainer(runs[1])
        while find_resumable(runs[1].path) is None and process.poll() is None:
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait()
        found = find_resumable(runs[1].path)
        _trainer(runs[1], "--resume").wait()
        outcome["omni-run"] = _compare(_losses(runs[0]), _losses(runs[1]), step_of(found), "SIGKILL")
    if python is not None:
        try:
            config = lf_config(tmp / "resume-lf-whole", records, c, "no", save_strategy="steps", save_steps=a.resume_at)
            whole = run_lf(python, tmp / "resume-lf-whole", config)
            config = {**config, "output_dir": str(tmp / "resume-lf-stopped")}
            run_lf(python, tmp / "resume-lf-stopped", config, stop_after=a.resume_at)
            config["resume_from_checkpoint"] = str(tmp / "resume-lf-stopped" / f"checkpoint-{a.resume_at}")
            resumed = run_lf(python, tmp / "resume-lf-stopped", config)
            outcome["LLaMA-Factory"] = _compare({int(k): v for k, v in whole["losses"].items()},
                                                {int(k): v for k, v in resumed["losses"].items()}, a.resume_at,
                                                "stopped at its checkpoint")
        except SystemExit as error:
            outcome["LLaMA-Factory"] = {"failed": failure(error)}
    for runner, row in outcome.items():
        print(f"resume {runner}: {row}", flush=True)
    return outcome


def _compare(whole: dict[int, float], resumed: dict[int, float], checkpoint: int, how: str) -> dict:
    later = [step for step in sorted(whole) if step > checkpoint]
    missing = [step for step in later if step not in resumed]
    if missing or not later:
        return {"failed": f"no loss logged after the resume for steps {missing or 'after ' + str(checkpoint)}"}
    differences = [abs(resumed[step] - whole[step]) for step in later]
    return {"how": how, "checkpoint": checkpoint, "steps": len(later), "equal": sum(d == 0 for d in differences),
            "max_difference": max(differences)}


CONFIG_TITLES = {"padded": "tool calls (~{t:.0f} tokens), no packing", "packed": "varied lengths (~{t:.0f} tokens), packing"}


def report(a: argparse.Namespace, medians: dict, tokens: dict, failed: dict, floor: float, resume: dict) -> None:
    rows, verdicts = [], []
    for name, runners in medians.items():
        title = CONFIG_TITLES[name].format(t=tokens[name])
        for runner, row in runners.items():
            first = row["first_step_s"] + row.get("prepare_s", 0.0)
            rows.append(f"| {title} | {runner} | {row[RATE]:.1f} ({row['samples_per_s']:.1f}) | {row[RATE] * tokens[name]:.0f} | "
                        f"{row['peak_rss_mib']:.0f} MiB | {first:.1f} s |")
        for (config, runner), why in failed.items():
            if config == name:
                rows.append(f"| {title} | {runner} | could not run: {why} | | | |")
        rows.append(f"| {title} | importing the libraries alone (`{IMPORT_FLOOR}`) | | | | {floor:.1f} s |")
        omni = runners.get("omni-run")
        theirs = next((runner for runner in YARDSTICK[name] if runner in runners), None)
        for other in (runner for runner in runners if runner != "omni-run" and omni):
            over = runners[other]["over"]  # medians of the rounds' own ratios
            speed, window, first, memory = (over[RATE], over["samples_per_s"], over["first_step_s"], over["peak_rss_mib"])
            rows.append(f"| {title} | omni-run ÷ {other} | {speed:.2f}x ({window:.2f}x) | {speed:.2f}x | {memory:.2f}x | {first:.2f}x |")
            if other == theirs:
                judged = over[GOAL_RATE[name]]
                verdicts.append(f"- samples/s ({'median step' if GOAL_RATE[name] == RATE else 'whole window'}), {title}: "
                                f"omni-run {judged:.2f}x {other} (goal ≥ {GOALS[name]}x): "
                                f"{'met' if judged >= GOALS[name] else 'not met'}")
                verdicts.append(f"- time to first step, {title}: omni-run's is {first:.2f}x {other}'s (goal ≤ 0.5x): "
                                f"{'met' if first <= 0.5 else 'not met'}; importing the libraries alone takes "
                                f"{runners[other]['floor_over']:.2f}x of it")
    lines = []
    for runner, row in resume.items():
        if "failed" in row:
            lines.append(f"| {runner} | could not run: {row['failed']} | | |")
        else:
            lines.append(f"| {runner} | {row['how']}, resumed from step {row['checkpoint']} | "
                         f"{row['equal']} of {row['steps']} | {row['max_difference']:.3g} |")
    if resume:
        omni, theirs = resume.get("omni-run", {}), resume.get("LLaMA-Factory", {})
        exact = "failed" not in omni and omni["equal"] == omni["steps"]
        drifts = "failed" not in theirs and theirs["max_difference"] > 0
        verdicts.append(f"- exact resume where LLaMA-Factory's drifts: omni-run {'exact' if exact else 'not exact'}, "
                        f"LLaMA-Factory {'drifts' if drifts else 'exact' if 'failed' not in theirs else 'not measured'}: "
                        f"{'met' if exact and drifts else 'not met' if not exact else 'not measured' if 'failed' in theirs else 'not shown (theirs does not drift)'}")
    table = ("| work | runner | samples/s, median step (whole window) | tokens/s | peak memory (RSS) | time to first step |\n|---|---|---|---|---|---|\n"
             + "\n".join(rows))
    resume_table = ("| runner | stop | later losses equal to the uninterrupted run's | largest difference |\n"
                    "|---|---|---|---|\n" + "\n".join(lines)) if resume else ""
    print(table + "\n\n" + resume_table + "\n\n" + "\n".join(verdicts))
    if a.no_record:
        return
    command = " ".join(["bash benchmarks/peer_llamafactory.sh", *sys.argv[1:]])
    update_section("peer_llamafactory", f"""
## Against LLaMA-Factory

`{command}` on {machine_summary()} (1-minute load average at the end: {os.getloadavg()[0]:.1f}), with
LLaMA-Factory {PINS[0].split("==")[1]} in its own venv ({", ".join(PINS[1:])}, a placeholder torchaudio; the
script builds it). The same tiny Qwen2.5-Omni folder, full fine-tuning of its language model (towers frozen),
lr {a.lr}, 5 warm-up steps, cosine, weight decay 0, clipping 1.0, seed 42, {a.steps} steps. No packing:
{a.records} generated tool-call records (one system prompt), micro-batch {a.batch}, seq_len {a.seq_len}.
Packing: {a.varied_records} conversations of 1-6 tool calls, {a.packed_batch} packed rows of {a.packed_seq_len}
tokens a step (omni-run `training.packing=true`, attention kept inside each sample; LLaMA-Factory with
`neat_packing`, which keeps it so too, without packing on the same {a.packed_batch} rows of at most {a.packed_seq_len} tokens, one
sample a row, and with plain `packing`, packed samples attending to each other); the plain loop never packs (micro-batch {a.batch}, padded).
The goals compare omni-run with LLaMA-Factory training each sample on its own: `neat_packing` where it runs,
else without packing; plain `packing` trains on other sequences, so its row is shown but not the yardstick. Every runner a fresh process, runners
alternating, medians of {a.repeat} rounds; samples/s over the steps after the first {a.warmup}: the median of
the steps' own rates (the whole window's rate in brackets); the "omni-run ÷" rows are medians of each round's
own ratios; tokens/s are samples/s times the mean tokens of a record; time to first step from starting the process (omni-run's
includes `prepare_run`) to the end of the first optimizer step; peak memory is the process's peak RSS.

{table}

Stop and resume ({a.resume_steps} steps, a checkpoint every {a.resume_at}, no packing):

{resume_table}

{chr(10).join(verdicts)}
""")


OPTIONS = [  # flag, default, what it sets
    ("--records", 600, "tool-call records, ~80 tokens each"),
    ("--varied-records", 300, "conversations of 1-6 tool calls, ~80-400 tokens, for packing"),
    ("--batch", 16, "micro-batch without packing (and the plain loop's always)"),
    ("--seq-len", 128, "sequence length without packing"),
    ("--packed-batch", 4, "packed rows a step"),
    ("--packed-seq-len", 512, "packed row length"),
    ("--steps", 30, "optimizer steps a run"),
    ("--warmup", 5, "first steps left out of samples/s"),
    ("--lr", 2e-3, "learning rate"),
    ("--repeat", 2, "rounds of every runner"),
    ("--resume-steps", 10, "steps of the stop/resume runs, 0 skips them"),
    ("--resume-at", 5, "the checkpoint step the stopped runs resume from"),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag, default, text in OPTIONS:
        parser.add_argument(flag, type=type(default), default=default, help=f"{text} (default %(default)s)")
    parser.add_argument("--setup-only", action="store_true", help="build LLaMA-Factory's venv and stop")
    parser.add_argument("--no-record", action="store_true", help="print only; leave docs/performance.md alone")
    a = parser.parse_args()
    a.plain_batch = a.batch

    from omni_runner.models.tiny import ensure_tiny_model

    ensure_tiny_model()
    try:
        python = ensure_venv()
    except subprocess.CalledProcessError as error:
        python = None
        print(f"LLaMA-Factory's venv could not be built ({error}); it is left out", flush=True)
    if a.setup_only:
        return 0 if python else 1
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        medians, tokens, failed, floor = throughput(a, tmp, python)
        resume = continuity(a, tmp, python) if a.resume_steps else {}
    report(a, medians, tokens, failed, floor, resume)
    return 0


if __name__ == "__main__":
    sys.exit(main())
