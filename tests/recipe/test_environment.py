"""`${VAR}` and `${VAR:-default}` come from the given environment; nothing else is evaluated."""

from __future__ import annotations

from omni_runner.recipe import load_recipe
from tests.recipe.conftest import VALID

MODELS_FROM_ENV = VALID.replace("builtin:tiny-qwen2.5-omni", "${MODELS:-/opt/models}/omni")


def test_default_is_used_when_the_variable_is_unset(write):
    recipe = load_recipe(write("r.yaml", MODELS_FROM_ENV), environ={})
    assert recipe.data["base_model"]["path"] == "/opt/models/omni"


def test_the_variable_wins_over_the_default(write):
    recipe = load_recipe(write("r.yaml", MODELS_FROM_ENV), environ={"MODELS": "/srv/m"})
    assert recipe.data["base_model"]["path"] == "/srv/m/omni"


def test_an_unquoted_reference_is_typed_after_expansion(write):
    path = write("r.yaml", VALID + "training:\n  max_steps: ${STEPS:-100}\n  lr: ${LR}\n")
    training = load_recipe(path, environ={"LR": "3e-4"}).data["training"]
    assert training["max_steps"] == 100
    assert training["lr"] == 3e-4


def test_a_quoted_reference_stays_a_string(write):
    path = write("r.yaml", VALID.replace("name: tiny", "name: '${RUN:-007}'"))
    assert load_recipe(path, environ={}).data["name"] == "007"


def test_double_dollar_writes_a_literal_reference(write):
    path = write("r.yaml", VALID.replace("builtin:tiny-qwen2.5-omni", "/models/$${NOT_EXPANDED}"))
    assert load_recipe(path, environ={}).data["base_model"]["path"] == "/models/${NOT_EXPANDED}"
