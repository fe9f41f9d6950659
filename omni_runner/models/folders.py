"""Folders that appear complete or not at all: write beside the target, then rename into place.

Public API:
- `atomic_folder(target)`: a context yielding an empty staging folder next to `target`; on success
  it replaces `target` (an existing one is moved aside first and removed after), on error it is
  removed and `target` is left as it was. Files are flushed to disk before the rename.
- `ensure_built(folder, fingerprint, read_stamp, build)`: the cached build in `folder`, built when its
  stamp's fingerprint differs; safe when several processes ask at once (a file lock serialises builds),
  also the ranks of a distributed run (any of them may build).
- `read_stamp_file(folder, name)`: a build's JSON stamp, or None when the folder is not a complete build.
- `build_target(out_dir, read_stamp, what)`: `out_dir` resolved, refused (FileExistsError) when it holds
  anything but a `what` build, so a build never replaces a folder it did not make.
- `TinyFamily`: the build, stamp and cache rules of a family of built-in tiny models (`.build(name,
  out_dir)`, `.ensure(name)`, `.read_stamp(folder)`, `.names`).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from omni_runner.durable import fsync_path, fsync_tree
from omni_runner.models.hf_env import saving_on_any_rank


@contextmanager
def atomic_folder(target: Path) -> Iterator[Path]:
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.building-", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the result is an ordinary folder
    try:
        yield staging
        fsync_tree(staging)  # the files must be on disk before the rename makes the folder visible
        if target.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            target.rename(retired / target.name)
            staging.rename(target)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            staging.rename(target)
        fsync_path(target.parent)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def _build_lock(folder: Path) -> Iterator[None]:
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def ensure_built(
    folder: Path, fingerprint: str, read_stamp: Callable[[Path], dict[str, Any] | None], build: Callable[[Path], Any]
) -> Path:
    """`folder`, built by `build(folder)` unless its stamp already carries `fingerprint`."""

    def current() -> bool:
        stamp = read_stamp(folder)
        return stamp is not None and stamp.get("fingerprint") == fingerprint

    if not current():
        with _build_lock(folder):
            if not current():  # another process may have built it while we waited
                with saving_on_any_rank():  # whichever rank holds the lock writes the whole folder
                    build(folder)
    return folder


def read_stamp_file(folder: Path, name: str) -> dict[str, Any] | None:
    try:
        return json.loads((Path(folder) / name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def build_target(out_dir: Path, read_stamp: Callable[[Path], dict[str, Any] | None], what: str) -> Path:
    out_dir = Path(out_dir).expanduser().resolve()
    if out_dir.exists() and any(out_dir.iterdir()) and read_stamp(out_dir) is None:
        raise FileExistsError(f"{out_dir} already exists and is not a {what} build; choose an empty or new folder.")
    return out_dir


@dataclass(frozen=True)
class TinyFamily:
    """Built-in tiny models of one kind (encoders, decoders), each built by its function from a real
    config with random weights under a fixed seed, stamped with what built it, and rebuilt in the cache
    when its builder version or the `libraries`' versions change."""

    builders: dict[str, Callable[[Path], dict[str, int]]]
    libraries: tuple[str, ...]
    version: int
    seed: int
    stamp_file: str
    quiet: Callable[[], Any]  # a context that silences the libraries' save warnings

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.builders)

    def fingerprint(self, name: str) -> str:
        versions = " ".join(f"{lib} {metadata.version(lib)}" for lib in self.libraries)
        return hashlib.sha256(f"{name} builder {self.version} seed {self.seed} {versions}".encode()).hexdigest()

    def read_stamp(self, folder: Path) -> dict[str, Any] | None:
        return read_stamp_file(folder, self.stamp_file)

    def build(self, name: str, out_dir: Path) -> Path:
        """Build `name` into `out_dir`; the folder appears complete or not at all."""
        import torch

        out_dir = build_target(out_dir, self.read_stamp, "tiny-model")
        with atomic_folder(out_dir) as staging, self.quiet(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            parameters = self.builders[name](staging)
            stamp = {"name": name, "builder_version": self.version, "fingerprint": self.fingerprint(name),
                     "seed": self.seed, "parameters": parameters}
            (staging / self.stamp_file).write_text(json.dumps(stamp, indent=2) + "\n", encoding="utf-8")
        return out_dir

    def ensure(self, name: str) -> Path:
        """The cached build of `name`, built on first use (or when its builder changed)."""
        from omni_runner.paths import BUILTIN_PREFIX, resolve_model_path

        folder = resolve_model_path(BUILTIN_PREFIX + name, Path.cwd())
        return ensure_built(folder, self.fingerprint(name), self.read_stamp, lambda out: self.build(name, out))

    def resolve(self, path_value: str, recipe_dir: Path, what: str) -> Path:
        """A recipe's `path` for one of this family's models on disk: `builtin:NAME` built on first use
        (ModelLoadError for a name the family lacks), anything else as a folder relative to the recipe."""
        from omni_runner.paths import BUILTIN_PREFIX, builtin_name, is_builtin, resolve_model_path

        if not is_builtin(path_value):
            return resolve_model_path(path_value, recipe_dir)
        name = builtin_name(path_value)
        if name not in self.builders:
            from omni_runner.models.load import ModelLoadError

            raise ModelLoadError(f"unknown built-in {what} {path_value!r}; the built-in {what}s are "
                                 f"{', '.join(BUILTIN_PREFIX + n for n in self.names)}.")
        return self.ensure(name)


def save_trained_part(folder: Path, name: str, settings: dict[str, Any], state: dict[str, Any]) -> None:
    """A trained part beside a `final/` model: `NAME.safetensors` (its weights) and `NAME.json` (what
    rebuilds it)."""
    from safetensors.torch import save_file

    save_file({key: tensor.detach().cpu().contiguous() for key, tensor in state.items()}, Path(folder) / f"{name}.safetensors")
    (Path(folder) / f"{name}.json").write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")


def read_trained_part(folder: Path, name: str, what: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(settings, weights) of the part `name` saved by `save_trained_part`, None when the folder has none;
    ModelLoadError (naming `what`) when its files cannot be read."""
    from safetensors.torch import load_file

    settings_path = Path(folder) / f"{name}.json"
    if not settings_path.exists():
        return None
    try:
        return json.loads(settings_path.read_text(encoding="utf-8")), load_file(Path(folder) / f"{name}.safetensors")
    except (OSError, ValueError) as error:
        from omni_runner.models.load import ModelLoadError

        raise ModelLoadError(f"{folder}: {what} cannot be read ({error}); "
                             "the folder is damaged: copy it again or train again.") from None
