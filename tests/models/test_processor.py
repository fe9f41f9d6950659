"""The tiny model's processor: real Qwen2.5-Omni processor classes, a tokenizer and a ChatML template."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image


@pytest.fixture(scope="module")
def processor(tiny_model_dir):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_model_dir)


def test_auto_processor_gives_the_qwen_omni_processor_classes(processor):
    assert type(processor).__name__ == "Qwen2_5OmniProcessor"
    assert type(processor.tokenizer).__name__ == "Qwen2Tokenizer"
    assert type(processor.image_processor).__name__ == "Qwen2VLImageProcessor"
    assert type(processor.video_processor).__name__ == "Qwen2VLVideoProcessor"
    assert type(processor.feature_extractor).__name__ == "WhisperFeatureExtractor"


@pytest.mark.parametrize(
    "text",
    [
        'Call {"name": "get_weather", "arguments": {"city": "Zürich"}} — 42 °C, 日本語 😀',
        "<|im_start|>user\n<tool_call>\n{}\n</tool_call><think>\nplan\n</think><|im_end|>",
    ],
)
def test_tokenizer_round_trips_text(processor, text):
    tokenizer = processor.tokenizer
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text


def test_special_and_tool_tokens_are_single_tokens(processor):
    tokenizer = processor.tokenizer
    for token in ("<|im_start|>", "<|im_end|>", "<|IMAGE|>", "<|AUDIO|>", "<|VIDEO|>", "<tool_call>", "</think>"):
        assert tokenizer(token)["input_ids"] == [tokenizer.convert_tokens_to_ids(token)]


def test_chat_template_renders_tools_calls_and_responses_as_chatml(processor):
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}],
        },
        {"role": "tool", "content": '{"temp_c": 21}'},
        {"role": "assistant", "content": "It is 21 °C."},
    ]
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]

    text = processor.apply_chat_template(messages, tools=tools, tokenize=False)

    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.\n\n# Tools\n"
        'To call a function, reply with <tool_call>{"name": NAME, "arguments": {...}}</tool_call>. '
        'Available functions:\n<tools>\n{"name": "get_weather", "parameters": {"type": "object"}}\n</tools><|im_end|>\n'
        "<|im_start|>user\nWeather in Paris?<|im_end|>\n"
        '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>\n'
        '<|im_start|>user\n<tool_response>\n{"temp_c": 21}\n</tool_response><|im_end|>\n'
        "<|im_start|>assistant\nIt is 21 °C.<|im_end|>\n"
    )


def test_chat_template_renders_reasoning_in_think_tags_and_media_placeholders(processor):
    messages = [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [{"type": "image"}, {"type": "audio"}, {"type": "video"}, {"type": "text", "text": "?"}],
        },
        {"role": "assistant", "content": "A cat.", "reasoning_content": "Look at it."},
    ]

    text = processor.apply_chat_template(messages, tokenize=False)

    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\n<|vision_bos|><|IMAGE|><|vision_eos|><|audio_bos|><|AUDIO|><|audio_eos|>"
        "<|vision_bos|><|VIDEO|><|vision_eos|>?<|im_end|>\n"
        "<|im_start|>assistant\n<think>\nLook at it.\n</think>\n\nA cat.<|im_end|>\n"
    )


def test_assistant_mask_covers_exactly_the_replies_and_their_end_tokens(processor):
    tokenizer = processor.tokenizer
    messages = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Bye"},
        {"role": "assistant", "content": "Goodbye."},
    ]

    rendered = tokenizer.apply_chat_template(messages, return_dict=True, return_assistant_tokens_mask=True)
    masked = [token for token, keep in zip(rendered["input_ids"], rendered["assistant_masks"], strict=True) if keep]

    assert tokenizer.decode(masked) == "Hello!<|im_end|>Goodbye.<|im_end|>"


def test_generation_prompt_opens_an_assistant_turn(processor):
    text = processor.apply_chat_template(
        [{"role": "user", "content": "Hi"}], add_generation_prompt=True, tokenize=False
    )
    assert text.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")


def test_image_and_audio_inputs_run_through_the_thinker(processor, tiny_model_dir):
    from transformers import Qwen2_5OmniThinkerForConditionalGeneration

    thinker = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(tiny_model_dir)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    audio = np.random.default_rng(1).standard_normal(16000).astype(np.float32) * 0.1
    text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "audio"}, {"type": "text", "text": "What?"}]}],
        add_generation_prompt=True,
    )
    inputs = processor(text=text, images=[image], audio=[audio], return_tensors="pt")

    with torch.no_grad():
        logits = thinker(**inputs).logits

    assert logits.shape[:2] == inputs["input_ids"].shape
    assert torch.isfinite(logits).all()
