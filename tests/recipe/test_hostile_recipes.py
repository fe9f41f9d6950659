"""Hostile recipes: files built to be slow, huge, deceptive or dangerous each get one located error,
fast. The time bound (pytest-timeout) is generous: it catches a hang or a quadratic blow-up, not a
slow machine.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from omni_runner.recipe import load_recipe
from omni_runner.recipe.sources import MAX_EXTENDS_DEPTH, MAX_FILE_BYTES, MAX_FILES
from omni_runner.recipe.yaml_source import MAX_NESTING, MAX_VALUES
from tests.recipe.conftest import VALID, recipe_errors

pytestmark = pytest.mark.timeout(10)


def _where(problem) -> tuple[str, int, int]:
    return problem.location.file.name, problem.location.line, problem.location.col


def test_a_file_over_the_size_limit_is_refused_before_it_is_parsed(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text(VALID + "notes: |\n" + "  " + "x" * MAX_FILE_BYTES + "\n")
    [problem] = recipe_errors(path)
    assert problem.message == "the file is larger than 1 MiB, the most a recipe may be"
    assert _where(problem) == ("huge.yaml", 1, 1)


def test_a_file_exactly_at_the_size_limit_still_loads(tmp_path):
    path = tmp_path / "full.yaml"
    padding = "#" * 99 + "\n"
    text = VALID + padding * ((MAX_FILE_BYTES - len(VALID)) // len(padding))
    path.write_text(text + "#" * (MAX_FILE_BYTES - len(text)))
    assert path.stat().st_size == MAX_FILE_BYTES
    assert load_recipe(path, environ={}).data["name"] == "tiny"


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_an_endless_file_is_read_only_up_to_the_limit():
    [problem] = recipe_errors(Path("/dev/zero"))
    assert problem.message == "the file is larger than 1 MiB, the most a recipe may be"


def test_five_thousand_nested_brackets_stop_at_the_nesting_limit(write):
    path = write("deep.yaml", VALID + "training: " + "[" * 5000 + "]" * 5000 + "\n")
    [problem] = recipe_errors(path)
    assert problem.message == f"the recipe nests more than {MAX_NESTING} levels deep"
    assert _where(problem)[:2] == ("deep.yaml", 8)


def test_deep_indentation_stops_at_the_nesting_limit(write):
    nested = "".join("  " * level + f"k{level}:\n" for level in range(MAX_NESTING + 10))
    [problem] = recipe_errors(write("deep.yaml", VALID + nested))
    assert problem.message == f"the recipe nests more than {MAX_NESTING} levels deep"


def test_a_billion_laughs_alias_bomb_is_refused_at_the_key_that_explodes(write):
    text = VALID + 'l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    for level in range(1, 10):
        text += f"l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * 9) + "]\n"
    [problem] = recipe_errors(write("bomb.yaml", text))
    assert problem.message == f"the recipe holds more than {MAX_VALUES} values"
    assert "YAML alias" in problem.hint
    assert problem.location.line > 8 and problem.field.startswith("l")


def test_a_python_tag_is_reported_and_never_constructed(write, tmp_path):
    target = tmp_path / "created-by-the-recipe"
    path = write("evil.yaml", VALID + f"output: !!python/object/apply:os.mkdir [{target}]\n")
    [problem] = recipe_errors(path)
    assert problem.message == "YAML tag '!!python/object/apply:os.mkdir' is not allowed"
    assert _where(problem) == ("evil.yaml", 8, 9)
    assert not target.exists()


def test_a_nul_byte_is_refused_at_its_line_and_column(tmp_path):
    path = tmp_path / "nul.yaml"
    path.write_bytes(VALID.encode() + b"output: {dir: ru\x00ns}\n")
    [problem] = recipe_errors(path)
    assert problem.message == "control character U+0000, which YAML does not allow"
    assert _where(problem) == ("nul.yaml", 8, 17)


def test_a_binary_file_is_not_utf8_text(tmp_path):
    path = tmp_path / "picture.yaml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    [problem] = recipe_errors(path)
    assert problem.message == "the file is not UTF-8 text"
    assert _where(problem) == ("picture.yaml", 1, 1)


def test_a_utf16_file_is_named_as_such(tmp_path):
    path = tmp_path / "utf16.yaml"
    path.write_text(VALID, encoding="utf-16")
    [problem] = recipe_errors(path)
    assert (problem.message, problem.hint) == ("the file is UTF-16 text", "save the recipe as UTF-8")


def test_a_utf8_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + VALID.encode())
    assert load_recipe(path, environ={}).data["name"] == "tiny"


def test_a_right_to_left_override_is_refused_wherever_it_is(write):
    path = write("trojan.yaml", VALID + "# harmless \u202e comment\n")
    [problem] = recipe_errors(path)
    assert problem.message == "invisible text-direction character U+202E (RIGHT-TO-LEFT OVERRIDE)"
    assert _where(problem) == ("trojan.yaml", 8, 12)


def test_an_invisible_character_in_a_key_is_named_and_shown_escaped(write):
    path = write("zw.yaml", VALID + "train\u200bing: {lr: 1.0e-4}\n")
    [problem] = recipe_errors(path)
    assert problem.message == "key 'train\u200bing' holds the invisible character U+200B (ZERO WIDTH SPACE)"
    assert _where(problem) == ("zw.yaml", 8, 1)
    assert "'train\\u200bing'" in problem.render() and "\u200b" not in problem.render()


def test_a_long_extends_chain_is_refused_naming_the_chain(write):
    for index in range(MAX_EXTENDS_DEPTH + 5):
        write(f"p{index}.yaml", f"extends: p{index + 1}.yaml\n")
    top = write("top.yaml", "extends: p0.yaml\n" + VALID)
    [problem] = recipe_errors(top)
    assert problem.message.startswith(f"extends chain is deeper than {MAX_EXTENDS_DEPTH} files: {top} -> ")
    assert problem.message.count(" -> ") == MAX_EXTENDS_DEPTH
    assert problem.field == "extends"


def test_a_parent_listed_twice_at_every_level_stops_at_the_file_limit(write):
    levels = MAX_EXTENDS_DEPTH - 2  # 2**14 loads without a limit
    for index in range(levels):
        write(f"p{index}.yaml", f"extends: [p{index + 1}.yaml, p{index + 1}.yaml]\n")
    write(f"p{levels}.yaml", "training: {seed: 1}\n")
    problems = recipe_errors(write("top.yaml", "extends: p0.yaml\n" + VALID))
    assert {p.message for p in problems} == {f"extends loads more than {MAX_FILES} recipe files"}


def test_trust_remote_code_is_a_warning_at_its_line(tmp_path):
    from omni_runner.recipe import load_recipe

    tiny = Path(__file__).resolve().parents[2] / "recipes" / "tiny_omni.yaml"
    path = tmp_path / "remote.yaml"
    path.write_text(f"extends: {tiny}\nbase_model:\n  trust_remote_code: true\n")
    [warned] = [d for d in load_recipe(path).warnings if d.field == "base_model.trust_remote_code"]
    assert warned.location.line == 3 and "Python code" in warned.message
