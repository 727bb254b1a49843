"""Neighbourhood alignment: mutual k-nearest neighbours and CKNNA (Huh et al. 2024).

Neighbours
----------
Rows are L2-normalised; the similarity of two samples is the inner product
of their normalised rows (cosine similarity), computed in float64 by BLAS
over tiles of row blocks.  The neighbours of sample i are the k other samples
with the largest similarity, under one total order:

* larger similarity first;
* **tie rule**: equal similarities (bit-identical float64) are ranked by
  sample index, smaller first;
* a sample is never its own neighbour — excluded *by index*, so an exact
  duplicate of a sample is still a candidate (no −1e8 diagonal sentinel).

So every neighbour list is unique, and the list for a smaller k is a prefix of
the list for a larger one: a sweep over several k costs one search (pass
``k=[1, 5, 10, ...]``; the answer is one Result per k).  Similarities equal
only up to rounding (≈1e-16) are ordered by their computed values, which a
different tiling could round differently; exact ties are ordered by index
whatever the tiling.

Estimators
----------
mutual_knn
    (1/n) Σᵢ |N_x(i) ∩ N_y(i)| / k over all n samples (exact: blocked top-k
    over all pairs, O(n²·d) time, O(n·k + tile²) memory).  With ``n_queries=m``:
    the same mean over a seeded uniform sample of m queries (without
    replacement), each with its exact neighbours among *all* n samples
    (O(m·n·d)); unbiased for the full value, with a standard error
    sd/√m·√(1 − m/n) and a 95% normal interval.  Subsampling the *pool* of
    candidates instead is biased (it nearly doubled the value in a measured
    case), so it is not offered.  Independent
    representations give about k/(n − 1).
cknna
    CKA restricted to mutual neighbours, exactly as platonic-rep's ``cknna``
    (``unbiased=True``, the default there): with the kernels K = X̂X̂ᵀ,
    L = ŶŶᵀ and the mask M(i) = N_K(i) ∩ N_L(i),
    CKNNA = HSICᵤ(M∘K, M∘L) / √(HSICᵤ(M_K∘K, M_K∘K) · HSICᵤ(M_L∘L, M_L∘L)),
    HSICᵤ being Song et al.'s formula applied literally to these (asymmetric)
    matrices.  Its terms need only the n·k neighbour lists and their
    similarities: O(n·k log k) after the search.  Unlike platonic-rep, no 1e-6
    is added to the denominator: a non-positive self-term raises.

References
----------
Huh, Cheung, Wang & Isola, "The Platonic Representation Hypothesis", ICML 2024,
arXiv:2405.07987 (mutual kNN, CKNNA; reference code github.com/minyoungg/platonic-rep).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .._checks import finite_float64
from .._numba.topk import cknna_sums, empty_lists, merge_topk, overlap_counts, topk_tile
from ..engine import prepare, run, run_pairs
from ..errors import DegenerateInputError, InvalidInputError, NonFiniteError
from ..result import Result
from ._common import with_engine_doc

__all__ = ["IntervalResult", "finite_rows", "NeighbourTileStatistic", "QueryStatistic", "cknna", "mutual_knn", "sample_queries", "unit_rows"]

Z95 = 1.959963984540054  # standard normal 0.975 quantile
SIM_TILE_BYTES = 32 * 2**20  # a similarity tile of the sampled search (queries × candidates), like a 2048² exact tile
_SEED_QUERIES = 0x4E4E


@dataclass(frozen=True, repr=False)
class IntervalResult(Result):
    """The :class:`~bigalign.result.Result` of a sampled estimator: ``stderr`` and ``ci`` are always set.

    (``ci``/``ci_level`` are fields of every Result; this subclass only marks the sampled road.)
    """


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
# exact: blocked top-k over all pairs (tiles I <= J)
# ---------------------------------------------------------------------------

Lists = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # (vals_x, idx_x, vals_y, idx_y)


def _merge_lists(a: Lists, b: Lists) -> Lists:
    vx, ix = merge_topk(a[0], a[1], b[0], b[1])
    vy, iy = merge_topk(a[2], a[3], b[2], b[3])
    return vx, ix, vy, iy


@dataclass(frozen=True, eq=False)
class NeighbourTileStatistic:
    """Top-k neighbour lists in x and in y of every sample, from tiles (I, J ≥ I).

    State: {block start: lists of that block's queries}; a tile offers J's rows
    to I's queries and I's rows to J's queries (the similarity tile is
    symmetric), so candidate sets merged by ``combine`` are disjoint.
    """

    k: int
    names: tuple[str, str] = ("x", "y")

    def partial(self, blocks_i: Sequence[np.ndarray], blocks_j: Sequence[np.ndarray], start_i: int, start_j: int) -> dict[int, Lists]:
        xi = unit_rows(blocks_i[0], self.names[0], start_i)
        yi = unit_rows(blocks_i[1], self.names[1], start_i)
        gi = np.arange(start_i, start_i + xi.shape[0], dtype=np.int64)
        out_i = empty_lists(xi.shape[0], self.k) + empty_lists(xi.shape[0], self.k)
        if start_i == start_j:
            topk_tile(xi @ xi.T, gi, gi, 2, out_i[0], out_i[1], out_i[0], out_i[1])
            topk_tile(yi @ yi.T, gi, gi, 2, out_i[2], out_i[3], out_i[2], out_i[3])
            return {start_i: out_i}
        xj = unit_rows(blocks_j[0], self.names[0], start_j)
        yj = unit_rows(blocks_j[1], self.names[1], start_j)
        gj = np.arange(start_j, start_j + xj.shape[0], dtype=np.int64)
        out_j = empty_lists(xj.shape[0], self.k) + empty_lists(xj.shape[0], self.k)
        topk_tile(xi @ xj.T, gi, gj, 1, out_i[0], out_i[1], out_j[0], out_j[1])
        topk_tile(yi @ yj.T, gi, gj, 1, out_i[2], out_i[3], out_j[2], out_j[3])
        return {start_i: out_i, start_j: out_j}

    def combine(self, a: dict[int, Lists], b: dict[int, Lists]) -> dict[int, Lists]:
        out = dict(a)
        for s, lists in b.items():
            out[s] = _merge_lists(out[s], lists) if s in out else lists
        return out

    def finalize(self, state: dict[int, Lists]) -> Lists:
        starts = sorted(state)
        return tuple(np.concatenate([state[s][t] for s in starts]) for t in range(4))  # type: ignore[return-value]


# ---------------------------------------------------------------------------
# sampled queries: exact neighbours among all n for m seeded queries
# ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class QueryStatistic:
    """Top-k lists of fixed query rows (global indices ``qidx``) over the candidates of every row block."""

    qx: np.ndarray  # (m, d_x) unit rows
    qy: np.ndarray
    qidx: np.ndarray
    k: int
    names: tuple[str, str] = ("x", "y")

    def partial(self, blocks: Sequence[np.ndarray], start: int) -> Lists:
        bx = unit_rows(blocks[0], self.names[0], start)
        by = unit_rows(blocks[1], self.names[1], start)
        m = self.qidx.shape[0]
        out = empty_lists(m, self.k) + empty_lists(m, self.k)
        step = max(64, SIM_TILE_BYTES // (8 * m))  # candidates per similarity tile (m × step float64)
        for a in range(0, bx.shape[0], step):
            b = min(bx.shape[0], a + step)
            g = np.arange(start + a, start + b, dtype=np.int64)
            topk_tile(self.qx @ bx[a:b].T, self.qidx, g, 0, out[0], out[1], out[0], out[1])
            topk_tile(self.qy @ by[a:b].T, self.qidx, g, 0, out[2], out[3], out[2], out[3])
        return out

    def combine(self, a: Lists, b: Lists) -> Lists:
        return _merge_lists(a, b)

    def finalize(self, state: Lists) -> Lists:
        return state


def sample_queries(n: int, m: int, seed: int) -> np.ndarray:
    """The seeded uniform sample (without replacement, sorted) of m query indices out of n."""
    return np.sort(np.random.default_rng([seed, _SEED_QUERIES]).choice(n, size=m, replace=False))


# ---------------------------------------------------------------------------
# façades
# ---------------------------------------------------------------------------


def _engine(kw: dict[str, Any], pairs: bool) -> dict[str, Any]:
    keys = ("block_size", "scheduler", "client", "num_workers", "memory_per_worker")  # run_pairs honours it too
    return {k: kw[k] for k in keys if kw.get(k) is not None}


def _search(func: str, x: Any, y: Any, kmax: int, kw: dict[str, Any], n_queries: int | None) -> tuple[Lists, np.ndarray | None, dict[str, Any]]:
    reps = prepare([x, y], ["x", "y"])
    if n_queries is None:
        stat = NeighbourTileStatistic(kmax)
        lists, plan = run_pairs(stat, reps, check_pairing=False, **_engine(kw, pairs=True))
        params = {"block_size": plan.block_rows, "n_tiles": plan.n_blocks * (plan.n_blocks + 1) // 2, "scheduler": plan.scheduler}
        return lists, None, params
    n = reps[0].n
    q = sample_queries(n, n_queries, kw["seed"])
    qx = unit_rows(reps[0].take(q), "x", 0, rows=q)
    qy = unit_rows(reps[1].take(q), "y", 0, rows=q)
    stat = QueryStatistic(qx, qy, q, kmax)
    lists, plan = run(stat, reps, check_pairing=False, **_engine(kw, pairs=False))
    params = {"block_size": plan.block_rows, "n_blocks": plan.n_blocks, "scheduler": plan.scheduler}
    return lists, q, params


def _check_seed(func: str, seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidInputError(f"the 'seed' parameter of {func} must be a non-negative integer; got {seed!r} instead.")
    return int(seed)


def _n(x: Any, y: Any) -> int:
    from ._common import paired_n

    return paired_n(x, y)


@with_engine_doc
def mutual_knn(
    x: Any,
    y: Any,
    /,
    *,
    k: int | Sequence[int] = 10,
    n_queries: int | None = None,
    seed: int = 0,
    block_size: int | None = None,
    scheduler: Any = None,
    client: Any = None,
    num_workers: int | None = None,
    memory_per_worker: int | None = None,
) -> Result | list[Result]:
    """Mutual k-nearest-neighbour alignment (Huh et al. 2024).

    The mean over samples of |N_x(i) ∩ N_y(i)| / k, where N_x(i) are the k
    nearest neighbours of sample i among the other samples by cosine
    similarity of x's rows (see the module notes for the tie rule).

    Parameters
    ----------
    x, y : array-like of shape (n_samples, n_features_x), (n_samples, n_features_y)
        numpy, dask or zarr arrays or store layers; the same samples in the same order.
    k : int or list of int, default=10
        Neighbours per sample (1 ≤ k ≤ n − 1).  A list sweeps several k in
        one search and returns one Result per k, in the given order.
    n_queries : int, optional
        ``None``: every sample is a query (exact).  m: a seeded uniform sample
        of m queries (2 ≤ m ≤ n), each with exact neighbours among all n
        samples; the Result carries ``stderr`` and a 95% ``ci``.
    seed : int, default=0
        Seeds the query sample.
    block_size : int, optional
        Rows per tile side (exact; default 2048) or per candidate block
        (sampled).  The value does not depend on it.
    {engine}

    Returns
    -------
    Result or list of Result
        ``value`` in [0, 1]; terms ``mean_overlap`` (neighbours shared, per
        query) and ``chance`` = k/(n − 1), the expected value for independent
        representations.  Sampled: an :class:`IntervalResult` with ``stderr``
        = sd/√m·√(1 − m/n) and ``ci`` (normal, 95%).

    Raises
    ------
    InvalidInputError
        k outside [1, n − 1], n_queries outside [2, n], an all-zero row (no
        direction), mismatched n, NaN/Inf (named rows).

    Notes
    -----
    Exact: O(n²·(d_x + d_y)) time (BLAS tiles), O(n·k + tile²) memory, tiles
    spread over the workers.  Sampled: O(m·n·(d_x + d_y)) time, one pass over
    the data, O(m·(k + d)) memory.

    Examples
    --------
    >>> import numpy as np, bigalign
    >>> x = np.random.default_rng(0).normal(size=(100, 8))
    >>> bigalign.mutual_knn(x, 3 * x, k=5).value     # same neighbours
    1.0
    """
    n = _n(x, y)
    ks, single = _check_k("mutual_knn", k, n)
    seed = _check_seed("mutual_knn", seed)
    if n_queries is not None and (isinstance(n_queries, bool) or not isinstance(n_queries, (int, np.integer)) or not 2 <= n_queries <= n):
        raise InvalidInputError(
            f"the 'n_queries' parameter of mutual_knn must be None (every sample) or an integer in [2, n = {n}]; got {n_queries!r}."
        )
    kmax = max(ks)
    lists, q, params = _search("mutual_knn", x, y, kmax, locals(), None if n_queries is None else int(n_queries))
    counts = overlap_counts(lists[1], lists[3], np.array(ks, dtype=np.int64))
    results: list[Result] = []
    for t, kk in enumerate(ks):
        per_query = counts[:, t] / kk
        value = float(per_query.mean())
        common = {"mean_overlap": float(counts[:, t].mean()), "chance": kk / (n - 1)}
        p = {"k": kk, "similarity": "cosine", "tie_rule": "similarity desc, then sample index asc; self excluded by index", **params}
        if q is None:
            results.append(Result("mutual_knn", value, "mean_overlap", "exact-blocked-topk", n, common, p))
            continue
        m = q.shape[0]
        sd = float(per_query.std(ddof=1))
        se = sd / math.sqrt(m) * math.sqrt(1.0 - m / n)
        p.update(n_queries=m, seed=seed, stderr="sd/sqrt(m)*sqrt(1-m/n) over the sampled queries", ci="normal 95%")
        flags = ("zero_sample_variance",) if sd == 0 and m < n else ()
        results.append(
            IntervalResult(
                "mutual_knn", value, "mean_overlap", "sampled-queries", n, common, p, stderr=se, flags=flags,
                ci=(value - Z95 * se, value + Z95 * se), ci_level=0.95,
            )  # fmt: skip
        )
    return results[0] if single else results


def _hsic_u(n: int, t1: float, sk: float, sl: float, t3: float) -> tuple[float, float]:
    """(Song et al.'s unbiased HSIC from its terms, the size of the terms it is a difference of)."""
    a, b, c = t1, sk * sl / ((n - 1) * (n - 2)), 2.0 * t3 / (n - 2)
    return (a + b - c) / (n * (n - 3)), (abs(a) + abs(b) + abs(c)) / (n * (n - 3))


#: a self-term at or below this fraction of the size of its terms is 0 (rounding)
ZERO_TOL = 1e-12


@with_engine_doc
def cknna(
    x: Any,
    y: Any,
    /,
    *,
    k: int | Sequence[int] = 10,
    block_size: int | None = None,
    scheduler: Any = None,
    client: Any = None,
    num_workers: int | None = None,
    memory_per_worker: int | None = None,
) -> Result | list[Result]:
    """CKNNA: CKA restricted to mutual nearest neighbours (Huh et al. 2024).

    Parameters
    ----------
    x, y : array-like of shape (n_samples, n_features_x), (n_samples, n_features_y)
    k : int or list of int, default=10
        Neighbours per sample (2 ≤ k ≤ n − 1, as in platonic-rep).  A list
        returns one Result per k from one search.
    block_size : int, optional
        Rows per tile side (default 2048); the value does not depend on it.
    {engine}

    Returns
    -------
    Result or list of Result
        ``value`` and the terms ``hsic_xy`` = HSICᵤ(M∘K, M∘L), ``hsic_xx``,
        ``hsic_yy`` (see the module notes); ``estimator="unbiased"``.

    Raises
    ------
    DegenerateInputError
        A self-term HSICᵤ(M_K∘K, M_K∘K) or HSICᵤ(M_L∘L, M_L∘L) ≤ 0 (CKNNA undefined).
    InvalidInputError
        k outside [2, n − 1], n < 4, an all-zero row, mismatched n, NaN/Inf.

    Notes
    -----
    O(n²·(d_x + d_y)) time for the exact neighbour search (shared with
    :func:`mutual_knn`), then O(n·k log k); O(n·k + tile²) memory.  Agrees
    with platonic-rep's ``cknna(..., unbiased=True)`` on L2-normalised rows up
    to the tie rule (torch.topk leaves ties unspecified) and its 1e-6.

    Examples
    --------
    >>> import numpy as np, bigalign
    >>> x = np.random.default_rng(0).normal(size=(100, 8))
    >>> round(bigalign.cknna(x, 2 * x, k=10).value, 12)
    1.0
    """
    n = _n(x, y)
    if n < 4:
        raise InvalidInputError(f"cknna needs at least 4 samples (its unbiased HSIC divides by n(n-3)); got {n}.")
    ks, single = _check_k("cknna", k, n, minimum=2)
    kw = dict(locals(), seed=0)
    lists, _, params = _search("cknna", x, y, max(ks), kw, None)
    vx, ix, vy, iy = lists
    results: list[Result] = []
    for kk in ks:
        hxy, _ = _hsic_u(n, *cknna_sums(ix, vx, iy, vy, kk))
        hxx, mxx = _hsic_u(n, *cknna_sums(ix, vx, ix, vx, kk))
        hyy, myy = _hsic_u(n, *cknna_sums(iy, vy, iy, vy, kk))
        if hxx <= ZERO_TOL * mxx or hyy <= ZERO_TOL * myy:
            raise DegenerateInputError(
                f"CKNNA is undefined here (k = {kk}, n = {n}): the masked self-terms HSIC(x, x) = {hxx:.3g} and "
                f"HSIC(y, y) = {hyy:.3g} must both be positive (beyond the rounding of their terms). Expected "
                "representations whose similarities vary within neighbourhoods; use more samples or another k.",
                reason="nonpositive_self_hsic",
            )
        value = hxy / math.sqrt(hxx * hyy)
        p = {"k": kk, "similarity": "cosine", "tie_rule": "similarity desc, then sample index asc; self excluded by index", **params}
        flags = ("negative_unbiased_estimate",) if value < 0 else ()
        results.append(Result("cknna", value, "unbiased", "exact-blocked-topk", n, {"hsic_xy": hxy, "hsic_xx": hxx, "hsic_yy": hyy}, p, flags=flags))
    return results[0] if single else results

