"""HSIC / CKA / KA through explicit feature maps, in one streaming pass, with error bars.

Random features (``rff``, ``orf``): K̂ = Σ_g K_g over G independent groups of
frequencies, each E[K_g] = K/G.  The cross term HSIC(K̂, L̂) is unbiased for
HSIC(K, L) because the x and y maps are drawn independently.  The self terms
are *not*: HSIC(K̂, K̂) contains the same-group products HSIC(K_g, K_g), whose
expectation exceeds HSIC(K, K)/G² — this is what makes naive random-feature
CKA biased low (measured: 0.52 instead of 0.69 at 64 frequencies; tests/test_kernels.py).  We
drop them — a U-statistic over groups:

    HSIC(K, K) ≈ G/(G−1) · Σ_{g≠h} HSIC(K_g, K_h),

every term of which is available from :func:`bigalign.moments.group_hsic`.
The standard error is the delete-one-group jackknife of the final value (CKA,
HSIC or KA), which measures the randomness of the features given the data.

Nyström (``nystroem``): a single deterministic low-rank map from m landmarks.
Its error is mostly bias, which a variance estimate misses: with landmarks Z,
K̃ = K_nZ W⁺ K_Zn is the projection of K's feature vectors onto span{k(z, ·)},
so E = K − K̃ ⪰ 0 and it shrinks (in the PSD order) as landmarks are added.  The
same pass therefore also computes the estimate θ from nested prefixes of the
(uniformly permuted) landmarks — m, m/2 and m/4 — and, for each, the fraction of
the kernel's trace that the landmarks miss,

    ρ(m) = tr(K − K̃_m) / tr(K) = 1 − Σᵢ ‖φ(xᵢ)‖² / n       (k(x, x) = 1: rbf, laplacian),

exact from the streamed moments (ρ of a pair is the mean of the two inputs').
The error bar extrapolates in ρ instead of in m:

* the error is bilinear in the residuals (HSIC(K, L) − HSIC(K̃, L̃) =
  HSIC(E_K, L) + HSIC(K̃, E_L)), hence to first order proportional to how much
  of the kernel is missing; each doubling of the landmarks measures a slope
  |Δθ| / Δρ, and the error of θ(m) is estimated as ρ(m) times the *largest*
  measured slope (m/2 → m, m/4 → m/2, and 0 → m/4 where θ is defined without
  landmarks: HSIC is 0 at K̃ = 0, ρ = 1).  What remains after m landmarks are
  the kernel's directions of smallest eigenvalue, which carry less of the
  dependence per unit of trace, so the largest slope so far over-estimates the
  rest: the estimate is conservative when Nyström converges, and it stays
  finite and large (not ≈ 0) when it does not — when θ grows in proportion to the
  captured trace, as for narrow kernels, ρ·slope is the error itself;
* the landmark draw's own variance is covered by d = |θ(m) − θ(m/2)|, the former
  error bar, and the two are combined as stderr = √(d² + (ρ(m)·slope)²).

A result whose landmarks capture less than half of a kernel's trace
(ρ(m) > ``NYSTROEM_MAX_RESIDUAL`` = 0.5) is flagged ``nystroem_not_converged``:
its error bar then rests on an extrapolation over more than what was observed.
With m = n landmarks ρ = 0 to rounding and the estimate is exact; the error bar
keeps d (conservative).

Measured (benchmarks/results/nystroem_coverage.md: rbf, unbiased CKA and HSIC, 80
seeds, 32-256 landmarks at 1, 0.3 and 0.1 × the median bandwidth, two data sets of
n = 600 and 800: 48 cells): the exact value lies within 2·stderr for ≥ 0.9 of seeds
in 47 cells (the former |θ(m) − θ(m/2)|: 21 cells, down to 0.0 for HSIC).  The bar is
conservative: mean(stderr)/rmse is 1.6-13 at the median and 0.3 × median (33 for CKA
with 32 landmarks on the clustered data), 3.6-6.3 for HSIC and 14-89 for CKA at
0.1 × median, where exact CKA is 0.003-0.016 and θ mostly noise.  The exception is
HSIC at 0.1 × median with 32 landmarks on the clustered data (ρ = 0.96: 4% of the
trace captured): 0.887 (0.912 on the other data set).  There the exact HSIC comes from
a few close pairs of rows that most landmark draws miss entirely, so nothing computed
from the landmarks sees it.  ``method="auto"`` never uses Nyström below 0.5 × median (it picks ORF),
and an explicit request there is flagged ``nystroem_small_bandwidth``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .._checks import finite_float64
from ..intervals import jackknife_se
from ..moments import Cross, MomentStatistic, Moments, Side, _bounds, _gsum_cols, group_hsic

#: ρ(m) above which a Nyström result is flagged ``nystroem_not_converged`` (less than half the trace captured)
NYSTROEM_MAX_RESIDUAL = 0.5
NYSTROEM_STDERR = (
    "sqrt(d^2 + (rho(m) * slope)^2): d = |estimate(m) - estimate(m/2)|, rho = missed fraction of the kernel trace, "
    "slope = largest |change of estimate| / |change of rho| over landmark levels 0, m/4, m/2, m"
)


#: relative rounding of the float32 feature products, measured against the float64 path on the same
#: features (benchmarks/results/rff_float32.md); the approximation error is >= 100x larger
FLOAT32_NOTE = "feature maps and per-block feature Gram products in float32, accumulated across blocks in float64"


@dataclass(frozen=True)
class FeatureMomentStatistic(MomentStatistic):
    """:class:`~bigalign.moments.MomentStatistic` for float32 feature maps (random Fourier features).

    Per block, the features come out of the map in float32; they are centred by the block's
    float64 mean, and the expensive D×D products (ΦᵀΦ per input, ΦᵀΨ per pair) run as float32
    GEMMs, each block's result then added in float64 (the engine's merge).  The small group-level
    moments (T, A: O(b·G·D) with G ≤ 64 groups) stay in float64.  The rounding this adds is
    that of one float32 dot product over a block's rows: ≈ √b·2⁻²⁴ relative per entry.
    """

    def partial(self, blocks, start):  # type: ignore[no-untyped-def]
        sides, us, u32s, ps = [], [], [], []
        for k, blk in enumerate(blocks):
            phi = self.transforms[k](finite_float64(np.asarray(blk), self.names[k], start))
            g = self.groups[k] if self.groups else None
            bounds = _bounds(phi.shape[1], g)
            lo, hi = phi.min(axis=0).astype(np.float64), phi.max(axis=0).astype(np.float64)
            mean = phi.mean(axis=0, dtype=np.float64)
            const = lo == hi
            mean[const] = lo[const]
            u = np.subtract(phi, mean, dtype=np.float64)
            u32 = u.astype(np.float32)
            p = _gsum_cols(u * u, bounds) if len(bounds) > 2 else np.einsum("ij,ij->i", u, u)[:, None]
            M = (u32.T @ u32).astype(np.float64)
            sides.append(Side(n=u.shape[0], mean=mean, M=M, T=p.T @ p, A=p.T @ u, colmin=lo, colmax=hi, bounds=bounds))
            us.append(u)
            u32s.append(u32)
            ps.append(p)
        crosses = {
            (i, j): Cross(M=(u32s[i].T @ u32s[j]).astype(np.float64), T=ps[i].T @ ps[j], A=ps[i].T @ us[j], B=ps[j].T @ us[i])
            for i, j in self.pairs
        }
        return Moments(sides=sides, crosses=crosses)


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
    return jackknife_se(np.asarray(f(terms.replicates), dtype=float))  # type: ignore[arg-type]


def zero_terms(n: int) -> KernelTerms:
    """The terms of the zero kernel (Nyström with no landmarks)."""
    return KernelTerms(n=n, hxy=0.0, hxx=0.0, hyy=0.0, kl=0.0, kk=0.0, ll=0.0)


def residual_fraction(side: Side) -> float:
    """ρ = tr(K − K̃)/tr(K) of a Nyström map from its streamed moments, for kernels with k(x, x) = 1.

    tr(K̃) = Σᵢ ‖φ(xᵢ)‖² is the trace of the uncentred feature Gram ΦᵀΦ (= M + n·μμᵀ);
    tr(K) = n.  ρ ∈ [0, 1] up to rounding (m = n landmarks give |ρ| ~ 1e-13).
    """
    n = side.n
    return float(1.0 - (side.trace + n * float(side.mean @ side.mean)) / n)


def nystroem_stderr(values: Sequence[float | None], residuals: Sequence[float], zero: float | None = None) -> float:
    """Error estimate of a Nyström estimate from nested landmark levels (see the module docstring).

    Parameters
    ----------
    values : [θ(m), θ(m/2), θ(m/4)]; an entry is None where the estimate is undefined at that
        level (e.g. a non-positive self-term of CKA with very few landmarks).  θ(m) must be defined.
    residuals : [ρ(m), ρ(m/2), ρ(m/4)], the missed fractions of the kernel trace.
    zero : θ with no landmarks (K̃ = 0, ρ = 1) where it is defined (HSIC: 0), else None.

    Returns √(d² + (|ρ(m)|·s)²) with d = |θ(m) − θ(next defined level)| and s the largest
    |Δθ|/Δρ between consecutive defined levels (Δρ > 0 only: two levels that capture the
    same trace span the same space up to rounding and carry no slope).  Infinite when
    landmarks missed part of the trace and no slope is measurable (every level captured
    the same trace and θ has no value without landmarks): nothing then bounds the rest.
    """
    if values[0] is None:
        raise ValueError("internal error: the full Nyström estimate must be defined")
    pts = [(float(r), float(v)) for v, r in zip(values, residuals) if v is not None]
    if zero is not None:
        pts.append((1.0, float(zero)))
    d = abs(pts[0][1] - pts[1][1]) if len(pts) > 1 else 0.0
    slopes = [abs(va - vb) / (rb - ra) for (ra, va), (rb, vb) in zip(pts, pts[1:]) if rb > ra]
    rho = abs(float(residuals[0]))  # |·|: m = n can round to a tiny negative residual
    if not slopes:
        return float("inf") if rho > 0 else d
    return float(np.hypot(d, rho * max(slopes)))
