"""The streaming engine: one Statistic, many row blocks, any scheduler.

A metric is a :class:`Statistic`: ``partial`` turns the rows ``start:stop`` of
every input into a small state, ``combine`` merges two states (associative and
commutative up to rounding), and ``finalize`` turns the merged state into a
result.  :func:`run` splits all inputs into the *same* row blocks (re-blocking
inputs whose stored chunks differ), computes the partials where the blocks live,
merges them in a fixed binary tree (so the answer does not depend on which
worker finished first), and finalizes.

Runners
-------
``"sync"``
    A plain Python loop over numpy blocks: no dask at all; the reference.
``"threads"``
    The dask threaded scheduler (BLAS pinned to one thread per worker thread,
    which avoids oversubscription: measured 1.6x faster on 2 cores).
``"distributed"``
    A ``distributed.Client``: the active one, or the one passed as ``client=``.

``scheduler=None`` picks ``"distributed"`` when a client is active, else
``"threads"``.  The tree of combines is identical under every runner, so the
runners agree to rounding of the block products (and bit-for-bit whenever BLAS
does).
"""

from __future__ import annotations

import collections.abc
import contextlib
import contextvars
import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Generic, Protocol, Sequence, TypeVar

import dask
import numpy as np

from .checkpoint import active as active_checkpoint
from .checkpoint import cached, fingerprint
from .errors import InvalidInputError
from .io import Representation, as_representation, check_pairing
from .options import SCHEDULERS, EngineOptions
from .progress import active as active_progress
from .progress import dask_callback

__all__ = [
    "PairStatistic",
    "Plan",
    "Statistic",
    "memory_limit",
    "plan_blocks",
    "resolve_scheduler",
    "run",
    "run_pairs",
    "task_budget",
    "tree_reduce",
]

S = TypeVar("S")
R = TypeVar("R")

DEFAULT_MEMORY_PER_WORKER = 512 * 2**20  # bytes of float64 block data one task may hold


class Statistic(Protocol, Generic[S, R]):
    """The shape every estimator takes.

    ``partial(blocks, start)`` receives one numpy block per input (rows
    ``start:start+len``, the input's own dtype) and must accumulate in float64.
    ``combine(a, b)`` must be associative and commutative up to rounding.
    ``finalize(state)`` is the only place estimator choices turn sums into numbers.
    """

    def partial(self, blocks: Sequence[np.ndarray], start: int) -> S: ...

    def combine(self, a: S, b: S) -> S: ...

    def finalize(self, state: S) -> R: ...


@dataclass(frozen=True)
class Plan:
    """How :func:`run` will split the rows."""

    n_samples: int
    block_rows: int
    n_blocks: int
    scheduler: str
    n_workers: int


_MEMORY_LIMIT: contextvars.ContextVar[int | None] = contextvars.ContextVar("bigalign_memory_limit", default=None)


def _parse_bytes(value: Any) -> int:
    if isinstance(value, str):
        from dask.utils import parse_bytes

        try:
            return int(parse_bytes(value))
        except ValueError:
            pass
    elif isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0:
        return int(value)
    raise InvalidInputError(f"memory_limit must be a positive number of bytes or a string like '2 GB'; got {value!r}.")


@contextlib.contextmanager
def memory_limit(limit: int | str):
    """Plan block sizes inside the block so this process's peak memory stays under ``limit``.

    ``limit`` counts the whole process (what is already in use is measured
    when a computation starts and subtracted); the rest is shared by the
    worker threads, two blocks in flight each.  Applies to the threaded and
    plain-loop runners; on a cluster, limit each worker with dask's own
    ``memory_limit``.
    """
    token = _MEMORY_LIMIT.set(_parse_bytes(limit))
    try:
        yield
    finally:
        _MEMORY_LIMIT.reset(token)


def _current_rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):  # pragma: no cover - non-Linux
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def task_budget(n_workers: int, memory_per_worker: int | None = None) -> int:
    """Bytes of block data one task may hold: explicit, from an active memory_limit, or 512 MiB."""
    if memory_per_worker:
        return int(memory_per_worker)
    limit = _MEMORY_LIMIT.get()
    if limit is None:
        return DEFAULT_MEMORY_PER_WORKER
    in_use = _current_rss()
    avail = limit - in_use - 64 * 2**20  # headroom for states, codecs and the interpreter
    if avail < 16 * 2**20:
        raise InvalidInputError(
            f"memory_limit {limit / 2**20:.0f} MiB leaves no room: this process already uses {in_use / 2**20:.0f} MiB. "
            "Raise the limit (at least ~100 MiB above the current use)."
        )
    return avail // (2 * max(1, n_workers))


def _client(client: Any = None) -> Any:
    if client is not None:
        return client
    try:
        from distributed import default_client

        return default_client()
    except (ImportError, ValueError):
        return None


def resolve_scheduler(scheduler: Any = None, client: Any = None) -> tuple[str, Any]:
    """Return ``(name, client_or_None)`` for a ``scheduler=`` argument."""
    if scheduler is not None and not isinstance(scheduler, str):
        # a distributed.Client passed as the scheduler
        if hasattr(scheduler, "compute") and hasattr(scheduler, "scheduler_info"):
            return "distributed", scheduler
        raise InvalidInputError(
            f"scheduler must be one of {SCHEDULERS}, a distributed.Client, or None; got {scheduler!r}."
        )
    if scheduler is None:
        c = _client(client)
        return ("distributed", c) if c is not None else ("threads", None)
    if scheduler not in SCHEDULERS:
        raise InvalidInputError(
            f"scheduler must be one of {SCHEDULERS}, a distributed.Client, or None; got {scheduler!r}."
        )
    if scheduler == "distributed":
        c = _client(client)
        if c is None:
            raise InvalidInputError(
                "scheduler='distributed' needs a distributed.Client; none is active. Create one "
                "(from distributed import Client; Client()) or pass client=..."
            )
        return "distributed", c
    return scheduler, None


def _n_workers(name: str, client: Any, num_workers: int | None) -> int:
    if name == "sync":
        return 1
    if name == "threads":
        return int(num_workers or os.cpu_count() or 1)
    try:
        return max(1, sum(w.get("nthreads", 1) for w in client.scheduler_info()["workers"].values()))
    except Exception:  # pragma: no cover - informational only
        return 1


def plan_blocks(
    reps: Sequence[Representation],
    *,
    block_rows: int | None = None,
    memory_per_worker: int | None = None,
    n_workers: int = 1,
    scheduler: str = "threads",
) -> Plan:
    """Choose common row blocks for ``reps``.

    Blocks hold at most ``memory_per_worker`` bytes of float64 data over all
    inputs (default 512 MiB), are a multiple of the inputs' stored chunk rows
    where that fits (so no stored chunk is decompressed twice), and there are
    at least ``2 * n_workers`` of them when n allows.
    """
    n = reps[0].n
    if block_rows is not None:
        if not isinstance(block_rows, (int, np.integer)) or block_rows < 1:
            raise InvalidInputError(f"block_size must be a positive integer number of rows; got {block_rows!r}.")
        rows = int(min(block_rows, n))
    else:
        budget = task_budget(n_workers, memory_per_worker)
        # the input block, its centred float64 copy, and a margin for the decoded chunks
        row_bytes = sum(r.d * (12 + r.dtype.itemsize) for r in reps)
        rows = max(1, budget // max(1, row_bytes))
        rows = min(rows, max(1, math.ceil(n / (2 * n_workers))), n)
        native = [r.native_rows for r in reps if r.native_rows]
        if native:
            step = math.lcm(*native)
            if step <= rows:
                rows = (rows // step) * step
            else:
                big = max(native)
                if big <= rows:
                    rows = (rows // big) * big
        rows = max(1, rows)
    return Plan(n_samples=n, block_rows=rows, n_blocks=math.ceil(n / rows), scheduler=scheduler, n_workers=n_workers)


def tree_reduce(items: Sequence[Any], combine: Callable[[Any, Any], Any]) -> Any:
    """Reduce ``items`` pairwise, level by level: ((0,1),(2,3)),(4,...) — the engine's one tree."""
    if not items:
        raise InvalidInputError("nothing to reduce: the inputs have no rows.")
    level = list(items)
    while len(level) > 1:
        level = [combine(*level[i : i + 2]) if i + 1 < len(level) else level[i] for i in range(0, len(level), 2)]
    return level[0]


class _StreamingTree:
    """The same tree as :func:`tree_reduce`, built as items arrive (binary counter).

    Holds O(log n_blocks) states instead of all of them.
    """

    def __init__(self, combine: Callable[[Any, Any], Any]):
        self.combine = combine
        self.stack: list[tuple[int, Any]] = []  # (level, state)

    def push(self, item: Any) -> None:
        level = 0
        while self.stack and self.stack[-1][0] == level:
            _, left = self.stack.pop()
            item = self.combine(left, item)
            level += 1
        self.stack.append((level, item))

    def result(self) -> Any:
        if not self.stack:
            raise InvalidInputError("nothing to reduce: the inputs have no rows.")
        _, acc = self.stack.pop()
        while self.stack:
            _, left = self.stack.pop()
            acc = self.combine(left, acc)
        return acc


def rep_token(r: Representation) -> Any:
    """A cheap, deterministic identity of an input (no hashing of the data itself)."""
    return (r.name, r.kind, r.shape, str(r.dtype), id(r.source) if r.kind in ("numpy", "dask") else repr(r.source))


def _maybe_cached(path: str | None, compute: Callable[[], Any]) -> Any:
    return compute() if path is None else cached(path, compute)[0]


class LazyBlocks(collections.abc.Sequence):
    """Row block [start, stop) of every input, read when indexed and not kept.

    Given to statistics that set ``lazy_blocks = True`` (they index each input
    once), so that a task holds one input's block at a time rather than all of them.
    """

    def __init__(self, reps: Sequence[Representation], start: int, stop: int):
        self.reps, self.start, self.stop = reps, start, stop

    def __len__(self) -> int:
        return len(self.reps)

    def __getitem__(self, k: Any) -> Any:
        if isinstance(k, slice):
            return [self[i] for i in range(len(self))[k]]
        return self.reps[k].read(self.start, self.stop)


def _read_and_partial(statistic: Any, reps: Sequence[Representation], start: int, stop: int, path: str | None = None) -> Any:
    """Read one row block of every input where the task runs, then reduce it (or load its checkpoint)."""
    if getattr(statistic, "lazy_blocks", False):
        return _maybe_cached(path, lambda: statistic.partial(LazyBlocks(reps, start, stop), start))
    return _maybe_cached(path, lambda: statistic.partial([r.read(start, stop) for r in reps], start))


def _read_and_partial_pair(
    statistic: Any, reps: Sequence[Representation], sa: int, sb: int, rows: int, n: int, path: str | None = None
) -> Any:
    def compute() -> Any:
        bi = [r.read(sa, min(sa + rows, n)) for r in reps]
        bj = bi if sa == sb else [r.read(sb, min(sb + rows, n)) for r in reps]
        return statistic.partial(bi, bj, sa, sb)

    return _maybe_cached(path, compute)


def content_id(r: Representation) -> Any:
    """A stable identity of an input's data for checkpoint fingerprints."""
    src = r.source
    if r.kind == "layer":
        return ("layer", src.store.source, src.name, r.shape, str(r.dtype))
    if r.kind == "zarr":
        return ("zarr", str(src.store), src.path, r.shape, str(r.dtype))
    if r.kind == "dask":
        return ("dask", src.name)
    return ("numpy", dask.base.tokenize(src))


def _checkpoint_paths(statistic: Any, reps: Sequence[Representation], n: int, rows: int, names: list[str]) -> list[str | None]:
    """Per-part checkpoint files when a checkpoint is active (and count what will be loaded)."""
    ck = active_checkpoint()
    if ck is None:
        return [None] * len(names)
    d = ck.pass_dir(fingerprint(statistic, n, rows, [content_id(r) for r in reps]))
    paths = [str(d / f"{nm}.pkl") for nm in names]
    existing = sum(os.path.exists(p) for p in paths)
    ck.loaded += existing
    ck.computed += len(paths) - existing
    return paths


def _compute_tree(parts: list[Any], combine: Callable[[Any, Any], Any], token: str, name: str, client: Any, workers: int) -> Any:
    """Build the :func:`tree_reduce` tree over delayed partials and compute it."""
    comb = dask.delayed(combine, pure=True)
    level, depth = parts, 0
    while len(level) > 1:
        level = [
            comb(level[i], level[i + 1], dask_key_name=f"combine-{token}-{depth}-{i}") if i + 1 < len(level) else level[i]
            for i in range(0, len(level), 2)
        ]
        depth += 1
    root = level[0]
    bar = active_progress()
    if name == "threads":
        with contextlib.ExitStack() as stack:
            stack.enter_context(_blas_threads(1 if workers > 1 else None))
            if bar is not None:
                stack.enter_context(dask_callback(bar, type(combine.__self__).__name__ if hasattr(combine, "__self__") else "bigalign"))
            (state,) = dask.compute(root, scheduler="threads", num_workers=workers)
        return state
    future = client.compute(root)
    if bar is not None:
        from distributed import progress as distributed_progress

        link = getattr(client, "dashboard_link", None)
        if link:
            bar.stream.write(f"dask dashboard: {link}\n")
        distributed_progress(future)
        bar.stream.write("\n")
    return future.result()


@contextlib.contextmanager
def _blas_threads(n: int | None):
    if n is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=n, user_api="blas"):
        yield


def _options(func: str, options: EngineOptions | None, *values: Any) -> EngineOptions:
    """The call's EngineOptions: ``options`` (from a façade) or the individual keywords (validated here)."""
    if options is None:
        return EngineOptions.build(func, dict(zip(("block_size", "scheduler", "client", "num_workers", "memory_per_worker"), values)))
    if any(v is not None for v in values):
        raise InvalidInputError(
            f"{func} got both options=EngineOptions(...) and individual engine keywords; pass one or the other."
        )
    return options


def prepare(
    inputs: Sequence[Any], names: Sequence[str] | None = None, check: bool = True
) -> list[Representation]:
    """Normalise inputs and check that they are paired (same n, same sample ids)."""
    names = names or [f"input {i}" for i in range(len(inputs))]
    reps = [as_representation(x, nm) for x, nm in zip(inputs, names)]
    if check:
        check_pairing(reps)
    return reps


def run(
    statistic: Statistic[S, R],
    inputs: Sequence[Any],
    *,
    names: Sequence[str] | None = None,
    block_size: int | None = None,
    scheduler: Any = None,
    client: Any = None,
    num_workers: int | None = None,
    memory_per_worker: int | None = None,
    finalize: bool = True,
    check_pairing: bool = True,
    options: EngineOptions | None = None,
) -> tuple[R | S, Plan]:
    """Run ``statistic`` over the common row blocks of ``inputs``.

    Parameters
    ----------
    statistic : Statistic
    inputs : sequence of array-like
        numpy, dask or zarr arrays or store layers with the same number of rows.
    block_size : int, optional
        Rows per block.  Default: planned from ``memory_per_worker``.
    scheduler : {"sync", "threads", "distributed"}, distributed.Client or None
    client : distributed.Client, optional
    num_workers : int, optional
        Threads for the threaded scheduler (default: CPU count).
    check_pairing : bool
        Verify n and sample ids (skip only when the caller already did).
    options : EngineOptions, optional
        The five engine options as one validated object (what the façades pass);
        then the individual keywords must be left out.

    Returns
    -------
    (result, plan)
    """
    o = _options("run", options, block_size, scheduler, client, num_workers, memory_per_worker)
    block_size, scheduler, client, num_workers, memory_per_worker = (
        o.block_size, o.scheduler, o.client, o.num_workers, o.memory_per_worker,
    )  # fmt: skip
    reps = prepare(inputs, names, check_pairing)
    name, cl = resolve_scheduler(scheduler, client)
    workers = _n_workers(name, cl, num_workers)
    plan = plan_blocks(
        reps, block_rows=block_size, memory_per_worker=memory_per_worker, n_workers=workers, scheduler=name
    )
    rows, n = plan.block_rows, plan.n_samples
    starts = list(range(0, n, rows))
    if name == "sync":
        tree = _StreamingTree(statistic.combine)
        bar = active_progress()
        if bar is not None:
            bar.start(len(starts), type(statistic).__name__)
        paths = _checkpoint_paths(statistic, reps, n, rows, [f"b{i}" for i in range(len(starts))])
        for i, s in enumerate(starts):
            tree.push(_read_and_partial(statistic, reps, s, min(s + rows, n), paths[i]))
            if bar is not None:
                bar.update()
        state = tree.result()
        if bar is not None:
            bar.finish()
    else:
        token = dask.base.tokenize(statistic, n, rows, *[rep_token(r) for r in reps])
        # inputs and the statistic enter the graph once each, opaque: dask must not traverse
        # them (a statistic holding a dask array would otherwise be computed) nor copy them per task
        dreps = [dask.delayed(r, pure=True, traverse=False) for r in reps]
        dstat = dask.delayed(statistic, pure=True, traverse=False)
        part = dask.delayed(_read_and_partial, pure=True)
        paths = _checkpoint_paths(statistic, reps, n, rows, [f"b{i}" for i in range(len(starts))])
        parts = [
            part(dstat, dreps, s, min(s + rows, n), paths[i], dask_key_name=f"partial-{token}-{i}")
            for i, s in enumerate(starts)
        ]
        state = _compute_tree(parts, statistic.combine, token, name, cl, workers)
    if not finalize:
        return state, plan
    return statistic.finalize(state), plan


class PairStatistic(Protocol, Generic[S, R]):
    """A statistic whose sums run over pairs of samples.

    ``partial(blocks_i, blocks_j, start_i, start_j)`` receives the row blocks
    I and J (one numpy block per input each) of the tile I ≤ J; a tile with
    ``start_i == start_j`` pairs a block with itself.
    """

    def partial(self, blocks_i: Sequence[np.ndarray], blocks_j: Sequence[np.ndarray], start_i: int, start_j: int) -> S: ...

    def combine(self, a: S, b: S) -> S: ...

    def finalize(self, state: S) -> R: ...


DEFAULT_TILE_ROWS = 2048


def requested_budget(memory_per_worker: int | None, n_workers: int = 1) -> int | None:
    """The bytes one task may hold when the caller constrained memory (``memory_per_worker`` or an
    active :func:`memory_limit`), else None: roads that hold whole matrices check against it."""
    if memory_per_worker is None and _MEMORY_LIMIT.get() is None:
        return None
    return task_budget(n_workers, memory_per_worker)


def tile_rows(reps: Sequence[Representation], memory_per_worker: int | None, n_workers: int) -> int:
    """Rows per tile block: ``DEFAULT_TILE_ROWS``, or fewer so that one task fits its memory budget.

    The budget applies when ``memory_per_worker`` is given or a :func:`memory_limit`
    is active (otherwise the default tile, ≈ 130 MB of tile temporaries, is kept).
    A task holds two input blocks (r rows each, as read and as float64) and
    about four r × r float64 arrays (squared distances, kernel values and their
    temporaries): 32·r² + 2·r·Σ d(8 + itemsize) bytes ≤ budget.
    """
    if memory_per_worker is None and _MEMORY_LIMIT.get() is None:
        return DEFAULT_TILE_ROWS
    budget = task_budget(n_workers, memory_per_worker)
    row_bytes = 2 * sum(r.d * (8 + r.dtype.itemsize) for r in reps)
    rows = int((-row_bytes + math.sqrt(row_bytes * row_bytes + 128.0 * budget)) / 64.0)
    return max(1, min(DEFAULT_TILE_ROWS, rows))


def run_pairs(
    statistic: PairStatistic[S, R],
    inputs: Sequence[Any],
    *,
    names: Sequence[str] | None = None,
    block_size: int | None = None,
    scheduler: Any = None,
    client: Any = None,
    num_workers: int | None = None,
    memory_per_worker: int | None = None,
    check_pairing: bool = True,
    options: EngineOptions | None = None,
) -> tuple[R, Plan]:
    """Run a pairwise statistic over the tiles (I, J), I ≤ J, of common row blocks.

    O(n_blocks²) tiles are spread over the workers and combined in the
    engine's one tree; memory per task is a few tiles (``block_size`` rows
    square, default 2048, fewer when ``memory_per_worker`` or an active
    :func:`memory_limit` needs it: see :func:`tile_rows`).  ``options`` as for :func:`run`.
    """
    o = _options("run_pairs", options, block_size, scheduler, client, num_workers, memory_per_worker)
    block_size, scheduler, client, num_workers, memory_per_worker = (
        o.block_size, o.scheduler, o.client, o.num_workers, o.memory_per_worker,
    )  # fmt: skip
    reps = prepare(inputs, names, check_pairing)
    name, cl = resolve_scheduler(scheduler, client)
    workers = _n_workers(name, cl, num_workers)
    rows = block_size if block_size is not None else tile_rows(reps, memory_per_worker, workers)
    plan = plan_blocks(reps, block_rows=rows, n_workers=workers, scheduler=name)
    rows, n = plan.block_rows, plan.n_samples
    starts = list(range(0, n, rows))
    tiles = [(a, b) for a in range(len(starts)) for b in range(a, len(starts))]
    if name == "sync":
        tree = _StreamingTree(statistic.combine)

        def read(k: int) -> list[np.ndarray]:
            return [r.read(starts[k], min(starts[k] + rows, n)) for r in reps]

        bar = active_progress()
        if bar is not None:
            bar.start(len(tiles), type(statistic).__name__)
        paths = dict(zip(tiles, _checkpoint_paths(statistic, reps, n, rows, [f"t{a}-{b}" for a, b in tiles])))
        for a in range(len(starts)):
            row_a: list[list[np.ndarray]] = []  # block a, read at most once (not at all if its tiles are checkpointed)

            def tile(a: int, b: int, row_a: list = row_a) -> Any:
                if not row_a:
                    row_a.append(read(a))
                return statistic.partial(row_a[0], row_a[0] if b == a else read(b), starts[a], starts[b])

            for b in range(a, len(starts)):
                tree.push(_maybe_cached(paths[(a, b)], lambda a=a, b=b: tile(a, b)))
                if bar is not None:
                    bar.update()
        if bar is not None:
            bar.finish()
        state = tree.result()
    else:
        token = dask.base.tokenize(statistic, n, rows, "pairs", *[rep_token(r) for r in reps])
        # inputs and the statistic enter the graph once each, opaque: dask must not traverse
        # them (a statistic holding a dask array would otherwise be computed) nor copy them per task
        dreps = [dask.delayed(r, pure=True, traverse=False) for r in reps]
        dstat = dask.delayed(statistic, pure=True, traverse=False)
        part = dask.delayed(_read_and_partial_pair, pure=True)
        paths = _checkpoint_paths(statistic, reps, n, rows, [f"t{a}-{b}" for a, b in tiles])
        parts = [
            part(dstat, dreps, starts[a], starts[b], rows, n, p, dask_key_name=f"tile-{token}-{a}-{b}")
            for (a, b), p in zip(tiles, paths)
        ]
        state = _compute_tree(parts, statistic.combine, token, name, cl, workers)
    return statistic.finalize(state), plan
