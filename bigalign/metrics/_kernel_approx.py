"""HSIC / CKA / KA through explicit feature maps, in one streaming pass, with error bars.

Random features (``rff``, ``orf``): K̂ = Σ_g K_g over G independent groups of
frequencies, each E[K_g] = K/G.  The cross term HSIC(K̂, L̂) is unbiased for
HSIC(K, L) because the x and y maps are drawn independently.  The self terms
are *not*: HSIC(K̂, K̂) contains the same-group products HSIC(K_g, K_g), whose
expectation exceeds HSIC(K, K)/G² — this is what makes naive random-feature
CKA biased low (scale.md §0.2: 0.52 instead of 0.69 at 64 frequencies).  We
drop them — a U-statistic over groups:

    HSIC(K, K) ≈ G/(G−1) · Σ_{g≠h} HSIC(K_g, K_h),

every term of which is available from :func:`bigalign.moments.group_hsic`.
The standard error is the delete-one-group jackknife of the final value (CKA,
HSIC or KA), which measures the randomness of the features given the data.

Nyström (``nystroem``): a single deterministic low-rank map from m landmarks.
Its error is mostly bias, which a variance estimate would miss; instead the
same pass also computes the estimate from the first m/2 landmarks, and the
reported ``stderr`` is |θ(m) − θ(m/2)|, an error estimate that relies on the
Nyström error shrinking as landmarks are added.  Measured (tests/test_kernels.py,
n = 600, 80 seeds): the exact value lies within 2·stderr for 95% of seeds with
128 landmarks at the median bandwidth and at 0.3 × median, but only 47.5% with
32 landmarks at 0.3 × median — few landmarks at small bandwidths are where
Nyström fails, which ``method="auto"`` avoids (it picks ORF below 0.5 × median)
and which an explicit request flags as ``nystroem_small_bandwidth``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..moments import Moments, group_hsic


@dataclass
class KernelTerms:
    """HSIC and KA terms of one estimate (and, optionally, their jackknife replicates)."""

    n: int
    hxy: float
    hxx: float
    hyy: float
    kl: float  # ⟨K, L⟩
    kk: float  # ‖K‖²
    ll: float  # ‖L‖²
    replicates: "KernelTerms | None" = None  # arrays of delete-one values, same fields


def _group_inner(m: Moments, i: int, j: int) -> np.ndarray:
    """⟨K_g, L_h⟩ = ‖Φ_gᵀΨ_h‖²_F (uncentred) for every pair of groups."""
    M, _ = m.pair(i, j)
    U = M + m.n * np.outer(m.sides[i].mean, m.sides[j].mean)
    bi, bj = m.sides[i].bounds, m.sides[j].bounds
    return np.add.reduceat(np.add.reduceat(U * U, bi[:-1], axis=0), bj[:-1], axis=1)


def _cross_all(H: np.ndarray) -> tuple[float, np.ndarray]:
    """Σ H and the delete-one sums Σ_{a,b≠g} H (x and y groups deleted together)."""
    tot = H.sum()
    return float(tot), tot - H.sum(axis=1) - H.sum(axis=0) + np.diag(H)


def _self_offdiag(H: np.ndarray) -> tuple[float, np.ndarray]:
    """Σ_{a≠b} H and its delete-one versions."""
    off = H.sum() - np.trace(H)
    row_off = H.sum(axis=1) - np.diag(H)
    col_off = H.sum(axis=0) - np.diag(H)
    return float(off), off - row_off - col_off


def terms_from_groups(m: Moments, estimator: str) -> KernelTerms:
    """Debiased terms from grouped random-feature moments, with delete-one-group replicates."""
    G = int(len(m.sides[0].bounds) - 1)
    Gy = int(len(m.sides[1].bounds) - 1)
    if G != Gy or G < 3:
        raise ValueError(f"internal error: random-feature groups must match and be >= 3 (got {G}, {Gy})")
    s = G - 1
    hxy, hxy_j = _cross_all(group_hsic(m, 0, 1, estimator))
    hxx, hxx_j = _self_offdiag(group_hsic(m, 0, 0, estimator))
    hyy, hyy_j = _self_offdiag(group_hsic(m, 1, 1, estimator))
    kl, kl_j = _cross_all(_group_inner(m, 0, 1))
    kk, kk_j = _self_offdiag(_group_inner(m, 0, 0))
    ll, ll_j = _self_offdiag(_group_inner(m, 1, 1))
    c_full, c_self = 1.0, G / (G - 1)
    c_full_j, c_self_j = (G / s) ** 2, G * G / (s * (s - 1))
    reps = KernelTerms(
        n=m.n,
        hxy=c_full_j * hxy_j,
        hxx=c_self_j * hxx_j,
        hyy=c_self_j * hyy_j,
        kl=c_full_j * kl_j,
        kk=c_self_j * kk_j,
        ll=c_self_j * ll_j,
    )
    return KernelTerms(
        n=m.n,
        hxy=c_full * hxy,
        hxx=c_self * hxx,
        hyy=c_self * hyy,
        kl=c_full * kl,
        kk=c_self * kk,
        ll=c_self * ll,
        replicates=reps,
    )


def terms_from_single(m: Moments, i: int, j: int, estimator: str) -> KernelTerms:
    """Plain terms of a single-group feature map (Nyström): inputs i (x) and j (y)."""
    return KernelTerms(
        n=m.n,
        hxy=float(group_hsic(m, i, j, estimator).sum()),
        hxx=float(group_hsic(m, i, i, estimator).sum()),
        hyy=float(group_hsic(m, j, j, estimator).sum()),
        kl=float(_group_inner(m, i, j).sum()),
        kk=float(_group_inner(m, i, i).sum()),
        ll=float(_group_inner(m, j, j).sum()),
    )


def jackknife_stderr(terms: KernelTerms, f: Callable[[KernelTerms], float | np.ndarray]) -> float:
    """Delete-one-group jackknife standard error of f(terms)."""
    reps = np.asarray(f(terms.replicates), dtype=float)  # type: ignore[arg-type]
    G = reps.size
    return float(np.sqrt((G - 1) / G * np.sum((reps - reps.mean()) ** 2)))
