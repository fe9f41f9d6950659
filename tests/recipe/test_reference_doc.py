"""docs/recipe-reference.md is generated from the schema and must not go stale."""

from __future__ import annotations

from pathlib import Path

from omni_runner.recipe.reference import DEFAULT_OUTPUT, REGENERATE, main, render_reference


def test_the_committed_reference_matches_the_schema():
    assert DEFAULT_OUTPUT.read_text() == render_reference(), f"docs/recipe-reference.md is stale: run `{REGENERATE}`"


def test_check_mode_fails_on_a_stale_page_and_passes_on_a_fresh_one(tmp_path: Path, capsys):
    page = tmp_path / "reference.md"
    page.write_text(render_reference().replace("Peak learning rate.", "Old text."))
    assert main(["--check", "--output", str(page)]) == 1
    assert "is stale" in capsys.readouterr().err
    assert main(["--output", str(page)]) == 0
    assert main(["--check", "--output", str(page)]) == 0


def test_every_section_and_capability_is_documented():
    text = render_reference()
    for heading in ("## `training.lora`", "## `datasets.<name>`", "## `capabilities.<capability>`", "## `stages[]`",
                    "## `controller.thermal`", "## `encoders.vision.projector`"):
        assert heading in text
    assert "`\"video-generation\"`" in text
