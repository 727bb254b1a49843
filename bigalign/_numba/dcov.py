"""Distance tiles and the O(n log n) univariate distance covariance.

Exact distance covariance needs, over all pairs, the "terms" of Székely's
statistics — Σᵢⱼ aᵢⱼbᵢⱼ, Σ aᵢⱼ², Σ bᵢⱼ² and the row sums of the Euclidean
distance matrices a = (‖xᵢ − xⱼ‖), b = (‖yᵢ − yⱼ‖) — the same shape as the
exact kernel tiles of :mod:`bigalign._numba.tiles`, whose GEMM distances and
near-duplicate refinement this module reuses.  Only the entry changes: the
distance √d² instead of a kernel value.

For one-dimensional inputs the same terms follow in O(n log n) from a sort and
a Fenwick (binary indexed) tree (Huo & Székely 2016), which also serves the
random-projection estimator (one univariate problem per projection).

Every kernel has a numpy twin (``*_numpy``), written from the definitions and
used by the tests.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .tiles import _refined

__all__ = [
    "DISTANCE_CODES",
    "accumulate_distance_tile",
    "accumulate_distance_tile_numpy",
    "finish_distances",
    "finish_distances_numpy",
    "pair_moments",
    "pair_moments_numpy",
    "univariate_terms",
    "univariate_terms_numpy",
]


@njit(cache=True, nogil=True)
def accumulate_distance_tile(dx, dy, xi, xj, yi, yj, nxi, nxj, nyi, nyj, diagonal, row_a, row_b, col_a, col_b):
    """Accumulate the distance-covariance terms of one tile.

    Parameters
    ----------
    dx, dy : (bi, bj) float64 squared distances of the tile's x and y rows (GEMM identity)
    xi, xj, yi, yj : the rows themselves (float64), to refine near-duplicate distances
    nxi, nxj, nyi, nyj : their squared norms
    diagonal : the tile pairs a block with itself: only j > i is visited, both
        orders are accumulated (the sums are those of the full square block)
    row_a, row_b : (bi,) row sums of a and b, updated in place
    col_a, col_b : (bj,) column sums, updated in place (unused when diagonal)

    Returns
    -------
    (Σ a·b, Σ a², Σ b²) over the tile's off-diagonal pairs (both orders when diagonal)
    """
    bi, bj = dx.shape
    ab = 0.0
    aa = 0.0
    bb = 0.0
    for i in range(bi):
        ra = 0.0
        rb = 0.0
        j0 = i + 1 if diagonal else 0
        for j in range(j0, bj):
            a = math.sqrt(_refined(dx[i, j], xi[i], xj[j], nxi[i], nxj[j]))
            b = math.sqrt(_refined(dy[i, j], yi[i], yj[j], nyi[i], nyj[j]))
            ab += a * b
            aa += a * a
            bb += b * b
            ra += a
            rb += b
            if diagonal:
                row_a[j] += a
                row_b[j] += b
            else:
                col_a[j] += a
                col_b[j] += b
        row_a[i] += ra
        row_b[i] += rb
    if diagonal:
        return 2.0 * ab, 2.0 * aa, 2.0 * bb
    return ab, aa, bb


def accumulate_distance_tile_numpy(xi, xj, yi, yj, diagonal):
    """Numpy twin of :func:`accumulate_distance_tile` from explicit differences.

    Returns (Σab, Σa², Σb², row_a, row_b, col_a, col_b); for a diagonal tile
    the column sums equal the row sums and are returned as zeros, as the
    kernel leaves them untouched.
    """
    a = np.sqrt(((xi[:, None, :] - xj[None, :, :]) ** 2).sum(-1))
    b = np.sqrt(((yi[:, None, :] - yj[None, :, :]) ** 2).sum(-1))
    if diagonal:
        np.fill_diagonal(a, 0.0)
        np.fill_diagonal(b, 0.0)
        zeros = np.zeros(a.shape[1])
        return float((a * b).sum()), float((a * a).sum()), float((b * b).sum()), a.sum(1), b.sum(1), zeros, zeros
    return float((a * b).sum()), float((a * a).sum()), float((b * b).sum()), a.sum(1), b.sum(1), a.sum(0), b.sum(0)


# ---------------------------------------------------------------------------
# univariate: O(n log n)
# ---------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _row_sums_1d(x, order):
    """aᵢ = Σⱼ |xᵢ − xⱼ| from the sorted values and their prefix sums."""
    n = x.shape[0]
    total = 0.0
    for p in range(n):
        total += x[order[p]]
    out = np.empty(n)
    below = 0.0  # Σ of the values before position p in sorted order
    for p in range(n):
        v = x[order[p]]
        above = total - below - v
        out[order[p]] = v * p - below + above - v * (n - 1 - p)
        below += v
    return out


@njit(cache=True, nogil=True)
def univariate_terms(x, y):
    """Σᵢⱼ |xᵢ − xⱼ|·|yᵢ − yⱼ| and the row sums of |xᵢ − xⱼ| and |yᵢ − yⱼ|, in O(n log n).

    Visit the points in increasing x; for the point j, the points i already
    visited have xᵢ ≤ xⱼ, so (xⱼ − xᵢ)|yⱼ − yᵢ| splits by the sign of yⱼ − yᵢ
    into four sums (of 1, xᵢ, yᵢ, xᵢyᵢ over the visited points with yᵢ below
    or above yⱼ), each a prefix query on a Fenwick tree indexed by y-rank
    (Huo & Székely 2016; Christensen 1993 for the tree).  Ties need no rule:
    a tied pair contributes 0 whichever side it is counted on.

    x and y must be centred (and of comparable scale) by the caller: the four
    sums then carry no large common offset that would cancel.
    """
    n = x.shape[0]
    ox = np.argsort(x, kind="mergesort")
    oy = np.argsort(y, kind="mergesort")
    rank = np.empty(n, dtype=np.int64)
    for p in range(n):
        rank[oy[p]] = p + 1  # 1-based for the tree
    c1 = np.zeros(n + 1)
    cx = np.zeros(n + 1)
    cy = np.zeros(n + 1)
    cxy = np.zeros(n + 1)
    tot1 = 0.0
    totx = 0.0
    toty = 0.0
    totxy = 0.0
    cross = 0.0
    for p in range(n):
        j = ox[p]
        xj = x[j]
        yj = y[j]
        # prefix sums over visited points with y-rank < rank[j]
        s1 = 0.0
        sx = 0.0
        sy = 0.0
        sxy = 0.0
        r = rank[j] - 1
        while r > 0:
            s1 += c1[r]
            sx += cx[r]
            sy += cy[r]
            sxy += cxy[r]
            r -= r & (-r)
        # below: Σ (xj − xi)(yj − yi); above: Σ (xj − xi)(yi − yj)
        below = xj * yj * s1 - xj * sy - yj * sx + sxy
        a1, ax, ay, axy = tot1 - s1, totx - sx, toty - sy, totxy - sxy
        above = -(xj * yj * a1 - xj * ay - yj * ax + axy)
        cross += below + above
        r = rank[j]
        while r <= n:
            c1[r] += 1.0
            cx[r] += xj
            cy[r] += yj
            cxy[r] += xj * yj
            r += r & (-r)
        tot1 += 1.0
        totx += xj
        toty += yj
        totxy += xj * yj
    return 2.0 * cross, _row_sums_1d(x, ox), _row_sums_1d(y, oy)


def univariate_terms_numpy(x, y):
    """Numpy twin of :func:`univariate_terms` from the explicit n×n matrices."""
    a = np.abs(x[:, None] - x[None, :])
    b = np.abs(y[:, None] - y[None, :])
    return float((a * b).sum()), a.sum(1), b.sum(1)


# ---------------------------------------------------------------------------
# distance tiles for RSA: the distances themselves, and their pair moments
# ---------------------------------------------------------------------------

EUCLIDEAN = 0
SQEUCLIDEAN = 1
COSINE = 2  # rows L2-normalised by the caller: 1 − cos = ‖x̂ − ŷ‖²/2
DISTANCE_CODES = {"euclidean": EUCLIDEAN, "sqeuclidean": SQEUCLIDEAN, "cosine": COSINE}


@njit(cache=True, nogil=True)
def finish_distances(d2, a, b, na, nb, code):
    """Turn GEMM squared distances into refined distances of the given kind, in place."""
    bi, bj = d2.shape
    for i in range(bi):
        for j in range(bj):
            v = _refined(d2[i, j], a[i], b[j], na[i], nb[j])
            if code == EUCLIDEAN:
                v = math.sqrt(v)
            elif code == COSINE:
                v = 0.5 * v
            d2[i, j] = v


def finish_distances_numpy(a, b, code):
    """Numpy twin of :func:`finish_distances` from explicit differences."""
    d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    return np.sqrt(d2) if code == EUCLIDEAN else (0.5 * d2 if code == COSINE else d2)


@njit(cache=True, nogil=True)
def pair_moments(dx, dy, upper):
    """(count, mean_x, mean_y, M2_x, M2_y, C_xy) of the paired entries of two tiles.

    ``upper``: only the entries above the diagonal (a block with itself).
    Two passes (means, then centred sums), so nothing cancels; tiles are then
    merged with Chan et al.'s pairwise update.
    """
    bi, bj = dx.shape
    cnt = 0
    sx = 0.0
    sy = 0.0
    for i in range(bi):
        for j in range(i + 1 if upper else 0, bj):
            sx += dx[i, j]
            sy += dy[i, j]
            cnt += 1
    if cnt == 0:
        return 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    mx = sx / cnt
    my = sy / cnt
    m2x = 0.0
    m2y = 0.0
    cxy = 0.0
    for i in range(bi):
        for j in range(i + 1 if upper else 0, bj):
            u = dx[i, j] - mx
            v = dy[i, j] - my
            m2x += u * u
            m2y += v * v
            cxy += u * v
    return float(cnt), mx, my, m2x, m2y, cxy


def pair_moments_numpy(dx, dy, upper):
    if upper:
        iu = np.triu_indices(dx.shape[0], 1, dx.shape[1])
        u, v = dx[iu], dy[iu]
    else:
        u, v = dx.ravel(), dy.ravel()
    if u.size == 0:
        return 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    mu, mv = u.mean(), v.mean()
    return float(u.size), mu, mv, float(((u - mu) ** 2).sum()), float(((v - mv) ** 2).sum()), float(((u - mu) * (v - mv)).sum())
