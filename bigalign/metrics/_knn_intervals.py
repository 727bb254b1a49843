"""The sampling-interval constructions of the neighbourhood measures: the dependency graph's edges and
CKNNA's linearised per-row scores, the recomputed leave-group-out jackknife and the search depth it
needs."""

from __future__ import annotations

import math

import numpy as np

from ..intervals import DEFAULT_CI_GROUPS, row_groups
from ._knn_scores import _cknna_result, per_query_scores
from ._knn_search import NeighbourLists


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


_HIT_ROWS = 1 << 16  # queries per chunk of the (rows, k, k) neighbour comparisons


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
