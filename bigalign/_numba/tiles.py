"""Fused kernel tiles: from squared distances to the HSIC sums, without forming K or L.

The distances of a tile come from one BLAS GEMM (fast); this loop turns them into
kernel values and accumulates, in one sweep, everything the exact estimators
need: Σ k·l, Σ k², Σ l² over off-diagonal pairs and the off-diagonal row and
column sums of K and L.  Memory: the two distance tiles.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

RBF = 0
LAPLACIAN = 1
KERNEL_CODES = {"rbf": RBF, "laplacian": LAPLACIAN}


@njit(cache=True, nogil=True, inline="always")
def _k(d2: float, code: int, scale: float) -> float:
    # rounding can make a squared distance computed by GEMM slightly negative: it is 0
    if d2 < 0.0:
        d2 = 0.0
    if code == RBF:
        return math.exp(-d2 * scale)  # scale = 1 / (2 σ²)
    return math.exp(-math.sqrt(d2) * scale)  # scale = 1 / σ


# A squared distance from the GEMM identity ‖a‖² + ‖b‖² − 2aᵀb carries an absolute
# error of a few ulps of ‖a‖² + ‖b‖².  Where it is below this fraction of that sum
# (near-duplicate rows, where √d² would amplify the error) it is recomputed from
# the differences, which is exact to rounding.
REFINE = 1e-4


@njit(cache=True, nogil=True, inline="always")
def _refined(d2, a, b, na, nb):
    if d2 < REFINE * (na + nb):
        s = 0.0
        for t in range(a.shape[0]):
            diff = a[t] - b[t]
            s += diff * diff
        return s
    return d2


@njit(cache=True, nogil=True)
def accumulate_tile(dx, dy, xi, xj, yi, yj, nxi, nxj, nyi, nyj, code, sx, sy, diagonal, row_k, row_l, col_k, col_l):
    """Accumulate one tile.

    Parameters
    ----------
    dx, dy : (bi, bj) float64 squared distances of the x and y rows of the tile (GEMM identity)
    xi, xj, yi, yj : the rows themselves (float64), for refining small distances
    nxi, nxj, nyi, nyj : their squared norms
    code : kernel code (RBF or LAPLACIAN); sx, sy : kernel scales
    diagonal : the tile pairs a block with itself (skip i == j)
    row_k, row_l : (bi,) off-diagonal row sums, updated in place
    col_k, col_l : (bj,) off-diagonal column sums, updated in place (unused when diagonal)

    Returns
    -------
    (Σ k·l, Σ k², Σ l²) over the tile's off-diagonal pairs
    """
    bi, bj = dx.shape
    kl = 0.0
    kk = 0.0
    ll = 0.0
    for i in range(bi):
        rk = 0.0
        rl = 0.0
        for j in range(bj):
            if diagonal and i == j:
                continue
            k = _k(_refined(dx[i, j], xi[i], xj[j], nxi[i], nxj[j]), code, sx)
            l = _k(_refined(dy[i, j], yi[i], yj[j], nyi[i], nyj[j]), code, sy)
            kl += k * l
            kk += k * k
            ll += l * l
            rk += k
            rl += l
            if not diagonal:
                col_k[j] += k
                col_l[j] += l
        row_k[i] += rk
        row_l[i] += rl
    return kl, kk, ll


def sqdist(a: np.ndarray, b: np.ndarray, na: np.ndarray, nb: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances by the GEMM identity (refined in the tile loop)."""
    d = a @ b.T
    d *= -2.0
    d += na[:, None]
    d += nb[None, :]
    return d


def accumulate_tile_numpy(xi, xj, yi, yj, code, sx, sy, diagonal):
    """The numpy twin of :func:`accumulate_tile`, from explicit differences (for tests)."""
    dx = ((xi[:, None, :] - xj[None, :, :]) ** 2).sum(-1)
    dy = ((yi[:, None, :] - yj[None, :, :]) ** 2).sum(-1)
    if code == RBF:
        k, l = np.exp(-dx * sx), np.exp(-dy * sy)
    else:
        k, l = np.exp(-np.sqrt(dx) * sx), np.exp(-np.sqrt(dy) * sy)
    if diagonal:
        np.fill_diagonal(k, 0.0)
        np.fill_diagonal(l, 0.0)
    return (
        float(np.sum(k * l)),
        float(np.sum(k * k)),
        float(np.sum(l * l)),
        k.sum(axis=1),
        l.sum(axis=1),
        k.sum(axis=0),
        l.sum(axis=0),
    )
