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
the list for a larger one: a sweep over several k costs one search
(:func:`knn_sweep`, a :class:`KnnSweep` of one Result per k).  A layer's lists
depend on that layer only, so a layer matrix searches every layer once and
scores every pair of layers from the lists (``compare_layers``).  Similarities equal
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
    case), so it is not offered.  Independent representations give about
    k/(n − 1).
cycle_knn, lcs_knn, edit_distance_knn
    platonic-rep's order-aware variants, from the same lists: whether sample i
    is among the x-neighbours of one of its y-neighbours (cycle; not
    symmetric), the longest common subsequence of the two ranked lists (over
    k), and one minus their Levenshtein distance over k.  Each is a mean of a
    per-query score, so the sampled-query road and its interval apply.
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
from dataclasses import dataclass, replace
from typing import Any, Sequence, Unpack

import numpy as np

from .._checks import finite_float64
from .._numba.topk import cknna_sums, cycle_hits, edit_distances, empty_lists, lcs_lengths, merge_topk, overlap_counts, topk_tile
from ..engine import prepare, run, run_pairs
from ..io import Representation
from ..errors import DegenerateInputError, InvalidInputError, NonFiniteError
from ..intervals import (
    DEFAULT_CI_GROUPS, check_ci, dependency_interval, jackknife_interval, row_groups, with_interval,
)  # fmt: skip
from ..result import Result
from ._common import check_choice, paired_n, with_ci_doc, with_engine_doc
from ..options import EngineKwargs, EngineOptions
from ..tiles import TileStatistic

__all__ = [
    "KNN_METRICS", "IntervalResult", "KnnSweep", "NeighbourLists", "NeighbourTileStatistic", "QueryStatistic", "cknna",
    "cycle_knn", "edit_distance_knn", "finite_rows", "knn_result", "knn_sweep", "lcs_knn", "mutual_knn", "sample_queries",
    "search", "unit_rows",
]  # fmt: skip

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
# scores from two layers' lists
# ---------------------------------------------------------------------------

KNN_METRICS = ("mutual_knn", "cknna", "cycle_knn", "lcs_knn", "edit_distance_knn")
TIE_RULE = "similarity desc, then sample index asc; self excluded by index"
_SAMPLED_OK = ("mutual_knn", "cycle_knn", "lcs_knn", "edit_distance_knn")


def per_query_scores(metric: str, lx: NeighbourLists, ly: NeighbourLists, k: int, extra_x: NeighbourLists | None = None) -> tuple[np.ndarray, dict[str, float]]:
    """The score of every query (its mean is the measure) and the measure's terms.

    ``extra_x``: for cycle_knn on sampled queries, x's lists of the rows :func:`cycle_rows` names.
    """
    if metric == "mutual_knn":
        c = overlap_counts(lx.idx, ly.idx, np.array([k], dtype=np.int64))[:, 0]
        return c / k, {"mean_overlap": float(c.mean())}
    if metric == "lcs_knn":
        c = lcs_lengths(lx.idx, ly.idx, k)
        return c / k, {"mean_lcs": float(c.mean())}
    if metric == "edit_distance_knn":
        c = edit_distances(lx.idx, ly.idx, k)
        return 1.0 - c / k, {"mean_edit_distance": float(c.mean())}
    if metric == "cycle_knn":
        src = lx if extra_x is None else extra_x
        q = np.arange(ly.idx.shape[0], dtype=np.int64) if ly.rows is None else ly.rows.astype(np.int64)
        if src.rows is None:  # every sample's list: row j is sample j
            pos = np.arange(src.idx.shape[0], dtype=np.int64)
        else:
            pos = np.full(int(max(src.rows.max(initial=0), ly.idx.max())) + 1, -1, dtype=np.int64)
            pos[src.rows] = np.arange(src.rows.shape[0])
        h = cycle_hits(q, ly.idx, src.idx, pos, k)
        return h.astype(np.float64), {"hits": float(h.sum())}
    raise InvalidInputError(f"unknown neighbourhood measure {metric!r}; expected one of {list(_SAMPLED_OK)}.")  # pragma: no cover


CI_NEIGHBOURS = "recomputed: each row group left out as queries and as candidate neighbours"


class ListsTooShort(Exception):
    """The searched lists are too short to give k neighbours with one row group left out: search deeper."""


def _without(lists: NeighbourLists, keep: np.ndarray, k: int) -> tuple[NeighbourLists, np.ndarray]:
    """Each row's first k neighbours among the kept samples (order kept), and whether it had k of them."""
    mask = keep[lists.idx]
    ok = mask.sum(axis=1) >= k
    order = np.argsort(~mask, axis=1, kind="stable")[:, :k]
    return NeighbourLists(np.take_along_axis(lists.vals, order, 1), np.take_along_axis(lists.idx, order, 1), lists.rows), ok


def _rows_of(lists: NeighbourLists) -> np.ndarray:
    return np.arange(lists.idx.shape[0]) if lists.rows is None else np.asarray(lists.rows)


def leave_group_out(metric: str, lx: NeighbourLists, ly: NeighbourLists, k: int, n: int, extra_x: NeighbourLists | None) -> np.ndarray:
    """The measure with each of the 20 contiguous row groups left out — as queries *and* as candidate
    neighbours: every remaining query's k neighbours among the remaining samples are the first k of its
    (deeper) searched list outside the group, so each value equals a search of the remaining rows alone.
    Raises :class:`ListsTooShort` when some list holds fewer than k samples outside a group."""
    b = row_groups(n, DEFAULT_CI_GROUPS, func=metric)
    out = np.empty(len(b) - 1)
    for g in range(len(b) - 1):
        keep = np.ones(n, dtype=bool)
        keep[b[g] : b[g + 1]] = False
        fx, okx = _without(lx, keep, k)
        fy, oky = _without(ly, keep, k)
        if metric == "cknna":  # every sample a query; samples renumbered 0 … n_rest − 1 among the rest
            if not (okx[keep].all() and oky[keep].all()):
                raise ListsTooShort
            renum = np.cumsum(keep) - 1
            rest = int(keep.sum())
            sub_x = NeighbourLists(fx.vals[keep], renum[fx.idx[keep]])
            sub_y = NeighbourLists(fy.vals[keep], renum[fy.idx[keep]])
            out[g] = _cknna_result(sub_x, sub_y, k, rest, {}).value
            continue
        q = _rows_of(ly)
        kq = keep[q]
        src = None
        if metric == "cycle_knn":  # the x-lists of the y-neighbours: every sample's (exact) or the extra rows'
            src, oks = _without(extra_x if extra_x is not None else lx, keep, k)
            if not oks[keep[_rows_of(src)]].all():
                raise ListsTooShort
        if not (okx[kq].all() and oky[kq].all()):
            raise ListsTooShort
        sub_x = NeighbourLists(fx.vals[kq], fx.idx[kq], q[kq])
        sub_y = NeighbourLists(fy.vals[kq], fy.idx[kq], q[kq])
        score, _ = per_query_scores(metric, sub_x, sub_y, k, src)
        out[g] = float(score.mean())
    return out


_HIT_ROWS = 1 << 16  # queries per chunk of the (rows, k, k) comparison of mutual_pairs


def mutual_pairs(ix: np.ndarray, iy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(query, neighbour) of every mutual-neighbour entry: j in both N_x(i) and N_y(i) (lists of k)."""
    qs, js = [], []
    for a in range(0, ix.shape[0], _HIT_ROWS):
        bx, by = ix[a : a + _HIT_ROWS], iy[a : a + _HIT_ROWS]
        hit = (bx[:, :, None] == by[:, None, :]).any(axis=2)
        r, c = np.nonzero(hit)
        qs.append(r + a)
        js.append(bx[r, c])
    return np.concatenate(qs).astype(np.int64), np.concatenate(js).astype(np.int64)


def mutual_influence(lx: NeighbourLists, ly: NeighbourLists, k: int, n: int, bounds: np.ndarray) -> tuple[float, np.ndarray, float]:
    """mutual kNN as a U-statistic and the pieces of its Hoeffding variance (the interval its exact road
    had before the dependency-graph one; kept for the comparison in benchmarks/ci_coverage_knn.py).

    With a_ij = 1 when j is among i's k neighbours in both spaces, mutual kNN is
    T = (1/(n·k))·Σ_{i≠j} a_ij: a mean over pairs with the kernel a_ij + a_ji (neighbourhoods
    taken as given).  Row j's influence is ψ_j = q_j + c_j, its own score q_j = Σ_i a_ji/k
    and its score as a candidate c_j = Σ_i a_ij/k.  Returns (T, the mean of ψ without each
    row group — the leave-one-group-out values of the linear part, shifted to T —, and the
    pairwise term Σ_{i<j} w_ij·(a_ij + a_ji)²/(n·k)² that the grouped influences count twice:
    w = 1 for a pair across groups, 3 within one (there both rows' influences carry it)).
    """
    qi, cj = mutual_pairs(lx.idx[:, :k], ly.idx[:, :k])
    T = qi.size / (n * k)
    psi = (np.bincount(qi, minlength=n) + np.bincount(cj, minlength=n)) / k
    gid = np.searchsorted(bounds, np.arange(n), side="right") - 1
    G = bounds.size - 1
    sums = np.bincount(gid, weights=psi, minlength=G)
    sizes = np.diff(bounds)
    tot = float(psi.sum())
    loo = T + (tot - sums) / (n - sizes) - tot / n
    lo, hi = np.minimum(qi, cj), np.maximum(qi, cj)
    keys, cnt = np.unique(lo * n + hi, return_counts=True)  # cnt: 1, or 2 when each is a mutual neighbour of the other
    same = gid[keys // n] == gid[keys % n]
    correction = float(np.sum(np.where(same, 3.0, 1.0) * cnt.astype(np.float64) ** 2)) / (n * k) ** 2
    return T, loo, correction


CI_GRAPH = (
    "dependency graph: per-query scores, covariances summed over each query, its k neighbours in "
    "either space (symmetrised) and its contiguous row group; Student t, Satterthwaite's degrees of freedom"
)
CI_GRAPH_CKNNA = (
    "dependency graph: CKNNA linearised into per-query terms (delta method over its three unbiased "
    "HSICs), covariances summed over each query, its k neighbours in either space (symmetrised) and "
    "its contiguous row group; Student t, Satterthwaite's degrees of freedom"
)


def neighbour_edges(lx: NeighbourLists, ly: NeighbourLists, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The edges query → each of its k neighbours in x and in y (every sample a query)."""
    n = lx.idx.shape[0]
    heads = np.repeat(np.arange(n, dtype=np.int64), 2 * k)
    tails = np.concatenate([lx.idx[:, :k], ly.idx[:, :k]], axis=1).ravel().astype(np.int64)
    return heads, tails


def _masked_entries(ia: np.ndarray, va: np.ndarray, ib: np.ndarray, vb: np.ndarray, k: int) -> tuple[np.ndarray, ...]:
    """(row, column, K̃, L̃) of every entry of CKNNA's masked kernels: j in row r's first k of both lists."""
    out: list[list[np.ndarray]] = [[], [], [], []]
    for a in range(0, ia.shape[0], _HIT_ROWS):  # (rows, k, k) comparisons, a chunk of queries at a time
        hit = ia[a : a + _HIT_ROWS, :k, None] == ib[a : a + _HIT_ROWS, None, :k]  # a's p-th neighbour is b's t-th
        r, p, t = np.nonzero(hit)
        r = r + a
        for lst, v in zip(out, (r.astype(np.int64), ia[r, p].astype(np.int64), va[r, p], vb[r, t])):
            lst.append(v)
    return tuple(np.concatenate(v) for v in out)


def _hsic_row_terms(n: int, r: np.ndarray, j: np.ndarray, kv: np.ndarray, lv: np.ndarray) -> tuple[float, np.ndarray]:
    """Song's unbiased HSIC of the sparse K̃, L̃ (entries (r, j)) and its linearisation split by row.

    HSICᵤ = (t1 + sk·sl/((n−1)(n−2)) − 2·t3/(n−2))/(n(n−3)) with t1 = Σ K̃∘L̃ᵀ, sk = ΣK̃, sl = ΣL̃,
    t3 = 1ᵀK̃L̃1 = Σ_m (K̃ᵀ1)_m (L̃1)_m.  Each sum is split by its first index a (t1: Σ_j K̃_aj L̃_ja;
    sk: Σ_j K̃_aj; sl: Σ_j L̃_aj; t3: Σ_m K̃_am (L̃1)_m), and the product sk·sl linearised
    (sl·δsk + sk·δsl): row a's term φ_a.  Returns (HSICᵤ, φ).
    """
    key = r * n + j
    order = np.argsort(key, kind="stable")
    sk_, at = key[order], np.searchsorted(key[order], j * n + r)
    at_c = np.minimum(at, max(key.size - 1, 0))
    back = (at < key.size) & (sk_[at_c] == j * n + r)
    lt = np.where(back, lv[order][at_c], 0.0)  # L̃_jr where (j, r) is an entry
    p1 = np.bincount(r, kv * lt, minlength=n)
    rk, rl = np.bincount(r, kv, minlength=n), np.bincount(r, lv, minlength=n)
    ck = np.bincount(j, kv, minlength=n)
    t1, sk, sl, t3 = float(p1.sum()), float(rk.sum()), float(rl.sum()), float(ck @ rl)
    N = n * (n - 3)
    h = (t1 + sk * sl / ((n - 1) * (n - 2)) - 2.0 * t3 / (n - 2)) / N
    p3 = np.bincount(r, kv * rl[j], minlength=n)
    phi = (p1 + (sl * rk + sk * rl) / ((n - 1) * (n - 2)) - 2.0 * p3 / (n - 2)) / N
    return h, phi


def cknna_row_scores(lx: NeighbourLists, ly: NeighbourLists, k: int, n: int) -> tuple[float, np.ndarray]:
    """CKNNA and per-row scores whose mean linearises it: n·T·(φ_xy/h_xy − ½φ_xx/h_xx − ½φ_yy/h_yy)
    (delta method for the ratio, each HSIC split by row as in :func:`_hsic_row_terms`)."""
    ix, vx, iy, vy = lx.idx[:, :k], lx.vals[:, :k], ly.idx[:, :k], ly.vals[:, :k]
    hxy, fxy = _hsic_row_terms(n, *_masked_entries(ix, vx, iy, vy, k))
    rows = np.repeat(np.arange(n, dtype=np.int64), k)
    hxx, fxx = _hsic_row_terms(n, rows, ix.ravel().astype(np.int64), vx.ravel(), vx.ravel())
    hyy, fyy = _hsic_row_terms(n, rows, iy.ravel().astype(np.int64), vy.ravel(), vy.ravel())
    T = hxy / math.sqrt(hxx * hyy)
    return T, n * T * (fxy / hxy - 0.5 * fxx / hxx - 0.5 * fyy / hyy)


def search_depth(k: int, n: int, level: float | None, attempt: int = 0) -> int:
    """How deep to search: k, or with an interval 2^(attempt+1)·k (capped at n − 1) so that k neighbours
    remain with any one row group left out."""
    return k if level is None else min(n - 1, k * 2 ** (attempt + 1))


def knn_result(
    metric: str, lx: NeighbourLists, ly: NeighbourLists, k: int, n: int, params: dict[str, Any],
    extra_x: NeighbourLists | None = None, seed: int = 0, level: float | None = None,
) -> Result:  # fmt: skip
    """The Result of a neighbourhood measure for (x, y) from the two layers' lists (exact or sampled);
    with ``level``, its sampling interval (:func:`leave_group_out`: the lists must reach beyond k,
    :func:`search_depth`)."""
    if metric == "cknna":
        res = _cknna_result(lx, ly, k, n, params)
        if level is None:
            return res
        _, rs = cknna_row_scores(lx, ly, k, n)
        made = dependency_interval(res.value, rs, *neighbour_edges(lx, ly, k), level, bounds=row_groups(n, DEFAULT_CI_GROUPS, func=metric), scale="logit")
        if made is not None:
            return with_interval(replace(res, parameters={**res.parameters, "ci_variance": CI_GRAPH_CKNNA, "ci_df": made[1]}), made[0])
        res = replace(res, parameters={
            **res.parameters, "ci_neighbours": CI_NEIGHBOURS,
            "ci_variance": "the dependency-graph variance is not positive here: recomputed group jackknife (conservative)",
        })  # fmt: skip
        try:
            loo = leave_group_out(metric, lx, ly, k, n, None)
        except DegenerateInputError as e:
            raise DegenerateInputError(
                f"cknna: the sampling interval is undefined because CKNNA is undefined on the rows left when one of the "
                f"{DEFAULT_CI_GROUPS} contiguous row groups is dropped ({e}). Leave ci out.",
                reason=e.reason,
            ) from e
        return with_interval(res, jackknife_interval(res.value, loo, level, scale="logit"))
    score, terms = per_query_scores(metric, lx, ly, k, extra_x)
    value = float(score.mean())
    if metric == "mutual_knn":
        terms["chance"] = k / (n - 1)
    est = "mean_overlap" if metric == "mutual_knn" else "mean_over_queries"
    p = {"k": k, "similarity": "cosine", "tie_rule": TIE_RULE, **params}
    iv = None
    if level is not None and ly.rows is None:  # exact road: the dependency-graph variance of the per-query scores
        b = row_groups(n, DEFAULT_CI_GROUPS, func=metric)
        made = dependency_interval(value, score, *neighbour_edges(lx, ly, k), level, bounds=b, scale="logit")
        if made is not None:
            iv = made[0]
            p.update(ci_variance=CI_GRAPH, ci_df=made[1])
        else:  # all queries' scores equal (or anticorrelated): the (conservative) recomputed jackknife
            p["ci_variance"] = "the dependency-graph variance is not positive here: recomputed group jackknife (conservative)"
    if level is not None and iv is None:
        p["ci_neighbours"] = CI_NEIGHBOURS
        iv = jackknife_interval(value, leave_group_out(metric, lx, ly, k, n, extra_x), level, scale="logit")
    if ly.rows is None:
        return with_interval(Result(metric, value, est, "exact-blocked-topk", n, terms, p), iv)
    m = ly.rows.shape[0]
    sd = float(score.std(ddof=1))
    se = sd / math.sqrt(m) * math.sqrt(1.0 - m / n)
    p.update(n_queries=m, seed=seed, stderr="sd/sqrt(m)*sqrt(1-m/n) over the sampled queries")
    if level is None:
        p["ci"] = "normal 95% about the value over all n queries"
    flags = ("zero_sample_variance",) if sd == 0 and m < n else ()
    res = IntervalResult(
        metric, value, est, "sampled-queries", n, terms, p, stderr=se, flags=flags,
        ci=(value - Z95 * se, value + Z95 * se), ci_level=0.95,
    )  # fmt: skip
    return with_interval(res, iv)


def _hsic_u(n: int, t1: float, sk: float, sl: float, t3: float) -> tuple[float, float]:
    """(Song et al.'s unbiased HSIC from its terms, the size of the terms it is a difference of)."""
    a, b, c = t1, sk * sl / ((n - 1) * (n - 2)), 2.0 * t3 / (n - 2)
    return (a + b - c) / (n * (n - 3)), (abs(a) + abs(b) + abs(c)) / (n * (n - 3))


#: a self-term at or below this fraction of the size of its terms is 0 (rounding)
ZERO_TOL = 1e-12


def _cknna_result(lx: NeighbourLists, ly: NeighbourLists, k: int, n: int, params: dict[str, Any]) -> Result:
    vx, ix, vy, iy = lx.vals, lx.idx, ly.vals, ly.idx
    hxy, _ = _hsic_u(n, *cknna_sums(ix, vx, iy, vy, k))
    hxx, mxx = _hsic_u(n, *cknna_sums(ix, vx, ix, vx, k))
    hyy, myy = _hsic_u(n, *cknna_sums(iy, vy, iy, vy, k))
    if hxx <= ZERO_TOL * mxx or hyy <= ZERO_TOL * myy:
        raise DegenerateInputError(
            f"CKNNA is undefined here (k = {k}, n = {n}): the masked self-terms HSIC(x, x) = {hxx:.3g} and "
            f"HSIC(y, y) = {hyy:.3g} must both be positive (beyond the rounding of their terms). Expected "
            "representations whose similarities vary within neighbourhoods; use more samples or another k.",
            reason="nonpositive_self_hsic",
        )
    value = hxy / math.sqrt(hxx * hyy)
    p = {"k": k, "similarity": "cosine", "tie_rule": TIE_RULE, **params}
    flags = ("negative_unbiased_estimate",) if value < 0 else ()
    return Result("cknna", value, "unbiased", "exact-blocked-topk", n, {"hsic_xy": hxy, "hsic_xx": hxx, "hsic_yy": hyy}, p, flags=flags)


# ---------------------------------------------------------------------------
# façades
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


def _n(x: Any, y: Any) -> int:
    return paired_n(x, y)


def _pair(
    metric: str, x: Any, y: Any, ks: list[int], n_queries: int | None, seed: int, options: EngineOptions, level: float | None = None
) -> list[Result]:  # fmt: skip
    """The measure for every k of ``ks`` from one search of x and y."""
    reps = prepare([x, y], ["x", "y"])
    n, kmax = reps[0].n, max(ks)
    q = None if n_queries is None else sample_queries(n, n_queries, seed)
    attempt = 0
    while True:
        depth = search_depth(kmax, n, level, attempt)
        (lx, ly), params = search(reps, depth, options, None if q is None else [q, q])
        extra = None
        if metric == "cycle_knn" and q is not None:
            (extra,), _ = search(reps[:1], depth, options, [cycle_rows(ly, depth)])
        try:
            return [knn_result(metric, lx, ly, kk, n, params, extra, seed, level) for kk in ks]
        except ListsTooShort:  # neighbours concentrated in one row group: search deeper (n − 1 always suffices)
            if depth >= n - 1:  # pragma: no cover - a full list always has k samples outside a group
                raise
            attempt += 1


def _measure(metric: str, x: Any, y: Any, k: Any, n_queries: Any, seed: Any, ci: Any, options: EngineOptions) -> Result:
    level = check_ci(metric, ci)
    n = _n(x, y)
    if metric == "cknna" and n < 4:
        raise InvalidInputError(f"cknna needs at least 4 samples (its unbiased HSIC divides by n(n-3)); got {n}.")
    kk = check_k(metric, metric, k, n)
    seed = _check_seed(metric, seed)
    m = check_n_queries(metric, n_queries, n, metric)
    if level is not None:
        row_groups(n, DEFAULT_CI_GROUPS, func=metric)  # enough rows, before the search
    return _pair(metric, x, y, [kk], m, seed, options, level)[0]


@dataclass(frozen=True)
class KnnSweep:
    """A neighbourhood measure at several k from one neighbour search.

    ``sweep[k]`` is the :class:`~bigalign.result.Result` for that k (exactly what the measure's own
    function returns for it); ``ks`` in the order asked; ``values`` the values in that order.
    """

    metric: str
    ks: tuple[int, ...]
    results: tuple[Result, ...]

    def __getitem__(self, k: int) -> Result:
        if k not in self.ks:
            raise InvalidInputError(f"this sweep of {self.metric} holds k = {list(self.ks)}; got k = {k!r}.")
        return self.results[self.ks.index(k)]

    def __iter__(self):
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    @property
    def values(self) -> np.ndarray:
        return np.array([r.value for r in self.results])

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "ks": list(self.ks), "values": [float(v) for v in self.values],
                "results": [r.to_dict() for r in self.results]}  # fmt: skip


@with_engine_doc
def knn_sweep(
    x: Any,
    y: Any,
    /,
    *,
    metric: str = "mutual_knn",
    k: Sequence[int] = (1, 5, 10, 20, 50),
    n_queries: int | None = None,
    seed: int = 0,
    ci: float | None = None,
    **engine: Unpack[EngineKwargs],
) -> KnnSweep:
    """A neighbourhood measure at several k from one neighbour search.

    The lists for the largest k hold those of every smaller k as prefixes (module notes), so one
    search answers the whole sweep; ``sweep[k]`` equals ``bigalign.<metric>(x, y, k=k, ...)``.

    Parameters
    ----------
    x, y : array-like of shape (n_samples, n_features_x), (n_samples, n_features_y)
    metric : {"mutual_knn", "cknna", "cycle_knn", "lcs_knn", "edit_distance_knn"}
    k : sequence of int
        The neighbourhood sizes (each as the measure's own ``k``).
    n_queries, seed
        As for :func:`mutual_knn` (not for ``"cknna"``).
    block_size : int, optional
        As for :func:`mutual_knn`.
    ci : float, optional
        A sampling interval at this level for every k of the sweep, each exactly the ``ci`` of
        the measure's own function at that k, all from the one search (its lists searched
        beyond the largest k, as the interval needs).
    {engine}

    Returns
    -------
    KnnSweep

    Examples
    --------
    >>> import numpy as np, bigalign
    >>> x = np.random.default_rng(0).normal(size=(100, 8))
    >>> bigalign.knn_sweep(x, 2 * x, k=[1, 5]).values.tolist()
    [1.0, 1.0]
    """
    engine_opts = EngineOptions.build("knn_sweep", engine)
    check_choice("knn_sweep", "metric", metric, KNN_METRICS)
    n = _n(x, y)
    if metric == "cknna" and n < 4:
        raise InvalidInputError(f"cknna needs at least 4 samples (its unbiased HSIC divides by n(n-3)); got {n}.")
    if isinstance(k, (int, np.integer)):
        raise InvalidInputError(f"knn_sweep takes a list of k; got k={k!r}. For one k call bigalign.{metric}(x, y, k={k}).")
    ks, _ = _check_k("knn_sweep", list(k), n, minimum=2 if metric == "cknna" else 1)
    seed = _check_seed("knn_sweep", seed)
    m = check_n_queries("knn_sweep", n_queries, n, metric)
    level = check_ci("knn_sweep", ci)
    if level is not None:
        row_groups(n, DEFAULT_CI_GROUPS, func="knn_sweep")  # enough rows, before the search
    return KnnSweep(metric, tuple(ks), tuple(_pair(metric, x, y, ks, m, seed, engine_opts, level)))


#: the exact road's dependency-graph variance (the ``{knn_ci}``/``{mutual_ci}``/cknna ``ci`` texts use it)
_KNN_GRAPH = """covariances are local: two queries' scores covary where their neighbourhoods
        touch.  The interval is T ± t_ν·√V on the logit scale (identity where T is 0 or 1), with
        the dependency-graph variance V = (1/n²)·Σ_i (q_i − q̄)·Σ_{j ∈ D(i)} (q_j − q̄), D(i) =
        i, its k neighbours in x and in y, the queries that have i among theirs, and the rows of
        i's contiguous row group (one of 20, so rows that depend on their neighbours in storage
        order stay covered, as by the block jackknife); ν = 19·(V/V_g)², Satterthwaite's degrees
        of freedom for the noise of the 20 group sums V_g = (1/n²)·Σ_g (Σ_{i ∈ g} (q_i − q̄))²
        in V (``parameters["ci_df"]``).  O(n·k) from the lists, no leave-out search.
        Measured 95% coverage at k = 10 (200 repetitions each, docs/intervals.md): 0.940–0.960 at n = 500 and 0.925–0.975 at n = 5,000 for the five kNN measures
        (widths 0.96–1.10× the actual spread of the estimates)."""

#: why the recomputed kNN intervals are conservative (the fallback and ``n_queries`` texts end with it)
_KNN_CONSERVATIVE = """Where V ≤ 0 (``parameters["ci_variance"]`` says so), and with ``n_queries``:
        each of the 20 contiguous row groups is left out as queries and as candidate neighbours
        (neighbours recomputed among the remaining rows, from lists searched 2k deep — deeper,
        by another search, where one group holds more than k of a list; with ``n_queries`` the
        sampled queries of each group, and it replaces the default 95% ``ci``).  **Conservative**:
        a jackknife counts the interactions between rows (which rows happen to be neighbours)
        more than once (Efron–Stein): coverage 0.975–1.0 at k = 10, n = 500, widths 1.35–2.9×
        the actual spread.  Read it as an upper bound on the sampling uncertainty."""

#: mutual_knn's ``ci`` (its docstring's ``{mutual_ci}``)
_MUTUAL_CI = ("""Exact road: mutual kNN is the mean of per-query scores q_i = overlap/k, whose
        """ + _KNN_GRAPH + """
        """ + _KNN_CONSERVATIVE)

#: how ``ci`` works for the three list measures (their docstrings' ``{knn_ci}``)
_KNN_CI = ("""Exact road: the measure is the mean of per-query scores q_i, whose
        """ + _KNN_GRAPH + """
        """ + _KNN_CONSERVATIVE)

#: cknna's ``ci``
_CKNNA_CI = ("""CKNNA = HSIC_xy/√(HSIC_xx·HSIC_yy) is linearised into per-query scores q_i (delta
        method; each unbiased HSIC of the masked kernels split by its first index, the
        query), whose
        """ + _KNN_GRAPH + """
        Where V ≤ 0 (``parameters["ci_variance"]`` says so): each of the 20 contiguous row
        groups is left out as queries and as candidate neighbours and CKNNA recomputed on the
        remaining rows (lists searched 2k deep) — conservative (coverage 0.975 at n = 500,
        width 1.47× the actual spread).""")

_RETURNS_SAMPLED = """Sampled: an :class:`IntervalResult` with ``stderr`` = sd/√m·√(1 − m/n) of the
        per-query scores and ``ci`` (normal, 95%)."""


@with_ci_doc
@with_engine_doc
def mutual_knn(
    x: Any,
    y: Any,
    /,
    *,
    k: int = 10,
    n_queries: int | None = None,
    seed: int = 0,
    ci: float | None = None,
    **engine: Unpack[EngineKwargs],
) -> Result:
    """Mutual k-nearest-neighbour alignment (Huh et al. 2024).

    The mean over samples of |N_x(i) ∩ N_y(i)| / k, where N_x(i) are the k
    nearest neighbours of sample i among the other samples by cosine
    similarity of x's rows (see the module notes for the tie rule).

    Parameters
    ----------
    x, y : array-like of shape (n_samples, n_features_x), (n_samples, n_features_y)
        numpy, dask or zarr arrays or store layers; the same samples in the same order.
    k : int, default=10
        Neighbours per sample (1 ≤ k ≤ n − 1).  For several k from one
        search use :func:`knn_sweep`.
    n_queries : int, optional
        ``None``: every sample is a query (exact).  m: a seeded uniform sample
        of m queries (2 ≤ m ≤ n), each with exact neighbours among all n
        samples; the Result carries ``stderr`` and a 95% ``ci``.
    seed : int, default=0
        Seeds the query sample.
    block_size : int, optional
        Rows per tile side (exact; default 2048) or per candidate block
        (sampled).  The value does not depend on it.
    {ci}
        {mutual_ci}
    {engine}

    Returns
    -------
    Result
        ``value`` in [0, 1]; terms ``mean_overlap`` (neighbours shared, per
        query) and ``chance`` = k/(n − 1), the expected value for independent
        representations.  Sampled: an :class:`IntervalResult` with ``stderr``
        = sd/√m·√(1 − m/n) and ``ci`` (normal, 95%).

    Raises
    ------
    InvalidInputError
        k outside [1, n − 1] or not one integer, n_queries outside [2, n], an
        all-zero row (no direction), mismatched n, NaN/Inf (named rows).

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
    return _measure("mutual_knn", x, y, k, n_queries, seed, ci, EngineOptions.build("mutual_knn", engine))


@with_ci_doc
@with_engine_doc
def cycle_knn(
    x: Any,
    y: Any,
    /,
    *,
    k: int = 10,
    n_queries: int | None = None,
    seed: int = 0,
    ci: float | None = None,
    **engine: Unpack[EngineKwargs],
) -> Result:
    """Cycle kNN (platonic-rep's ``cycle_knn``): can sample i be reached back from its y-neighbours in x?

    The fraction of samples i for which some j ∈ N_y(i) has i ∈ N_x(j): go from i to its
    neighbours in y, then from them to their neighbours in x, and count a hit when i is among
    them.  **Not symmetric**: ``cycle_knn(x, y) != cycle_knn(y, x)`` in general.

    Parameters
    ----------
    x, y : array-like of shape (n_samples, n_features_x), (n_samples, n_features_y)
    k : int, default=10
        Neighbours per sample (1 ≤ k ≤ n − 1).
    n_queries : int, optional
        m seeded queries instead of all n: exact y-neighbours of each query among all n, then a
        second pass for the exact x-neighbours of those (at most m·k) samples; O(m·k·n·d_x) more.
    seed : int, default=0
    block_size : int, optional
    {ci}
        {knn_ci}
    {engine}

    Returns
    -------
    Result
        ``value`` in [0, 1]; term ``hits`` (queries that close the cycle).  Independent
        representations give about 1 − (1 − k/(n − 1))^k ≈ k²/n.  {sampled}

    Examples
    --------
    >>> import numpy as np, bigalign
    >>> x = np.random.default_rng(0).normal(size=(100, 8))
    >>> bigalign.cycle_knn(x, 2 * x, k=3).value   # < 1 even here: j near i does not make i near j
    0.93
    """
    return _measure("cycle_knn", x, y, k, n_queries, seed, ci, EngineOptions.build("cycle_knn", engine))


@with_ci_doc
@with_engine_doc
def lcs_knn(
    x: Any,
    y: Any,
    /,
    *,
    k: int = 10,
    n_queries: int | None = None,
    seed: int = 0,
    ci: float | None = None,
    **engine: Unpack[EngineKwargs],
) -> Result:
    """Ordered-neighbour agreement: the longest common subsequence of the two ranked kNN lists, over k.

    For each sample, N_x(i) and N_y(i) as sequences ranked by similarity; the LCS length counts
    neighbours shared *in the same order*.  ``value`` = mean LCS / k in [0, 1]; the term
    ``mean_lcs`` is platonic-rep's ``lcs_knn`` (the mean length itself, in [0, k]).  Symmetric.

    Parameters
    ----------
    x, y : array-like of shape (n_samples, n_features_x), (n_samples, n_features_y)
    k : int, default=10
    n_queries : int, optional
        As for :func:`mutual_knn`.
    seed : int, default=0
    block_size : int, optional
    {ci}
        {knn_ci}
    {engine}

    Returns
    -------
    Result
        ``value`` in [0, 1] (1: identical ranked lists); term ``mean_lcs``.  {sampled}

    Examples
    --------
    >>> import numpy as np, bigalign
    >>> x = np.random.default_rng(0).normal(size=(100, 8))
    >>> bigalign.lcs_knn(x, 2 * x, k=5).terms["mean_lcs"]
    5.0
    """
    return _measure("lcs_knn", x, y, k, n_queries, seed, ci, EngineOptions.build("lcs_knn", engine))


@with_ci_doc
@with_engine_doc
def edit_distance_knn(
    x: Any,
    y: Any,
    /,
    *,
    k: int = 10,
    n_queries: int | None = None,
    seed: int = 0,
    ci: float | None = None,
    **engine: Unpack[EngineKwargs],
) -> Result:
    """1 − (mean Levenshtein distance between the ranked kNN lists) / k, as platonic-rep's ``edit_distance_knn``.

    The edit distance counts the insertions, deletions and substitutions turning N_x(i) (ranked)
    into N_y(i); it is at most k, so the value is in [0, 1].  Symmetric.

    Parameters
    ----------
    x, y : array-like of shape (n_samples, n_features_x), (n_samples, n_features_y)
    k : int, default=10
    n_queries : int, optional
        As for :func:`mutual_knn`.
    seed : int, default=0
    block_size : int, optional
    {ci}
        {knn_ci}
    {engine}

    Returns
    -------
    Result
        ``value`` in [0, 1] (1: identical ranked lists); term ``mean_edit_distance``.  {sampled}

    Examples
    --------
    >>> import numpy as np, bigalign
    >>> x = np.random.default_rng(0).normal(size=(100, 8))
    >>> bigalign.edit_distance_knn(x, 2 * x, k=5).value
    1.0
    """
    return _measure("edit_distance_knn", x, y, k, n_queries, seed, ci, EngineOptions.build("edit_distance_knn", engine))


@with_ci_doc
@with_engine_doc
def cknna(
    x: Any,
    y: Any,
    /,
    *,
    k: int = 10,
    ci: float | None = None,
    **engine: Unpack[EngineKwargs],
) -> Result:
    """CKNNA: CKA restricted to mutual nearest neighbours (Huh et al. 2024).

    Parameters
    ----------
    x, y : array-like of shape (n_samples, n_features_x), (n_samples, n_features_y)
    k : int, default=10
        Neighbours per sample (2 ≤ k ≤ n − 1, as in platonic-rep).  For
        several k from one search use :func:`knn_sweep`.
    block_size : int, optional
        Rows per tile side (default 2048); the value does not depend on it.
    {ci}
        {cknna_ci}
    {engine}

    Returns
    -------
    Result
        ``value`` and the terms ``hsic_xy`` = HSICᵤ(M∘K, M∘L), ``hsic_xx``,
        ``hsic_yy`` (see the module notes); ``estimator="unbiased"``.  Not
        exactly symmetric: the term 1ᵀK̃L̃1 of HSICᵤ(M∘K, M∘L) changes when
        x and y swap.

    Raises
    ------
    DegenerateInputError
        A self-term HSICᵤ(M_K∘K, M_K∘K) or HSICᵤ(M_L∘L, M_L∘L) ≤ 0 (CKNNA undefined).
    InvalidInputError
        k outside [2, n − 1] or not one integer, n < 4, an all-zero row,
        mismatched n, NaN/Inf.

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
    return _measure("cknna", x, y, k, None, 0, ci, EngineOptions.build("cknna", engine))


for _f in (mutual_knn, cycle_knn, lcs_knn, edit_distance_knn):
    _f.__doc__ = _f.__doc__.replace("{sampled}", _RETURNS_SAMPLED).replace("{knn_ci}", _KNN_CI)
cknna.__doc__ = cknna.__doc__.replace("{cknna_ci}", _CKNNA_CI)
mutual_knn.__doc__ = mutual_knn.__doc__.replace("{mutual_ci}", _MUTUAL_CI)
