"""Modality detection reads config files only and explains every conclusion."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from omni_runner.detect import DetectionError, detect

FAMILIES = [
    # folder, role, model_type, modalities
    ("qwen2.5-omni-7b", "base", "qwen2_5_omni", ["text_in", "text_out", "image_in", "video_in", "audio_in", "audio_out"]),
    ("qwen2.5-omni-7b-gptq-int4", "base", "qwen2_5_omni", ["text_in", "text_out", "image_in", "video_in", "audio_in", "audio_out"]),
    ("qwen2.5-7b-instruct", "base", "qwen2", ["text_in", "text_out"]),
    ("llama-3.1-8b-instruct", "base", "llama", ["text_in", "text_out"]),
    ("qwen2-vl-7b-instruct", "base", "qwen2_vl", ["text_in", "text_out", "image_in", "video_in"]),
    ("qwen2.5-vl-7b-instruct", "base", "qwen2_5_vl", ["text_in", "text_out", "image_in", "video_in"]),
    ("qwen2-audio-7b-instruct", "base", "qwen2_audio", ["text_in", "text_out", "audio_in"]),
    ("siglip2-so400m-patch16-512", "encoder", "siglip", ["image_in", "video_in"]),
    ("siglip2-base-patch16-naflex", "encoder", "siglip2", ["image_in", "video_in"]),
    ("whisper-large-v3-turbo", "encoder", "whisper", ["text_out", "audio_in"]),
    ("parakeet-ctc-0.6b", "encoder", "parakeet_ctc", ["text_out", "audio_in"]),
    ("sd3-medium-diffusers", "decoder", "StableDiffusion3Pipeline", ["image_out"]),
    ("svd-img2vid-xt-1-1", "decoder", "StableVideoDiffusionPipeline", ["video_out"]),
]

# Published sizes (billions) that the config-dimension arithmetic must land near.
PUBLISHED_BILLIONS = {
    "qwen2.5-omni-7b": 10.7,
    "qwen2.5-7b-instruct": 7.62,
    "llama-3.1-8b-instruct": 8.03,
    "qwen2-vl-7b-instruct": 8.29,
    "siglip2-so400m-patch16-512": 1.14,
    "whisper-large-v3-turbo": 0.81,
    "parakeet-ctc-0.6b": 0.6,
}


@pytest.mark.parametrize(("folder", "role", "model_type", "modalities"), FAMILIES)
def test_each_family_is_detected_with_role_type_and_modalities(models: Path, folder, role, model_type, modalities):
    detection = detect(models / folder)
    assert (detection.role, detection.model_type, list(detection.modalities)) == (role, model_type, modalities)


@pytest.mark.parametrize(("folder", "billions"), PUBLISHED_BILLIONS.items())
def test_parameter_count_from_config_dims_is_within_five_percent_of_published(models: Path, folder, billions):
    assert detect(models / folder).parameters == pytest.approx(billions * 1e9, rel=0.05)


def test_gptq_int4_release_reports_its_quantization_with_evidence(models: Path):
    detection = detect(models / "qwen2.5-omni-7b-gptq-int4")
    assert detection.quantization == "gptq-int4"
    quant = [e for e in detection.evidence if e.key == "quantization_config.quant_method"]
    assert quant and "bits 4" in quant[0].conclusion and quant[0].file == "config.json"


def test_unquantized_model_reports_null_quantization(models: Path):
    assert detect(models / "qwen2.5-omni-7b").quantization is None


def test_every_modality_has_evidence_naming_file_and_key(models: Path):
    detection = detect(models / "qwen2.5-omni-7b")
    keys = {e.key for e in detection.evidence}
    assert {"model_type", "thinker_config.vision_config", "thinker_config.audio_config", "talker_config", "token2wav_config"} <= keys


def test_omni_without_talker_has_no_audio_out(models: Path, tmp_path: Path):
    config = json.loads((models / "qwen2.5-omni-7b" / "config.json").read_text())
    config["enable_audio_output"] = False
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert "audio_out" not in detect(tmp_path).modalities


def test_diffusers_svd_says_it_is_image_conditioned(models: Path):
    evidence = detect(models / "svd-img2vid-xt-1-1").evidence[0]
    assert (evidence.file, evidence.key) == ("model_index.json", "_class_name")
    assert "conditioned on image_in" in evidence.conclusion


def test_diffusers_component_without_dims_is_sized_from_its_safetensors_index(models: Path):
    detection = detect(models / "svd-img2vid-xt-1-1")
    assert detection.components["unet"]["parameters"] == pytest.approx(1.52e9, rel=0.01)
    assert any(e.file == "unet/diffusion_pytorch_model.safetensors.index.json" for e in detection.evidence)


def test_nemo_archive_is_read_without_extracting_weights(parakeet_nemo: Path):
    detection = detect(parakeet_nemo)
    assert (detection.role, list(detection.modalities)) == ("encoder", ["text_out", "audio_in"])
    assert detection.parameters == pytest.approx(0.6e9, rel=0.05)
    assert "TDT" in detection.evidence[0].conclusion


def test_folder_holding_one_nemo_file_is_detected_as_that_file(parakeet_nemo: Path):
    assert detect(parakeet_nemo.parent).path == str(parakeet_nemo)


def test_to_json_has_the_documented_fields(models: Path):
    payload = detect(models / "qwen2.5-omni-7b-gptq-int4").to_json()
    assert {"path", "role", "model_type", "modalities", "quantization", "parameters", "evidence"} <= payload.keys()
    assert payload["evidence"][0].keys() == {"file", "key", "conclusion"}
    json.dumps(payload)


def test_folder_without_configs_is_a_clear_error(tmp_path: Path):
    (tmp_path / "README.md").write_text("weights elsewhere")
    with pytest.raises(DetectionError, match="no config.json, model_index.json or .nemo file"):
        detect(tmp_path)


def test_missing_path_is_a_clear_error(tmp_path: Path):
    with pytest.raises(DetectionError, match="no such file or folder"):
        detect(tmp_path / "absent")


def test_unknown_model_type_names_the_known_families(tmp_path: Path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    with pytest.raises(DetectionError, match=r"'bert' \(architectures BertModel\) is not a family omni-run knows"):
        detect(tmp_path)


def _save_config(config, folder: Path) -> Path:
    """A config folder written by transformers' own config class, as a released model ships it."""
    config.save_pretrained(folder)
    return folder


def test_a_llava_folder_is_described_by_its_structure(tmp_path: Path):
    from transformers import LlavaConfig

    detection = detect(_save_config(LlavaConfig(), tmp_path))
    assert (detection.role, detection.model_type) == ("base", "llava")
    assert detection.modalities == ("text_in", "text_out", "image_in")
    keys = {e.key for e in detection.evidence}
    assert {"vision_config", "image_token_index", "projector_hidden_act"} <= keys
    assert 6.5e9 < detection.parameters < 7.5e9  # Vicuna-7B's dimensions plus a CLIP ViT-L/14


def test_a_video_placeholder_token_adds_video_input(tmp_path: Path):
    from transformers import LlavaOnevisionConfig

    detection = detect(_save_config(LlavaOnevisionConfig(), tmp_path))
    assert detection.modalities == ("text_in", "text_out", "image_in", "video_in")
    assert any(e.key == "video_token_index" for e in detection.evidence)


def test_an_unknown_decoder_only_model_is_a_text_model_by_structure(models: Path, tmp_path: Path):
    config = json.loads((models / "qwen2.5-7b-instruct" / "config.json").read_text())
    config.update(model_type="my_lm", architectures=["MyLMForCausalLM"])
    (tmp_path / "config.json").write_text(json.dumps(config))
    detection = detect(tmp_path)
    assert detection.modalities == ("text_in", "text_out")
    assert detection.parameters == detect(models / "qwen2.5-7b-instruct").parameters


def test_sub_configs_without_dimensions_are_not_guessed_at(tmp_path: Path):
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "my_vlm", "text_config": {"model_type": "llama"}, "vision_config": {"model_type": "clip_vision_model"},
    }))
    detection = detect(tmp_path)
    assert detection.modalities == ("text_in", "text_out", "image_in") and detection.parameters is None
    assert any("library defaults" in e.conclusion for e in detection.evidence)


def test_broken_json_names_file_line_and_column(tmp_path: Path):
    (tmp_path / "config.json").write_text('{\n  "model_type": "qwen2",\n  oops\n}')
    with pytest.raises(DetectionError, match=r"config.json:3:3: not valid JSON"):
        detect(tmp_path)


def test_binary_config_is_a_clear_error(tmp_path: Path):
    (tmp_path / "config.json").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(DetectionError, match="not UTF-8 text"):
        detect(tmp_path)


def test_tar_without_model_config_is_not_a_nemo_model(tmp_path: Path):
    import tarfile

    archive = tmp_path / "x.nemo"
    (tmp_path / "weights.ckpt").write_bytes(b"\0")
    with tarfile.open(archive, "w") as tar:
        tar.add(tmp_path / "weights.ckpt", arcname="./weights.ckpt")
    with pytest.raises(DetectionError, match="without model_config.yaml"):
        detect(archive)


def test_unknown_diffusers_pipeline_is_a_clear_error(tmp_path: Path):
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "KandinskyPipeline"}))
    with pytest.raises(DetectionError, match="'KandinskyPipeline' is not one omni-run can drive"):
        detect(tmp_path)


def test_detect_command_exits_1_with_the_message_and_no_traceback(tmp_path: Path, capsys):
    import argparse

    from omni_runner.commands import detect as detect_command

    parser = argparse.ArgumentParser()
    detect_command.add_arguments(parser)
    assert detect_command.run(parser.parse_args([str(tmp_path)])) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no config.json" in err and "Traceback" not in err


def test_detect_command_json_is_the_detection(models: Path, capsys):
    import argparse

    from omni_runner.commands import detect as detect_command

    parser = argparse.ArgumentParser()
    detect_command.add_arguments(parser)
    assert detect_command.run(parser.parse_args([str(models / "whisper-large-v3-turbo"), "--json"])) == 0
    payload = json.loads(capsys.readouterr().out)
    assert (payload["role"], payload["modalities"]) == ("encoder", ["text_out", "audio_in"])


def test_quantization_config_inside_thinker_config_is_found(models: Path, tmp_path: Path):
    config = json.loads((models / "qwen2.5-omni-7b-gptq-int4" / "config.json").read_text())
    config["thinker_config"]["quantization_config"] = config.pop("quantization_config")
    (tmp_path / "config.json").write_text(json.dumps(config))
    detection = detect(tmp_path)
    assert detection.quantization == "gptq-int4"
    assert detection.evidence[0].key == "thinker_config.quantization_config.quant_method"
