"""Every adapter on records in its data set's real layout, good and bad."""

from __future__ import annotations

import json

import pytest

from omni_runner.data.adapters import adapt, function_schemas
from omni_runner.data.conversation import MediaTarget, Message, RecordError

XLAM_TOOLS = json.dumps([{
    "name": "live_giveaways_by_type",
    "description": "Retrieve live giveaways from the GamerPower API based on the specified type.",
    "parameters": {"type": {"description": "The type of giveaways to retrieve.", "type": "str", "default": "game"}},
}])


def xlam_record(**changes):
    record = {
        "id": 0,
        "query": "Where can I find live giveaways for beta access and games?",
        "answers": json.dumps([
            {"name": "live_giveaways_by_type", "arguments": {"type": "beta"}},
            {"name": "live_giveaways_by_type", "arguments": {"type": "game"}},
        ]),
        "tools": XLAM_TOOLS,
    }
    record.update(changes)
    return record


def test_xlam_record_becomes_user_query_and_parallel_tool_calls():
    conversation = adapt("xlam", xlam_record())
    assert conversation.messages[0].content.startswith("Where can I find")
    assert [c["arguments"] for c in conversation.messages[1].tool_calls] == [{"type": "beta"}, {"type": "game"}]
    parameter = conversation.tools[0]["parameters"]["properties"]["type"]
    assert parameter == {"type": "string", "description": "The type of giveaways to retrieve.", "default": "game"}


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"answers": "[{\"name\": \"x\""}, "field 'answers' is not valid JSON"),
        ({"tools": 7}, "field 'tools' must be str, got int"),
        ({"query": None}, "missing field 'query'"),
        ({"answers": json.dumps([{"name": "unknown_api", "arguments": {}}])}, "calls 'unknown_api', which is not among"),
    ],
)
def test_bad_xlam_records_are_rejected_with_the_reason(changes, reason):
    with pytest.raises(RecordError, match=reason):
        adapt("xlam", xlam_record(**changes))


def test_tool_definitions_in_openai_layout_pass_through_as_the_xlam_layout_converts():
    xlam_layout = json.loads(XLAM_TOOLS)  # its parameter named "type" must not read as a JSON Schema
    converted = function_schemas(xlam_layout)
    openai_layout = [{"type": "function", "function": converted[0]}]
    assert converted[0]["parameters"]["properties"]["type"]["type"] == "string"
    assert function_schemas(openai_layout) == converted


def test_a_tool_listing_that_is_not_a_list_of_functions_is_rejected():
    with pytest.raises(RecordError, match="must be a non-empty list of function definitions"):
        function_schemas({"name": "get_weather"})


HERMES_SYSTEM = (
    "You are a function calling AI model. You are provided with function signatures within <tools></tools> "
    "XML tags. <tools> [{'type': 'function', 'function': {'name': 'get_stock_price', 'description': "
    "'Get the current stock price', 'parameters': {'type': 'object', 'properties': {'symbol': {'type': "
    "'string'}}, 'required': ['symbol']}}}] </tools> For each function call return a json object."
)


def hermes_record(gpt_value):
    return {
        "id": "h1",
        "conversations": [
            {"from": "system", "value": HERMES_SYSTEM},
            {"from": "human", "value": "What's Apple trading at?"},
            {"from": "gpt", "value": gpt_value},
            {"from": "tool", "value": "<tool_response>\n{'symbol': 'AAPL', 'price': 150.75}\n</tool_response>"},
            {"from": "gpt", "value": "Apple (AAPL) trades at $150.75."},
        ],
        "category": "Finance",
        "subcategory": "Stocks",
        "task": "Get stock price",
    }


def test_hermes_tools_calls_and_responses_are_parsed_including_python_dict_spelling():
    conversation = adapt("hermes", hermes_record("<tool_call>\n{'arguments': {'symbol': 'AAPL'}, 'name': 'get_stock_price'}\n</tool_call>"))
    assert conversation.tools[0]["name"] == "get_stock_price"
    assert "get_stock_price" not in conversation.messages[0].content
    assert conversation.messages[2].tool_calls == [{"name": "get_stock_price", "arguments": {"symbol": "AAPL"}}]
    assert conversation.messages[3].role == "tool" and conversation.messages[3].content.startswith("{'symbol'")


def test_hermes_tool_call_that_does_not_parse_is_rejected():
    with pytest.raises(RecordError, match="conversations\\[2\\] <tool_call> is neither JSON nor a Python literal"):
        adapt("hermes", hermes_record("<tool_call>\n{'arguments': {'symbol': 'AAPL'\n</tool_call>"))


def test_sharegpt_keeps_media_columns_and_placeholders_as_parts():
    record = {
        "conversations": [{"from": "human", "value": "<image>What is in the picture?"}, {"from": "gpt", "value": "A cat."}],
        "images": ["photos/cat.jpg"],
    }
    conversation = adapt("sharegpt", record)
    assert conversation.images == ["photos/cat.jpg"]
    assert conversation.messages[0].content == [{"type": "image"}, {"type": "text", "text": "What is in the picture?"}]


def test_sharegpt_placeholder_count_must_match_media_column():
    record = {"conversations": [{"from": "human", "value": "<image><image>Compare."}, {"from": "gpt", "value": "Same."}],
              "images": ["a.jpg"]}
    with pytest.raises(RecordError, match="2 <image> placeholder\\(s\\) but 1 entries in 'images'"):
        adapt("sharegpt", record)


def test_sharegpt_function_call_and_observation_turns_become_tool_call_and_tool_result():
    record = {
        "conversations": [
            {"from": "human", "value": "Weather in Oslo?"},
            {"from": "function_call", "value": "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}"},
            {"from": "observation", "value": "{\"temp\": 3}"},
            {"from": "gpt", "value": "3 degrees."},
        ],
        "tools": "[{\"name\": \"get_weather\", \"description\": \"w\", \"parameters\": {}}]",
    }
    conversation = adapt("sharegpt", record)
    assert [m.role for m in conversation.messages] == ["user", "assistant", "tool", "assistant"]
    assert conversation.messages[1].tool_calls == [{"name": "get_weather", "arguments": {"city": "Oslo"}}]


def test_sharegpt_unknown_speaker_is_rejected():
    with pytest.raises(RecordError, match="conversations\\[0\\] has unknown speaker 'narrator'"):
        adapt("sharegpt", {"conversations": [{"from": "narrator", "value": "Once"}]})


def test_openai_messages_with_tool_calls_and_think_block():
    record = {
        "messages": [
            {"role": "user", "content": "Is 9 odd?"},
            {"role": "assistant", "content": "<think>\n9 = 2*4 + 1\n</think>\n\nYes."},
            {"role": "user", "content": "Time in Lima?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"type": "function", "function": {"name": "clock", "arguments": "{\"city\": \"Lima\"}"}}]},
        ],
    }
    conversation = adapt("openai", record)
    assert conversation.messages[1].reasoning == "9 = 2*4 + 1" and conversation.messages[1].content == "Yes."
    assert conversation.messages[3].tool_calls == [{"name": "clock", "arguments": {"city": "Lima"}}]


def test_openai_messages_without_assistant_turn_is_rejected():
    with pytest.raises(RecordError, match="no assistant turn"):
        adapt("openai", {"messages": [{"role": "user", "content": "hello"}]})


def test_alpaca_joins_instruction_and_input():
    conversation = adapt("alpaca", {"instruction": "Give three tips for staying healthy.", "input": "", "output": "1. Eat well."})
    assert conversation.messages[0].content == "Give three tips for staying healthy."
    conversation = adapt("alpaca", {"instruction": "Translate.", "input": "bonjour", "output": "hello"})
    assert conversation.messages[0].content == "Translate.\n\nbonjour"


def test_alpaca_missing_output_is_rejected():
    with pytest.raises(RecordError, match="missing field 'output'"):
        adapt("alpaca", {"instruction": "Say hi.", "input": ""})


def test_cot_collection_rationale_becomes_reasoning():
    record = {"source": "Q: 2+3? Options: - 5 - 6", "target": "5", "rationale": "Adding 2 and 3 gives 5.",
              "task": "math_qa", "type": "CoT"}
    message = adapt("cot-collection", record).messages[1]
    assert (message.reasoning, message.content) == ("Adding 2 and 3 gives 5.", "5")


def test_cot_collection_empty_rationale_is_rejected():
    with pytest.raises(RecordError, match="field 'rationale' is empty"):
        adapt("cot-collection", {"source": "Q", "target": "A", "rationale": "  "})


def test_openo1_thought_and_output_are_split():
    record = {"instruction": "What is 12 * 3?", "output": "<Thought>\n12 * 3 = 36.\n</Thought>\n<Output>\n36\n</Output>"}
    message = adapt("openo1", record).messages[1]
    assert (message.reasoning, message.content) == ("12 * 3 = 36.", "36")


def test_openo1_output_without_thought_is_rejected():
    with pytest.raises(RecordError, match="no <Thought>...</Thought> block"):
        adapt("openo1", {"instruction": "Hi", "output": "Hello there."})


GORILLA_CODE = (
    "###Instruction: We need embeddings of medical terms.\n###Output: <<<domain>>>: Multimodal Feature Extraction\n"
    "<<<api_call>>>: AutoModel.from_pretrained('GanjinZero/UMLSBert_ENG')\n<<<api_provider>>>: Hugging Face Transformers\n"
    "<<<explanation>>>: 1. Import AutoModel.\n<<<code>>>: from transformers import AutoModel\n"
)


def test_gorilla_apibench_instruction_and_worked_answer():
    record = {"code": GORILLA_CODE, "api_call": "AutoModel.from_pretrained('GanjinZero/UMLSBert_ENG')",
              "provider": "Hugging Face Transformers", "api_data": {"domain": "Multimodal Feature Extraction"}}
    conversation = adapt("gorilla", record)
    assert conversation.messages[0].content == "We need embeddings of medical terms."
    assert conversation.messages[1].content.startswith("<<<domain>>>: Multimodal Feature Extraction")


def test_gorilla_torchhub_dict_spelling_answers_with_the_api_call():
    record = {"code": "{'Instruction': I need a depth model., 'Output': {'domain': 'Classification'}}",
              "api_call": "torch.hub.load(repo_or_dir='intel-isl/MiDaS', model='DPT_Hybrid')", "provider": "PyTorch",
              "api_data": {}}
    conversation = adapt("gorilla", record)
    assert conversation.messages[0].content == "I need a depth model."
    assert conversation.messages[1].content.startswith("torch.hub.load(")


def test_gorilla_code_without_instruction_is_rejected():
    with pytest.raises(RecordError, match="neither '###Instruction:/###Output:'"):
        adapt("gorilla", {"code": "print(1)", "api_call": "x()", "provider": "p"})


def test_record_that_is_not_an_object_is_rejected():
    with pytest.raises(RecordError, match="record must be a JSON object, got list"):
        adapt("alpaca", [1, 2])


def test_llava_instruct_record_is_sharegpt_with_a_single_image_column():
    record = {"id": "000000033471", "image": "000000033471.jpg", "conversations": [
        {"from": "human", "value": "<image>\nWhat are the colors of the bus in the image?"},
        {"from": "gpt", "value": "The bus in the image is white and red."}]}
    conversation = adapt("sharegpt", record)
    assert conversation.images == ["000000033471.jpg"]
    assert conversation.messages[0].content[0] == {"type": "image"}


def test_image_caption_asks_to_describe_the_image():
    conversation = adapt("image-caption", {"image": "imgs/1.png", "caption": " A red fox. "})
    assert conversation.images == ["imgs/1.png"]
    assert conversation.messages[0].content == [{"type": "image"}, {"type": "text", "text": "Describe the image."}]
    assert conversation.messages[1].content == "A red fox."


def test_image_caption_takes_the_prompt_of_generation_sets():
    assert adapt("image-caption", {"img_path": "a.jpg", "prompt": "a castle"}).messages[1].content == "a castle"


def test_msr_vtt_record_names_its_video_by_id():
    conversation = adapt("video-caption", {"video_id": "video7020", "caption": "a man is singing", "sen_id": 3})
    assert conversation.videos == ["video7020.mp4"]
    assert conversation.messages[1].content == "a man is singing"


def test_vatex_record_trains_its_first_english_caption():
    record = {"videoID": "Ptf_2VRj-V0_000122_000132", "enCap": ["A man plays.", "Someone plays."], "chCap": ["一"]}
    conversation = adapt("video-caption", record)
    assert conversation.videos == ["Ptf_2VRj-V0_000122_000132.mp4"]
    assert conversation.messages[1].content == "A man plays."


def test_speech_transcript_asks_for_a_transcript():
    conversation = adapt("speech-transcript", {"audio": "s/1.wav", "transcript": "hello there", "speakers": ["S1"]})
    assert conversation.audios == ["s/1.wav"]
    assert conversation.messages[0].content[1]["text"] == "Transcribe the audio."


@pytest.mark.parametrize(("fmt", "record", "reason"), [
    ("image-caption", {"caption": "x"}, "missing field 'image'"),
    ("image-caption", {"image": "a.png", "caption": "  "}, "missing field 'caption'"),
    ("video-caption", {"caption": "x"}, "missing field 'video'"),
    ("video-caption", {"videoID": "v", "enCap": []}, "non-empty 'enCap'"),
    ("speech-transcript", {"audio": "a.wav"}, "missing field 'transcript'"),
    ("speech-transcript", {"transcript": "hi"}, "missing field 'audio'"),
    ("sharegpt", {"conversations": [{"from": "human", "value": "<image>?"}, {"from": "gpt", "value": "!"}],
                  "images": [""]}, "must list file paths"),
])
def test_bad_media_records_are_rejected_with_the_reason(fmt, record, reason):
    with pytest.raises(RecordError, match=reason):
        adapt(fmt, record)


def test_image_caption_is_also_a_generation_request_answered_by_its_chain_of_thought():
    got = "One castle, in the middle of the picture, at (40, 30), (200, 220)."
    conversation = adapt("image-caption", {"img_path": "j/1.jpg", "prompt": "a castle", "caption": "A castle at dusk.", "got": got})
    assert conversation.messages[1].content == "A castle at dusk." and conversation.target is None
    request = conversation.generation
    assert request.messages == [Message("user", "a castle"), Message("assistant", got)]
    assert (request.target, request.images, request.generation) == (MediaTarget("image", "j/1.jpg"), [], None)


@pytest.mark.parametrize("field", ["got", "got_description", "reasoning"])
def test_generation_chain_of_thought_is_read_under_each_accepted_name(field):
    request = adapt("image-caption", {"image": "a.png", "caption": "a fox", field: " Plan: one fox. "}).generation
    assert request.messages[1].content == "Plan: one fox."


def test_generation_request_without_chain_of_thought_answers_with_empty_text():
    request = adapt("image-caption", {"image": "a.png", "caption": "a fox"}).generation
    assert request.messages == [Message("user", "a fox"), Message("assistant", "")]


def test_video_caption_is_also_a_request_for_the_video():
    request = adapt("video-caption", {"video_id": "video7020", "caption": "a man is singing"}).generation
    assert request.messages[0].content == "a man is singing"
    assert request.target == MediaTarget("video", "video7020.mp4") and request.videos == []


OMNIEDIT_GOT = {"source_image": "src/1.png", "instruction": "make the shape blue", "target_image": "tgt/1.png",
                "got": "Change the red circle on the left to blue."}


def test_image_edit_is_a_request_with_the_source_image_the_instruction_and_the_edited_target():
    conversation = adapt("image-edit", OMNIEDIT_GOT)
    assert conversation.messages == [
        Message("user", [{"type": "image"}, {"type": "text", "text": "make the shape blue"}]),
        Message("assistant", "Change the red circle on the left to blue."),
    ]
    assert (conversation.images, conversation.target) == (["src/1.png"], MediaTarget("image", "tgt/1.png"))
    request = conversation.generation
    assert (request.messages, request.images, request.target) == (conversation.messages, conversation.images, conversation.target)
    assert request.generation is None


@pytest.mark.parametrize(("aliases", "source", "instruction", "target"), [
    ({"src_img": "s.png", "edit_prompt": "add a hat", "tgt_img": "t.png"}, "s.png", "add a hat", "t.png"),
    ({"input_image": "s.png", "edited_prompt_list": ["add a hat", "hat on"], "edited_img": "t.png"}, "s.png", "add a hat", "t.png"),
    ({"src_img": "s.png", "instruction": "add a hat", "edited_image": "t.png"}, "s.png", "add a hat", "t.png"),
    ({"src_img": "s.png", "instruction": "add a hat", "output_image": "t.png"}, "s.png", "add a hat", "t.png"),
])
def test_image_edit_reads_each_accepted_field_name(aliases, source, instruction, target):
    conversation = adapt("image-edit", aliases)
    assert conversation.images == [source] and conversation.target == MediaTarget("image", target)
    assert conversation.messages[0].content[1]["text"] == instruction and conversation.messages[1].content == ""


@pytest.mark.parametrize(("drop", "reason"), [
    ("source_image", "missing field 'source_image' \\(or 'src_img' / 'input_image'\\)"),
    ("instruction", "missing field 'instruction' \\(or 'edit_prompt'"),
    ("target_image", "missing field 'target_image' \\(or 'tgt_img' / 'edited_image' / 'edited_img' / 'output_image'\\)"),
])
def test_image_edit_without_a_required_field_is_rejected_naming_every_accepted_name(drop, reason):
    record = {key: value for key, value in OMNIEDIT_GOT.items() if key != drop}
    with pytest.raises(RecordError, match=reason):
        adapt("image-edit", record)


def test_image_edit_with_a_non_text_path_is_rejected_with_its_type():
    with pytest.raises(RecordError, match="field 'src_img' must be str, got dict"):
        adapt("image-edit", {**OMNIEDIT_GOT, "source_image": None, "src_img": {"bytes": b""}})
