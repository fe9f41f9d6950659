"""The trainer child's exit codes: the one place both sides of the process boundary read them.

The trainer (`train/loop.py`) returns one of these; the supervisor (`run/supervisor.py`) turns the
code back into a cause and advice. Written once here so the two cannot drift apart: a new code is
added to `TrainerExit`, and the supervisor's test fails until it is classified. No torch here: the
supervisor imports this and must stay free of it (docs/controller.md lists the codes for users).
"""

from __future__ import annotations

from enum import IntEnum


class TrainerExit(IntEnum):
    """What a trainer exit code means."""

    OK = 0  # finished, or stopped on request after a checkpoint (status.json says which)
    ERROR = 1  # any failure not named below; trainer.log has the traceback
    NAN = 3  # too many steps in a row with a NaN/Inf loss or gradient norm
    OOM = 4  # CUDA out of memory
    INTERRUPTED = 130  # a second stop signal: stopped at once, without a checkpoint
