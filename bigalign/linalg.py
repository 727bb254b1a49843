"""Eigendecompositions of covariance operators over row blocks: exact and randomized.

Everything here works on A = (1/n)·X_cᵀX_c (``center=True``; X_c the
column-centred rows) or A = (1/n)·XᵀX (``center=False``), of inputs seen only
as row blocks through :func:`bigalign.engine.run`; features may be mapped per
block first (Nyström).  Two roads:

exact (:func:`exact_side`)
    The d×d matrix from merged centred moments (:mod:`bigalign.moments`, one
    pass, O(d²) state), then a dense symmetric eigendecomposition: O(n·d²)
    time, O(d³) for the eigensolver.

randomized (:func:`randomized_sides`)
    Halko, Martinsson & Tropp (2011), the randomized range finder with power
    iterations and re-orthonormalisation, followed by Rayleigh–Ritz ("direct
    eigenvalue decomposition", their §5.3).  Each pass over the data is one
    :class:`SketchStatistic`: it applies A to a d×ℓ matrix, S = Σᵢ uᵢuᵢᵀΩ with
    uᵢ the centred rows, by two block GEMMs, and merges blocks with the exact
    pairwise update S = S_a + S_b + (n_a n_b/n)·δ(δᵀΩ) (δ the difference of
    the block means — Chan, Golub & LeVeque's update applied to MΩ), so no
    separate pass for the mean and no cancellation.  With q = ``n_power_iter``:

    * pass 1:          Y₀ = AΩ (Ω a seeded d×ℓ Gaussian), Q₀ = qr(Y₀)
    * passes 2..q+1:   Yᵢ = AQᵢ₋₁, Qᵢ = qr(Yᵢ)     (the range of A^{q+1}Ω)
    * pass q+2:        Z = AQ_q;  B = QᵀZ = WΛ̂Wᵀ;  Ritz pairs (Λ̂, QW)

    q + 2 passes in all, each applying XᵀX once (one read of the data, 4·n·d·ℓ
    flops).  For comparison, ``dask.array.linalg.svd_compressed`` on X itself
    reads it 2q + 2 times and its sketch weights the singular values by
    σ^{2q+1}; here the sketch A^{q+1}Ω weights them by σ^{2q+2}.  ℓ = rank +
    ``n_oversamples`` (at most d).

The last pass also yields rigorous a posteriori information about what the
sketch missed (all exact, from Z, Q and the exactly accumulated trace):

* ``tail_trace`` t = tr A − tr B = tr(Q⊥ᵀAQ⊥) ≥ 0, the variance outside span Q;
* ‖E‖_F with E = Q⊥ᵀAQ = (I − QQᵀ)Z, the coupling between span Q and the rest;
* ‖A‖²_F = ‖B‖²_F + 2‖E‖²_F + ‖C‖²_F with C = Q⊥ᵀAQ⊥ ⪰ 0 and tr C = t, hence
  t²/(d − ℓ) ≤ ‖C‖²_F ≤ t² and ‖C‖₂ ≤ t: ``frob2_bounds`` contain ‖A‖²_F;
* residuals ‖A v̂ − λ̂ v̂‖ of every Ritz pair: each Ritz value lies within its
  residual of an eigenvalue of A.

References
----------
N. Halko, P.-G. Martinsson, J. A. Tropp, "Finding structure with randomness:
probabilistic algorithms for constructing approximate matrix decompositions",
SIAM Review 53(2), 217–288 (2011), arXiv:0909.4061 — Algorithm 4.4 (power
scheme with re-orthonormalisation), §5.3, Theorem 10.6, Corollary 10.10.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from ._checks import finite_float64
from .engine import run
from .grouped import grouped_statistic
from .moments import MomentStatistic
from .options import EngineOptions

__all__ = [
    "Eigen",
    "SketchSide",
    "SketchState",
    "SketchStatistic",
    "eigh_desc",
    "exact_side",
    "numerical_rank",
    "randomized_sides",
    "hmt_expected_error",
]

#: eigenvalues at or below this multiple of d·ε·λ_max are rounding, not signal
RANK_RTOL_FACTOR = 10.0


# --------------------------------------------------------------------------- #
# small dense helpers
# --------------------------------------------------------------------------- #


def _flip_signs(vectors: np.ndarray) -> np.ndarray:
    """Make the largest-magnitude entry of every column positive (deterministic signs)."""
    if vectors.size == 0:
        return vectors
    idx = np.argmax(np.abs(vectors), axis=0)
    signs = np.sign(vectors[idx, np.arange(vectors.shape[1])])
    signs[signs == 0] = 1.0
    return vectors * signs[None, :]


def eigh_desc(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (descending) and eigenvectors (columns, deterministic signs) of symmetric ``a``."""
    a = 0.5 * (a + a.T)
    lam, vec = np.linalg.eigh(a)
    order = np.argsort(lam)[::-1]
    return lam[order], _flip_signs(vec[:, order])


def numerical_rank(values: np.ndarray, dim: int) -> int:
    """How many of the (descending) eigenvalues exceed RANK_RTOL_FACTOR·dim·ε·λ_max."""
    if values.size == 0 or not values[0] > 0:
        return 0
    tol = RANK_RTOL_FACTOR * max(dim, 1) * np.finfo(float).eps * values[0]
    return int(np.count_nonzero(values > tol))


# --------------------------------------------------------------------------- #
# what both roads produce
# --------------------------------------------------------------------------- #


@dataclass
class Eigen:
    """Leading eigenpairs of one covariance operator A, and what is known about the rest.

    ``vectors`` are orthonormal columns spanning the computed subspace (all d
    of them on the exact road, ℓ Ritz vectors on the randomized road).
    ``frob2_bounds`` = (lo, hi) contain ‖A‖²_F (lo = hi on the exact road);
    ``frob2`` is the exact value or a point estimate inside the bounds.
    """

    values: np.ndarray  # (m,) descending
    vectors: np.ndarray  # (d, m) orthonormal
    trace: float  # tr A, exact on both roads
    frob2: float
    frob2_bounds: tuple[float, float]
    residuals: np.ndarray  # (m,) ‖A v − λ v‖
    exact: bool
    n: int
    mean: np.ndarray
    dim: int
    constant: bool
    zero: bool
    Z: np.ndarray | None = None  # A·vectors (randomized road)

    def subspace(self, r: int) -> "Subspace":
        """What the leading ``r`` computed eigenvectors (exact) or all ℓ Ritz vectors (randomized) know."""
        if self.exact:
            r = min(r, self.values.size)
            Q = self.vectors[:, :r]
            lam = self.values
            # the eigenvalues beyond r (rounding may make the zero ones slightly negative;
            # t ≥ 0 and ‖C‖₂ ≥ 0 hold exactly, and raising them only loosens the bounds)
            tail = float(lam[r:].sum()) if r < lam.size else 0.0
            c2 = float(lam[r]) if r < lam.size else 0.0
            return Subspace(Q=Q, tail_trace=max(tail, 0.0), tail_norm2_hi=max(c2, 0.0))
        t = self.trace - float(self.values.sum())
        return Subspace(Q=self.vectors, tail_trace=t, tail_norm2_hi=max(t, 0.0))


@dataclass
class Subspace:
    """An orthonormal basis Q of a computed subspace, with the variance t outside it
    (t = tr(Q⊥ᵀAQ⊥)) and an upper bound on ‖Q⊥ᵀAQ⊥‖₂."""

    Q: np.ndarray
    tail_trace: float
    tail_norm2_hi: float


# --------------------------------------------------------------------------- #
# exact road
# --------------------------------------------------------------------------- #


def exact_side(side: Any, center: bool) -> Eigen:
    """Full eigendecomposition of A from one merged :class:`~bigalign.moments.Side`."""
    n = side.n
    A = (side.M if center else side.uncentred_gram()) / n
    A = 0.5 * (A + A.T)
    lam, vec = eigh_desc(A)
    resid = np.linalg.norm(A @ vec - vec * lam[None, :], axis=0)
    frob2 = float(np.vdot(A, A))
    return Eigen(
        values=lam,
        vectors=vec,
        trace=float(np.trace(A)),
        frob2=frob2,
        frob2_bounds=(frob2, frob2),
        residuals=resid,
        exact=True,
        n=n,
        mean=side.mean,
        dim=A.shape[0],
        constant=side.is_constant,
        zero=side.is_zero,
    )


def exact_moments(
    inputs: Sequence[Any], names: Sequence[str], pairs: Sequence[tuple[int, int]], transforms: Sequence[Any],
    options: EngineOptions, *, ci_rows: int | None = None, ci_func: str = "ci",
) -> tuple[Any, Any]:  # fmt: skip
    """One pass of merged centred moments (:class:`~bigalign.moments.MomentStatistic`).

    ``ci_rows=n``: one moment state per contiguous row group in the same pass
    (:class:`~bigalign.grouped.GroupedStates` instead of merged moments), for a sampling interval.
    """
    stat: Any = MomentStatistic(
        names=tuple(names), pairs=tuple(pairs), transforms=tuple(transforms) if any(t is not None for t in transforms) else ()
    )
    if ci_rows is not None:
        stat = grouped_statistic(stat, ci_rows, func=ci_func)
    return run(stat, list(inputs), names=list(names), check_pairing=False, options=options)


# --------------------------------------------------------------------------- #
# randomized road: the sketch statistic
# --------------------------------------------------------------------------- #


@dataclass
class SketchSide:
    n: int
    mean: np.ndarray
    trace: float  # Σ ‖uᵢ‖² (centred)
    S: np.ndarray  # Σ uᵢuᵢᵀΩ   (d × ℓ)
    colmin: np.ndarray
    colmax: np.ndarray


@dataclass
class SketchState:
    sides: list[SketchSide]
    crosses: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)  # (i, j): Σ uᵢ⁽ⁱ⁾ uᵢ⁽ʲ⁾ᵀ Ω_j


@dataclass(frozen=True, eq=False)
class SketchStatistic:
    """One pass of A·Ω for several inputs at once (a :class:`~bigalign.engine.Statistic`).

    Parameters
    ----------
    names : tuple of str
        Input names (for error messages).
    tests : tuple of ndarray
        Per input, the d_k × ℓ_k matrix Ω_k to apply.
    crosses : tuple of (i, j)
        Also accumulate Σ u⁽ⁱ⁾u⁽ʲ⁾ᵀΩ_j (the centred cross-moment of inputs i
        and j applied to input j's matrix), d_i × ℓ_j.
    transforms : tuple of (callable or None)
        Per input, a feature map applied to each float64 block first.

    The state is O(Σ d_k·ℓ_k): the centred co-moment never exists as a d×d matrix.
    """

    names: tuple[str, ...]
    tests: tuple[np.ndarray, ...]
    crosses: tuple[tuple[int, int], ...] = ()
    transforms: tuple = ()

    def partial(self, blocks: Sequence[np.ndarray], start: int) -> SketchState:
        sides, us, ps = [], [], []
        for k, blk in enumerate(blocks):
            x = finite_float64(blk, self.names[k], start)
            tf = self.transforms[k] if self.transforms else None
            if tf is not None:
                x = tf(x)
            lo, hi = x.min(axis=0), x.max(axis=0)
            const = lo == hi
            mean = x.mean(axis=0)
            mean[const] = lo[const]  # exact zeros for constant columns
            x -= mean
            P = x @ self.tests[k]
            sides.append(
                SketchSide(n=x.shape[0], mean=mean, trace=float(np.einsum("ij,ij->", x, x)), S=x.T @ P, colmin=lo, colmax=hi)
            )
            us.append(x)
            ps.append(P)
        crosses = {(i, j): us[i].T @ ps[j] for i, j in self.crosses}
        return SketchState(sides=sides, crosses=crosses)

    def combine(self, a: SketchState, b: SketchState) -> SketchState:
        sides, deltas = [], []
        for k, (sa, sb) in enumerate(zip(a.sides, b.sides)):
            n = sa.n + sb.n
            delta = sb.mean - sa.mean
            f = sa.n * sb.n / n
            mean = sa.mean + delta * (sb.n / n)
            const = (sa.colmin == sa.colmax) & (sb.colmin == sb.colmax) & (sa.colmin == sb.colmin)
            mean[const] = sa.mean[const]
            sides.append(
                SketchSide(
                    n=n,
                    mean=mean,
                    trace=sa.trace + sb.trace + f * float(delta @ delta),
                    S=sa.S + sb.S + f * np.outer(delta, delta @ self.tests[k]),
                    colmin=np.minimum(sa.colmin, sb.colmin),
                    colmax=np.maximum(sa.colmax, sb.colmax),
                )
            )
            deltas.append((delta, f))
        crosses = {}
        for (i, j), ca in a.crosses.items():
            (di, f), (dj, _) = deltas[i], deltas[j]
            crosses[(i, j)] = ca + b.crosses[(i, j)] + f * np.outer(di, dj @ self.tests[j])
        return SketchState(sides=sides, crosses=crosses)

    def finalize(self, state: SketchState) -> SketchState:
        return state


def applied(side: SketchSide, omega: np.ndarray, center: bool) -> tuple[np.ndarray, float]:
    """(A·Ω, tr A) from a merged sketch side (A = (1/n)X_cᵀX_c or (1/n)XᵀX)."""
    n = side.n
    if center:
        return side.S / n, side.trace / n
    # XᵀXΩ = MΩ + n·μ(μᵀΩ): a sum of the two parts, no cancellation
    return side.S / n + np.outer(side.mean, side.mean @ omega), side.trace / n + float(side.mean @ side.mean)


def applied_cross(state: SketchState, i: int, j: int, omega_j: np.ndarray, center: bool) -> np.ndarray:
    """(1/n)·X_cᵀY_c·Ω_j (or the uncentred (1/n)XᵀYΩ_j)."""
    si, sj = state.sides[i], state.sides[j]
    out = state.crosses[(i, j)] / si.n
    if not center:
        out = out + np.outer(si.mean, sj.mean @ omega_j)
    return out


@dataclass
class RandomizedRun:
    eigens: list[Eigen]
    state: SketchState  # the last pass (crosses applied to the final Q's)
    Qs: list[np.ndarray]
    n_passes: int
    plan: Any


def _test_matrix(seed: int, key: int, d: int, width: int) -> np.ndarray:
    return np.random.default_rng([int(seed), 0x5EC7, int(key)]).standard_normal((d, width))


def _orthonormal(y: np.ndarray) -> np.ndarray:
    q, _ = np.linalg.qr(y, mode="reduced")
    return q


def randomized_sides(
    inputs: Sequence[Any],
    names: Sequence[str],
    dims: Sequence[int],
    widths: Sequence[int],
    *,
    n_power_iter: int,
    seed: int,
    center: bool,
    transforms: Sequence[Any] = (),
    crosses: Sequence[tuple[int, int]] = (),
    options: EngineOptions | None = None,
    on_pass: Callable[[int], None] | None = None,
) -> RandomizedRun:
    """Randomized eigendecompositions of every input's A in n_power_iter + 2 passes (module docstring).

    ``dims[k]`` is input k's (feature) dimension, ``widths[k]`` = ℓ_k ≤ dims[k].
    ``crosses`` are accumulated in the last pass, applied to the final bases.
    """
    options = options or EngineOptions()
    tf = tuple(transforms) if transforms and any(t is not None for t in transforms) else ()
    tests = [_test_matrix(seed, k, d, w) for k, (d, w) in enumerate(zip(dims, widths))]
    passes = 0
    state: SketchState | None = None
    plan = None
    for _ in range(n_power_iter + 1):
        stat = SketchStatistic(names=tuple(names), tests=tuple(tests), transforms=tf)
        state, plan = run(stat, list(inputs), names=list(names), check_pairing=False, options=options)
        passes += 1
        if on_pass is not None:
            on_pass(passes)
        tests = [_orthonormal(applied(s, t, center)[0]) for s, t in zip(state.sides, tests)]
    Qs = tests
    stat = SketchStatistic(names=tuple(names), tests=tuple(Qs), crosses=tuple(crosses), transforms=tf)
    state, plan = run(stat, list(inputs), names=list(names), check_pairing=False, options=options)
    passes += 1
    eigens = []
    for s, Q, d in zip(state.sides, Qs, dims):
        Z, trace = applied(s, Q, center)
        B = Q.T @ Z
        B = 0.5 * (B + B.T)
        lam, W = eigh_desc(B)
        V = Q @ W
        ZW = Z @ W
        resid = np.linalg.norm(ZW - V * lam[None, :], axis=0)
        E = Z - Q @ B  # (I − QQᵀ)AQ
        b2 = float(np.vdot(B, B))
        e2 = float(np.vdot(E, E))
        t = trace - float(np.trace(B))
        ell = Q.shape[1]
        tpos = max(t, 0.0)
        c_lo = tpos * tpos / (d - ell) if d > ell else 0.0
        c_hi = tpos * tpos if d > ell else 0.0
        # point estimate: the unseen eigenvalues do not exceed the smallest Ritz value
        c_est = min(max(c_lo, float(lam[-1]) * tpos if lam.size else 0.0), c_hi)
        eigens.append(
            Eigen(
                values=lam,
                vectors=V,
                trace=trace,
                frob2=b2 + 2 * e2 + c_est,
                frob2_bounds=(b2 + 2 * e2 + c_lo, b2 + 2 * e2 + c_hi),
                residuals=resid,
                exact=False,
                n=s.n,
                mean=s.mean,
                dim=d,
                constant=bool(np.all(s.colmin == s.colmax)),
                zero=bool(np.all(s.colmin == 0) and np.all(s.colmax == 0)),
                Z=ZW,
            )
        )
    return RandomizedRun(eigens=eigens, state=state, Qs=Qs, n_passes=passes, plan=plan)


def hmt_expected_error(eigenvalues: np.ndarray, rank: int, oversamples: int, n_power_iter: int) -> float:
    """HMT (2011) Corollary 10.10: the bound on E‖(I − QQᵀ)A‖₂ for the power scheme.

    For a symmetric PSD A with eigenvalues λ, k = ``rank``, p = ``oversamples`` ≥ 2
    and the sketch Y = (AAᵀ)^q AΩ = A^{2q+1}Ω (Ω a standard Gaussian d×(k+p)):

        E‖(I − P_Y)A‖ ≤ [(1 + √(k/(p−1)))·λ_{k+1}^{2q+1} + (e√(k+p)/p)·(Σ_{j>k} λ_j^{2(2q+1)})^{1/2}]^{1/(2q+1)}.

    Our sketch after ``n_power_iter`` = q' passes is A^{q'+1}Ω, which is HMT's
    power scheme with 2q + 1 = q' + 1 when q' is even.
    """
    if n_power_iter % 2:
        raise ValueError("the HMT power-scheme bound applies to A^(2q+1): use an even n_power_iter")
    lam = np.asarray(eigenvalues, dtype=float)
    k, p, m = rank, oversamples, n_power_iter + 1
    tail = lam[k:]
    first = (1 + math.sqrt(k / (p - 1))) * (tail[0] ** m if tail.size else 0.0)
    second = math.e * math.sqrt(k + p) / p * math.sqrt(float(np.sum(tail ** (2 * m))))
    return (first + second) ** (1.0 / m)
