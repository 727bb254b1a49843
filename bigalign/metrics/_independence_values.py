"""COCO / KCC / KMI from covariances: the canonical-correlation algebra behind :mod:`bigalign.metrics.independence`.

Centred covariances Σ_xx, Σ_yy, Σ_xy (1/n) of two feature maps (linear features, exact
pivoted-Cholesky factors or explicit feature maps), and what the three measures compute from them:
the top singular value (COCO), the regularised canonical correlations (KCC, KMI), and the
delete-one-feature-group replicates of the rff/orf jackknife (direct, or by downdates of one
factorisation).  The formulas and the choice of κ are in the docstring of
:mod:`bigalign.metrics.independence`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla

from ..errors import DegenerateInputError
from ..moments import Moments

#: A canonical correlation this close to 1 makes KMI infinite (log of 0 to rounding).
PERFECT_CORRELATION_TOL = 1e-12


# ----------------------------------------------------------------------------
# the algebra, on covariances (feature space, 1/n)
# ----------------------------------------------------------------------------


@dataclass
class Covariances:
    """Centred covariances Σ_xx, Σ_yy, Σ_xy (1/n) of two feature maps, with their column groups."""

    n: int
    sxx: np.ndarray
    syy: np.ndarray
    sxy: np.ndarray
    bounds_x: np.ndarray | None = None
    bounds_y: np.ndarray | None = None


def covariances_from_moments(m: Moments, i: int, j: int) -> Covariances:
    n = m.n
    M, _ = m.pair(i, j)
    return Covariances(n, m.sides[i].M / n, m.sides[j].M / n, M / n, m.sides[i].bounds, m.sides[j].bounds)


def _top_singular(a: np.ndarray, v0: np.ndarray | None = None) -> tuple[float, np.ndarray | None]:
    """(σ₁, v₀ for the next call) of ``a``: dense SVD when small, else Lanczos from a fixed start (deterministic).

    ``v0`` warm-starts Lanczos (the top singular vector of a nearby matrix, on
    ``a``'s smaller side); the answer does not depend on it beyond rounding.
    """
    if a.size == 0 or not np.any(a):
        return 0.0, None
    if min(a.shape) <= 64:
        return float(np.linalg.svd(a, compute_uv=False)[0]), None
    from scipy.sparse.linalg import svds

    k = min(a.shape)
    if v0 is None or v0.shape[0] != k:
        v0 = np.full(k, 1.0 / math.sqrt(k))
    u, s, vt = svds(a, k=1, tol=0, v0=v0)
    return float(s[0]), (vt[0] if a.shape[1] <= a.shape[0] else u[:, 0])


def _psd_cholesky(a: np.ndarray, what: str, kappa: float) -> np.ndarray:
    try:
        lo = np.linalg.cholesky(a)
    except np.linalg.LinAlgError:
        lo = None
    d = np.diagonal(lo) if lo is not None else None
    # κ = 0: a (numerically) singular covariance has no inverse square root
    if lo is None or (kappa == 0 and float(d.min()) ** 2 <= 1e4 * np.finfo(float).eps * float(np.max(np.diagonal(a)))):
        raise DegenerateInputError(
            f"the canonical correlations are undefined with ridge=0: the covariance of {what} is singular "
            "(linearly dependent or constant features, or fewer samples than features). Expected a non-singular "
            "covariance. Use ridge > 0 (the default is 1e-2), or remove the redundant features.",
            reason=f"{what}_singular_covariance",
        )
    return lo


def canonical_correlations(c: Covariances, kx: float, ky: float, scale: float = 1.0) -> np.ndarray:
    """Singular values of (sΣ_xx + κ_x)^{-1/2} sΣ_xy (sΣ_yy + κ_y)^{-1/2}, descending.

    Computed as those of L_x^{-1} Σ_xy L_y^{-T} with Cholesky factors L (the
    same singular values: L^{-1} = Q·(Σ + κ)^{-1/2} for an orthogonal Q).
    """
    lx = _psd_cholesky(scale * c.sxx + kx * np.eye(c.sxx.shape[0]), "x", kx)
    ly = _psd_cholesky(scale * c.syy + ky * np.eye(c.syy.shape[0]), "y", ky)
    v = sla.solve_triangular(lx, scale * c.sxy, lower=True, check_finite=False)
    v = sla.solve_triangular(ly, v.T, lower=True, check_finite=False).T
    return np.linalg.svd(v, compute_uv=False)


def kmi_from_correlations(rho: np.ndarray) -> float:
    top = float(rho[0]) if rho.size else 0.0
    if top >= 1.0 - PERFECT_CORRELATION_TOL:
        raise DegenerateInputError(
            f"KMI is infinite: a canonical correlation equals 1 to rounding (ρ₁ = {top!r}), i.e. some function of "
            "x is a deterministic function of y in feature space. Expected correlations below 1. Use (a larger) "
            "ridge > 0.",
            reason="canonical_correlation_one",
        )
    return float(-0.5 * np.sum(np.log1p(-(rho * rho))))


def _groups(bounds: np.ndarray) -> list[np.ndarray]:
    return [np.arange(bounds[g], bounds[g + 1]) for g in range(len(bounds) - 1)]


def _keep(d: int, g: np.ndarray) -> np.ndarray:
    k = np.ones(d, dtype=bool)
    k[g] = False
    return k


def _coco_replicates(c: Covariances) -> np.ndarray:
    """Delete-one-group COCO: (G/(G−1))·σ₁ of Σ_xy without the rows of x-group g and columns of y-group g."""
    gx, gy = _groups(c.bounds_x), _groups(c.bounds_y)
    G = len(gx)
    s = G / (G - 1)
    _, v = _top_singular(c.sxy)
    out = []
    for a, b in zip(gx, gy):
        kx, ky = _keep(c.sxy.shape[0], a), _keep(c.sxy.shape[1], b)
        sub = c.sxy[kx][:, ky]
        v0 = None if v is None else v[ky if sub.shape[1] <= sub.shape[0] else kx]
        out.append(s * _top_singular(sub, v0)[0])
    return np.array(out)


def _restricted(c: Covariances, a: np.ndarray, b: np.ndarray) -> Covariances:
    kx, ky = _keep(c.sxx.shape[0], a), _keep(c.syy.shape[0], b)
    return Covariances(c.n, c.sxx[np.ix_(kx, kx)], c.syy[np.ix_(ky, ky)], c.sxy[np.ix_(kx, ky)])


def _cc_replicates_direct(c: Covariances, kx: float, ky: float) -> tuple[np.ndarray, np.ndarray]:
    """(KCC, KMI) replicates, each recomputed from its own covariances."""
    gx, gy = _groups(c.bounds_x), _groups(c.bounds_y)
    G = len(gx)
    s = G / (G - 1)
    kcc_r, kmi_r = [], []
    for a, b in zip(gx, gy):
        rho = canonical_correlations(_restricted(c, a, b), kx, ky, s)
        kcc_r.append(float(rho[0]))
        kmi_r.append(kmi_from_correlations(rho))
    return np.array(kcc_r), np.array(kmi_r)


def _inverse_and_logdet(a: np.ndarray) -> tuple[np.ndarray, float]:
    cf = sla.cho_factor(a, lower=True, check_finite=False)
    logdet = 2.0 * float(np.sum(np.log(np.diagonal(cf[0]))))
    inv = sla.cho_solve(cf, np.eye(a.shape[0]), check_finite=False)
    return inv, logdet


def _logdet_pd(a: np.ndarray) -> float:
    return 2.0 * float(np.sum(np.log(np.diagonal(np.linalg.cholesky(a)))))


def _downdate(b: np.ndarray, g: np.ndarray) -> np.ndarray:
    """(A_{−g,−g})^{-1} from B = A^{-1}: B_{kk} − B_{kg} B_{gg}^{-1} B_{gk} (Schur complement)."""
    k = _keep(b.shape[0], g)
    bkg = b[np.ix_(k, g)]
    return b[np.ix_(k, k)] - bkg @ np.linalg.solve(b[np.ix_(g, g)], bkg.T)


def _cc_replicates_fast(c: Covariances, kx: float, ky: float) -> tuple[np.ndarray, np.ndarray]:
    """The same replicates as :func:`_cc_replicates_direct`, from one factorisation.

    KMI = −½[log det J − log det A_x − log det A_y] with A_x = sΣ_xx + κ_xI,
    J = [[A_x, sΣ_xy], [sΣ_yx, A_y]]; deleting the index set g of a positive
    definite A changes its log-determinant by log det((A^{-1})_{gg}) (Jacobi).
    KCC: ρ₁² = λ_max(A_x^{-1} sΣ_xy A_y^{-1} sΣ_yx) with the inverses of the
    deleted blocks from Schur-complement downdates, by Arnoldi iteration.
    """
    from scipy.sparse.linalg import LinearOperator, eigs

    gx, gy = _groups(c.bounds_x), _groups(c.bounds_y)
    G = len(gx)
    s = G / (G - 1)
    dx, dy = c.sxx.shape[0], c.syy.shape[0]
    ax = s * c.sxx + kx * np.eye(dx)
    ay = s * c.syy + ky * np.eye(dy)
    sxy = s * c.sxy
    bx, ldx = _inverse_and_logdet(ax)
    by, ldy = _inverse_and_logdet(ay)
    bj, ldj = _inverse_and_logdet(np.block([[ax, sxy], [sxy.T, ay]]))
    kcc_r, kmi_r = [], []
    for a, b in zip(gx, gy):
        gj = np.concatenate([a, dx + b])
        ld = ldj + _logdet_pd(bj[np.ix_(gj, gj)]) - ldx - _logdet_pd(bx[np.ix_(a, a)]) - ldy - _logdet_pd(by[np.ix_(b, b)])
        kmi_r.append(-0.5 * ld)
        kx_, ky_ = _keep(dx, a), _keep(dy, b)
        bxg, byg = _downdate(bx, a), _downdate(by, b)
        m = sxy[np.ix_(kx_, ky_)]
        op = LinearOperator((bxg.shape[0],) * 2, matvec=lambda v, bxg=bxg, byg=byg, m=m: bxg @ (m @ (byg @ (m.T @ v))), dtype=float)
        v0 = np.full(bxg.shape[0], 1.0 / math.sqrt(bxg.shape[0]))
        lam = eigs(op, k=1, which="LM", v0=v0, tol=0, return_eigenvectors=False)
        kcc_r.append(math.sqrt(max(float(lam[0].real), 0.0)))
    return np.array(kcc_r), np.array(kmi_r)


@dataclass
class _Values:
    coco: float
    hsic_b: float
    rho: np.ndarray | None
    kmi: float | None
    kx: float
    ky: float


def _values(c: Covariances, kappa: float | None, want_kmi: bool) -> _Values:
    sigma, _ = _top_singular(c.sxy)
    n = c.n
    hsic_b = float(np.vdot(c.sxy, c.sxy)) * n * n / (n - 1) ** 2
    if kappa is None:
        return _Values(sigma, hsic_b, None, None, 0.0, 0.0)
    kx, ky = kappa * float(np.trace(c.sxx)), kappa * float(np.trace(c.syy))
    rho = canonical_correlations(c, kx, ky)
    return _Values(sigma, hsic_b, rho, kmi_from_correlations(rho) if want_kmi else None, kx, ky)


def _canonical_level(func: str, c: Covariances, kappa: float) -> float | None:
    """KCC or KMI of a smaller Nyström level, or None where it is undefined there.

    A level with fewer landmarks can be degenerate where the full map is not (its
    features constant: a zero covariance; a canonical correlation of 1 to rounding:
    KMI infinite); :func:`~bigalign.metrics._kernel_approx.nystroem_stderr` then
    skips that level, as it does for an undefined CKA.
    """
    try:
        h = canonical_correlations(c, kappa * float(np.trace(c.sxx)), kappa * float(np.trace(c.syy)))
        return float(h[0]) if func == "kcc" else kmi_from_correlations(h)
    except DegenerateInputError:
        return None
