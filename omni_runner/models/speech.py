"""The talker conditioned on a thinker: the one place that builds the talker's inputs.

Qwen2.5-Omni speaks in two steps: the thinker writes the text reply, then the talker turns the
thinker's view of that reply into codec tokens, which token2wav renders as a waveform. What the
talker reads is built in `Qwen2_5OmniForConditionalGeneration.generate` (transformers), from the
thinker's forward over the prompt and the reply:

- the prompt's positions: the thinker's input embeddings (zeroed at media placeholders) plus its
  last hidden states, under codec *mask* ids, then the speaker's text-bos embedding and the first
  reply token, under codec *pad* and *bos* ids (the talker adds those two codec embeddings);
- one step per later codec token: the previous codec token's embedding plus the next entry of the
  reply stream (each remaining reply token's embedding + hidden state, then the tts text-end and
  text-pad embeddings; the last entry repeats once the stream runs out).

`condition_talker` rebuilds exactly that from a teacher-forced thinker forward (the same hidden states
generation produces, one forward instead of one per token), so

- `greedy_codes` (the talker's own `generate`, greedy) gives what the model would say, and
- `codec_losses` (the talker's forward, teacher-forced, in the two calls generation makes: prefix,
  then the codec tokens with the cache) gives the codec cross-entropy of given target codes.

Public API:
- `TalkerConditioning`, `condition_talker(thinker, inputs, reply_ids, talker_config, speaker_bos)`.
- `greedy_codes(talker, conditioning, max_codec_tokens) -> list[int]` (without the end token).
- `codec_losses(talker, conditioning, targets) -> Tensor` (one loss per target code).
- `SpeechParts`, `load_speech_parts(folder, device, dtype, adapter_dir=None)`: the base folder's talker,
  token2wav, speakers; `read_speakers(folder)`, `speaker_entry(speakers, name)`.
- `load_talker(folder, dtype, device, adapter_dir=None)`: a talker, with a trained adapter on top.
- `add_talker_adapter(talker, lora) -> PeftModel`: the talker with LoRA adapters, for realign stages.
- `speak(thinker, parts, inputs, reply_ids, speaker, max_codec_tokens) -> Tensor`: a reply, spoken.
- `synthesize(parts, codes, speaker) -> Tensor`: the waveform token2wav renders (24 kHz).
- `SpeechError`, `SAMPLE_RATE`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omni_runner.models.hf_env import offline_hub, quiet_transformers

SAMPLE_RATE = 24000  # token2wav's BigVGAN output rate, as the real model
SPEAKER_FILE = "spk_dict.pt"
DEFAULT_SPEAKER = "Chelsie"  # generate()'s default speaker
# The thinker inputs that carry media, and the talker keyword each maps to for its rope positions.
_MEDIA_TOKENS = ("audio_token_index", "image_token_index", "video_token_index")


class SpeechError(Exception):
    """A base folder or setting that cannot speak; the message says what to do."""


@dataclass
class TalkerConditioning:
    """What the talker reads for one (prompt, reply) pair, batch size 1."""

    prefix_codes: Any  # (1, P+2): codec mask ids over the prompt, then codec pad and codec bos
    text_ids: Any  # (1, P+2): prompt ids, speaker bos, first reply id (the talker's rope positions)
    prefix_embeds: Any  # (1, P+2, E): thinker embeddings + last hidden states, as above
    reply_stream: Any  # (1, R, E): one entry per codec step after the first
    rope_inputs: dict[str, Any]  # grids / audio lengths for media prompts; empty for text

    def step_inputs(self, steps: int) -> Any:
        """The reply-stream entries the first `steps` codec tokens after the first are added to."""
        import torch

        index = torch.arange(steps, device=self.reply_stream.device).clamp(max=self.reply_stream.shape[1] - 1)
        return self.reply_stream[:, index]


def condition_talker(thinker: Any, inputs: dict[str, Any], reply_ids: list[int], talker_config: Any,
                     speaker_bos: int) -> TalkerConditioning:
    """The talker's inputs for `reply_ids` spoken after the prompt `inputs` (a tokenised, rendered
    prompt with its media tensors), as `generate` builds them. `thinker` is a
    `Qwen2_5OmniThinkerForConditionalGeneration` (its adapters, if any, as they are set)."""
    import torch

    from omni_runner.data.external import EXTERNAL_KEYS

    if not reply_ids:
        raise ValueError("a spoken reply needs at least one token")
    if any(key in inputs for key in EXTERNAL_KEYS):
        raise SpeechError("the talker speaks after media that the base model's own towers read; this prompt's media "
                          "go through the run's external encoders (encoders.vision/audio): ask without them")
    device = next(thinker.parameters()).device
    prompt_ids = inputs["input_ids"].to(device)
    reply = torch.tensor([reply_ids], dtype=torch.long, device=device)
    full_ids = torch.cat([prompt_ids, reply], dim=1)
    extra = {k: v.to(device) for k, v in inputs.items() if k not in ("input_ids", "attention_mask") and torch.is_tensor(v)}
    was_training = thinker.training
    thinker.eval()
    try:
        with torch.no_grad():
            output = thinker.model(input_ids=full_ids, attention_mask=torch.ones_like(full_ids),
                                   output_hidden_states=True, use_cache=False, **extra)
    finally:
        thinker.train(was_training)
    embeds, hidden = output.hidden_states[0].clone(), output.hidden_states[-1]
    media = torch.zeros_like(full_ids, dtype=torch.bool)
    for name in _MEDIA_TOKENS:
        media |= full_ids == getattr(thinker.config, name)
    embeds[media] = 0  # generate hides the media features from the talker's embedding stream
    states = embeds + hidden
    prompt_length = prompt_ids.shape[1]
    embed = thinker.get_input_embeddings()

    def text_embedding(token: int) -> Any:
        return embed(torch.tensor([[token]], device=device)).detach()

    prefix_embeds = torch.cat([states[:, :prompt_length], text_embedding(speaker_bos),
                               states[:, prompt_length:prompt_length + 1]], dim=1)
    reply_stream = torch.cat([states[:, prompt_length + 1:], text_embedding(talker_config.tts_text_end_token_id),
                              text_embedding(talker_config.tts_text_pad_token_id)], dim=1)
    fill = torch.full((1, 1), 0, dtype=torch.long, device=device)
    prefix_codes = torch.cat([torch.full_like(prompt_ids, talker_config.tts_codec_mask_token_id),
                              fill + talker_config.tts_codec_pad_token_id,
                              fill + talker_config.tts_codec_start_token_id], dim=1)
    text_ids = torch.cat([prompt_ids, fill + speaker_bos, reply[:, :1]], dim=1)
    rope_inputs = {key: inputs[key].to(device) for key in ("image_grid_thw", "video_grid_thw", "video_second_per_grid")
                   if key in inputs}
    if "feature_attention_mask" in inputs:
        rope_inputs["audio_feature_lengths"] = inputs["feature_attention_mask"].sum(dim=1).to(device)
    return TalkerConditioning(prefix_codes, text_ids, prefix_embeds, reply_stream, rope_inputs)


def greedy_codes(talker: Any, conditioning: TalkerConditioning, max_codec_tokens: int,
                 use_audio_in_video: bool = False) -> list[int]:
    """The codec tokens the talker says greedily (its end token and what follows cut off)."""
    import torch

    config = talker.config
    ends = [config.tts_codec_pad_token_id, config.tts_codec_end_token_id]  # generate's talker_eos_token_id
    was_training = talker.training
    talker.eval()
    try:
        with torch.no_grad():
            output = talker.generate(
                input_ids=conditioning.prefix_codes, input_text_ids=conditioning.text_ids,
                inputs_embeds=conditioning.prefix_embeds.clone(),  # the talker adds codec embeddings in place
                thinker_reply_part=conditioning.reply_stream,
                attention_mask=torch.ones_like(conditioning.prefix_codes),
                suppress_tokens=[config.tts_codec_start_token_id], eos_token_id=ends,
                pad_token_id=config.tts_codec_pad_token_id, max_new_tokens=max_codec_tokens,
                do_sample=False, use_audio_in_video=use_audio_in_video, **conditioning.rope_inputs,
            )
    finally:
        talker.train(was_training)
    codes = output[0, conditioning.prefix_codes.shape[1]:].tolist()
    for position, code in enumerate(codes):
        if code in ends:
            return codes[:position]
    return codes


def codec_losses(talker: Any, conditioning: TalkerConditioning, targets: list[int],
                 use_audio_in_video: bool = False) -> Any:
    """Cross-entropy of each target code under the talker, teacher-forced (differentiable in the talker).

    Two forwards, as generation makes them: the prefix (the talker computes its rope positions and adds
    the codec pad/bos embeddings), then every target but the last with the prefix's cache.
    """
    import torch
    from transformers import DynamicCache

    if not targets:
        raise ValueError("no target codes to score")
    device = conditioning.prefix_codes.device
    codes = torch.tensor([targets], dtype=torch.long, device=device)
    mask = torch.ones_like(conditioning.prefix_codes)
    cache = DynamicCache()
    first = talker(input_ids=conditioning.prefix_codes, input_text_ids=conditioning.text_ids,
                   inputs_embeds=conditioning.prefix_embeds.clone(), attention_mask=mask, cache=cache,
                   use_cache=True, use_audio_in_video=use_audio_in_video, **conditioning.rope_inputs)
    logits = [first.logits[:, -1:]]
    if len(targets) > 1:
        previous = codes[:, :-1]
        step_embeds = talker.get_input_embeddings()(previous) + conditioning.step_inputs(previous.shape[1])
        rest = talker(input_ids=previous, inputs_embeds=step_embeds, cache=first.cache, use_cache=True,
                      attention_mask=torch.ones(1, mask.shape[1] + previous.shape[1], dtype=mask.dtype, device=device))
        logits.append(rest.logits)
    return torch.nn.functional.cross_entropy(torch.cat(logits, dim=1)[0].float(), codes[0], reduction="none")


# ---------------------------------------------------------------- loading and speaking


@dataclass
class SpeechParts:
    talker: Any
    token2wav: Any
    speakers: dict[str, Any]


def _omni_config(folder: Path) -> Any:
    import json

    model_type = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8")).get("model_type")
    if model_type not in ("qwen2_5_omni", "qwen2_5_omni_thinker"):
        raise SpeechError(f"{folder} is a {model_type} model: speech out is wired for Qwen2.5-Omni's talker and "
                          "token2wav only (Qwen3-Omni's talker and code2wav are not). Chat without --audio-out.")
    offline_hub()
    from transformers import Qwen2_5OmniConfig

    with quiet_transformers():
        config = Qwen2_5OmniConfig.from_pretrained(folder, local_files_only=True)
    if not config.enable_audio_output or (Path(folder) / "config.json").read_text().find('"talker_config"') < 0:
        raise SpeechError(f"{folder} has no talker and token2wav (a thinker-only folder): it cannot speak. "
                          "Use a full Qwen2.5-Omni folder (config.json with talker_config and token2wav_config).")
    return config


def load_talker(folder: Path, dtype: Any, device: Any, adapter_dir: Path | None = None) -> Any:
    """The talker of a full Omni folder (its own class maps the `talker.` keys), with a trained LoRA
    adapter on top when `adapter_dir` holds one."""
    config = _omni_config(folder)
    from transformers import Qwen2_5OmniTalkerForConditionalGeneration

    with quiet_transformers():
        talker = Qwen2_5OmniTalkerForConditionalGeneration.from_pretrained(
            folder, config=config.talker_config, dtype=dtype, local_files_only=True)
        if adapter_dir is not None:
            from peft import PeftModel

            talker = PeftModel.from_pretrained(talker, adapter_dir)
    return talker.to(device)


def load_speech_parts(folder: Path, device: Any, dtype: Any, adapter_dir: Path | None = None) -> SpeechParts:
    """Everything after the thinker: the talker (with `adapter_dir`'s adapter), token2wav (fp32, as
    transformers runs it) and the speaker table `spk_dict.pt`."""
    from safetensors import safe_open
    from transformers import Qwen2_5OmniToken2WavModel

    folder = Path(folder)
    config = _omni_config(folder)
    speakers = read_speakers(folder)
    talker = load_talker(folder, dtype, device, adapter_dir)
    state = {}
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as handle:
            names = [key for key in handle.keys() if key.startswith("token2wav.")]  # noqa: SIM118 (not a dict)
            state.update({key.removeprefix("token2wav."): handle.get_tensor(key) for key in names})
    if not state:
        raise SpeechError(f"{folder} has no token2wav weights: it cannot turn codec tokens into sound.")
    with quiet_transformers():
        token2wav = Qwen2_5OmniToken2WavModel._from_config(config.token2wav_config, attn_implementation="sdpa")
    token2wav.load_state_dict(state)
    token2wav.float().to(device).eval()
    return SpeechParts(talker.eval(), token2wav, speakers)


def read_speakers(folder: Path) -> dict[str, Any]:
    """The speaker table `spk_dict.pt` of a full Omni folder: name -> bos token, conditioning, reference mel."""
    import torch

    speaker_file = Path(folder) / SPEAKER_FILE
    if not speaker_file.is_file():
        raise SpeechError(f"{speaker_file} is missing: the speaker table (the voices) ships with the Qwen2.5-Omni "
                          "checkpoint; copy it into the folder.")
    return torch.load(speaker_file, weights_only=True)


def speaker_entry(speakers: dict[str, Any], speaker: str) -> dict[str, Any]:
    if speaker not in speakers:
        raise SpeechError(f"unknown speaker {speaker!r}; this model has {', '.join(sorted(speakers))}.")
    return speakers[speaker]


def synthesize(parts: SpeechParts, codes: list[int], speaker: str = DEFAULT_SPEAKER) -> Any:
    """The waveform (1-D float tensor at `SAMPLE_RATE`) token2wav renders for `codes` in `speaker`'s voice."""
    import torch

    if not codes:
        raise SpeechError("the talker ended the reply before saying anything (no codec tokens)")
    entry = speaker_entry(parts.speakers, speaker)
    device = next(parts.token2wav.parameters()).device
    with torch.no_grad():
        wave = parts.token2wav(torch.tensor([codes], device=device), conditioning=entry["cond"].to(device).float(),
                               reference_mel=entry["ref_mel"].to(device).float())
    return wave.reshape(-1).float().cpu()


def add_talker_adapter(talker: Any, lora: dict[str, Any]) -> Any:
    """LoRA adapters on the talker's layers named by `training.lora.target_modules` (the talker's
    attention and MLP layers carry the thinker's names), for a realign stage. Zero-initialised: until
    the stage trains, the talker says exactly what the base talker says."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=int(lora.get("r", 16)), lora_alpha=float(lora.get("alpha", 32)),
                        lora_dropout=float(lora.get("dropout", 0.05)), bias="none",
                        target_modules=list(lora.get("target_modules") or ("q_proj", "k_proj", "v_proj", "o_proj")))
    return get_peft_model(talker, config)


def speak(thinker: Any, parts: SpeechParts, inputs: dict[str, Any], reply_ids: list[int], speaker: str = DEFAULT_SPEAKER,
          max_codec_tokens: int = 4096) -> Any:
    """The reply `reply_ids` to the prompt `inputs`, spoken: greedy codec tokens, rendered by token2wav."""
    entry = speaker_entry(parts.speakers, speaker)
    conditioning = condition_talker(thinker, inputs, reply_ids, parts.talker.config, int(entry["bos_token"]))
    return synthesize(parts, greedy_codes(parts.talker, conditioning, max_codec_tokens), speaker)
