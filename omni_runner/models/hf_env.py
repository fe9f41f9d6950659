"""How omni-runner talks to transformers: never to the hub, and without progress-bar noise.

Public API:
- `offline_hub()`: set the hub/transformers/datasets offline switches (call before importing them);
  loading code also passes `local_files_only=True`, which holds even when the hub library was imported
  before the switch was set.
- `quiet_transformers()`: a context that silences transformers' warnings and progress bars, for
  builds and loads whose output would otherwise flood `trainer.log` and the terminal.
- `quiet_diffusers()`: the same for diffusers (pipeline saves and loads, their progress bars).
- `saving_without_deepspeed_probe()`: a context for `save_pretrained` calls in a process that never
  imported DeepSpeed, so that saving does not import it.
- `keep_bitsandbytes_out()`: for a process that loads no bitsandbytes-quantized model, so that peft
  does not import it.
- `saving_on_any_rank()`: a context in which transformers' `save_pretrained` writes from every process
  of a torch.distributed group, not rank 0 alone.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")


def offline_hub() -> None:
    for name in OFFLINE_VARIABLES:
        os.environ.setdefault(name, "1")


@contextmanager
def quiet_transformers() -> Iterator[None]:
    from transformers.utils import logging as hf_logging

    with _quiet(hf_logging):
        yield


@contextmanager
def quiet_diffusers() -> Iterator[None]:
    from diffusers.utils import logging as diffusers_logging

    with _quiet(diffusers_logging):
        yield


@contextmanager
def _quiet(hf_logging: Any) -> Iterator[None]:
    """Errors only and no progress bars from a Hugging Face library's `utils.logging`, restored after."""
    verbosity = hf_logging.get_verbosity()
    bars_were_on = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars_were_on:
            hf_logging.enable_progress_bar()


@contextmanager
def saving_without_deepspeed_probe() -> Iterator[None]:
    """`save_pretrained` unwraps the model through accelerate, which imports DeepSpeed whenever it is
    installed (2-3 s, at every final save) only to ask whether the model is a DeepSpeed engine. A model in
    a process that has not imported DeepSpeed cannot be one, so accelerate is told it is not installed
    for the duration."""
    if "deepspeed" in sys.modules:
        yield
        return
    from accelerate.utils import other

    with _answering_no(other, "is_deepspeed_available"):
        yield


def keep_bitsandbytes_out() -> None:
    """Make bitsandbytes unimportable in this process, unless something has imported it already.

    peft imports bitsandbytes whenever it is installed (its helpers register the 8-bit and 4-bit LoRA
    layers), which costs about 1.3 s of every trainer's start on a model that is not quantized by it. A
    `None` entry in `sys.modules` is Python's own way to block an import: `import bitsandbytes` raises
    ImportError and `importlib.util.find_spec` answers None, which is what peft and transformers ask, so
    both behave as where it is not installed. Call it before peft is imported, and only for a model that
    bitsandbytes does not quantize.
    """
    sys.modules.setdefault("bitsandbytes", None)


@contextmanager
def saving_on_any_rank() -> Iterator[None]:
    """Within the block, transformers' `save_pretrained` writes its files on every rank.

    Once torch.distributed is initialised, transformers writes a model's config and weights on rank 0
    alone (`should_save_on_this_rank`). A built-in tiny model is built by whichever process of a run
    takes its build lock first, which need not be rank 0 (nor is there a rank 0 on a run's other
    machines), and the folder must come out whole. Its check is answered "not distributed" for the
    block, then restored; outside a distributed run nothing changes.
    """
    distributed = sys.modules.get("torch.distributed")
    if distributed is None or not distributed.is_available() or not distributed.is_initialized():
        yield
        return
    from transformers.distributed import mixin

    with _answering_no(mixin, "_is_torch_distributed_initialized"):
        yield


@contextmanager
def _answering_no(module: Any, probe: str) -> Iterator[None]:
    """Within the block, the library function `module.probe` answers False; restored after."""
    original = getattr(module, probe)
    setattr(module, probe, lambda: False)
    try:
        yield
    finally:
        setattr(module, probe, original)
