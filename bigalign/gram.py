"""In-memory n×n kernel matrices, for the exact paths that need the whole Gram (moderate n only).

The streaming metrics never build these; the exact HSIC test, exact COCO/KCC/KMI and the exact
MMD null do, below their documented size limits.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import numpy as np

from ._checks import finite_float64
from .features import kernel_scale
from .io import Representation

__all__ = ["SMALL_PROBLEM", "blas_threads_for", "centre_gram", "gram", "read_all"]

_REFINE = 1e-4  # GEMM distances below this fraction of ‖a‖² + ‖b‖² are recomputed from differences
#: In-memory problems with at most this many float64 input/feature values (n·(D_x + D_y)) run BLAS
#: on one thread: for them thread wake-ups cost more than the products (and, on a loaded
#: 2-core VM, made a 100×64 product 10–300× slower).
SMALL_PROBLEM = 2**18
_CONTROLLER: Any = None


@contextlib.contextmanager
def blas_threads_for(size: int) -> Iterator[None]:
    """One BLAS thread for small in-memory problems (``size`` values ≤ ``SMALL_PROBLEM``)."""
    global _CONTROLLER
    if size > SMALL_PROBLEM:
        yield
        return
    if _CONTROLLER is None:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER = ThreadpoolController()
    with _CONTROLLER.limit(limits=1, user_api="blas"):
        yield


def read_all(rep: Representation, name: str, shift: np.ndarray | None = None, fmap: Any = None, width: int | None = None) -> np.ndarray:
    """All rows of ``rep`` in float64, shifted or mapped, read block by block (names bad rows)."""
    n = rep.n
    cols = width if width is not None else rep.d
    rows = max(1, min(n, (128 * 2**20) // (8 * (rep.d + cols) + 1)))
    out = np.empty((n, cols))
    for s in range(0, n, rows):
        e = min(n, s + rows)
        blk = finite_float64(rep.read(s, e), name, s)
        if fmap is not None:
            out[s:e] = fmap(blk)
        else:
            out[s:e] = blk if shift is None else blk - shift
    return out


def gram(xs: np.ndarray, kernel: str, sigma: float) -> np.ndarray:
    """The n×n rbf/laplacian kernel matrix of (shifted) rows; GEMM distances, small ones recomputed exactly."""
    sq = np.einsum("ij,ij->i", xs, xs)
    d2 = xs @ xs.T
    d2 *= -2.0
    d2 += sq[:, None]
    d2 += sq[None, :]
    np.maximum(d2, 0.0, out=d2)
    ii, jj = np.nonzero(d2 < _REFINE * (sq[:, None] + sq[None, :]))
    off = ii != jj
    ii, jj = ii[off], jj[off]
    step = max(1, 2**22 // max(1, xs.shape[1]))
    for s in range(0, ii.size, step):  # near-duplicate pairs, where √d² would amplify GEMM rounding
        i, j = ii[s : s + step], jj[s : s + step]
        diff = xs[i] - xs[j]
        d2[i, j] = np.einsum("ij,ij->i", diff, diff)
    np.fill_diagonal(d2, 0.0)
    scale = kernel_scale(kernel, float(sigma))
    if kernel == "rbf":
        d2 *= -scale
    else:
        np.sqrt(d2, out=d2)
        d2 *= -scale
    return np.exp(d2, out=d2)


def centre_gram(k: np.ndarray) -> np.ndarray:
    """H K H in place, then symmetrised exactly."""
    r = k.mean(axis=1)
    k -= r[:, None]
    k -= r[None, :]
    k += r.mean()
    k += k.T  # numpy buffers the overlapping transpose
    k *= 0.5
    return k
