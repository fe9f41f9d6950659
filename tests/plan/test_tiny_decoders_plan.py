"""The tiny SD3 and SVD decoders plan the same from the known-architecture table (not built yet) as
from their built folders, and the planner sizes the generation path from their dimensions."""

from __future__ import annotations

import pytest

from omni_runner.detect import detect
from omni_runner.plan.architectures import find_known, known_detection
from omni_runner.plan.fit import native_generation_shape
from omni_runner.plan.gate import modality_sources
from omni_runner.plan.models import resolve_models
from omni_runner.plan.modules import stage_modules
from omni_runner.recipe import load_recipe

GENERATION_RECIPE = """
name: tiny-generation
base_model: {path: builtin:tiny-qwen2.5-omni, architecture: tiny-qwen2.5-omni}
decoders:
  image: {path: builtin:tiny-sd3, query_tokens: 16}
  video: {path: builtin:tiny-svd}
datasets:
  pictures: {path: pictures.jsonl, format: image-caption}
  clips: {path: clips.jsonl, format: video-caption}
capabilities:
  image-generation: {datasets: [pictures]}
  video-generation: {datasets: [clips]}
training: {method: full}
"""


def _without_kind(components: dict) -> dict:
    return {part: {k: v for k, v in spec.items() if k != "kind"} for part, spec in components.items()}


@pytest.mark.parametrize("name", ["tiny-sd3", "tiny-svd"])
def test_known_entry_matches_the_detection_of_the_built_folder(name, tiny_sd3_dir, tiny_svd_dir):
    built = detect({"tiny-sd3": tiny_sd3_dir, "tiny-svd": tiny_svd_dir}[name])
    known = known_detection(name, built.path)
    assert find_known(f"builtin:{name}") == name
    assert (known.role, known.model_type, known.modalities) == (built.role, built.model_type, built.modalities)
    assert _without_kind(known.components) == _without_kind(built.components)
    assert known.parameters == built.parameters


@pytest.mark.parametrize("built", [False, True], ids=["from-table", "from-folder"])
def test_plan_sizes_the_generation_path_from_the_tiny_decoders(built, write_recipe, request, monkeypatch, tmp_path):
    if built:  # the session fixtures build them into the test cache, where builtin: paths point
        request.getfixturevalue("tiny_sd3_dir"), request.getfixturevalue("tiny_svd_dir")
    else:
        monkeypatch.setenv("OMNI_RUNNER_CACHE", str(tmp_path / "empty-cache"))
    recipe = load_recipe(write_recipe(GENERATION_RECIPE))
    models, diagnostics = resolve_models(recipe)
    assert not [d for d in diagnostics if d.severity == "error"]
    assert (models["decoders.image"].from_table is None) == built
    capabilities = ["image-generation", "video-generation"]
    modules = stage_modules(capabilities, ["image_projector", "video_projector", "query_tokens"], models,
                            modality_sources(models), recipe.data)
    trainable = {group.module: group for group in modules.trainable}
    assert "decoders.image conditioning (32 wide)" in trainable["image_projector"].how
    assert "decoders.video conditioning (32 wide)" in trainable["video_projector"].how
    assert trainable["query_tokens.image"].how == "16 learnable queries"
    frozen = {group.module: group.parameters for group in modules.frozen}
    assert frozen["decoders.image.transformer"] == 73728 and frozen["decoders.video.unet"] == 1299216
    assert native_generation_shape(modules) == {"image": {"latent_side": 8, "frames": 1}, "video": {"latent_side": 8, "frames": 4}}
