"""Recipes: load YAML with every position kept, merge `extends`, apply overrides, validate, fill defaults.

No torch here (nor anything that imports it): `omni-run validate` and `plan` must start fast.
"""

from omni_runner.recipe.errors import Diagnostic, Location, RecipeError
from omni_runner.recipe.loader import Recipe, load_recipe

__all__ = ["Diagnostic", "Location", "Recipe", "RecipeError", "load_recipe"]
