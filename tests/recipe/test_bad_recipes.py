"""Bad recipes: each one gives exactly one error, with its message, line and column.

Recipes are written as text so the expected line is visible: VALID has seven lines, so text
appended to it starts at line 8.
"""

from __future__ import annotations

import pytest

from tests.recipe.conftest import VALID, recipe_errors

# (id, recipe text, message fragment, line, column, field)
CASES = [
    # YAML itself
    ("unclosed-flow-mapping", "name: tiny\nbase_model: {path: x\n", "YAML syntax error: expected ',' or '}'", 3, 1, ""),
    ("value-after-value", "name: tiny\nbase_model: path: x\n", "mapping values are not allowed here", 2, 17, ""),
    ("bad-indentation", "name: tiny\nbase_model:\n  path: x\n quantization: none\n", "YAML syntax error", 4, 2, ""),
    ("tab-indentation", "name: tiny\nbase_model:\n\tpath: x\n", "tab character in indentation", 3, 1, ""),
    ("duplicate-top-level-key", VALID + "name: again\n", "duplicate key 'name' (first defined at line 1)", 8, 1, "name"),
    ("duplicate-nested-key", VALID + "training:\n  lr: 1e-4\n  lr: 2e-4\n", "duplicate key 'lr' (first defined at line 9)", 10, 3, "training.lr"),
    ("python-object-tag", VALID + "output: !!python/object/apply:os.system [echo hi]\n", "YAML tag '!!python/object/apply:os.system' is not allowed", 8, 9, "output"),
    ("custom-tag", VALID.replace("name: tiny", "name: !env NAME"), "YAML tag '!env' is not allowed", 1, 7, "name"),
    ("merge-key", VALID + "training:\n  <<: {lr: 1e-4}\n", "YAML merge keys (<<) are not supported", 9, 3, "training.<<"),
    ("two-documents", VALID + "---\nname: second\n", "expected a single document", 8, 1, ""),
    ("empty-file", "", "the recipe is empty", 1, 1, ""),
    ("top-level-list", "- name: tiny\n", "a recipe is a mapping of keys", 1, 1, ""),
    ("infinite-number", VALID + "training:\n  lr: .inf\n", "'.inf' is not a finite number", 9, 7, "training.lr"),
    # unknown keys at every depth, with the nearest valid key
    ("unknown-top-level-key", VALID + "trainig:\n  lr: 1e-4\n", "unknown key 'trainig' in the recipe", 8, 1, "trainig"),
    ("unknown-base-model-key", VALID.replace("  path: builtin", "  quantisation: none\n  path: builtin"), "unknown key 'quantisation' in `base_model`", 3, 3, "base_model.quantisation"),
    ("unknown-projector-key", VALID + "encoders:\n  vision:\n    path: builtin:siglip\n    projector: {type: mlp, hiden_size: 64}\n", "unknown key 'hiden_size' in `encoders.vision.projector`", 11, 28, "encoders.vision.projector.hiden_size"),
    ("unknown-dataset-key", VALID.replace("format: openai}", "format: openai, max_sample: 3}"), "unknown key 'max_sample' in `datasets.chat`", 5, 46, "datasets.chat.max_sample"),
    ("unknown-capability-key", VALID.replace("[chat]}", "[chat], wieght: 2}"), "unknown key 'wieght' in `capabilities.cot`", 7, 27, "capabilities.cot.wieght"),
    ("unknown-lora-key", VALID + "training:\n  lora: {r: 8, alpah: 16}\n", "unknown key 'alpah' in `training.lora`", 9, 16, "training.lora.alpah"),
    ("unknown-thermal-key", VALID + "controller:\n  thermal:\n    limit: 80\n", "unknown key 'limit' in `controller.thermal`", 10, 5, "controller.thermal.limit"),
    ("unknown-stage-key", VALID + "stages:\n  - name: align\n    step: 10\n", "unknown key 'step' in `stages[0]`", 10, 5, "stages[0].step"),
    ("unknown-decoder", VALID + "decoders:\n  audio: {kind: talker}\n", "unknown key 'audio' in `decoders`", 9, 3, "decoders.audio"),
    # wrong types
    ("string-for-number", VALID + "training:\n  lr: fast\n", "expected a number, got 'fast'", 9, 7, "training.lr"),
    ("string-for-list", VALID.replace("[chat]", "chat"), "expected a list, got 'chat'", 7, 19, "capabilities.cot.datasets"),
    ("string-for-mapping", VALID + "controller: on\n", "expected a mapping, got 'on'", 8, 13, "controller"),
    ("bool-for-string", VALID.replace("name: tiny", "name: true"), "expected a string, got true", 1, 7, "name"),
    ("float-for-integer", VALID + "training:\n  micro_batch: 1.5\n", "expected an integer, got 1.5", 9, 16, "training.micro_batch"),
    # numbers out of range
    ("lora-dropout-too-high", VALID + "training:\n  lora: {dropout: 1.5}\n", "must be less than 1, got 1.5", 9, 19, "training.lora.dropout"),
    ("thermal-limit-too-high", VALID + "controller:\n  thermal: {limit_c: 200}\n", "must be at most 110, got 200", 9, 22, "controller.thermal.limit_c"),
    ("micro-batch-zero", VALID + "training:\n  micro_batch: 0\n", "must be at least 1, got 0", 9, 16, "training.micro_batch"),
    ("negative-weight", VALID.replace("[chat]}", "[chat], weight: -1}"), "must be at least 0, got -1", 7, 35, "capabilities.cot.weight"),
    # enums
    ("bad-quantization", VALID.replace("  path: builtin", "  quantization: gptq4\n  path: builtin"), "'gptq4' is not one of: 'auto', 'none', 'gptq-int4'", 3, 17, "base_model.quantization"),
    ("bad-training-method", VALID + "training:\n  method: lorra\n", "'lorra' is not one of: 'lora', 'qlora', 'full'", 9, 11, "training.method"),
    ("bad-dataset-format", VALID.replace("format: openai", "format: chatml"), "'chatml' is not one of: 'openai'", 5, 38, "datasets.chat.format"),
    # required and patterns
    ("missing-base-model-path", VALID.replace("  path: builtin:tiny-qwen2.5-omni", "  dtype: auto"), "missing required key 'path' in `base_model`", 2, 1, "base_model.path"),
    ("missing-name", VALID.replace("name: tiny\n", ""), "missing required key 'name' in the recipe", 1, 1, "name"),
    ("name-with-space", VALID.replace("name: tiny", "name: my run"), "'my run' contains characters that are not allowed", 1, 7, "name"),
    ("num-workers-word", VALID + "training:\n  num_workers: many\n", "must be a number of worker processes or auto, got 'many'", 9, 16, "training.num_workers"),
    # capabilities
    ("unknown-capability", VALID.replace("  cot:", "  cott:"), "unknown capability 'cott' in `capabilities`", 7, 3, "capabilities.cott"),
    ("capability-names-undefined-dataset", VALID.replace("[chat]", "[chats]"), "capability 'cot' names dataset 'chats', which is not defined under `datasets`", 7, 20, "capabilities.cot.datasets[0]"),
    ("stage-capability-not-in-recipe", VALID + "stages:\n  - {name: align, capabilities: [vision-qa]}\n", "stage 'align' trains capability 'vision-qa', which is not under `capabilities`", 9, 34, "stages[0].capabilities[0]"),
    ("all-capabilities-disabled", VALID.replace("[chat]}", "[chat], enabled: false}"), "every capability is disabled", 6, 1, "capabilities"),
    # cross-field rules
    ("max-steps-and-epochs", VALID + "training:\n  max_steps: 100\n  epochs: 2\n", "set either `max_steps` or `epochs`, not both", 10, 3, "training"),
    ("resume-above-limit", VALID + "controller:\n  thermal: {limit_c: 80, resume_c: 85}\n", "resume_c (85) must be below limit_c (80)", 9, 36, "controller.thermal.resume_c"),
    ("processes-not-a-multiple-of-machines", VALID + "distributed:\n  num_machines: 4\n  num_processes: 6\n  main_process_ip: 10.0.0.1\n",
     "num_processes (6) is not a multiple of num_machines (4)", 10, 18, "distributed.num_processes"),
    ("machine-rank-out-of-range", VALID + "distributed: {num_processes: 2, num_machines: 2, machine_rank: 2, main_process_ip: 10.0.0.1}\n",
     "machine_rank (2) must be below num_machines (2)", 8, 64, "distributed.machine_rank"),
    ("machines-without-main-ip", VALID + "distributed:\n  num_processes: 8\n  num_machines: 2\n",
     "num_machines is 2, and main_process_ip is not set", 10, 17, "distributed.num_machines"),
    ("duplicate-stage-name", VALID + "stages:\n  - name: a\n  - name: a\n", "stage name 'a' is used twice", 10, 11, "stages[1].name"),
    ("eval-names-undefined-dataset", VALID + "eval: {datasets: [held-out]}\n", "eval names dataset 'held-out'", 8, 19, "eval.datasets[0]"),
    # environment and extends
    ("missing-env-var", VALID.replace("builtin:tiny-qwen2.5-omni", "${MODELS}/omni"), "environment variable MODELS is not set", 3, 9, "base_model.path"),
    ("malformed-env-reference", VALID.replace("builtin:tiny-qwen2.5-omni", "${MODELS/omni"), "malformed variable reference", 3, 9, "base_model.path"),
    ("extends-missing-file", "extends: nowhere.yaml\n" + VALID, "recipe file not found", 1, 10, "extends"),
    ("extends-not-a-path", "extends: {file: x}\n" + VALID, "extends must be a file name or a list of file names", 1, 10, "extends"),
]


@pytest.mark.parametrize(
    ("text", "message", "line", "col", "field"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_bad_recipe_reports_one_error_at_its_line(write, text, message, line, col, field):
    path = write("recipe.yaml", text)
    [problem] = recipe_errors(path)
    assert problem.severity == "error"
    assert message in problem.message
    assert (problem.location.file, problem.location.line, problem.location.col) == (path, line, col)
    assert problem.field == field


def test_there_are_at_least_thirty_bad_recipes():
    assert len(CASES) >= 30


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        (VALID + "trainig:\n  lr: 1e-4\n", "did you mean 'training'?"),
        (VALID.replace("  cot:", "  cott:"), "did you mean 'cot'?"),
        (VALID.replace("  path: builtin", "  quantization: gptq4\n  path: builtin"), "did you mean 'gptq-int4'?"),
        (VALID.replace("[chat]", "[chats]"), "did you mean 'chat'?"),
        (VALID.replace("  path: builtin", "  quantisation: none\n  path: builtin"), "did you mean 'quantization'?"),
    ],
    ids=["top-level-key", "capability", "enum-value", "dataset-name", "nested-key"],
)
def test_typo_gets_the_nearest_valid_name(write, text, hint):
    [problem] = recipe_errors(write("recipe.yaml", text))
    assert problem.hint == hint


def test_all_errors_come_out_together_sorted_by_line(write):
    text = VALID + "training:\n  lr: fast\n  lora: {alpah: 3}\ncontroller:\n  restarts: -1\n"
    problems = recipe_errors(write("recipe.yaml", text))
    assert [(p.location.line, p.field) for p in problems] == [
        (9, "training.lr"),
        (10, "training.lora.alpah"),
        (12, "controller.restarts"),
    ]


def test_error_renders_like_a_compiler_message(write):
    path = write("recipe.yaml", VALID + "training:\n  lrr: 1e-4\n")
    [problem] = recipe_errors(path)
    assert problem.render() == (
        f"{path}:9:3: error: unknown key 'lrr' in `training` (training.lrr)\n    hint: did you mean 'lr'?"
    )


def test_a_section_of_the_wrong_type_gets_one_error_not_a_cascade(write):
    [problem] = recipe_errors(write("recipe.yaml", VALID + "training: 5\n"))
    assert (problem.message, problem.location.line) == ("expected a mapping, got 5", 8)
