"""Checkpoints: save every block's partial state so an interrupted run can resume.

Inside ``with bigalign.checkpoint(directory, resume=True):`` every engine pass
writes each block's (or tile's) partial state to
``directory/<pass fingerprint>/<block>.pkl`` as soon as it is computed (write to
a temporary file, then an atomic rename), and a rerun loads the parts that
exist instead of recomputing them.  The final value is identical to an
uninterrupted run's: the same partials enter the same combine tree.

The pass fingerprint covers the statistic (including feature maps), the inputs
(store path and layer, or a hash of in-memory data), the block plan and the
bigalign version, so a checkpoint is never reused for a different computation.
With a distributed cluster the directory must be on a file system every
worker can reach.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import os
import pickle
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from ._version import __version__

__all__ = ["Checkpoint", "checkpoint", "active"]

_ACTIVE: contextvars.ContextVar["Checkpoint | None"] = contextvars.ContextVar("bigalign_checkpoint", default=None)


@dataclass
class Checkpoint:
    """Where partial states go, and counters of what a run loaded and computed (this process only)."""

    directory: Path
    resume: bool = True
    loaded: int = 0
    computed: int = 0
    passes: list[str] = field(default_factory=list)

    def pass_dir(self, fingerprint: str) -> Path:
        d = self.directory / fingerprint
        if fingerprint not in self.passes:
            self.passes.append(fingerprint)
            if not self.resume and d.exists():
                shutil.rmtree(d)
            d.mkdir(parents=True, exist_ok=True)
        return d

    def clear(self) -> None:
        """Remove the checkpoint directory (after a successful run)."""
        shutil.rmtree(self.directory, ignore_errors=True)


def active() -> Checkpoint | None:
    return _ACTIVE.get()


@contextlib.contextmanager
def checkpoint(directory: str | os.PathLike, *, resume: bool = True, keep: bool = False) -> Iterator[Checkpoint]:
    """Checkpoint every engine pass inside the block to ``directory``.

    Parameters
    ----------
    directory : path
        Where partial states are kept.
    resume : bool, default=True
        Reuse parts saved by an earlier, interrupted run of the same passes.
        ``False`` discards them and starts over.
    keep : bool, default=False
        Keep the directory after the block finishes without error (by default
        it is removed then, since the results are complete).
    """
    ck = Checkpoint(Path(directory), resume=resume)
    ck.directory.mkdir(parents=True, exist_ok=True)
    token = _ACTIVE.set(ck)
    try:
        yield ck
    finally:
        _ACTIVE.reset(token)
    if not keep:
        ck.clear()


def fingerprint(*parts: Any) -> str:
    from dask.base import tokenize

    return hashlib.sha256(tokenize(__version__, *parts).encode()).hexdigest()[:24]


def cached(path: str, compute: Callable[[], Any]) -> tuple[Any, bool]:
    """(state, was_loaded): load ``path`` if it exists, else compute and save it atomically."""
    if os.path.exists(path):
        with open(path, "rb") as f:
            return pickle.load(f), True
    state = compute()
    d = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=d, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            pickle.dump(state, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return state, False
