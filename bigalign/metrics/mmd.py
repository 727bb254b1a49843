"""Maximum mean discrepancy between two samples in the same space, and a two-sample test.

x (n_x rows) and y (n_y rows) are two *samples* of representations in the
same d-dimensional space — a layer before and after fine-tuning, two
checkpoints — not paired: n_x may differ from n_y, and no sample pairing is
checked.  With a kernel k and its mean embeddings μ_P, μ_Q,

    MMD²(P, Q) = ‖μ_P − μ_Q‖²_H = E k(x, x') + E k(y, y') − 2 E k(x, y).

Estimators (Gretton et al. 2012), with K_xx, K_yy, K_xy the kernel blocks:

    unbiased  MMD²_u = Σ_{i≠j} k(xᵢ,xⱼ)/(n_x(n_x−1)) + Σ_{i≠j} k(yᵢ,yⱼ)/(n_y(n_y−1)) − 2 Σᵢⱼ k(xᵢ,yⱼ)/(n_x n_y)
    biased    MMD²_b = 1ᵀK_xx1/n_x² + 1ᵀK_yy1/n_y² − 2·1ᵀK_xy1/(n_x n_y) = ‖μ̂_x − μ̂_y‖²_H

(the unbiased one can be negative; bigalign reports it as is).

Methods
-------
linear kernel
    MMD²_b = ‖x̄ − ȳ‖², MMD²_u = ‖x̄ − ȳ‖² − tr Ŝ_x/n_x − tr Ŝ_y/n_y (Ŝ the
    unbiased sample covariances): exact, one streaming pass, O((n_x + n_y)·d).
``"exact"`` (rbf/laplacian)
    Tiles over the pooled sample z = [x; y] (:func:`bigalign.engine.run_pairs`):
    squared distances by GEMM, kernel values by a compiled loop (the same
    kernel and near-duplicate refinement as the HSIC tiles), then, per tile,
    the row sums r̃ = K̃1 and e_bᵀK̃e_b for the label vectors e_b of x
    (K̃: zero diagonal).  With A = eᵀK̃e, R = eᵀr̃, T = 1ᵀr̃: Σ_xx = A,
    Σ_xy = R − A, Σ_yy = T − 2R + A.  O(n²·d) time, O(n + tile) memory.
``"rff"``, ``"orf"``, ``"nystroem"``
    One feature map φ for both samples (the same space), one streaming pass
    accumulating Φᵀe (the feature sums of x) and the per-group squared row
    norms: MMD² of the approximate kernel φ(a)ᵀφ(b), O(n·D·(d + 1)).  The
    random-feature kernel is unbiased for k at every pair, and MMD² is
    *linear* in the kernel, so rff/orf MMD² (biased and unbiased) are unbiased
    for the exact ones given the data: no debiasing is needed.  The standard
    error is the delete-one-group jackknife over the G groups of frequencies.
    Nyström: the error bar of :mod:`bigalign.metrics._kernel_approx`, as for
    CKA.  The pass streams three nested maps (the first m, m/2 and m/4 of the
    permuted landmarks) side by side; from their sums come MMD² at each level
    and the missed trace fractions ρ = 1 − Σᵢ‖φ(zᵢ)‖²/n over the pooled sample
    (:func:`residual_fractions`), and stderr = √(d² + (ρ(m)·slope)²),
    d = |θ(m) − θ(m/2)|, slope the largest |Δθ|/Δρ between levels including
    "no landmarks" (ρ = 1, MMD² = 0).  The projected kernel K̃ ⪯ K makes the
    biased MMD² of the map ≤ the exact one; the error is mostly this bias.
    ρ(m) > 0.5 is flagged ``nystroem_not_converged`` (``mmd`` and ``mmd_test``).
    Measured (benchmarks/results/nystroem_coverage_family.md: three pairs of
    samples of 250-300 rows, one with P = Q, 32 and 128 landmarks at 1 and
    0.3 × median, 80 seeds): the exact MMD²_u lies within 2·stderr for every
    seed in all 12 cells (the former bar: ≥ 0.9 in 6, down to 0.19);
    mean(stderr)/rmse 3.4-26 — conservative, most of the error being a bias.

The test
--------
permutation
    B random relabellings of the pooled sample (n_x labels x, the rest y),
    drawn from the seed; p = (1 + #{T_b ≥ T}) / (1 + B), valid at any n.  All
    B statistics come from the same single pass as the observed one (tiles:
    e_bᵀK̃e_b by GEMM with the B label columns, O(n²·B) more flops; features:
    Φᵀe_b, O(n·D·B)).
asymptotic
    Under H0, μ̂_x − μ̂_y is asymptotically Gaussian with covariance
    C = C_x/n_x + C_y/n_y (C the centred covariance operators of the kernel
    features), so MMD²_b → Σ λ_l z_l² and MMD²_u → Σ λ_l (z_l² − 1), z_l iid
    N(0, 1), λ the eigenvalues of C (Gretton et al. 2009 for n_x = n_y).
    λ comes from the streamed feature covariances (linear, features: D×D), or,
    for exact kernels, from the block-centred kernel matrix of a seeded
    subsample of ≤ 500 rows of each sample.  The weighted-χ² tail is computed
    by Imhof's (1961) inversion formula (numerical integration).

HSIC as an MMD
--------------
The formulas (docs/formulas.md) read HSIC as MMD²(joint, product of marginals) with the product kernel
k⊗l((x, y), (x', y')) = k(x, x')·l(y, y').  On a sample: let P̂ be the joint
sample {(xᵢ, yᵢ)} (n points) and Q̂ the product sample {(xᵢ, yⱼ)} (all n² pairs).
Then

    MMD²_b(P̂, Q̂) = (1/n²)Σᵢⱼ KᵢⱼLᵢⱼ − (2/n³)Σᵢⱼₖ KᵢⱼLᵢₖ + (1/n⁴)(1ᵀK1)(1ᵀL1)
                 = tr(KHLH)/n² = ((n−1)/n)²·HSIC_b,

with HSIC_b = tr(KHLH)/(n−1)² as :func:`bigalign.hsic` (``estimator="biased"``)
defines it.  For rbf kernels k⊗l is the rbf kernel of bandwidth 1 on the
scaled rows (x/σ_x, y/σ_y); for linear kernels it is the linear kernel on
x ⊗ y.  (The unbiased estimators do not correspond: the product sample is not
an iid sample of the product law.)  ``tests/test_mmd.py`` checks this to 1e-10.

References
----------
Gretton, Borgwardt, Rasch, Schölkopf & Smola, "A kernel two-sample test", JMLR 13 (2012).
Gretton, Fukumizu, Harchaoui & Sriperumbudur, "A fast, consistent kernel two-sample
test", NIPS 2009 — the spectral null.
Imhof, "Computing the distribution of quadratic forms in normal variables",
Biometrika 48 (1961).
Insulla, Huang & Rosasco, arXiv:2502.14047 — HSIC as MMD²(joint, product).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

import numpy as np
from numba import njit

from .._checks import check_applies, finite_float64
from .._numba.tiles import KERNEL_CODES, _k, _refined, sqdist
from ..engine import content_id, rep_token, run, run_pairs
from ..errors import DegenerateInputError, InvalidInputError
from ..intervals import jackknife_se
from ..features import (
    BANDWIDTH_SAMPLE,
    KERNELS,
    check_bandwidth,
    draw_nystroem,
    draw_random_fourier,
    kernel_scale,
    median_bandwidth,
    sample_rows,
)
from ..io import Representation, as_representation
from ..result import Result, _jsonable
from ..stats import TestResult
from ._common import ESTIMATORS, check_choice, check_int, engine_kwargs, feature_engine_kwargs, with_engine_doc
from ._kernel_approx import NYSTROEM_MAX_RESIDUAL, NYSTROEM_STDERR, nystroem_stderr
from ._kernel_nonlinear import DEFAULT_LANDMARKS, DEFAULT_RANDOM_FEATURES, resolve_method
from ..gram import blas_threads_for, gram
from ..errors import NonFiniteError

__all__ = ["MMDTestResult", "mmd", "mmd_test"]

METHODS = ("auto", "exact", "rff", "orf", "nystroem")
TESTS = ("auto", "permutation", "asymptotic")
#: ``mmd_test(method="auto")`` permutes up to this many pooled samples (exact tiles cost
#: O(n²·(d + B)): B = 1,000 permutations ≈ 4·10⁹ extra flops at 2,000), asymptotic beyond.
PERMUTATION_MAX_N = 2_000
#: The permutation labels are held as an n × B int8 matrix: at most this many bytes.
MAX_LABEL_BYTES = 256 * 2**20
#: Rows of *each* sample in the kernel matrix whose spectrum gives the asymptotic null (exact kernels).
NULL_SAMPLE = 500
_PERMUTATION_TAG = 0x3DD  # labels draw from default_rng([seed, tag])
_FEATURE_TAG = 2  # the feature-map stream of the kernel metrics


# ----------------------------------------------------------------------------
# two samples, one pooled input
# ----------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _PoolSource:
    """The two samples behind a pooled input (deterministic repr and dask token)."""

    x: Representation
    y: Representation

    def __repr__(self) -> str:
        return f"pooled({rep_token(self.x)!r}, {rep_token(self.y)!r})"

    def __dask_tokenize__(self) -> Any:
        return ("pooled", content_id(self.x), content_id(self.y))


@dataclass
class PooledRepresentation(Representation):
    """Rows of x (0..n_x−1) followed by rows of y, read lazily from both (never copied)."""

    n_x: int = 0

    @property
    def parts(self) -> tuple[Representation, Representation]:
        return self.source.x, self.source.y

    def _cast(self, a: np.ndarray) -> np.ndarray:
        return a if a.dtype == self.dtype else np.asarray(a, dtype=self.dtype)

    def read(self, start: int, stop: int) -> np.ndarray:
        rx, ry = self.parts
        nx = self.n_x
        pieces = []
        if start < nx:
            pieces.append(self._cast(np.asarray(rx.read(start, min(stop, nx)))))
        if stop > nx:
            pieces.append(self._cast(np.asarray(ry.read(max(start, nx) - nx, stop - nx))))
        return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)

    def take(self, rows: np.ndarray) -> np.ndarray:
        rx, ry = self.parts
        rows = np.asarray(rows)
        a, b = rows[rows < self.n_x], rows[rows >= self.n_x] - self.n_x
        pieces = ([self._cast(np.asarray(rx.take(a)))] if a.size else []) + ([self._cast(np.asarray(ry.take(b)))] if b.size else [])
        return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)


def pooled(x: Any, y: Any) -> PooledRepresentation:
    """The pooled input [x; y]: two samples in the same space (d must match, n may differ)."""
    rx, ry = as_representation(x, "x"), as_representation(y, "y")
    if rx.d != ry.d:
        raise InvalidInputError(
            f"x and y must be samples in the same space, with the same number of features; got x: {rx.d}, "
            f"y: {ry.d} features. MMD compares two distributions on one space (e.g. one layer before and after "
            "fine-tuning). To compare representations of different widths on the same inputs, use hsic() or cka()."
        )
    dtype = rx.dtype if rx.dtype == ry.dtype else np.dtype(np.float64)
    return PooledRepresentation(
        name="x and y (pooled)", shape=(rx.n + ry.n, rx.d), dtype=dtype, kind="pooled",
        source=_PoolSource(rx, ry), native_rows=None, n_x=rx.n,
    )  # fmt: skip


def _checked(block: np.ndarray, start: int, n_x: int) -> np.ndarray:
    """A float64 copy of pooled rows start.. whose errors name x or y and their own row numbers."""
    stop = start + block.shape[0]
    if stop <= n_x:
        return finite_float64(block, "x", start)
    if start >= n_x:
        return finite_float64(block, "y", start - n_x)
    k = n_x - start
    return np.concatenate([finite_float64(block[:k], "x", start), finite_float64(block[k:], "y", 0)])


def _label_block(n_x: int, start: int, stop: int, labels: np.ndarray | None) -> np.ndarray:
    """(rows × L) float64: column 0 marks the rows of x; then the permuted labellings."""
    e0 = (np.arange(start, stop) < n_x).astype(np.float64)[:, None]
    if labels is None:
        return e0
    return np.concatenate([e0, labels[start:stop].astype(np.float64)], axis=1)


def draw_labels(n: int, n_x: int, n_perm: int, seed: int) -> np.ndarray:
    """(n × B) int8: column b marks the n_x rows labelled x by the b-th random relabelling."""
    if n * n_perm > MAX_LABEL_BYTES:
        raise InvalidInputError(
            f"the permutation test holds an n × B matrix of labels: n = {n} pooled samples × B = {n_perm} "
            f"permutations is {n * n_perm / 2**20:.0f} MiB, above the {MAX_LABEL_BYTES // 2**20} MiB allowed. "
            "Use fewer permutations (n_permutations=...), or method='asymptotic'."
        )
    rng = np.random.default_rng([seed, _PERMUTATION_TAG])
    out = np.empty((n, n_perm), dtype=np.int8)
    for b in range(n_perm):  # sequential draws: the labels do not depend on anything else
        out[:, b] = rng.permutation(n) < n_x
    return out


# ----------------------------------------------------------------------------
# exact kernels: tiles over the pooled sample
# ----------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def kernel_tile(d2, a, b, na, nb, code, scale, diagonal, out):  # pragma: no cover - compiled lazily
    """out[i, j] = k(aᵢ, bⱼ) from GEMM squared distances (refined where small); 0 on the diagonal of a diagonal tile."""
    bi, bj = d2.shape
    for i in range(bi):
        for j in range(bj):
            if diagonal and i == j:
                out[i, j] = 0.0
            else:
                out[i, j] = _k(_refined(d2[i, j], a[i], b[j], na[i], nb[j]), code, scale)


def kernel_tile_numpy(a: np.ndarray, b: np.ndarray, code: int, scale: float, diagonal: bool) -> np.ndarray:
    """The numpy twin of :func:`kernel_tile`, from explicit differences (for tests)."""
    d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    k = np.exp(-d2 * scale) if code == KERNEL_CODES["rbf"] else np.exp(-np.sqrt(d2) * scale)
    if diagonal:
        np.fill_diagonal(k, 0.0)
    return k


@dataclass
class PairSums:
    """A = e_bᵀK̃e_b per labelling b (column 0: the observed one) and the pieces of r̃ = K̃1."""

    a: np.ndarray
    rows: dict[int, np.ndarray] = field(default_factory=dict)


def _add(rows: dict[int, np.ndarray], start: int, r: np.ndarray) -> None:
    rows[start] = rows[start] + r if start in rows else r


@dataclass(frozen=True, eq=False)
class PooledTileStatistic:
    """Pair statistic over the pooled sample: off-diagonal kernel sums split by labels."""

    kernel: str
    scale: float
    shift: np.ndarray
    n_x: int
    labels: np.ndarray | None = None

    def _prep(self, block: np.ndarray, start: int) -> tuple[np.ndarray, np.ndarray]:
        z = _checked(block, start, self.n_x)
        z -= self.shift
        return z, np.einsum("ij,ij->i", z, z)

    def partial(self, blocks_i: Sequence[np.ndarray], blocks_j: Sequence[np.ndarray], start_i: int, start_j: int) -> PairSums:
        zi, ni = self._prep(blocks_i[0], start_i)
        diagonal = start_i == start_j
        zj, nj = (zi, ni) if diagonal else self._prep(blocks_j[0], start_j)
        k = np.empty((zi.shape[0], zj.shape[0]))
        kernel_tile(sqdist(zi, zj, ni, nj), zi, zj, ni, nj, KERNEL_CODES[self.kernel], self.scale, diagonal, k)
        ei = _label_block(self.n_x, start_i, start_i + zi.shape[0], self.labels)
        ej = ei if diagonal else _label_block(self.n_x, start_j, start_j + zj.shape[0], self.labels)
        a = np.einsum("il,il->l", ei, k @ ej)
        state = PairSums(a=a if diagonal else 2.0 * a)
        _add(state.rows, start_i, k.sum(axis=1))
        if not diagonal:
            _add(state.rows, start_j, k.sum(axis=0))
        return state

    def combine(self, a: PairSums, b: PairSums) -> PairSums:
        rows = dict(a.rows)
        for s, r in b.rows.items():
            _add(rows, s, r)
        return PairSums(a=a.a + b.a, rows=rows)

    def finalize(self, state: PairSums) -> tuple[np.ndarray, np.ndarray]:
        return state.a, np.concatenate([state.rows[s] for s in sorted(state.rows)])


# ----------------------------------------------------------------------------
# explicit features (linear, rff/orf, Nyström): one row-block pass
# ----------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Features:
    """φ(x) = map(x) − offset, or x − shift for the linear kernel (MMD is invariant to both shifts)."""

    fmap: Any
    shift: np.ndarray
    offset: np.ndarray | None = None

    def __call__(self, z: np.ndarray) -> np.ndarray:
        phi = z - self.shift if self.fmap is None else self.fmap(z)
        if self.offset is not None:
            phi -= self.offset
        return phi


@dataclass(frozen=True, eq=False)
class _Stacked:
    """[full map | m/2 map | m/4 map] (Nyström with nested landmark prefixes m, m/2, m/4) as one map."""

    maps: tuple[Any, ...]

    def __call__(self, z: np.ndarray) -> np.ndarray:
        return np.concatenate([f(z) for f in self.maps], axis=1)


@dataclass
class FeatureSums:
    n: int
    s: np.ndarray  # (D, L)  Φᵀe_b
    q: np.ndarray  # (G, L)  Σ_{rows with e_b} ‖φ_g‖²
    s_all: np.ndarray  # (D,)
    q_all: np.ndarray  # (G,)
    cx: np.ndarray | None = None  # Σ_{x rows} φφᵀ (asymptotic null only)
    cy: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class PooledFeatureStatistic:
    """Row-block statistic over the pooled sample: feature sums per labelling and group."""

    features: _Features
    bounds: np.ndarray
    n_x: int
    labels: np.ndarray | None = None
    second_moments: int = 0  # accumulate Σφφᵀ per sample over the first this-many features

    def partial(self, blocks: Sequence[np.ndarray], start: int) -> FeatureSums:
        z = _checked(blocks[0], start, self.n_x)
        phi = self.features(z)
        q = np.add.reduceat(phi * phi, self.bounds[:-1], axis=1)
        e = _label_block(self.n_x, start, start + z.shape[0], self.labels)
        out = FeatureSums(n=z.shape[0], s=phi.T @ e, q=q.T @ e, s_all=phi.sum(axis=0), q_all=q.sum(axis=0))
        if self.second_moments:
            k = max(0, min(z.shape[0], self.n_x - start))
            p = phi[:, : self.second_moments]
            out.cx, out.cy = p[:k].T @ p[:k], p[k:].T @ p[k:]
        return out

    def combine(self, a: FeatureSums, b: FeatureSums) -> FeatureSums:
        both = a.cx is not None
        return FeatureSums(
            n=a.n + b.n, s=a.s + b.s, q=a.q + b.q, s_all=a.s_all + b.s_all, q_all=a.q_all + b.q_all,
            cx=a.cx + b.cx if both else None, cy=a.cy + b.cy if both else None,
        )  # fmt: skip

    def finalize(self, state: FeatureSums) -> FeatureSums:
        return state


def _block_sums(v: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    return np.add.reduceat(v, bounds[:-1], axis=0)


def feature_group_terms(fs: FeatureSums, bounds: np.ndarray, n_x: int, n_y: int, col: int = 0) -> np.ndarray:
    """(3, G): per group, Σ_{i≠j} k over x pairs, over y pairs, Σ k over (x, y) pairs (labelling ``col``)."""
    sx = fs.s[:, col]
    sy = fs.s_all - sx
    qx = fs.q[:, col]
    qy = fs.q_all - qx
    return np.stack([_block_sums(sx * sx, bounds) - qx, _block_sums(sy * sy, bounds) - qy, _block_sums(sx * sy, bounds)])


def residual_fractions(fs: FeatureSums, offset: np.ndarray | None, bounds: np.ndarray) -> np.ndarray:
    """(G,): ρ = 1 − Σᵢ ‖φ_g(zᵢ)‖² / n of each map g over the pooled sample (k(z, z) = 1: rbf, laplacian).

    The pass accumulates the features less a fixed offset c (the subsample mean),
    q = Σᵢ ‖φᵢ − c‖² and s = Σᵢ (φᵢ − c); hence Σᵢ ‖φᵢ‖² = q + 2·cᵀs + n‖c‖² per map.
    For a Nyström map it is tr K̃ = tr(K_nZ W⁺ K_Zn), so ρ is the fraction of tr K = n
    its landmarks miss (:func:`~bigalign.metrics._kernel_approx.residual_fraction`).
    """
    n = fs.n
    raw = fs.q_all.astype(np.float64)
    if offset is not None:
        raw = raw + _block_sums(2.0 * offset * fs.s_all + n * offset * offset, bounds)
    return 1.0 - raw / n


def feature_all_labellings(fs: FeatureSums, n_x: int) -> np.ndarray:
    """(3, L): the same three sums, all groups together, for every labelling."""
    sy = fs.s_all[:, None] - fs.s
    qx = fs.q.sum(axis=0)
    qy = fs.q_all.sum() - qx
    return np.stack([np.einsum("dl,dl->l", fs.s, fs.s) - qx, np.einsum("dl,dl->l", sy, sy) - qy, np.einsum("dl,dl->l", fs.s, sy)])


# ----------------------------------------------------------------------------
# sums -> estimates
# ----------------------------------------------------------------------------


def mmd_from_sums(kxx: Any, kyy: Any, kxy: Any, dx: Any, dy: Any, n_x: int, n_y: int, estimator: str) -> Any:
    """MMD² from off-diagonal within-sample sums, cross sums and the diagonal sums Σk(xᵢ, xᵢ), Σk(yᵢ, yᵢ)."""
    if estimator == "unbiased":
        return kxx / (n_x * (n_x - 1)) + kyy / (n_y * (n_y - 1)) - 2.0 * kxy / (n_x * n_y)
    return (kxx + dx) / n_x**2 + (kyy + dy) / n_y**2 - 2.0 * kxy / (n_x * n_y)


@dataclass
class _Estimate:
    value: float
    mean_kxx: float
    mean_kyy: float
    mean_kxy: float
    stderr: float | None
    method: str
    parameters: dict[str, Any]
    null_values: np.ndarray | None = None  # MMD² under each permuted labelling
    weights: np.ndarray | None = None  # eigenvalues of C_x/n_x + C_y/n_y (asymptotic null)
    flags: tuple[str, ...] = ()  # Nyström: "nystroem_not_converged"


def _bandwidth(bandwidth: Any, zs: np.ndarray, func: str) -> tuple[float, float | None]:
    """(σ, median or None when not needed and undefined)."""
    if isinstance(bandwidth, str):
        if bandwidth != "median":
            raise InvalidInputError(f"the 'bandwidth' parameter of {func} must be 'median' or a positive number; got {bandwidth!r} instead.")
        med = median_bandwidth(zs, "x and y (pooled)")
        return med, med
    if isinstance(bandwidth, (tuple, list)):
        raise InvalidInputError(
            f"the 'bandwidth' parameter of {func} must be one number or 'median': x and y live in the same space "
            f"and share one kernel; got {bandwidth!r}."
        )
    sigma = check_bandwidth(bandwidth, "x and y")
    try:
        return sigma, median_bandwidth(zs, "x and y (pooled)")
    except DegenerateInputError:
        return sigma, None


def _estimate(func: str, x: Any, y: Any, **kw: Any) -> _Estimate:
    """The MMD² estimate (and, for the tests, the permuted values or the null weights).

    Small problems run BLAS on one thread (as :func:`bigalign.stats.hsic_test`: thread
    wake-ups cost more than the products, and on a loaded machine far more).
    """
    rx, ry = as_representation(x, "x"), as_representation(y, "y")
    with blas_threads_for((rx.n + ry.n) * (rx.d + 1 + int(kw.get("n_perm", 0))) + NULL_SAMPLE**2 * bool(kw.get("null"))):
        return _estimate_body(func, x, y, **kw)


def _sample_named(z: "PooledRepresentation", m: int, seed: int) -> np.ndarray:
    """The seeded pooled subsample; a non-finite value is reported with its input (x or y) and row."""
    try:
        return sample_rows([z], m, seed)[1][0]
    except NonFiniteError:
        for rep in z.parts:  # only on the error path: name the real rows, block by block
            rows = max(1, (64 * 2**20) // (8 * rep.d))
            for s in range(0, rep.n, rows):
                finite_float64(rep.read(s, min(rep.n, s + rows)), rep.name, s)
        raise  # pragma: no cover - the scan above raises first


def _estimate_body(
    func: str, x: Any, y: Any, *, kernel: str, bandwidth: Any, estimator: str, method: str, n_features: int | None,
    seed: int, engine_kw: dict[str, Any], n_perm: int = 0, null: bool = False,
) -> _Estimate:  # fmt: skip
    check_choice(func, "kernel", kernel, KERNELS)
    check_choice(func, "estimator", estimator, ESTIMATORS)
    check_choice(func, "method", method, METHODS)
    seed = check_int(func, "seed", seed, 0)
    if n_features is not None:
        n_features = check_int(func, "n_features", n_features, 2)
    z = pooled(x, y)
    n_x, n = z.n_x, z.n
    n_y = n - n_x
    low = 2 if estimator == "unbiased" else 1
    if n_x < low or n_y < low:
        raise InvalidInputError(
            f"{func} with estimator={estimator!r} needs at least {low} samples in each of x and y; got n_x = {n_x}, "
            f"n_y = {n_y}. Pass more samples" + (" or estimator='biased'." if low == 2 else ".")
        )
    ekw = {k: v for k, v in engine_kw.items() if v is not None}
    zs = _sample_named(z, BANDWIDTH_SAMPLE, seed)
    shift = zs.mean(axis=0)
    params: dict[str, Any] = {"kernel": kernel, "n_x": n_x, "n_y": n_y, "seed": seed}
    labels = draw_labels(n, n_x, n_perm, seed) if n_perm else None
    if kernel == "linear":
        if method not in ("auto", "exact"):
            raise InvalidInputError(
                f"method={method!r} approximates non-linear kernels; with kernel='linear' {func} is exact at any n "
                "(the mean difference). Use method='auto' (or 'exact'), or kernel='rbf'."
            )
        check_applies(func, "the linear kernel", bandwidth=(bandwidth, "median"), n_features=(n_features, None))
        feats = _Features(None, shift)
        bounds = np.array([0, z.d], dtype=np.int64)
        return _feature_estimate(z, feats, bounds, "exact-streaming", params, estimator, labels, null, z.d, ekw, "exact")
    sigma, med = _bandwidth(bandwidth, zs, func)
    params.update(bandwidth=sigma, median=med, bandwidth_sample=int(zs.shape[0]))
    ratio = 0.0 if med is None else sigma / med  # no median (all rows equal): never Nystroem
    chosen, reason = resolve_method(method, n, ratio, n_label="n_x + n_y")
    params["method_reason"] = reason
    if method == "exact":  # requested (under "auto" it applies whenever the road is approximate)
        check_applies(func, "method='exact'", n_features=(n_features, None))
    if chosen == "exact":
        return _tile_estimate(z, kernel, sigma, shift, params, estimator, labels, null, zs, seed, ekw)
    if chosen in ("rff", "orf"):
        D = int(n_features or DEFAULT_RANDOM_FEATURES)
        if D < 6 or D % 2:
            raise InvalidInputError(
                f"n_features for {chosen} counts feature columns (cos and sin of each frequency), so it must be an even "
                f"number >= 6 (3 groups of frequencies for the jackknife); got {n_features!r}."
            )
        rng = np.random.default_rng([seed, _FEATURE_TAG, 0])
        fmap = draw_random_fourier(kernel, z.d, D // 2, sigma, shift, rng, orthogonal=chosen == "orf")
        if fmap.n_groups < 3:
            raise InvalidInputError(
                f"n_features = {D} gives {D // 2} frequencies, which split into only {fmap.n_groups} equal groups; the "
                "jackknife needs >= 3. Use a multiple of 6 or of 64 (e.g. 2048)."
            )
        feats = _Features(fmap, shift, fmap(zs).mean(axis=0))
        params.update(n_features=D, n_groups=fmap.n_groups, stderr="jackknife over feature groups")
        return _feature_estimate(z, feats, fmap.bounds, chosen, params, estimator, labels, null, D, ekw, "groups")
    m = min(int(n_features or DEFAULT_LANDMARKS), n)
    if m < 4:
        raise InvalidInputError(f"n_features (landmarks) for nystroem must be >= 4; got {n_features!r}.")
    lands = _sample_named(z, m, seed + 1)
    order = np.random.default_rng([seed, 3]).permutation(m)  # prefixes of it: uniform subsets
    levels = (m, m // 2, m // 4)  # nested: each map's landmarks contain the next one's (error estimate)
    maps = tuple(draw_nystroem(kernel, lands[order][:size], sigma, shift) for size in levels)
    stacked = _Stacked(maps)
    feats = _Features(stacked, shift, stacked(zs).mean(axis=0))
    bounds = np.concatenate([[0], np.cumsum([f.n_features for f in maps])]).astype(np.int64)
    params.update(n_features=m, rank=maps[0].n_features, landmarks="uniform without replacement (pooled sample)",
                  landmark_levels=list(levels), stderr=NYSTROEM_STDERR)  # fmt: skip
    return _feature_estimate(z, feats, bounds, "nystroem", params, estimator, labels, null, maps[0].n_features, ekw, "levels")


def _feature_estimate(
    z: PooledRepresentation, feats: _Features, bounds: np.ndarray, method: str, params: dict[str, Any], estimator: str,
    labels: np.ndarray | None, null: bool, width: int, ekw: dict[str, Any], error: str,
) -> _Estimate:  # fmt: skip
    n_x, n_y = z.n_x, z.n - z.n_x
    stat = PooledFeatureStatistic(feats, bounds, n_x, labels, width if null else 0)
    kw = feature_engine_kwargs(ekw, [z], int(bounds[-1]) + (labels.shape[1] if labels is not None else 0), 0)
    fs, plan = run(stat, [z], names=["x and y (pooled)"], check_pairing=False, **kw)
    params.update(block_size=plan.block_rows, n_blocks=plan.n_blocks, scheduler=plan.scheduler)
    g = feature_group_terms(fs, bounds, n_x, n_y)  # (3, G)
    qx, qy = fs.q[:, 0], fs.q_all - fs.q[:, 0]
    per = mmd_from_sums(g[0], g[1], g[2], qx, qy, n_x, n_y, estimator)  # (G,)
    stderr = None
    flags: tuple[str, ...] = ()
    if error == "groups":
        G = per.size
        value = float(per.sum())
        reps = G / (G - 1) * (value - per)
        stderr = jackknife_se(reps)
        sums = g.sum(axis=1)
    elif error == "levels":
        # per = MMD² of the nested maps (m, m/2, m/4 landmarks); ρ from their traces; MMD² = 0 without landmarks
        value = float(per[0])
        rho = residual_fractions(fs, feats.offset, bounds)
        stderr = nystroem_stderr([float(v) for v in per], [float(r) for r in rho], zero=0.0)
        params["residual_trace_fraction"] = float(rho[0])
        if rho[0] > NYSTROEM_MAX_RESIDUAL:
            flags += ("nystroem_not_converged",)
        sums = g[:, 0]
    else:
        value = float(per.sum())
        sums = g.sum(axis=1)
    est = _Estimate(value, sums[0] / (n_x * (n_x - 1)) if n_x > 1 else 0.0, sums[1] / (n_y * (n_y - 1)) if n_y > 1 else 0.0,
                    sums[2] / (n_x * n_y), stderr, method, params, flags=flags)  # fmt: skip
    if labels is not None:
        if error == "levels":  # the permutation null of the full map only (group 0: its first `width` columns)
            cols = slice(0, width)
            sub = FeatureSums(fs.n, fs.s[cols], fs.q[:1], fs.s_all[cols], fs.q_all[:1])
        else:
            sub = fs
        a = feature_all_labellings(sub, n_x)
        qx_all = sub.q.sum(axis=0)
        est.null_values = mmd_from_sums(a[0], a[1], a[2], qx_all, sub.q_all.sum() - qx_all, n_x, n_y, estimator)[1:]
    if null:
        sx = fs.s[:width, 0]
        sy = fs.s_all[:width] - sx
        cov_x = (fs.cx - np.outer(sx, sx) / n_x) / (n_x - 1)
        cov_y = (fs.cy - np.outer(sy, sy) / n_y) / (n_y - 1)
        est.weights = np.linalg.eigvalsh(cov_x / n_x + cov_y / n_y)
    return est


def _tile_estimate(
    z: PooledRepresentation, kernel: str, sigma: float, shift: np.ndarray, params: dict[str, Any], estimator: str,
    labels: np.ndarray | None, null: bool, zs: np.ndarray, seed: int, ekw: dict[str, Any],
) -> _Estimate:  # fmt: skip
    n_x, n = z.n_x, z.n
    n_y = n - n_x
    stat = PooledTileStatistic(kernel, kernel_scale(kernel, sigma), shift, n_x, labels)
    (a, r), plan = run_pairs(stat, [z], names=["x and y (pooled)"], check_pairing=False,
                             **ekw)  # fmt: skip
    params.update(block_size=plan.block_rows, n_tiles=plan.n_blocks * (plan.n_blocks + 1) // 2, scheduler=plan.scheduler)
    t = float(r.sum())
    rx = float(r[:n_x].sum())
    kxx, kxy = float(a[0]), rx - float(a[0])
    kyy = t - 2.0 * rx + float(a[0])
    value = float(mmd_from_sums(kxx, kyy, kxy, n_x, n_y, n_x, n_y, estimator))  # k(z, z) = 1: diagonal sums n_x, n_y
    est = _Estimate(value, kxx / (n_x * (n_x - 1)) if n_x > 1 else 0.0, kyy / (n_y * (n_y - 1)) if n_y > 1 else 0.0,
                    kxy / (n_x * n_y), None, "exact-tiles", params)  # fmt: skip
    if labels is not None:
        ab = a[1:]
        rb = labels.T.astype(np.float64) @ r
        est.null_values = mmd_from_sums(ab, t - 2.0 * rb + ab, rb - ab, n_x, n_y, n_x, n_y, estimator)
    if null:
        est.weights = _gram_null_weights(z, kernel, sigma, shift, seed)
        params.update(null_sample=f"<= {NULL_SAMPLE} rows of each sample")
    return est


def _gram_null_weights(z: PooledRepresentation, kernel: str, sigma: float, shift: np.ndarray, seed: int) -> np.ndarray:
    """Eigenvalues of C_x/n_x + C_y/n_y from the block-centred kernel matrix of a subsample.

    With φ̃ᵢ centred within its own sample and wᵢ = 1/((m_s − 1)n_s) for a row of
    sample s (m_s rows subsampled of n_s), C = Σᵢ wᵢφ̃ᵢφ̃ᵢᵀ has the non-zero
    eigenvalues of W^{1/2} K̃ W^{1/2}, K̃ the kernel matrix centred blockwise.
    """
    rx, ry = z.parts
    parts, ws, sizes = [], [], []
    for k, rep in enumerate((rx, ry)):
        _, (s,) = sample_rows([rep], NULL_SAMPLE, seed + 7 + k)
        parts.append(finite_float64(s, rep.name, 0) - shift)
        sizes.append(s.shape[0])
        ws.append(np.full(s.shape[0], 1.0 / ((max(s.shape[0], 2) - 1) * rep.n)))
    kmat = gram(np.concatenate(parts), kernel, sigma)
    np.fill_diagonal(kmat, 1.0)  # k(z, z) = 1
    cuts = [0, sizes[0], sizes[0] + sizes[1]]
    proj = np.zeros_like(kmat)  # block centring P = I − blockdiag(11ᵀ/m_s)
    np.fill_diagonal(proj, 1.0)
    for a, b in zip(cuts[:-1], cuts[1:]):
        proj[a:b, a:b] -= 1.0 / (b - a)
    kc = proj @ kmat @ proj
    sw = np.sqrt(np.concatenate(ws))
    m = sw[:, None] * kc * sw[None, :]
    return np.linalg.eigvalsh((m + m.T) / 2.0)


# ----------------------------------------------------------------------------
# the weighted chi-square tail (Imhof 1961)
# ----------------------------------------------------------------------------


def weighted_chi2_sf(q: float, weights: np.ndarray) -> float:
    """P(Σ λ_l z_l² > q) for z_l iid N(0, 1) and λ_l ≥ 0, by Imhof's inversion formula.

    P = ½ + (1/π) ∫₀^∞ sin θ(u) / (u ρ(u)) du, θ(u) = ½Σ atan(λu) − ½qu,
    ρ(u) = Π(1 + λ²u²)^{1/4}.  Weights below 10⁻¹²·max are rounding and
    dropped (and negative ones, which a PSD spectrum has only by rounding).
    The integral is split at u = c = min(4/λ_max, 40π/q) (at most ~10
    oscillations): an adaptive rule on [0, c], and QAWF Fourier integrals beyond (sin(φ − au) = sin φ cos au − cos φ sin au with
    a = q/2 and the smooth φ(u) = ½Σ atan(λu)).
    """
    from scipy.integrate import quad

    w = np.asarray(weights, dtype=np.float64)
    if w.size == 0 or not np.max(w) > 0:
        return 1.0 if q < 0 else 0.0
    w = w[w > 1e-12 * np.max(w)]
    if q <= 0:
        return 1.0
    wmax = float(w.max())
    u0 = 1.0 / wmax

    def phi(u: float) -> float:
        return 0.5 * float(np.sum(np.arctan(w * u)))

    def rho(u: float) -> float:
        return math.exp(0.25 * float(np.sum(np.log1p((w * u) ** 2))))

    def full(u: float) -> float:
        if u == 0.0:
            return 0.5 * float(w.sum()) - 0.5 * q
        return math.sin(phi(u) - 0.5 * q * u) / (u * rho(u))

    c = min(4.0 * u0, 40.0 * math.pi / q)  # at most ~10 oscillations of sin(qu/2) in the head
    head = quad(full, 0.0, c, limit=500, epsabs=1e-12, epsrel=1e-10, full_output=1)[0]
    a = 0.5 * q
    t1 = quad(lambda u: math.sin(phi(u)) / (u * rho(u)), c, np.inf, weight="cos", wvar=a, limlst=200, full_output=1)[0]
    t2 = quad(lambda u: math.cos(phi(u)) / (u * rho(u)), c, np.inf, weight="sin", wvar=a, limlst=200, full_output=1)[0]
    p = 0.5 + (head + t1 - t2) / math.pi
    return float(min(1.0, max(0.0, p)))


# ----------------------------------------------------------------------------
# public façades
# ----------------------------------------------------------------------------

_MMD_KERNEL_DOC = """kernel : {"rbf", "laplacian", "linear"}, default="rbf"
        rbf: exp(−‖x−x'‖²/(2σ²)); laplacian: exp(−‖x−x'‖/σ); linear: xᵀx'
        (MMD² is then the squared distance of the means).
    bandwidth : "median" or float, default="median"
        σ, one for both samples (they share the space).  ``"median"``: the
        median pairwise distance of a seeded subsample of 1,000 rows of the
        pooled sample, fixed once and written on the result.
    estimator : {"unbiased", "biased"}, default="unbiased"
        ``"unbiased"``: the U-statistic MMD²_u (can be negative; needs
        n_x, n_y ≥ 2).  ``"biased"``: the V-statistic ‖μ̂_x − μ̂_y‖²."""


def _with_mmd_doc(func: Any) -> Any:
    func.__doc__ = func.__doc__.replace("    {mmd_kernel}\n", "    " + _MMD_KERNEL_DOC + "\n")
    return func


@_with_mmd_doc
@with_engine_doc
def mmd(
    x: Any,
    y: Any,
    /,
    *,
    kernel: Literal["rbf", "laplacian", "linear"] = "rbf",
    bandwidth: Any = "median",
    estimator: Literal["unbiased", "biased"] = "unbiased",
    method: Literal["auto", "exact", "rff", "orf", "nystroem"] = "auto",
    n_features: int | None = None,
    seed: int = 0,
    block_size: int | None = None,
    scheduler: Any = None,
    client: Any = None,
    num_workers: int | None = None,
    memory_per_worker: int | None = None,
) -> Result:
    """Squared maximum mean discrepancy between two samples in the same space.

    MMD² = ‖μ_P − μ_Q‖²_H = E k(x, x') + E k(y, y') − 2 E k(x, y), for a
    sample x (n_x rows) of P and a sample y (n_y rows) of Q — e.g. one layer's
    activations before and after fine-tuning, or of two checkpoints, on
    (possibly different) inputs.  Zero iff P = Q for characteristic kernels
    (rbf, laplacian); for the linear kernel, iff the means agree.

    Parameters
    ----------
    x, y : array-like of shape (n_x, d), (n_y, d)
        numpy, dask or zarr arrays or store layers with the same number of
        features d; n_x and n_y may differ, and the rows are not paired.
    {mmd_kernel}
    method : {"auto", "exact", "rff", "orf", "nystroem"}, default="auto"
        linear: always exact (streamed means).  rbf/laplacian: ``"exact"``
        tiles over the pooled sample (O((n_x + n_y)²·d) time, O(n + tile)
        memory), or one streaming pass over random Fourier features
        (``"rff"``), orthogonal random features (``"orf"``) or Nyström
        landmarks from the pooled sample (``"nystroem"``); one map serves
        both samples.  ``"auto"``: exact for n_x + n_y ≤ 20,000; beyond,
        Nyström when bandwidth ≥ 0.5 × median, else ORF.
    n_features : int, optional
        Feature columns for rff/orf (even; default 2048) or landmarks for
        nystroem (default 1024).
    seed : int, default=0
        Seeds the bandwidth subsample, the feature map and the landmarks.
    {engine}

    Returns
    -------
    Result
        ``metric="mmd"``, ``value`` = the MMD² estimate; ``terms``:
        ``mean_kxx``, ``mean_kyy`` (off-diagonal means), ``mean_kxy``;
        ``n_samples`` = n_x + n_y (``parameters`` has n_x, n_y); ``stderr``
        for rff/orf (jackknife over feature groups) and Nyström (extrapolated
        over nested landmark levels in the missed trace fraction
        ``parameters["residual_trace_fraction"]``; above 0.5 the result is
        flagged ``"nystroem_not_converged"``).  A negative unbiased estimate
        carries the flag ``"negative_unbiased_estimate"``.

    Raises
    ------
    InvalidInputError
        Different numbers of features, too few samples, a bad option.
    NonFiniteError
        NaN or infinite values (the message names x or y and its rows).
    DegenerateInputError
        The median bandwidth is 0 (more than half of the pooled rows identical).

    Notes
    -----
    Estimators, methods and costs: :mod:`bigalign.metrics.mmd`.  rff/orf
    MMD² is unbiased for the exact MMD² given the data (MMD² is linear in
    the kernel), so unlike CKA nothing needs debiasing.  HSIC is the MMD²
    between the joint sample and the product of its marginals under the
    product kernel: MMD²_b(joint, product) = ((n−1)/n)²·HSIC_b (derivation in
    the module docstring, checked in the tests).

    References
    ----------
    Gretton, Borgwardt, Rasch, Schölkopf & Smola, "A kernel two-sample test", JMLR 13 (2012).

    Examples
    --------
    >>> import numpy as np, bigalign
    >>> x = np.array([[0.0], [2.0]]); y = np.array([[1.0], [3.0], [5.0]])
    >>> bigalign.mmd(x, y, kernel="linear", estimator="biased").value   # (1 − 3)²
    4.0
    """
    est = _estimate(
        "mmd", x, y, kernel=kernel, bandwidth=bandwidth, estimator=estimator, method=method, n_features=n_features,
        seed=seed, engine_kw=engine_kwargs(locals()),
    )  # fmt: skip
    return _result(est, estimator)


def _result(est: _Estimate, estimator: str) -> Result:
    flags = est.flags + (("negative_unbiased_estimate",) if est.value < 0 and estimator == "unbiased" else ())
    p = est.parameters
    return Result(
        metric="mmd", value=est.value, estimator=estimator, method=est.method, n_samples=p["n_x"] + p["n_y"],
        terms={"mean_kxx": est.mean_kxx, "mean_kyy": est.mean_kyy, "mean_kxy": est.mean_kxy},
        parameters=p, stderr=est.stderr, flags=flags,
    )  # fmt: skip


@dataclass(frozen=True, repr=False)
class MMDTestResult(TestResult):
    """The outcome of a two-sample test (H0: x and y come from the same distribution).

    A :class:`bigalign.stats.TestResult`: ``value`` is the MMD² estimate
    (``estimator``: unbiased or biased) as :func:`mmd` returns it, ``method``
    the estimation road (as :func:`mmd`'s), ``parameters["null"]`` the null
    (``"permutation"`` or ``"asymptotic"``), ``n_samples`` = n_x + n_y
    (``parameters`` has both), and ``null`` describes the null law: for a
    permutation null ``n_permutations``, ``n_at_least`` and the ``mean`` and
    ``variance`` of the permuted statistics; for the asymptotic one the
    ``distribution`` (weighted χ²), the number of ``weights``, their ``sum``
    and the null ``mean`` and ``variance`` of the statistic.
    """

    __test__ = False


@_with_mmd_doc
@with_engine_doc
def mmd_test(
    x: Any,
    y: Any,
    /,
    *,
    kernel: Literal["rbf", "laplacian", "linear"] = "rbf",
    bandwidth: Any = "median",
    estimator: Literal["unbiased", "biased"] = "unbiased",
    null: Literal["auto", "permutation", "asymptotic"] = "auto",
    n_permutations: int | None = None,
    method: Literal["auto", "exact", "rff", "orf", "nystroem"] = "auto",
    n_features: int | None = None,
    seed: int = 0,
    alpha: float = 0.05,
    block_size: int | None = None,
    scheduler: Any = None,
    client: Any = None,
    num_workers: int | None = None,
    memory_per_worker: int | None = None,
) -> MMDTestResult:
    """Kernel two-sample test: H0 "x and y are samples of the same distribution", with MMD².

    Parameters
    ----------
    x, y : array-like of shape (n_x, d), (n_y, d)
        Two samples in the same space (n_x may differ from n_y).
    {mmd_kernel}
    null : {"auto", "permutation", "asymptotic"}, default="auto"
        The null distribution.  ``"permutation"``: B random relabellings of the pooled sample,
        p = (1 + #{T_b ≥ T})/(1 + B).  ``"asymptotic"``: the weighted-χ² limit
        law Σλ(z² − 1) (unbiased) or Σλz² (biased), λ the eigenvalues of
        C_x/n_x + C_y/n_y, tail by Imhof's formula.  ``"auto"``: permutation
        for n_x + n_y ≤ 2,000 (``PERMUTATION_MAX_N``), asymptotic beyond.
    n_permutations : int, optional
        B (default 1,000); the smallest possible p-value is 1/(B + 1).  Labels
        are held as an (n_x + n_y) × B int8 matrix (at most 256 MiB).  An error
        with ``null="asymptotic"``.
    method : {"auto", "exact", "rff", "orf", "nystroem"}, default="auto"
        The estimation road: how the kernel is represented, as for :func:`mmd`.  With
        exact kernels the asymptotic weights come from a seeded subsample of
        ≤ 500 rows of each sample (``NULL_SAMPLE``); with features, from their
        streamed D×D covariances.  The test is then exact for the approximate
        kernel (Nyström: of the full m-landmark map; a map that misses more
        than half of the kernel's trace is flagged ``"nystroem_not_converged"``).
    n_features : int, optional
        As for :func:`mmd`.
    seed : int, default=0
        Seeds the bandwidth subsample, features, landmarks and permutations.
    alpha : float, default=0.05
        The level of ``result.reject`` (``pvalue < alpha``).
    {engine}

    Returns
    -------
    MMDTestResult

    Raises
    ------
    InvalidInputError, NonFiniteError, DegenerateInputError
        As for :func:`mmd`; too many labels for the permutation test.

    Notes
    -----
    Every permuted statistic comes from the same single pass as the observed
    one: exact tiles add O(n²·B) flops (a GEMM of each kernel tile with the
    label columns), features O(n·D·B).  Measured calibration and power:
    ``tests/test_mmd.py``.

    References
    ----------
    Gretton, Borgwardt, Rasch, Schölkopf & Smola, "A kernel two-sample test", JMLR 13 (2012).
    Gretton, Fukumizu, Harchaoui & Sriperumbudur, "A fast, consistent kernel two-sample test", NIPS 2009.
    Imhof, "Computing the distribution of quadratic forms in normal variables", Biometrika 48 (1961).

    Examples
    --------
    >>> import numpy as np, bigalign
    >>> rng = np.random.default_rng(0)
    >>> r = bigalign.mmd_test(rng.normal(size=(100, 2)), rng.normal(size=(80, 2)) + 1.0, n_permutations=199)
    >>> r.pvalue, r.reject, r.parameters["null"]
    (0.005, True, 'permutation')
    """
    func = "mmd_test"
    if method in TESTS[1:]:
        raise InvalidInputError(
            f"the 'method' parameter of mmd_test names the estimation road {list(METHODS)}; got {method!r}, a null "
            f"distribution. Pass null={method!r} instead (method= picks exact tiles or rff/orf/nystroem features)."
        )
    check_choice(func, "null", null, TESTS)
    check_choice(func, "method", method, METHODS)
    if n_permutations is not None and null == "asymptotic":
        raise InvalidInputError(
            f"n_permutations={n_permutations!r} does not apply to null='asymptotic' (no permutations are drawn). "
            "Drop n_permutations, or use null='permutation'."
        )
    n_perm = check_int(func, "n_permutations", 1000 if n_permutations is None else n_permutations, 1)
    if isinstance(alpha, (bool, np.bool_)) or not isinstance(alpha, (int, float, np.integer, np.floating)) or not 0 < alpha < 1:
        raise InvalidInputError(f"the 'alpha' parameter of {func} must be a number in (0, 1); got {alpha!r} instead.")
    rx, ry = as_representation(x, "x"), as_representation(y, "y")
    n = rx.n + ry.n
    chosen = null if null != "auto" else ("permutation" if n <= PERMUTATION_MAX_N else "asymptotic")
    reason = "requested" if null != "auto" else (
        f"n_x + n_y = {n} <= {PERMUTATION_MAX_N}: permutation" if n <= PERMUTATION_MAX_N else f"n_x + n_y = {n} > {PERMUTATION_MAX_N}: asymptotic"
    )  # fmt: skip
    est = _estimate(
        func, x, y, kernel=kernel, bandwidth=bandwidth, estimator=estimator, method=method, n_features=n_features,
        seed=seed, engine_kw=engine_kwargs(locals()), n_perm=n_perm if chosen == "permutation" else 0,
        null=chosen == "asymptotic",
    )  # fmt: skip
    params = {**est.parameters, "null": chosen, "null_reason": reason}
    if chosen == "permutation":
        params["n_permutations"] = n_perm
    t = est.value
    if chosen == "permutation":
        vals = est.null_values
        assert vals is not None
        scale = abs(est.mean_kxx) + abs(est.mean_kyy) + 2.0 * abs(est.mean_kxy)
        tol = 1e-12 * scale  # rounding: relabellings equal to the observed one in exact arithmetic count as >=
        count = int(np.count_nonzero(vals >= t - tol))
        p = (1.0 + count) / (1.0 + n_perm)
        null = {"distribution": "permutation", "n_permutations": n_perm, "n_at_least": count,
                "mean": float(vals.mean()), "variance": float(vals.var())}  # fmt: skip
    else:
        w = est.weights
        assert w is not None
        w = np.clip(w, 0.0, None)  # a PSD spectrum: negative values are rounding
        total = float(w.sum())
        q = t + total if estimator == "unbiased" else t
        if not total > 0:
            raise DegenerateInputError(
                "the asymptotic null is a point mass: the kernel features do not vary within either sample (constant "
                "samples, or a bandwidth at which every kernel value rounds to 1). Expected varying samples; use "
                "null='permutation' or bandwidth='median'.",
                reason="degenerate_null",
            )
        p = weighted_chi2_sf(q, w)
        null = {"distribution": "weighted chi-square" + (" (centred)" if estimator == "unbiased" else ""),
                "weights": int(np.count_nonzero(w > 1e-12 * w.max())), "sum": total,
                "mean": 0.0 if estimator == "unbiased" else total, "variance": 2.0 * float(np.sum(w * w))}  # fmt: skip
    res = _result(est, estimator)
    return MMDTestResult(
        metric="mmd_test", value=res.value, estimator=estimator, method=res.method, n_samples=res.n_samples,
        terms=res.terms, parameters=params, stderr=res.stderr, flags=res.flags, pvalue=float(min(1.0, p)),
        alpha=float(alpha), null=null,
    )  # fmt: skip
