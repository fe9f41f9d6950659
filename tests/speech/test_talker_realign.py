"""Speech output kept healthy: the talker conditioned on a thinker as Qwen2.5-Omni's generate does, the
talker-consistency metric, the talker_realign stage (exact resume, only talker adapters train), and
`chat --audio-out`. One short tiny run (thinker stage, then realign) is shared by the slow tests."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from omni_runner.run.events import read_events
from omni_runner.run.prepare import prepare_run
from omni_runner.run.rundir import RunDir

REPO = Path(__file__).resolve().parents[2]
THINKER_STEPS, REALIGN_STEPS = 8, 4
SHORT_SPEECH = f"""\
extends: {REPO / 'recipes' / 'tiny_omni_speech.yaml'}
name: tiny-speech-test
decoders: {{speech: {{freeze: false, max_codec_tokens: 12}}}}
training: {{micro_batch: 2, warmup_steps: 2}}
stages:
  - {{name: answer, train: [thinker], max_steps: {THINKER_STEPS}}}
  - {{name: talker_realign, train: [talker], max_steps: {REALIGN_STEPS}, lr: 5.0e-3}}
controller: {{checkpoint: {{every_steps: 2, keep_last: 10}}}}
eval: {{every_steps: {THINKER_STEPS}, max_samples: 3}}
"""


def _train(run: RunDir, *args: str) -> None:
    with open(run.trainer_log, "ab") as log:
        code = subprocess.run([sys.executable, "-m", "omni_runner.train", str(run.path), *args],
                              stdout=log, stderr=subprocess.STDOUT, timeout=600, check=False).returncode
    assert code == 0, run.trainer_log.read_text()[-3000:]


def _prepare(folder: Path) -> RunDir:
    recipe = folder / "speech.yaml"
    recipe.write_text(SHORT_SPEECH)
    return prepare_run(recipe, [], None, run_dir=folder / "run")


@pytest.fixture(scope="session")
def speech_run(tmp_path_factory) -> RunDir:
    run = _prepare(tmp_path_factory.mktemp("speech"))
    _train(run)
    return run


def _consistency(run: RunDir) -> list[dict]:
    return [e["metrics"] for e in read_events(run.events) if e["type"] == "eval" and "talker_consistency" in e["metrics"]]


def _checkpoint_weights(run: RunDir, step: int) -> dict:
    from safetensors.torch import load_file

    return load_file(str(run.checkpoints / f"step-{step}" / "weights.safetensors"))


def test_the_conditioning_is_what_qwen_generate_gives_the_talker(tiny_model_dir):
    """Greedy codes from our conditioning equal the codes of `Qwen2_5OmniForConditionalGeneration.generate`
    made to say the same reply, and teacher forcing on them predicts each one."""
    import torch
    from transformers import Qwen2_5OmniForConditionalGeneration

    from omni_runner.models.load import load_processor
    from omni_runner.models.speech import (
        codec_losses,
        condition_talker,
        greedy_codes,
        read_speakers,
    )

    full = Qwen2_5OmniForConditionalGeneration.from_pretrained(tiny_model_dir).eval()
    tokenizer = load_processor(tiny_model_dir).tokenizer
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "How many beeps?"}], add_generation_prompt=True,
                                           tokenize=False)
    inputs = dict(tokenizer(prompt, add_special_tokens=False, return_tensors="pt"))
    reply = tokenizer("There are three beeps.", add_special_tokens=False)["input_ids"]
    said = [*reply, tokenizer.convert_tokens_to_ids("<|im_end|>")]
    bos = int(read_speakers(tiny_model_dir)["Chelsie"]["bos_token"])

    conditioning = condition_talker(full.thinker, inputs, reply, full.talker.config, bos)
    ours = greedy_codes(full.talker, conditioning, 24)

    thinker_generate, talker_generate, seen = full.thinker.generate, full.talker.generate, {}
    length = inputs["input_ids"].shape[1]

    def forced_thinker(**kwargs):  # the thinker "writes" exactly the reply
        return thinker_generate(**kwargs, prefix_allowed_tokens_fn=lambda _, ids: [said[min(len(ids) - length, len(said) - 1)]])

    def recorded_talker(**kwargs):
        output = talker_generate(**kwargs)
        seen["codes"] = output[0, kwargs["input_ids"].shape[1]:].tolist()
        return output

    full.thinker.generate, full.talker.generate = forced_thinker, recorded_talker
    ends = [full.talker.codec_pad_token, full.talker.codec_eos_token]
    full.generate(input_ids=inputs["input_ids"], thinker_max_new_tokens=len(said), talker_do_sample=False,
                  talker_max_new_tokens=24, talker_eos_token_id=ends, talker_repetition_penalty=1.0, token2wav_num_steps=1)

    assert ours and seen["codes"][:len(ours)] == ours
    with torch.no_grad():
        losses = codec_losses(full.talker, conditioning, ours)
    assert losses.shape == (len(ours),) and bool(torch.isfinite(losses).all())


@pytest.mark.slow
def test_consistency_rises_with_the_thinker_and_comes_back_down_after_realign(speech_run):
    after_thinker, after_realign = _consistency(speech_run)
    floor = after_thinker["talker_consistency_floor"]
    assert after_realign["talker_consistency_floor"] == floor
    assert after_thinker["talker_consistency"] > floor
    assert after_realign["talker_consistency"] < after_thinker["talker_consistency"]
    assert after_thinker["talker_consistency_n"] == 3


@pytest.mark.slow
def test_realign_changes_only_the_talker_adapter(speech_run):
    before = _checkpoint_weights(speech_run, THINKER_STEPS)
    after = _checkpoint_weights(speech_run, THINKER_STEPS + REALIGN_STEPS)
    assert before.keys() == after.keys()
    talker = [name for name in after if name.startswith("talker.")]
    assert talker and all("lora_" in name for name in talker)
    assert all(bool((before[name] == after[name]).all()) for name in after if name not in talker)
    assert any(not bool((before[name] == after[name]).all()) for name in talker)
    assert (speech_run.final / "talker_adapter" / "adapter_config.json").is_file()


@pytest.mark.slow
def test_a_realign_stage_resumed_midway_ends_with_the_same_weights(speech_run, tmp_path):
    """Resumed from the checkpoint in the middle of realign, without the targets cache: the original
    thinker is reloaded from the base folder and the stage ends exactly where the uninterrupted run did."""
    run = _prepare(tmp_path)
    middle = f"step-{THINKER_STEPS + REALIGN_STEPS // 2}"
    shutil.copytree(speech_run.checkpoints / middle, run.checkpoints / middle)
    _train(run, "--resume")
    last = THINKER_STEPS + REALIGN_STEPS
    expected, resumed = _checkpoint_weights(speech_run, last), _checkpoint_weights(run, last)
    assert all(bool((expected[name] == resumed[name]).all()) for name in expected)
    assert json.loads((run.path / "speech_targets.json").read_text()) == json.loads(
        (speech_run.path / "speech_targets.json").read_text())


@pytest.mark.slow
def test_chat_audio_out_writes_a_wav_with_the_realigned_talker(speech_run, tmp_path):
    import soundfile

    wav = tmp_path / "reply.wav"
    result = subprocess.run([sys.executable, "-m", "omni_runner.cli", "chat", str(speech_run.path), "--prompt", "hello",
                             "--audio-out", str(wav), "--max-codec-tokens", "6"],
                            capture_output=True, text=True, timeout=300, check=False, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr[-2000:]
    samples, rate = soundfile.read(wav)
    assert rate == 24000 and len(samples) > 0


def test_audio_out_without_a_prompt_is_refused(tmp_path):
    result = subprocess.run([sys.executable, "-m", "omni_runner.cli", "chat", str(tmp_path), "--audio-out", "x.wav"],
                            capture_output=True, text=True, timeout=60, check=False, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 1 and "--audio-out speaks one reply" in result.stderr


@pytest.mark.slow
def test_eval_talker_suite_scores_the_final_model_as_the_trainer_did(speech_run, tmp_path, capsys):
    """`omni-run eval RUN --suite talker` on the final model (its realigned talker adapter, the run's
    cached codec targets) gives the consistency the trainer's end-of-run evaluation logged."""
    from omni_runner.cli import main

    run = tmp_path / "copy"  # a copy: the eval event it appends stays out of the shared run's log
    run.mkdir()
    for name in ("recipe.yaml", "plan.json", "status.json", "speech_targets.json"):
        shutil.copy2(speech_run.path / name, run / name)
    shutil.copytree(speech_run.final, run / "final")

    assert main(["eval", str(run), "--suite", "talker", "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)["results"]["beeps-heldout"]

    logged = _consistency(speech_run)[-1]
    assert scored["n"] == logged["talker_consistency_n"] > 0
    assert scored["talker_consistency"] == pytest.approx(logged["talker_consistency"], rel=1e-3)
    assert scored["talker_consistency_floor"] == pytest.approx(logged["talker_consistency_floor"], rel=1e-6)
