"""The ChatML chat template that omni-runner's tiny model ships with.

It behaves like Qwen2.5-Omni's own template (ChatML turns, a default system prompt, media parts
rendered as `<|vision_bos|><|IMAGE|><|vision_eos|>`, `<|audio_bos|><|AUDIO|><|audio_eos|>` and
`<|vision_bos|><|VIDEO|><|vision_eos|>`) and adds what the text capabilities need:

- `tools=[...]` (JSON schemas, OpenAI style `{"type": "function", "function": {...}}` or bare)
  are listed in the system turn inside `<tools></tools>`;
- an assistant message's `tool_calls` become `<tool_call>{"name": ..., "arguments": ...}</tool_call>`
  blocks (arguments given as a JSON string are written as they are);
- an assistant message's `reasoning_content` becomes a `<think>...</think>` block before its content;
- consecutive `tool` messages become one user turn of `<tool_response>` blocks;
- every assistant reply, including its closing `<|im_end|>`, sits inside `{% generation %}`, so
  `apply_chat_template(..., return_dict=True, return_assistant_tokens_mask=True)` yields the loss
  mask "assistant tokens only" directly.

The text is written for this project (not copied); the transformers chat-template environment
runs with `trim_blocks` and `lstrip_blocks`, so all literal whitespace lives in string literals.
"""

from __future__ import annotations

import json

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."
# Written after the system prompt when `tools` are given, followed by one JSON schema a line.
TOOLS_PREAMBLE = (
    '# Tools\nTo call a function, reply with <tool_call>{"name": NAME, "arguments": {...}}</tool_call>. '
    "Available functions:\n<tools>"
)

CHAT_TEMPLATE = (
    "{%- macro render_content(content) -%}"
    "{%- if content is string -%}{{- content -}}"
    "{%- elif content is not none -%}"
    "{%- for part in content -%}"
    "{%- if part.type == 'text' -%}{{- part.text -}}"
    "{%- elif part.type in ['image', 'image_url'] -%}{{- '<|vision_bos|><|IMAGE|><|vision_eos|>' -}}"
    "{%- elif part.type in ['audio', 'input_audio', 'audio_url'] -%}{{- '<|audio_bos|><|AUDIO|><|audio_eos|>' -}}"
    "{%- elif part.type in ['video', 'video_url'] -%}{{- '<|vision_bos|><|VIDEO|><|vision_eos|>' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{%- endmacro -%}"
    # system turn: the caller's system message or the default, then the tool catalogue
    "{%- if messages and messages[0].role == 'system' -%}"
    "{%- set system_text = render_content(messages[0].content) -%}"
    "{%- set turns = messages[1:] -%}"
    "{%- else -%}"
    "{%- set system_text = '" + DEFAULT_SYSTEM_PROMPT + "' -%}"
    "{%- set turns = messages -%}"
    "{%- endif -%}"
    "{{- '<|im_start|>system\\n' + system_text -}}"
    "{%- if tools -%}"
    "{{- '\\n\\n' + " + json.dumps(TOOLS_PREAMBLE) + " -}}"
    "{%- for tool in tools -%}"
    "{{- '\\n' + ((tool.function if tool.function is defined else tool) | tojson) -}}"
    "{%- endfor -%}"
    "{{- '\\n</tools>' -}}"
    "{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    # conversation turns
    "{%- for message in turns -%}"
    "{%- if message.role == 'assistant' -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- generation -%}"
    "{%- if message.reasoning_content is defined and message.reasoning_content -%}"
    "{{- '<think>\\n' + message.reasoning_content + '\\n</think>\\n\\n' -}}"
    "{%- endif -%}"
    "{{- render_content(message.content) -}}"
    "{%- if message.tool_calls is defined and message.tool_calls -%}"
    "{%- for call in message.tool_calls -%}"
    "{%- set fn = call.function if call.function is defined else call -%}"
    "{%- if (message.content and loop.first) or not loop.first -%}{{- '\\n' -}}{%- endif -%}"
    '{{- \'<tool_call>\\n{"name": "\' + fn.name + \'", "arguments": \' -}}'
    "{%- if fn.arguments is string -%}{{- fn.arguments -}}{%- else -%}{{- fn.arguments | tojson -}}{%- endif -%}"
    "{{- '}\\n</tool_call>' -}}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{- '<|im_end|>' -}}"
    "{%- endgeneration -%}"
    "{{- '\\n' -}}"
    "{%- elif message.role == 'tool' -%}"
    "{%- if loop.first or loop.previtem.role != 'tool' -%}{{- '<|im_start|>user' -}}{%- endif -%}"
    "{{- '\\n<tool_response>\\n' + render_content(message.content) + '\\n</tool_response>' -}}"
    "{%- if loop.last or loop.nextitem.role != 'tool' -%}{{- '<|im_end|>\\n' -}}{%- endif -%}"
    "{%- else -%}"
    "{{- '<|im_start|>' + message.role + '\\n' + render_content(message.content) + '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)
