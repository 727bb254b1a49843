"""The exact neighbour search behind :mod:`bigalign.metrics.neighbors`: cosine top-k lists of every
sample (blocked tiles I ≤ J) or of sampled query rows, under the module's total order (similarity
descending, then sample index ascending; self excluded by index)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .._checks import finite_float64
from .._numba.topk import empty_lists, merge_topk, topk_tile
from ..engine import run, run_pairs
from ..errors import InvalidInputError, NonFiniteError
from ..io import Representation
from ..options import EngineOptions
from ..tiles import TileStatistic

SIM_TILE_BYTES = 32 * 2**20  # a similarity tile of the sampled search (queries × candidates), like a 2048² exact tile
_SEED_QUERIES = 0x4E4E

KNN_METRICS = ("mutual_knn", "cknna", "cycle_knn", "lcs_knn", "edit_distance_knn")
TIE_RULE = "similarity desc, then sample index asc; self excluded by index"
_SAMPLED_OK = ("mutual_knn", "cycle_knn", "lcs_knn", "edit_distance_knn")


def finite_rows(block: np.ndarray, name: str, start: int, rows: np.ndarray | None = None) -> np.ndarray:
    """A float64 copy of ``block`` (rows start.., or the scattered rows ``rows``); NaN/Inf raise, naming the rows."""
    if rows is None:
        return finite_float64(block, name, start)
    x = np.array(block, dtype=np.float64, order="C", copy=True)
    if not np.isfinite(x.sum()):
        bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
        if bad.size:
            shown = ", ".join(str(int(r)) for r in rows[bad[:5]]) + (", ..." if bad.size > 5 else "")
            raise NonFiniteError(
                f"{name} holds NaN or infinite values in {bad.size} of the sampled rows (row(s) {shown}). Expected "
                "finite numbers. Remove or repair these rows (for float16 activations, check for overflow beyond ±65504)."
            )
    return finite_float64(x, name, int(rows.min()) if rows.size else 0)


def unit_rows(block: np.ndarray, name: str, start: int, rows: np.ndarray | None = None) -> np.ndarray:
    """float64 rows scaled to unit Euclidean norm; rows of zeros (no direction) raise, naming them.

    ``rows``: the row numbers of a gathered (scattered) block, for the messages; else rows start...
    """
    x = finite_rows(block, name, start, rows)
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    zero = np.flatnonzero(norms == 0)
    if zero.size:
        first = int(rows[zero[0]]) if rows is not None else start + int(zero[0])
        raise InvalidInputError(
            f"{name} has {zero.size} row(s) of all zeros (first at row {first}), which have no direction: "
            "cosine similarities (L2-normalised rows) are undefined for them. Expected rows with at least one non-zero "
            "value. Drop these samples from both representations."
        )
    x /= norms[:, None]
    return x


def _check_k(func: str, k: Any, n: int, minimum: int = 1) -> tuple[list[int], bool]:
    """(list of k, whether a single int was given)."""
    single = not isinstance(k, (list, tuple, np.ndarray))
    ks = [k] if single else list(k)
    if not ks:
        raise InvalidInputError(f"the 'k' parameter of {func} must be a positive integer or a non-empty list of them; got {k!r}.")
    for v in ks:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < minimum:
            raise InvalidInputError(f"the 'k' parameter of {func} must hold integers >= {minimum}; got {v!r} in {k!r}.")
        if v > n - 1:
            raise InvalidInputError(
                f"{func} with k = {v} needs at least k + 1 = {v + 1} samples (a sample is not its own neighbour); got n = {n}. "
                f"Use k <= {n - 1}."
            )
    return [int(v) for v in ks], single


# ---------------------------------------------------------------------------
# exact: blocked top-k over all pairs (tiles I <= J), any number of inputs
# ---------------------------------------------------------------------------

#: (vals_0, idx_0, vals_1, idx_1, ...): one sorted (q, k) list pair per input
Lists = tuple[np.ndarray, ...]


def _merge_lists(a: Lists, b: Lists) -> Lists:
    out: list[np.ndarray] = []
    for t in range(0, len(a), 2):
        out += merge_topk(a[t], a[t + 1], b[t], b[t + 1])
    return tuple(out)


@dataclass(frozen=True, eq=False)
class NeighbourTileStatistic(TileStatistic):
    """Top-k neighbour lists of every sample in each input, from tiles (I, J ≥ I).

    A road of :class:`bigalign.tiles.TileStatistic` whose per-row sums are the neighbour
    lists (one (vals, idx) pair per input, merged by :func:`_merge_lists`) and which keeps
    no pair sums.  A tile offers J's rows to I's queries and I's rows to J's queries (the
    similarity tile is symmetric), so candidate sets merged by ``combine`` are disjoint.
    Each input's lists depend on that input only: searching several layers in one run gives
    each layer the lists a search of that layer alone gives (same tiles, same products).
    """

    k: int
    names: tuple[str, ...] = ("x", "y")

    def prepare(self, blocks: Sequence[np.ndarray], start: int) -> tuple:
        """(unit rows of each input, the block's global row indices)."""
        g = np.arange(start, start + blocks[0].shape[0], dtype=np.int64)
        return tuple(unit_rows(b, name, start) for b, name in zip(blocks, self.names)), g

    def values(self, pi: Any, pj: Any) -> list[np.ndarray]:
        """The cosine similarities of each input's rows."""
        return [a @ b.T for a, b in zip(pi[0], pj[0])]

    def sums(self, values: Any, pi: Any, pj: Any, a: slice, c: slice, same: bool) -> tuple[Any, Any, Any]:
        gi, gj = pi[1][a], pj[1][c]
        out_i: list[np.ndarray] = []
        out_j: list[np.ndarray] = []
        for sim in values:
            sim = sim[a, c]
            vi, ii = empty_lists(gi.shape[0], self.k)
            if same:
                topk_tile(sim, gi, gi, 2, vi, ii, vi, ii)
            else:
                vj, ij = empty_lists(gj.shape[0], self.k)
                topk_tile(sim, gi, gj, 1, vi, ii, vj, ij)
                out_j += [vj, ij]
            out_i += [vi, ii]
        return None, tuple(out_i), None if same else tuple(out_j)

    def merge_rows(self, a: Lists, b: Lists) -> Lists:
        return _merge_lists(a, b)

    def stitch(self, parts: list) -> Lists:
        return tuple(np.concatenate([p[t] for p in parts]) for t in range(2 * len(self.names)))

    def finish(self, pairs: Any, rows: Lists) -> Lists:
        return rows


# ---------------------------------------------------------------------------
# sampled queries: exact neighbours among all n for fixed query rows
# ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class QueryStatistic:
    """Top-k lists of fixed query rows over the candidates of every row block, per input.

    ``queries[t]``: the unit rows of input t's queries (global indices ``qidx[t]``; inputs may
    have different query sets).
    """

    queries: tuple[np.ndarray, ...]
    qidx: tuple[np.ndarray, ...]
    k: int
    names: tuple[str, ...] = ("x", "y")

    def partial(self, blocks: Sequence[np.ndarray], start: int) -> Lists:
        out: list[np.ndarray] = []
        for t, name in enumerate(self.names):
            m = self.qidx[t].shape[0]
            v, i = empty_lists(m, self.k)
            if m:
                bx = unit_rows(blocks[t], name, start)
                step = max(64, SIM_TILE_BYTES // (8 * m))  # candidates per similarity tile (m × step float64)
                for a in range(0, bx.shape[0], step):
                    b = min(bx.shape[0], a + step)
                    g = np.arange(start + a, start + b, dtype=np.int64)
                    topk_tile(self.queries[t] @ bx[a:b].T, self.qidx[t], g, 0, v, i, v, i)
            out += [v, i]
        return tuple(out)

    def combine(self, a: Lists, b: Lists) -> Lists:
        return _merge_lists(a, b)

    def finalize(self, state: Lists) -> Lists:
        return state


def sample_queries(n: int, m: int, seed: int) -> np.ndarray:
    """The seeded uniform sample (without replacement, sorted) of m query indices out of n."""
    return np.sort(np.random.default_rng([seed, _SEED_QUERIES]).choice(n, size=m, replace=False))


# ---------------------------------------------------------------------------
# the neighbour lists of one or many layers (the per-layer stage of a layer matrix)
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class NeighbourLists:
    """One representation's k-nearest-neighbour lists (sorted by the module's total order).

    ``idx[r]``/``vals[r]``: the neighbours (sample indices) and cosine similarities of sample
    ``rows[r]``; ``rows is None`` means every sample (row r is sample r).
    """

    vals: np.ndarray
    idx: np.ndarray
    rows: np.ndarray | None = None

    @property
    def k(self) -> int:
        return int(self.idx.shape[1])

    @property
    def nbytes(self) -> int:
        return int(self.vals.nbytes + self.idx.nbytes)


def search(reps: Sequence[Representation], k: int, options: EngineOptions, queries: Sequence[np.ndarray] | None = None) -> tuple[list[NeighbourLists], dict[str, Any]]:
    """Exact top-k lists of every input: of every sample (``queries=None``: one run of tiles I ≤ J
    over all inputs, each block read once per tile) or of the rows ``queries[t]`` of input t (one
    pass over the candidate blocks).  Each input's lists are those a search of it alone gives."""
    names = tuple(r.name for r in reps)
    if queries is None:
        out, plan = run_pairs(NeighbourTileStatistic(k, names), reps, check_pairing=False, options=options)
        params = {"block_size": plan.block_rows, "n_tiles": plan.n_blocks * (plan.n_blocks + 1) // 2, "scheduler": plan.scheduler}
        return [NeighbourLists(out[2 * t], out[2 * t + 1]) for t in range(len(reps))], params
    qs = tuple(unit_rows(r.take(q), r.name, 0, rows=q) if q.size else np.zeros((0, r.d)) for r, q in zip(reps, queries))
    out, plan = run(QueryStatistic(qs, tuple(queries), k, names), reps, check_pairing=False, options=options)
    params = {"block_size": plan.block_rows, "n_blocks": plan.n_blocks, "scheduler": plan.scheduler}
    return [NeighbourLists(out[2 * t], out[2 * t + 1], np.asarray(q)) for t, q in enumerate(queries)], params


def cycle_rows(ly: NeighbourLists, k: int) -> np.ndarray:
    """The samples whose x-lists cycle_knn(x, y) needs beyond y's queries: y's neighbours of them."""
    return np.unique(ly.idx[:, :k])


# ---------------------------------------------------------------------------
# the façades' checks of k, n_queries and seed
# ---------------------------------------------------------------------------


def _check_seed(func: str, seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidInputError(f"the 'seed' parameter of {func} must be a non-negative integer; got {seed!r} instead.")
    return int(seed)


def check_n_queries(func: str, n_queries: Any, n: int, metric: str) -> int | None:
    if n_queries is None:
        return None
    if metric not in _SAMPLED_OK:
        raise InvalidInputError(f"{metric} has no sampled-query road (its terms pair every sample with every other); remove n_queries.")
    if isinstance(n_queries, bool) or not isinstance(n_queries, (int, np.integer)) or not 2 <= n_queries <= n:
        raise InvalidInputError(
            f"the 'n_queries' parameter of {func} must be None (every sample) or an integer in [2, n = {n}]; got {n_queries!r}."
        )
    return int(n_queries)


def check_k(func: str, metric: str, k: Any, n: int) -> int:
    """One k (an int) for a neighbourhood measure; a list points to :func:`knn_sweep`."""
    if isinstance(k, (list, tuple, np.ndarray)):
        raise InvalidInputError(
            f"the 'k' parameter of {func} must be one integer; got {k!r}. For several k from one neighbour search, "
            f"use bigalign.knn_sweep(x, y, metric={metric!r}, k={list(k)!r}), which returns a KnnSweep."
        )
    return _check_k(func, k, n, minimum=2 if metric == "cknna" else 1)[0][0]
