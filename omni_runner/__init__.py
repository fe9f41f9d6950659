"""omni-runner: declarative recipes that train one omni model, supervised and steerable.

Importing this package is cheap on purpose: nothing here pulls in torch, so the
validate/plan/detect commands and the TUI start in a fraction of a second.
"""

__version__ = "0.1.0"
