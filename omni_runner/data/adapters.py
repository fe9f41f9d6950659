"""Format adapters: one function per real dataset layout, each turning a record into a `Conversation`.

Every adapter reads the layout exactly as the public data set publishes it (docs/data.md links each
card) and raises `RecordError` with a short, specific reason when a record does not fit: a missing
field, a field of the wrong type, JSON that does not parse inside a string field, a tool call to a
function the record does not offer. The caller counts and reports those; adapters never guess.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from omni_runner.data.conversation import (
    Conversation,
    MediaTarget,
    Message,
    RecordError,
    check_renderable,
)

Record = dict[str, Any]

_THINK = re.compile(r"^\s*<think>(.*?)</think>\s*(.*)$", re.DOTALL)
_TOOL_CALL = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)
_TOOLS_BLOCK = re.compile(r"<tools>(.*?)</tools>", re.DOTALL)
_TOOL_RESPONSE = re.compile(r"^\s*<tool_response>(.*?)</tool_response>\s*$", re.DOTALL)
_O1_THOUGHT = re.compile(r"<Thought>(.*?)</Thought>", re.DOTALL)
_O1_OUTPUT = re.compile(r"<Output>(.*?)(?:</Output>|$)", re.DOTALL)
_MEDIA_PLACEHOLDER = re.compile(r"(<image>|<video>|<audio>)")

# ShareGPT speaker names (LLaMA-Factory's defaults plus the OpenAI spellings some sets use).
_SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
    "function_call": "assistant",
    "observation": "tool",
    "tool": "tool",
}
# xLAM writes parameter types as Python type names; chat templates expect JSON Schema types.
_PYTHON_TO_JSON_TYPE = {
    "str": "string",
    "int": "integer",
    "float": "number",
    "bool": "boolean",
    "list": "array",
    "dict": "object",
}


def _field(record: Record, name: str, kind: type | tuple[type, ...], *, optional: bool = False) -> Any:
    if name not in record or record[name] is None:
        if optional:
            return None
        raise RecordError(f"missing field '{name}'")
    value = record[name]
    if not isinstance(value, kind):
        expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise RecordError(f"field '{name}' must be {expected}, got {type(value).__name__}")
    return value


def _text(record: Record, name: str, *, optional: bool = False) -> str | None:
    value = _field(record, name, str, optional=optional)
    if value is not None and not optional and not value.strip():
        raise RecordError(f"field '{name}' is empty")
    return value


def _json_string(value: str, where: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise RecordError(f"{where} is not valid JSON ({exc.msg} at char {exc.pos})") from None


def _json_or_python_literal(value: str, where: str) -> Any:
    """Parse a JSON object, or the Python-dict spelling (single quotes) some records use."""
    text = value.strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise RecordError(f"{where} is neither JSON nor a Python literal: {text[:60]!r}") from None


def _media_lists(record: Record) -> dict[str, list[str]]:
    """The `images`/`videos`/`audios` columns; LLaVA-Instruct's single `image` counts as `images`."""
    media = {}
    for column in ("images", "videos", "audios"):
        value = _field(record, column, (list, str), optional=True)
        if value is None and column == "images":
            value = _field(record, "image", str, optional=True)
        media[column] = [] if value is None else ([value] if isinstance(value, str) else list(value))
        if not all(isinstance(item, str) and item for item in media[column]):
            raise RecordError(f"field '{column}' must list file paths")
    return media


def _with_media_parts(text: str) -> str | list[dict[str, Any]]:
    """LLaMA-Factory marks media positions with `<image>`/`<video>`/`<audio>`; make them content parts."""
    if not _MEDIA_PLACEHOLDER.search(text):
        return text
    parts: list[dict[str, Any]] = []
    for piece in _MEDIA_PLACEHOLDER.split(text):
        if piece in ("<image>", "<video>", "<audio>"):
            parts.append({"type": piece[1:-1]})
        elif piece:
            parts.append({"type": "text", "text": piece})
    return parts


def _check_media_count(messages: list[Message], media: dict[str, list[str]]) -> None:
    for kind, column in (("image", "images"), ("video", "videos"), ("audio", "audios")):
        used = sum(
            1
            for m in messages
            if isinstance(m.content, list)
            for part in m.content
            if part.get("type") == kind
        )
        if used != len(media[column]):
            raise RecordError(f"{used} <{kind}> placeholder(s) but {len(media[column])} entries in '{column}'")


def _tool_schema(tool: Any, where: str) -> dict[str, Any]:
    """A tool as an OpenAI-style function schema; accepts the bare or the {"type": "function"} form."""
    if not isinstance(tool, dict):
        raise RecordError(f"{where} must be an object, got {type(tool).__name__}")
    function = tool.get("function", tool)
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise RecordError(f"{where} has no function name")
    return function


def _tool_call(call: Any, where: str, known: set[str] | None) -> dict[str, Any]:
    if not isinstance(call, dict):
        raise RecordError(f"{where} must be an object, got {type(call).__name__}")
    call = call.get("function", call)
    name = call.get("name")
    if not isinstance(name, str) or not name:
        raise RecordError(f"{where} has no function name")
    arguments = call.get("arguments", {})
    if isinstance(arguments, str):
        arguments = _json_string(arguments, f"{where} arguments")
    if not isinstance(arguments, dict):
        raise RecordError(f"{where} arguments must be an object, got {type(arguments).__name__}")
    if known is not None and name not in known:
        raise RecordError(f"{where} calls '{name}', which is not among the record's tools")
    return {"name": name, "arguments": arguments}


def _split_think(content: str) -> tuple[str | None, str]:
    match = _THINK.match(content)
    return (match.group(1).strip(), match.group(2)) if match else (None, content)


def openai_messages(record: Record) -> Conversation:
    """OpenAI chat format: `messages` [{role, content, tool_calls?}], optional `tools` and media columns."""
    raw_messages = _field(record, "messages", list)
    tools_value = _field(record, "tools", (list, str), optional=True)
    if isinstance(tools_value, str):
        tools_value = _json_string(tools_value, "field 'tools'")
    tools = [_tool_schema(t, f"tools[{i}]") for i, t in enumerate(tools_value or [])]
    known = {t["name"] for t in tools} if tools else None
    messages = []
    for i, raw in enumerate(raw_messages):
        if not isinstance(raw, dict):
            raise RecordError(f"messages[{i}] must be an object, got {type(raw).__name__}")
        role = raw.get("role")
        if role not in ("system", "user", "assistant", "tool"):
            raise RecordError(f"messages[{i}] has unknown role {role!r}")
        content = raw.get("content") or ""
        if not isinstance(content, (str, list)):
            raise RecordError(f"messages[{i}].content must be text or a list of parts")
        calls = [
            _tool_call(c, f"messages[{i}].tool_calls[{j}]", known) for j, c in enumerate(raw.get("tool_calls") or [])
        ]
        reasoning = raw.get("reasoning_content")
        if role == "assistant" and isinstance(content, str) and reasoning is None:
            reasoning, content = _split_think(content)
        if isinstance(content, str):
            content = _with_media_parts(content)
        messages.append(Message(role, content, reasoning=reasoning, tool_calls=calls or None))
    media = _media_lists(record)
    _check_media_count(messages, media)
    return Conversation(messages, tools=tools, **media)


def _sharegpt_messages(record: Record) -> list[tuple[str, str, str]]:
    """(sharegpt speaker, role, value) per turn, with types checked."""
    turns = []
    for i, turn in enumerate(_field(record, "conversations", list)):
        if not isinstance(turn, dict):
            raise RecordError(f"conversations[{i}] must be an object, got {type(turn).__name__}")
        speaker, value = turn.get("from"), turn.get("value")
        if speaker not in _SHAREGPT_ROLES:
            raise RecordError(f"conversations[{i}] has unknown speaker {speaker!r}")
        if not isinstance(value, str):
            raise RecordError(f"conversations[{i}].value must be text, got {type(value).__name__}")
        turns.append((speaker, _SHAREGPT_ROLES[speaker], value))
    return turns


def sharegpt(record: Record) -> Conversation:
    """ShareGPT as LLaMA-Factory reads it: `conversations` [{from, value}], optional `system`,
    `tools` (JSON string), and `images`/`videos`/`audios` columns matched to `<image>`-style placeholders.
    LLaVA-Instruct records (`image` + `conversations` with `<image>`) are the same layout."""
    tools_text = _text(record, "tools", optional=True)
    tools_value = _json_string(tools_text, "field 'tools'") if tools_text else []
    if not isinstance(tools_value, list):
        raise RecordError("field 'tools' must hold a JSON list")
    tools = [_tool_schema(t, f"tools[{i}]") for i, t in enumerate(tools_value)]
    messages = []
    system = _text(record, "system", optional=True)
    if system:
        messages.append(Message("system", system))
    for i, (speaker, role, value) in enumerate(_sharegpt_messages(record)):
        if speaker == "function_call":
            call = _tool_call(_json_string(value, f"conversations[{i}].value"), f"conversations[{i}]", None)
            messages.append(Message("assistant", "", tool_calls=[call]))
        elif role == "assistant":
            reasoning, answer = _split_think(value)
            messages.append(Message("assistant", _with_media_parts(answer), reasoning=reasoning))
        else:
            messages.append(Message(role, _with_media_parts(value)))
    media = _media_lists(record)
    _check_media_count(messages, media)
    return Conversation(messages, tools=tools, **media)


def hermes(record: Record) -> Conversation:
    """Hermes function calling: ShareGPT turns; the system turn lists `<tools>`, the model answers with
    `<tool_call>{...}</tool_call>` blocks and results come back as `tool` turns in `<tool_response>`."""
    tools: list[dict[str, Any]] = []
    messages = []
    for i, (_speaker, role, value) in enumerate(_sharegpt_messages(record)):
        if role == "system":
            # The prompt may mention "<tools></tools>" before the real list: take the first non-empty block.
            block = next((b for b in _TOOLS_BLOCK.finditer(value) if b.group(1).strip()), None)
            if block:
                listed = _json_or_python_literal(block.group(1), f"conversations[{i}] <tools>")
                listed = listed if isinstance(listed, list) else [listed]
                tools = [_tool_schema(t, f"conversations[{i}] tool {j}") for j, t in enumerate(listed)]
                value = (value[: block.start()] + value[block.end():]).strip()
            messages.append(Message("system", value))
        elif role == "assistant":
            known = {t["name"] for t in tools} if tools else None
            calls = [
                _tool_call(_json_or_python_literal(raw, f"conversations[{i}] <tool_call>"), f"conversations[{i}]", known)
                for raw in _TOOL_CALL.findall(value)
            ]
            text = _TOOL_CALL.sub("", value).strip()
            messages.append(Message("assistant", text, tool_calls=calls or None))
        elif role == "tool":
            response = _TOOL_RESPONSE.match(value)
            messages.append(Message("tool", response.group(1).strip() if response else value))
        else:
            messages.append(Message(role, value))
    return Conversation(messages, tools=tools)


def alpaca(record: Record) -> Conversation:
    """Alpaca: `instruction`, optional `input`, `output`; LLaMA-Factory's optional `system` and `history`."""
    instruction = _text(record, "instruction")
    extra = _text(record, "input", optional=True)
    output = _text(record, "output")
    messages = []
    system = _text(record, "system", optional=True)
    if system:
        messages.append(Message("system", system))
    for i, pair in enumerate(_field(record, "history", list, optional=True) or []):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(p, str) for p in pair)):
            raise RecordError(f"history[{i}] must be a [question, answer] pair of strings")
        messages += [Message("user", pair[0]), Message("assistant", pair[1])]
    prompt = f"{instruction}\n\n{extra}" if extra and extra.strip() else instruction
    reasoning, answer = _split_think(output)
    messages += [Message("user", prompt), Message("assistant", answer, reasoning=reasoning)]
    return Conversation(messages)


def cot_collection(record: Record) -> Conversation:
    """CoT-Collection: `source` (the task with its question), `rationale`, `target` (the answer)."""
    return Conversation(
        [
            Message("user", _text(record, "source")),
            Message("assistant", _text(record, "target"), reasoning=_text(record, "rationale")),
        ]
    )


def openo1(record: Record) -> Conversation:
    """OpenO1-SFT: `instruction`, and `output` holding `<Thought>...</Thought>` then `<Output>...</Output>`."""
    instruction = _text(record, "instruction")
    output = _text(record, "output")
    thought = _O1_THOUGHT.search(output)
    if not thought:
        raise RecordError("field 'output' has no <Thought>...</Thought> block")
    answer = _O1_OUTPUT.search(output, thought.end())
    if not answer or not answer.group(1).strip():
        raise RecordError("field 'output' has no <Output> section after the thought")
    return Conversation(
        [
            Message("user", instruction),
            Message("assistant", answer.group(1).strip(), reasoning=thought.group(1).strip()),
        ]
    )


def _xlam_parameters(parameters: Any, where: str) -> dict[str, Any]:
    """xLAM lists parameters as {name: {type: "str, optional", description, default}}; make JSON Schema."""
    if not isinstance(parameters, dict):
        raise RecordError(f"{where} parameters must be an object")
    properties, required = {}, []
    for name, spec in parameters.items():
        if not isinstance(spec, dict):
            raise RecordError(f"{where} parameter '{name}' must be an object")
        declared = str(spec.get("type", "str"))
        base = declared.split(",")[0].strip()
        json_type = _PYTHON_TO_JSON_TYPE.get(base.split("[")[0].lower(), base)
        prop = {"type": json_type, "description": spec.get("description", "")}
        if "default" in spec:
            prop["default"] = spec["default"]
        properties[name] = prop
        if "optional" not in declared and "default" not in spec:
            required.append(name)
    return {"type": "object", "properties": properties, "required": required}


def function_schemas(tools: Any, where: str = "tools") -> list[dict[str, Any]]:
    """Tool definitions as `{name, description, parameters}` with JSON Schema parameters.

    Accepts OpenAI's layout (bare or wrapped in `{"type": "function", "function": ...}`, parameters
    already JSON Schema) and xLAM's (parameters as `{name: {type, description}}`), so `omni-run chat
    --tools` takes the same listing a data set was trained with.
    """
    if not isinstance(tools, list) or not tools:
        raise RecordError(f"{where} must be a non-empty list of function definitions")
    schemas = []
    for i, tool in enumerate(tools):
        function = _tool_schema(tool, f"{where}[{i}]")
        parameters = function.get("parameters", {})
        if not _is_json_schema(parameters):
            parameters = _xlam_parameters(parameters, f"{where}[{i}]")
        schemas.append({"name": function["name"], "description": function.get("description", ""), "parameters": parameters})
    return schemas


def _is_json_schema(parameters: Any) -> bool:
    # An xLAM parameter named "type" maps to an object, never to the string "object".
    return isinstance(parameters, dict) and parameters.get("type") == "object"


def xlam(record: Record) -> Conversation:
    """xLAM function calling: `query` text, `tools` and `answers` as JSON strings of lists."""
    query = _text(record, "query")
    tools_value = _json_string(_text(record, "tools"), "field 'tools'")
    answers = _json_string(_text(record, "answers"), "field 'answers'")
    if not isinstance(tools_value, list) or not tools_value:
        raise RecordError("field 'tools' must hold a non-empty JSON list")
    if not isinstance(answers, list) or not answers:
        raise RecordError("field 'answers' must hold a non-empty JSON list")
    tools = function_schemas(tools_value)
    known = {t["name"] for t in tools}
    calls = [_tool_call(a, f"answers[{i}]", known) for i, a in enumerate(answers)]
    return Conversation([Message("user", query), Message("assistant", "", tool_calls=calls)], tools=tools)


_GORILLA_MARKDOWN = re.compile(r"###Instruction:\s*(.*?)\s*###Output:\s*(.*)$", re.DOTALL)
_GORILLA_DICT = re.compile(r"^\{'Instruction':\s*(.*?),\s*'Output':", re.DOTALL)


def gorilla(record: Record) -> Conversation:
    """Gorilla APIBench: `code` holds the instruction and the worked answer (`###Instruction: ...
    ###Output: <<<domain>>>...<<<api_call>>>...`, or the torchhub `{'Instruction': ..., 'Output': ...}`
    spelling); `api_call`, `provider` and `api_data` describe the API. The model learns the answer."""
    code = _text(record, "code")
    api_call = _text(record, "api_call")
    _text(record, "provider")
    markdown = _GORILLA_MARKDOWN.search(code)
    if markdown:
        instruction, answer = markdown.group(1), markdown.group(2).strip()
    else:
        spelled_as_dict = _GORILLA_DICT.match(code)
        if not spelled_as_dict:
            raise RecordError("field 'code' has neither '###Instruction:/###Output:' nor an 'Instruction' entry")
        instruction, answer = spelled_as_dict.group(1).strip().strip("\"'"), api_call
    if not instruction:
        raise RecordError("field 'code' has an empty instruction")
    return Conversation([Message("user", instruction), Message("assistant", answer)])


# What the model is asked when a record pairs a medium with its description.
DESCRIBE_IMAGE = "Describe the image."
DESCRIBE_VIDEO = "Describe the video."
TRANSCRIBE_AUDIO = "Transcribe the audio."


def _described(kind: str, path: str, request: str, answer: str) -> Conversation:
    """A user turn holding one medium and a request, answered by the record's text."""
    column = {"image": "images", "video": "videos", "audio": "audios"}[kind]
    user = Message("user", [{"type": kind}, {"type": "text", "text": request}])
    return Conversation([user, Message("assistant", answer)], **{column: [path]})


# The generation chain of thought (GoT) of the GoT releases (JourneyDB-GoT, Laion-Aesthetics-High-Resolution-GoT,
# OmniEdit-GoT): the planned layout, objects and boxes, written before the picture is drawn.
_GOT_FIELDS = ("got", "got_description", "reasoning")
_SOURCE_IMAGE_FIELDS = ("source_image", "src_img", "input_image")
_TARGET_IMAGE_FIELDS = ("target_image", "tgt_img", "edited_image", "edited_img", "output_image")


def _first_text(record: Record, names: tuple[str, ...], *, required: bool = True) -> str | None:
    """The first of `names` that the record fills with text, stripped; a RecordError naming them all when required."""
    for name in names:
        value = _text(record, name, optional=True)
        if value and value.strip():
            return value.strip()
    if not required:
        return None
    others = " / ".join(f"'{name}'" for name in names[1:])
    raise RecordError(f"missing field '{names[0]}'" + (f" (or {others})" if others else ""))


def _generation_request(prompt: str | list[dict[str, Any]], record: Record, target: MediaTarget,
                        images: list[str] | None = None) -> Conversation:
    """The user's prompt answered by the record's generation chain of thought ("" without one), producing `target`."""
    reasoning = _first_text(record, _GOT_FIELDS, required=False) or ""
    return Conversation([Message("user", prompt), Message("assistant", reasoning)], images=images or [], target=target)


def image_caption(record: Record) -> Conversation:
    """An image and its caption (JourneyDB, LAION aesthetics, and their GoT releases JourneyDB-GoT and
    Laion-Aesthetics-High-Resolution-GoT): `image` (or `img_path`), `caption` (or `prompt`, as generation
    sets name it), optional `got` (or `got_description`, `reasoning`): the generation chain of thought.
    Trains vision-qa as "describe the image"; its `generation` is the image-generation request: the
    prompt (`prompt`, else `caption`) -> the image, the chain of thought as the assistant's text."""
    path = _first_text(record, ("image", "img_path"))
    caption = _first_text(record, ("caption", "prompt"))
    understanding = _described("image", path, DESCRIBE_IMAGE, caption)
    prompt = _first_text(record, ("prompt", "caption"))
    understanding.generation = _generation_request(prompt, record, MediaTarget("image", path))
    return understanding


def video_caption(record: Record) -> Conversation:
    """A video and a caption. MSR-VTT: `video_id` (file `<video_id>.mp4` unless `video` names it) and
    `caption`; VaTeX: `videoID` and `enCap` (a list of ten; the first trains); VideoCoF: `video`,
    `caption`, optional `got` (as image_caption reads it). Its `generation` is the video-generation
    request: the caption -> the video."""
    video_id = _text(record, "video_id", optional=True) or _text(record, "videoID", optional=True)
    path = _text(record, "video", optional=True) or (f"{video_id}.mp4" if video_id else None)
    if not path:
        raise RecordError("missing field 'video' (or 'video_id' / 'videoID')")
    caption = _first_listed(record, "caption", "enCap")
    if not caption:
        raise RecordError("missing field 'caption' (or a non-empty 'enCap' list)")
    understanding = _described("video", path, DESCRIBE_VIDEO, caption)
    understanding.generation = _generation_request(caption, record, MediaTarget("video", path))
    return understanding


def _first_listed(record: Record, name: str, list_name: str) -> str | None:
    """`name`'s text, else the first entry of the list `list_name` (VaTeX's `enCap`, OmniEdit's prompt list)."""
    value = _first_text(record, (name,), required=False)
    if value is None and list_name in record:
        values = _field(record, list_name, list)
        value = values[0].strip() if values and isinstance(values[0], str) else None
    return value or None


def image_edit(record: Record) -> Conversation:
    """An image edit (OmniEdit, OmniEdit-GoT): `source_image` (or `src_img`, `input_image`), `instruction`
    (or `edit_prompt`, or the first of OmniEdit's `edited_prompt_list`), `target_image` (or `tgt_img`,
    `edited_image`, `edited_img`, `output_image`), optional `got` (as image_caption reads it). The record
    is a generation request only: the source image and the instruction in the user turn, the chain of
    thought (or "") answering, the edited image as `target`; `generation` holds the same request."""
    source = _first_text(record, _SOURCE_IMAGE_FIELDS)
    instruction = _first_text(record, ("instruction",), required=False) or _first_listed(record, "edit_prompt", "edited_prompt_list")
    if not instruction:
        raise RecordError("missing field 'instruction' (or 'edit_prompt' / a non-empty 'edited_prompt_list')")
    target = _first_text(record, _TARGET_IMAGE_FIELDS)
    request = _generation_request([{"type": "image"}, {"type": "text", "text": instruction}], record,
                                  MediaTarget("image", target), images=[source])
    return replace(request, generation=request)


def speech_transcript(record: Record) -> Conversation:
    """Speech and its transcript (OleSpeech, podcast corpora): `audio`, `transcript` (or `text`),
    optional `speakers`. Trains audio understanding as "transcribe the audio"."""
    path = _text(record, "audio")
    transcript = _text(record, "transcript", optional=True) or _text(record, "text", optional=True)
    if not transcript or not transcript.strip():
        raise RecordError("missing field 'transcript' (or 'text'), and no cached transcript of its audio: "
                          "run `omni-run data prepare RECIPE` to transcribe it with the recipe's encoders.asr")
    _field(record, "speakers", list, optional=True)
    return _described("audio", path, TRANSCRIBE_AUDIO, transcript.strip())


ADAPTERS: dict[str, Callable[[Record], Conversation]] = {
    "openai": openai_messages,
    "sharegpt": sharegpt,
    "alpaca": alpaca,
    "cot-collection": cot_collection,
    "openo1": openo1,
    "xlam": xlam,
    "hermes": hermes,
    "gorilla": gorilla,
    "image-caption": image_caption,
    "image-edit": image_edit,
    "video-caption": video_caption,
    "speech-transcript": speech_transcript,
}


def adapt(format_name: str, record: Any) -> Conversation:
    """Turn one record of `format_name` into a Conversation, or raise RecordError with the reason."""
    if not isinstance(record, dict):
        raise RecordError(f"record must be a JSON object, got {type(record).__name__}")
    try:
        adapter = ADAPTERS[format_name]
    except KeyError:
        raise RecordError(f"no adapter for format '{format_name}' (known: {', '.join(ADAPTERS)})") from None
    conversation = adapter(record)
    check_renderable(conversation)
    if conversation.generation is not None and conversation.generation is not conversation:
        check_renderable(conversation.generation)
    return conversation
