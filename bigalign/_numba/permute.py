"""The permuted pair sum Σᵢⱼ a[i, j]·b[p[i], p[j]] of permutation tests, compiled.

Shared by ``hsic_test``'s permutation null (:mod:`bigalign.stats`) and
:func:`bigalign.permutation_test`; a leaf, so neither imports the other for it.
The numpy twin is written from the definition and used by the tests.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def permuted_traces(a, b, perms, out):  # pragma: no cover - compiled (lazily, at the first call)
    """out[k] = Σᵢⱼ a[i, j]·b[p[i], p[j]] with p = perms[k]; a, b symmetric float64, C-contiguous."""
    n = a.shape[0]
    for k in range(perms.shape[0]):
        p = perms[k]
        s = 0.0
        for i in range(n):
            ai = a[i]
            bi = b[p[i]]
            t0 = 0.0
            t1 = 0.0
            t2 = 0.0
            t3 = 0.0
            j = i + 1
            while j + 3 < n:  # four accumulators: no chain of dependent adds
                t0 += ai[j] * bi[p[j]]
                t1 += ai[j + 1] * bi[p[j + 1]]
                t2 += ai[j + 2] * bi[p[j + 2]]
                t3 += ai[j + 3] * bi[p[j + 3]]
                j += 4
            while j < n:
                t0 += ai[j] * bi[p[j]]
                j += 1
            s += 2.0 * ((t0 + t1) + (t2 + t3)) + ai[i] * bi[p[i]]
        out[k] = s


def permuted_traces_numpy(a: np.ndarray, b: np.ndarray, perms: np.ndarray) -> np.ndarray:
    """The numpy twin of the permutation loop: Σᵢⱼ a[i, j]·b[p[i], p[j]] for each row p of ``perms``."""
    return np.array([float(np.sum(a * b[np.ix_(p, p)])) for p in perms])
