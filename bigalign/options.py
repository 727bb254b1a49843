"""The engine options of every public function, validated once per call.

Every function that streams data takes the same five keywords (``block_size``,
``scheduler``, ``client``, ``num_workers``, ``memory_per_worker``).  A façade
declares them once as ``**engine: Unpack[EngineKwargs]`` (so IDEs and type
checkers still complete and check them), builds one :class:`EngineOptions`
with :meth:`EngineOptions.build` — which names an unknown keyword and checks
every value with the one error template of :func:`bigalign._checks.invalid_parameter`
(what, expected, got, how to fix) — and hands that object down to
:func:`bigalign.engine.run` / :func:`bigalign.engine.run_pairs`.

None of these options changes an answer beyond rounding: they choose how the
rows are blocked (``block_size``, or a plan from ``memory_per_worker``) and
where the blocks run.

>>> from bigalign.options import EngineOptions
>>> EngineOptions.build("cka", {"block_size": 256, "scheduler": "sync"}).given()
{'block_size': 256, 'scheduler': 'sync'}
>>> EngineOptions.build("cka", {"blocksize": 256})
Traceback (most recent call last):
...
bigalign.errors.InvalidInputError: cka got an unexpected keyword argument 'blocksize'. ...
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, TypedDict

import numpy as np

from ._checks import invalid_parameter
from .errors import InvalidInputError

__all__ = ["ENGINE_KEYWORDS", "SCHEDULERS", "EngineKwargs", "EngineOptions"]

SCHEDULERS = ("sync", "threads", "distributed")


class EngineKwargs(TypedDict, total=False):
    """The engine keywords every streaming function accepts (``**engine: Unpack[EngineKwargs]``).

    block_size : int
        Rows per block (per tile side on the pairwise roads).  Default: planned
        from ``memory_per_worker`` and the stored chunking.  Never changes an
        answer beyond rounding.
    scheduler : {"sync", "threads", "distributed"} or distributed.Client
        ``None`` uses the active ``distributed.Client`` if there is one, else
        the threaded scheduler; ``"sync"`` is a plain loop without dask.
    client : distributed.Client
        Run on this client.
    num_workers : int
        Threads of the threaded scheduler (default: the number of CPUs).
    memory_per_worker : int
        Bytes of block data one task may hold (default 512 MiB); it sizes the
        blocks and tiles of every road.
    """

    block_size: int | None
    scheduler: Any
    client: Any
    num_workers: int | None
    memory_per_worker: int | None


#: the five engine keywords, in signature order
ENGINE_KEYWORDS: tuple[str, ...] = tuple(EngineKwargs.__annotations__)


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


@dataclass(frozen=True)
class EngineOptions:
    """The engine options of one call (see :class:`EngineKwargs` for their meaning); ``None`` = the default."""

    block_size: int | None = None
    scheduler: Any = None
    client: Any = None
    num_workers: int | None = None
    memory_per_worker: int | None = None

    @classmethod
    def build(cls, func: str, engine: Mapping[str, Any] | EngineOptions | None = None) -> EngineOptions:
        """Validate the engine keywords a façade received (``**engine``) and freeze them.

        An unknown keyword is an :class:`~bigalign.InvalidInputError` naming the valid ones
        (the façades' only ``**`` catch-all is the engine block, so a misspelt option lands here).
        """
        if isinstance(engine, EngineOptions):
            return engine
        engine = dict(engine or {})
        unknown = sorted(set(engine) - set(ENGINE_KEYWORDS))
        if unknown:
            names = ", ".join(repr(k) for k in unknown)
            raise InvalidInputError(
                f"{func} got an unexpected keyword argument {names}. Expected one of the function's own "
                f"parameters (see its docstring) or an engine option {list(ENGINE_KEYWORDS)}. Check the spelling."
            )
        out = cls(**engine)
        out.check(func)
        return out

    def check(self, func: str) -> None:
        """Raise :class:`~bigalign.InvalidInputError` (one template: what, expected, got, fix) for a bad value."""
        if self.block_size is not None and not (_is_int(self.block_size) and self.block_size >= 1):
            raise invalid_parameter(func, "block_size", "a positive integer number of rows (or None)", self.block_size,
                                    "It only chunks the data; leave it out to plan blocks from memory_per_worker.")  # fmt: skip
        for name in ("num_workers", "memory_per_worker"):
            value = getattr(self, name)
            if value is not None and not (_is_int(value) and value >= 1):
                what = "a positive integer number of threads" if name == "num_workers" else "a positive integer number of bytes"
                raise invalid_parameter(func, name, f"{what} (or None)", value, "Leave it out for the default.")
        s = self.scheduler
        if s is not None and not (isinstance(s, str) and s in SCHEDULERS) and not (
            hasattr(s, "compute") and hasattr(s, "scheduler_info")
        ):
            raise invalid_parameter(func, "scheduler", f"one of {list(SCHEDULERS)}, a distributed.Client or None", s,
                                    "Use scheduler='sync' for a plain loop, 'threads' for dask threads.")  # fmt: skip

    def kwargs(self) -> dict[str, Any]:
        """All five options as keyword arguments (``run(stat, inputs, **options.kwargs())``)."""
        return {k: getattr(self, k) for k in ENGINE_KEYWORDS}

    def given(self) -> dict[str, Any]:
        """The options that were set (not None)."""
        return {k: v for k, v in self.kwargs().items() if v is not None}

    def replace(self, **changes: Any) -> EngineOptions:
        """A copy with some options changed (e.g. a block size planned for feature maps)."""
        return dataclasses.replace(self, **changes)
