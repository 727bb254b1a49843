"""Blocked exact top-k neighbour search and what mutual-kNN and CKNNA need from it.

Neighbour lists are kept sorted in one *total* order: larger similarity first,
and among equal similarities the smaller sample index first.  So the top-k of
every query is unique (no tie is left to chance), and the top-k for a smaller k
is a prefix of the top-k for a larger one (a k sweep costs one search).

A list is a pair of (q, k) arrays ``vals`` (float64) and ``idx`` (int64); an
empty slot holds (−inf, ``EMPTY``), behind every real candidate.

Every kernel has a numpy twin (``*_numpy``) used by the tests.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = [
    "EMPTY",
    "cknna_sums",
    "cycle_hits",
    "edit_distances",
    "lcs_lengths",
    "cknna_sums_numpy",
    "empty_lists",
    "merge_topk",
    "merge_topk_numpy",
    "overlap_counts",
    "overlap_counts_numpy",
    "topk_tile",
    "topk_tile_numpy",
]

EMPTY = np.iinfo(np.int64).max


def empty_lists(q: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full((q, k), -np.inf), np.full((q, k), EMPTY, dtype=np.int64)


@njit(cache=True, nogil=True, inline="always")
def _ahead(s, c, v, q):
    """Is candidate (similarity s, index c) ahead of (v, q)?"""
    return s > v or (s == v and c < q)


@njit(cache=True, nogil=True, inline="always")
def _insert(vals, idx, r, s, c):
    p = vals.shape[1] - 1
    while p > 0 and _ahead(s, c, vals[r, p - 1], idx[r, p - 1]):
        vals[r, p] = vals[r, p - 1]
        idx[r, p] = idx[r, p - 1]
        p -= 1
    vals[r, p] = s
    idx[r, p] = c


@njit(cache=True, nogil=True)
def topk_tile(sim, gi, gj, mode, vi, ii, vj, ij):
    """Offer the candidates of one similarity tile to the neighbour lists.

    Parameters
    ----------
    sim : (bi, bj) float64 similarities of rows gi (global indices) to rows gj
    mode : 0 — queries gi, candidates gj (a candidate equal to the query, by
        index, is skipped); 1 — also the transposed tile (queries gj,
        candidates gi: lists vj/ij); 2 — a block with itself (gi == gj, lists
        vi/ii; each pair is visited once and offered both ways)
    vi, ii : (bi, k) lists of the queries gi, updated in place
    vj, ij : (bj, k) lists of the queries gj (mode 1), updated in place

    The entry threshold of every list (its last element) is kept in small
    contiguous arrays, and an entry below both thresholds it faces is rejected
    with two comparisons: almost every entry of a tile, once the lists fill.
    """
    bi, bj = sim.shape
    k = vi.shape[1]
    if mode == 1:
        cv = vj[:, k - 1].copy()
        cq = ij[:, k - 1].copy()
    else:
        cv = vi[:, k - 1].copy()  # mode 2: the columns are the rows; mode 0: unused
        cq = ii[:, k - 1].copy()
    for r in range(bi):
        gr = gi[r]
        wv = vi[r, k - 1]
        wq = ii[r, k - 1]
        c0 = r + 1 if mode == 2 else 0
        for c in range(c0, bj):
            s = sim[r, c]
            if s < wv and (mode == 0 or s < cv[c]):
                continue
            gc = gj[c]
            if gc == gr:
                continue
            if _ahead(s, gc, wv, wq):
                _insert(vi, ii, r, s, gc)
                wv = vi[r, k - 1]
                wq = ii[r, k - 1]
                if mode == 2:
                    cv[r] = wv
                    cq[r] = wq
            if mode == 1:
                if _ahead(s, gr, cv[c], cq[c]):
                    _insert(vj, ij, c, s, gr)
                    cv[c] = vj[c, k - 1]
                    cq[c] = ij[c, k - 1]
            elif mode == 2:
                if _ahead(s, gr, cv[c], cq[c]):
                    _insert(vi, ii, c, s, gr)
                    cv[c] = vi[c, k - 1]
                    cq[c] = ii[c, k - 1]


def topk_tile_numpy(sim, gi, gj, k):
    """Numpy twin of :func:`topk_tile` (mode 0, fresh lists): lexsort by (−similarity, index)."""
    vals, idx = empty_lists(sim.shape[0], k)
    for r in range(sim.shape[0]):
        keep = gj != gi[r]
        s, c = sim[r, keep], gj[keep]
        order = np.lexsort((c, -s))[:k]
        vals[r, : order.size], idx[r, : order.size] = s[order], c[order]
    return vals, idx


@njit(cache=True, nogil=True)
def merge_topk(va, ia, vb, ib):
    """Merge two sets of sorted lists (disjoint candidates) into the top-k of their union."""
    q, k = va.shape
    vo = np.empty((q, k))
    io = np.empty((q, k), dtype=np.int64)
    for r in range(q):
        p = 0
        t = 0
        for o in range(k):
            if _ahead(vb[r, t], ib[r, t], va[r, p], ia[r, p]):
                vo[r, o] = vb[r, t]
                io[r, o] = ib[r, t]
                t += 1
            else:
                vo[r, o] = va[r, p]
                io[r, o] = ia[r, p]
                p += 1
    return vo, io


def merge_topk_numpy(va, ia, vb, ib):
    v, i = np.concatenate([va, vb], axis=1), np.concatenate([ia, ib], axis=1)
    k = va.shape[1]
    order = np.stack([np.lexsort((i[r], -v[r]))[:k] for r in range(v.shape[0])])
    return np.take_along_axis(v, order, 1), np.take_along_axis(i, order, 1)


@njit(cache=True, nogil=True)
def overlap_counts(ix, iy, ks):
    """|ix[r, :k] ∩ iy[r, :k]| for every row r and every k in ks (each ≤ the lists' length).

    An index shared by both lists at positions p (in ix) and p' (in iy) is in
    both top-k exactly when max(p, p') < k, so one histogram of max(p, p')
    per row answers every k.  O(q·K log K) for lists of length K.
    """
    q, K = ix.shape
    out = np.zeros((q, ks.shape[0]), dtype=np.int64)
    hist = np.zeros(K, dtype=np.int64)
    for r in range(q):
        oy = np.argsort(iy[r])
        sy = iy[r][oy]
        hist[:] = 0
        for p in range(K):
            e = ix[r, p]
            t = np.searchsorted(sy, e)
            if t < K and sy[t] == e:
                m = max(p, oy[t])
                hist[m] += 1
        acc = 0
        cum = np.empty(K + 1, dtype=np.int64)
        cum[0] = 0
        for p in range(K):
            acc += hist[p]
            cum[p + 1] = acc
        for t in range(ks.shape[0]):
            out[r, t] = cum[ks[t]]
    return out


def overlap_counts_numpy(ix, iy, ks):
    return np.array([[len(set(ix[r, :k]) & set(iy[r, :k])) for k in ks] for r in range(ix.shape[0])], dtype=np.int64)


@njit(cache=True, nogil=True)
def cknna_sums(ia, va, ib, vb, k):
    """The sums behind Song et al.'s unbiased HSIC of the masked kernels of CKNNA.

    Row r's mask is M(r) = ia[r, :k] ∩ ib[r, :k] (its neighbours in both
    spaces); K̃ = M∘K and L̃ = M∘L with K[r, j] = va at j's place in row r's
    first list and L[r, j] = vb at its place in the second.  Returns
    (Σ K̃∘L̃ᵀ, ΣK̃, ΣL̃, 1ᵀK̃L̃1) — the terms of platonic-rep's ``hsic_unbiased``,
    whose K̃ and L̃ need not be symmetric.  O(q·k log k).
    """
    q = ia.shape[0]
    mid = np.full((q, k), EMPTY, dtype=np.int64)  # sorted member indices of each row
    mk = np.zeros((q, k))
    ml = np.zeros((q, k))
    cnt = np.zeros(q, dtype=np.int64)
    for r in range(q):
        ob = np.argsort(ib[r, :k])
        sb = ib[r, :k][ob]
        m = 0
        for p in range(k):
            e = ia[r, p]
            t = np.searchsorted(sb, e)
            if t < k and sb[t] == e:
                mid[r, m] = e
                mk[r, m] = va[r, p]
                ml[r, m] = vb[r, ob[t]]
                m += 1
        o = np.argsort(mid[r, :m])
        mid[r, :m] = mid[r, :m][o].copy()
        mk[r, :m] = mk[r, :m][o].copy()
        ml[r, :m] = ml[r, :m][o].copy()
        cnt[r] = m
    col_k = np.zeros(q)
    row_l = np.zeros(q)
    sk = 0.0
    sl = 0.0
    t1 = 0.0
    for r in range(q):
        for m in range(cnt[r]):
            j = mid[r, m]
            col_k[j] += mk[r, m]
            row_l[r] += ml[r, m]
            sk += mk[r, m]
            sl += ml[r, m]
            # L̃[j, r]: is r among j's members?
            t = np.searchsorted(mid[j, : cnt[j]], r)
            if t < cnt[j] and mid[j, t] == r:
                t1 += mk[r, m] * ml[j, t]
    t3 = 0.0
    for r in range(q):
        t3 += col_k[r] * row_l[r]
    return t1, sk, sl, t3


def cknna_sums_numpy(ia, va, ib, vb, k):
    """Numpy twin of :func:`cknna_sums` with dense n×n masked matrices."""
    q = ia.shape[0]
    K = np.zeros((q, q))
    L = np.zeros((q, q))
    MA = np.zeros((q, q), dtype=bool)
    MB = np.zeros((q, q), dtype=bool)
    rows = np.arange(q)[:, None]
    MA[rows, ia[:, :k]] = True
    MB[rows, ib[:, :k]] = True
    K[rows, ia[:, :k]] = va[:, :k]
    L[rows, ib[:, :k]] = vb[:, :k]
    M = MA & MB
    Kt, Lt = np.where(M, K, 0.0), np.where(M, L, 0.0)
    return float((Kt * Lt.T).sum()), float(Kt.sum()), float(Lt.sum()), float((Kt @ Lt).sum())


# ---------------------------------------------------------------------------
# order-aware scores of two neighbour lists (platonic-rep's lcs_knn, edit_distance_knn, cycle_knn)
# ---------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def lcs_lengths(ia, ib, k):
    """Length of the longest common subsequence of ia[r, :k] and ib[r, :k] for every row r. O(q·k²)."""
    q = ia.shape[0]
    out = np.zeros(q, dtype=np.int64)
    dp = np.zeros((k + 1, k + 1), dtype=np.int64)
    for r in range(q):
        for i in range(1, k + 1):
            a = ia[r, i - 1]
            for j in range(1, k + 1):
                if a == ib[r, j - 1]:
                    dp[i, j] = dp[i - 1, j - 1] + 1
                else:
                    dp[i, j] = max(dp[i - 1, j], dp[i, j - 1])
        out[r] = dp[k, k]
    return out


@njit(cache=True, nogil=True)
def edit_distances(ia, ib, k):
    """Levenshtein distance (unit insert, delete, substitute) between ia[r, :k] and ib[r, :k]. O(q·k²)."""
    q = ia.shape[0]
    out = np.zeros(q, dtype=np.int64)
    dold = np.zeros(k + 1, dtype=np.int64)
    dnew = np.zeros(k + 1, dtype=np.int64)
    for r in range(q):
        for j in range(k + 1):
            dold[j] = j
        for i in range(1, k + 1):
            dnew[0] = i
            a = ia[r, i - 1]
            for j in range(1, k + 1):
                if a == ib[r, j - 1]:
                    dnew[j] = dold[j - 1]
                else:
                    dnew[j] = min(dold[j - 1], dnew[j - 1], dold[j]) + 1
            for j in range(k + 1):
                dold[j] = dnew[j]
        out[r] = dold[k]
    return out


@njit(cache=True, nogil=True)
def cycle_hits(qidx, ib, ia, pos, k):
    """For each query r (sample qidx[r]): 1 if some j in ib[r, :k] has qidx[r] in ia[pos[j], :k], else 0.

    ``ia`` holds the first space's lists of the samples j (row ``pos[j]``; every j met must have
    one).  O(q·k²).
    """
    q = ib.shape[0]
    out = np.zeros(q, dtype=np.int64)
    for r in range(q):
        s = qidx[r]
        for t in range(k):
            row = pos[ib[r, t]]
            for u in range(k):
                if ia[row, u] == s:
                    out[r] = 1
                    break
            if out[r]:
                break
    return out
