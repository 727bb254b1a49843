"""Seeded random row blocks: the machinery of every block road (dCor, HSIC/CKA/KA).

A block road partitions the rows into ⌊n/B⌋ random blocks (a seeded
permutation, so stores sorted by class or source do not bias it) and computes
something exact inside each block.  The engine runs over the *block indices*
(its input is ``arange(m)``); a task gathers the rows of its blocks with one
sorted read per input and returns one vector per block, keyed by block, so the
answer does not depend on how blocks are grouped into tasks (``block_size``,
scheduler, workers).

What is computed per block is a picklable callable ``per_block(x_block,
y_block) -> 1-D array`` (rows float64, finite, in random order).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ..engine import content_id, run, task_budget
from ..io import Representation
from ..options import EngineOptions
from .neighbors import finite_rows

__all__ = ["BlockInputs", "RandomBlockStatistic", "blocks_per_task", "partition", "run_blocks"]

_SEED_BLOCK = 0xDC0B


def partition(n: int, block: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(permutation, bounds): block b holds rows perm[bounds[b]:bounds[b+1]]; ⌊n/B⌋ blocks of ⌊n/m⌋ or ⌈n/m⌉ rows."""
    m = n // block
    perm = np.random.default_rng([seed, _SEED_BLOCK]).permutation(n)
    bounds = (np.arange(m + 1, dtype=np.int64) * n) // m
    return perm, bounds


class BlockInputs:
    """x and y inside a block statistic, with a cheap, stable token: the engine's content
    identity of the inputs (store path and layer, dask name, or a hash of in-memory data)
    instead of dask hashing the Representations' fields, so checkpoints of a block road
    resume like any other pass."""

    __slots__ = ("x", "y")

    def __init__(self, x: Representation, y: Representation):
        self.x, self.y = x, y

    def __dask_tokenize__(self) -> Any:
        return ("bigalign-block-inputs", content_id(self.x), content_id(self.y))

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (BlockInputs, (self.x, self.y))


@dataclass(frozen=True, eq=False)
class RandomBlockStatistic:
    """Runs ``per_block`` on every random block; the engine's input is the block indices.

    Each partial gathers the rows of its random blocks from x and y (sorted
    reads), checks them, and returns ``{block: per_block(xb, yb)}``.
    """

    inputs: BlockInputs
    block: int
    seed: int
    per_block: Callable[[np.ndarray, np.ndarray], np.ndarray]

    @property
    def x(self) -> Representation:
        return self.inputs.x

    @property
    def y(self) -> Representation:
        return self.inputs.y

    def partial(self, blocks: Sequence[np.ndarray], start: int) -> dict[int, np.ndarray]:
        ids = np.asarray(blocks[0]).ravel()
        perm, bounds = partition(self.x.n, self.block, self.seed)
        rows = [perm[bounds[b] : bounds[b + 1]] for b in ids]
        allrows = np.concatenate(rows)
        order = np.argsort(allrows, kind="stable")
        sorted_rows = allrows[order]
        xs = self.x.take(sorted_rows)
        ys = self.y.take(sorted_rows)
        where = np.empty_like(order)
        where[order] = np.arange(order.size)  # position of allrows[t] in sorted_rows
        out, t = {}, 0
        for b, r in zip(ids, rows):
            pos = where[t : t + r.size]
            t += r.size
            xb = finite_rows(xs[pos], self.x.name, 0, r)
            yb = finite_rows(ys[pos], self.y.name, 0, r)
            out[int(b)] = np.asarray(self.per_block(xb, yb), dtype=np.float64)
        return out

    def combine(self, a: dict, b: dict) -> dict:
        return {**a, **b}

    def finalize(self, state: dict) -> np.ndarray:
        return np.stack([state[b] for b in sorted(state)])


def blocks_per_task(reps: list[Representation], block: int, m: int, workers: int, budget: int) -> tuple[int, int, int]:
    """(random blocks per task, bytes held per block, bytes of the one block being worked on).

    As many blocks per task as fit ``budget``, and >= 2 tasks per worker when m allows.  Few, large
    tasks matter for chunked stores: a task's rows are spread over the whole store, so each task
    decodes about every chunk of it once (measured at n = 10⁶, d = 32, zstd: 98 tasks of 10 blocks
    decoded the store 98 times, 70% of the CPU time; 4 tasks of 244: 11.6 s instead of 42.4 s CPU;
    benchmarks/results/profile_block_dcor.md).  A task holds the rows of all its blocks at once
    (input dtype, and 4 int64 row indices each: allrows, order, sorted_rows, where) but works on one
    block at a time: its rows in float64 (copy, finite check, centred copy: ~4 per feature) and two
    B×B distance tiles with their temporaries (3 per input).  Measured peak of one task: 52–89% of
    held·per_task + work (d = 32…2048, budgets 64–512 MiB; same file).
    """
    d = reps[0].d + reps[1].d
    held = block * (np.dtype(reps[0].dtype).itemsize * reps[0].d + np.dtype(reps[1].dtype).itemsize * reps[1].d + 4 * 8)
    work = block * (8 * 4 * d + 8 * 3 * 2 * block)
    return max(1, min((budget - work) // held, math.ceil(m / (2 * max(1, workers))))), held, work


def run_blocks(
    reps: list[Representation], block: int, seed: int, per_block: Callable[[np.ndarray, np.ndarray], np.ndarray],
    options: EngineOptions, workers: int,
) -> tuple[np.ndarray, dict[str, Any]]:  # fmt: skip
    """(per-block vectors stacked in block order, parameters) of one pass over the random blocks.

    ``options.block_size``, when given, is the engine's chunking in rows per task (rounded down to
    whole random blocks, at least one); by default tasks are as large as the memory budget allows.
    It changes how blocks are grouped into tasks, never the answer.
    """
    n = reps[0].n
    m = n // block
    budget = task_budget(workers, options.memory_per_worker)  # honours bigalign.memory_limit
    per_task = blocks_per_task(reps, block, m, workers, budget)[0]
    if options.block_size:  # the engine's chunking, in rows per task: whole random blocks per task
        per_task = max(1, int(options.block_size) // block)
    stat = RandomBlockStatistic(BlockInputs(reps[0], reps[1]), block, seed, per_block)
    task_options = options.replace(block_size=per_task, memory_per_worker=None)  # the budget is spent: tasks are sized
    out, plan = run(stat, [np.arange(m, dtype=np.int64).reshape(m, 1)], names=["block index"], check_pairing=False, options=task_options)
    sizes = np.diff(partition(n, block, seed)[1])
    params = {
        "n_blocks": m,
        "block_rows": [int(sizes.min()), int(sizes.max())],
        "blocks_per_task": per_task,
        "n_tasks": plan.n_blocks,
        "scheduler": plan.scheduler,
        "seed": seed,
    }
    return out, params
