"""Spectral views of alignment: spectra, the spectral form of kernel alignment, task alignment, KARE.

Notation (docs/formulas.md, "Spectral view"): n paired samples; X (n×d_x),
Y (n×d_y); K = XXᵀ, L = YYᵀ (linear kernels; centred: K = X_cX_cᵀ with X_c
the column-centred rows).  K/n = Σᵢ ηᵢ uᵢuᵢᵀ and L/n = Σⱼ μⱼ vⱼvⱼᵀ; the
non-zero ηᵢ are the eigenvalues of the d_x×d_x covariance A_x = (1/n)X_cᵀX_c,
with uᵢ = X_c wᵢ/√(nηᵢ) for its unit eigenvectors wᵢ.  Hence every spectral
quantity of the n×n kernels is d×d algebra on streamed moments:

* the overlap Cᵢⱼ = ⟨uᵢ, vⱼ⟩ = wᵢᵀ Σ_xy w'ⱼ / √(ηᵢμⱼ), Σ_xy = (1/n)X_cᵀY_c;
* the spectral form KA = ⟨η̂, (C⊙C) μ̂⟩ = Σᵢⱼ η̂ᵢμ̂ⱼCᵢⱼ² (η̂ = η/‖η‖), which
  equals ‖Σ_xy‖²_F/(‖A_x‖_F‖A_y‖_F) = biased linear CKA (centred) or the
  uncentred KA;
* the canonical correlations ρ = the singular values of C (CCA is the SVD of
  the overlap of the two eigenbases), with a ridge: of
  Cᵢⱼ·√(ηᵢμⱼ/((ηᵢ + r_x)(μⱼ + r_y)));
* the target power in the kernel's eigenbasis, ‖uᵢᵀy‖²/n = ‖wᵢᵀΣ_xy‖²/ηᵢ.

Where d is large, a randomized eigendecomposition (:mod:`bigalign.linalg`)
gives the leading eigenpairs in ``n_power_iter + 2`` passes, and rigorous
bounds on everything it did not see.

References
----------
Insulla, Huang & Rosasco, "Towards a Learning Theory of Representation
Alignment", arXiv:2502.14047 — the spectral form.
Halko, Martinsson & Tropp, "Finding structure with randomness", SIAM Review
53 (2011), arXiv:0909.4061 — randomized eigendecomposition.
Canatar, Bordelon & Pehlevan, "Spectral bias and task-model alignment explain
generalization in kernel regression and infinitely wide neural networks",
Nature Communications 12 (2021), arXiv:2006.13198 — cumulative power C(m).
Jacot, Şimşek, Spadaro, Hongler & Gabriel, "Kernel alignment risk estimator:
risk prediction from training data", NeurIPS 2020, arXiv:2006.09796 — KARE.
Cristianini, Shawe-Taylor, Elisseeff & Kandola, "On kernel-target alignment",
NIPS 2001; Cortes, Mohri & Rostamizadeh, "Algorithms for learning kernels
based on centered alignment", JMLR 13 (2012).
Bach & Jordan, "Kernel independent component analysis", JMLR 3 (2002) — Gaussian
mutual information from canonical correlations; Gretton et al., "Kernel
constrained covariance for dependence measurement", AISTATS 2005 — COCO.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Sequence

import numpy as np

from .._checks import check_applies
from ..errors import DegenerateInputError, InvalidInputError
from ..features import BANDWIDTH_SAMPLE, check_bandwidth, draw_nystroem, median_bandwidth, sample_rows
from ..io import Representation, as_representation, check_pairing
from ..linalg import (
    Eigen,
    Subspace,
    applied_cross,
    exact_moments,
    exact_side,
    numerical_rank,
    randomized_sides,
)
from ..result import Result, ResultProtocol, _freeze, _jsonable
from ._common import check_choice, engine_parameters
from ._common import engine_kwargs, with_engine_doc
from ._common import feature_engine_kwargs

__all__ = [
    "KareResult",
    "SpectralAlignmentResult",
    "SpectrumResult",
    "TaskAlignmentResult",
    "kare",
    "spectral_alignment",
    "spectrum",
    "task_alignment",
]

METHODS = ("auto", "exact", "randomized")
SPECTRAL_KERNELS = ("linear", "rbf")
TARGET_TYPES = ("auto", "labels", "regression")
#: ``method="auto"`` accumulates the exact d×d covariance up to this dimension.  Above it the
#: d×d float64 states (≥ 0.5 GiB each, O(log n_blocks) of them alive in the combine tree) and
#: the O(d³) eigensolver outweigh the q + 2 passes of the randomized road on a small machine;
#: (the figure often quoted, d ≲ 2·10⁴, assumes more memory per worker).
EXACT_MAX_D = 8192
DEFAULT_OVERSAMPLES = 10
DEFAULT_POWER_ITER = 2
DEFAULT_LANDMARKS = 1024
#: a canonical correlation within this of 1 is "perfect" (the Gaussian MI is then infinite)
PERFECT_CORRELATION_TOL = 1e-12


# --------------------------------------------------------------------------- #
# option checks
# --------------------------------------------------------------------------- #


def _check_int(func: str, param: str, value: Any, low: int, *, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < low:
        raise InvalidInputError(
            f"the {param!r} parameter of {func} must be an integer >= {low}{' or None' if allow_none else ''}; "
            f"got {value!r} instead."
        )
    return int(value)


def _check_bool(func: str, param: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise InvalidInputError(f"the {param!r} parameter of {func} must be True or False; got {value!r} instead.")
    return bool(value)


def _check_nonneg(func: str, param: str, value: Any) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InvalidInputError(f"the {param!r} parameter of {func} must be a number >= 0; got {value!r} instead.")
    v = float(value)
    if not (math.isfinite(v) and v >= 0):
        raise InvalidInputError(f"the {param!r} parameter of {func} must be a finite number >= 0; got {value!r} instead.")
    return v


def _resolve_method(func: str, method: str, dims: Sequence[int], rank: int | None) -> tuple[str, str]:
    """(method, reason) — the one place ``"auto"`` is decided."""
    check_choice(func, "method", method, METHODS)
    dmax = max(dims)
    if method == "randomized" and rank is None:
        raise InvalidInputError(
            f"{func} with method='randomized' needs rank=... (how many leading eigenpairs to compute); got rank=None. "
            "Pass rank=100 (say), or method='exact' for the whole spectrum."
        )
    if method != "auto":
        if method == "exact" and dmax > EXACT_MAX_D:
            return method, f"requested (d = {dmax} > {EXACT_MAX_D}: the d×d covariance needs {8 * dmax * dmax / 2**30:.1f} GiB per state)"
        return method, "requested"
    if rank is None:
        if dmax > EXACT_MAX_D:
            raise InvalidInputError(
                f"{func} needs rank=... for inputs of {dmax} features (> {EXACT_MAX_D}): the whole spectrum would need "
                f"the {dmax}×{dmax} covariance ({8 * dmax * dmax / 2**30:.1f} GiB per state). Pass rank=100 (say) for the "
                "randomized road, or method='exact' if the memory is there."
            )
        return "exact", "rank=None: the whole spectrum, from the exact d×d covariance (one pass)"
    if dmax <= EXACT_MAX_D:
        return "exact", f"d = {dmax} <= {EXACT_MAX_D}: exact d×d covariance (one pass)"
    return "randomized", f"d = {dmax} > {EXACT_MAX_D}: randomized (HMT) with rank {rank}"


def _check_seed(func: str, seed: Any) -> int:
    return int(_check_int(func, "seed", seed, 0))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- #
# feature maps (rbf = Nyström features) and targets
# --------------------------------------------------------------------------- #


def _nystroem(rep: Representation, bandwidth: Any, n_features: int | None, seed: int, func: str) -> tuple[Any, dict[str, Any]]:
    """The Nyström map of ``rep`` for the rbf kernel, drawn once (seeded) before any pass."""
    _, (xs,) = sample_rows([rep], BANDWIDTH_SAMPLE, seed)
    med = median_bandwidth(xs, rep.name)
    if isinstance(bandwidth, str):
        if bandwidth != "median":
            raise InvalidInputError(f"the 'bandwidth' parameter of {func} must be 'median' or a positive number; got {bandwidth!r}.")
        sigma = med
    else:
        sigma = check_bandwidth(bandwidth, rep.name)
    m = _check_int(func, "n_features", DEFAULT_LANDMARKS if n_features is None else n_features, 2)
    m = min(int(m), rep.n)  # type: ignore[arg-type]
    _, (lands,) = sample_rows([rep], m, seed + 1)
    fmap = draw_nystroem("rbf", lands, sigma, xs.mean(axis=0))
    params = {
        "bandwidth": sigma,
        "median": med,
        "bandwidth_sample": int(xs.shape[0]),
        "feature_map": "nystroem",
        "n_landmarks": m,
        "n_features": int(fmap.n_features),
        "landmarks": "uniform without replacement",
    }
    return fmap, params


def _feature_kw(ekw: dict[str, Any], reps: list[Representation], widths: list[int], mapped: bool) -> dict[str, Any]:
    """Engine options; with a feature map the features, not the inputs, size the blocks."""
    out = {k: v for k, v in ekw.items() if v is not None}
    if not mapped:
        return out
    return feature_engine_kwargs(out, reps, sum(widths), 0)


@dataclass(frozen=True, eq=False)
class OneHot:
    """Map a (rows, 1) block of class codes to one-hot rows over ``classes`` (picklable)."""

    classes: np.ndarray  # sorted float64 class values

    @property
    def n_features(self) -> int:
        return int(self.classes.size)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        codes = np.searchsorted(self.classes, x[:, 0])
        out = np.zeros((x.shape[0], self.classes.size))
        out[np.arange(x.shape[0]), np.minimum(codes, self.classes.size - 1)] = 1.0
        return out


@dataclass
class _Targets:
    rep: Representation
    transform: Any
    kind: str
    dim: int
    classes: list[Any] | None


def _targets(func: str, targets: Any, target_type: str, n: int) -> _Targets:
    """Normalise ``targets`` (labels or regression targets; numpy, dask, zarr or a store layer)."""
    check_choice(func, "target_type", target_type, TARGET_TYPES)
    arr = targets
    if isinstance(arr, (list, tuple)):
        arr = np.asarray(arr)
    if isinstance(arr, np.ndarray) and arr.dtype.kind in "OUSb":
        if arr.dtype.kind == "b":
            arr = arr.astype(np.int64)
        elif target_type == "regression":
            raise InvalidInputError(
                f"targets for target_type='regression' must be numbers; got dtype {arr.dtype}. "
                "Pass numeric targets, or target_type='labels' for class labels."
            )
        else:
            if arr.ndim != 1 and not (arr.ndim == 2 and arr.shape[1] == 1):
                raise InvalidInputError(f"class labels must be one label per sample (shape (n,)); got shape {arr.shape}.")
            names, codes = np.unique(arr.reshape(-1), return_inverse=True)
            rep = as_representation(codes.reshape(-1, 1), "targets")
            return _finish_labels(func, rep, codes.reshape(-1), [_jsonable(v) for v in names], n)
    if isinstance(arr, np.ndarray) and arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    elif hasattr(arr, "ndim") and getattr(arr, "ndim", 2) == 1 and hasattr(arr, "reshape"):
        try:
            arr = arr.reshape(-1, 1)
        except Exception:  # zarr arrays cannot be reshaped lazily: read the n values
            arr = np.asarray(arr[:]).reshape(-1, 1)
    rep = as_representation(arr, "targets")
    if rep.n != n:
        raise InvalidInputError(
            f"x and targets must have the same number of samples; got x: {n} rows, targets: {rep.n} rows. "
            "Pass one target (or one label) per sample, in the same order as x."
        )
    kind = target_type
    if kind == "auto":
        kind = "labels" if rep.dtype.kind in "iub" else "regression"
    if kind == "regression":
        return _Targets(rep=rep, transform=None, kind="regression", dim=rep.d, classes=None)
    if rep.d != 1:
        raise InvalidInputError(
            f"class labels must be one label per sample (shape (n,) or (n, 1)); got {rep.d} columns. For multi-output "
            "regression pass target_type='regression'; for one-hot labels pass the class indices instead."
        )
    values = np.asarray(rep.read(0, n)).astype(np.float64).reshape(-1)  # n numbers: O(n) memory, once
    if not np.isfinite(values).all():
        bad = int(np.flatnonzero(~np.isfinite(values))[0])
        raise InvalidInputError(f"targets hold NaN or infinite labels (first at row {bad}). Expected one class label per sample.")
    return _finish_labels(func, rep, values, None, n)


def _finish_labels(func: str, rep: Representation, values: np.ndarray, names: list[Any] | None, n: int) -> _Targets:
    if rep.n != n:
        raise InvalidInputError(
            f"x and targets must have the same number of samples; got x: {n} rows, targets: {rep.n} rows."
        )
    classes = np.unique(np.asarray(values, dtype=np.float64))
    if classes.size < 2:
        raise DegenerateInputError(
            f"{func}: the targets hold a single class ({names[0] if names else _jsonable(classes[0])!r}), so the centred "
            "target kernel is zero and the alignment is undefined. Expected at least two classes.",
            reason="targets_constant",
        )
    labels = names if names is not None else [int(v) if float(v).is_integer() else float(v) for v in classes]
    return _Targets(rep=rep, transform=OneHot(classes=classes), kind="labels", dim=int(classes.size), classes=labels)


# --------------------------------------------------------------------------- #
# shared maths
# --------------------------------------------------------------------------- #


def _cross_cov(m: Any, i: int, j: int, center: bool) -> np.ndarray:
    """(1/n)X_cᵀY_c (or the uncentred (1/n)XᵀY) from merged moments."""
    M, _ = m.pair(i, j)
    n = m.n
    if center:
        return M / n
    return M / n + np.outer(m.sides[i].mean, m.sides[j].mean)


def _degenerate(func: str, eig: Eigen, name: str, center: bool) -> None:
    if center and eig.constant:
        raise DegenerateInputError(
            f"{func} is undefined: {name} is constant (every sample has the same representation), so its centred "
            f"covariance and kernel are zero. Expected a representation that varies across samples. Drop it, or pass "
            f"center=False for the uncentred (second-moment) spectrum.",
            reason=f"{name}_constant",
        )
    if not center and eig.zero:
        raise DegenerateInputError(
            f"{func} is undefined: {name} is identically zero, so its kernel is zero. Expected a representation with "
            "at least one non-zero value.",
            reason=f"{name}_zero",
        )


def _overlap(G: np.ndarray, eta: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """Cᵢⱼ = Gᵢⱼ/√(ηᵢμⱼ) with G = Wₓᵀ Σ_xy W_y (so ηᵢμⱼCᵢⱼ² = Gᵢⱼ²)."""
    return G / np.sqrt(eta)[:, None] / np.sqrt(mu)[None, :]


def _canonical(G: np.ndarray, eta: np.ndarray, mu: np.ndarray, rx: float, ry: float) -> np.ndarray:
    """Singular values of Gᵢⱼ/√((ηᵢ + r_x)(μⱼ + r_y)) — the (ridge-)canonical correlations."""
    T = G / np.sqrt(eta + rx)[:, None] / np.sqrt(mu + ry)[None, :]
    return np.linalg.svd(T, compute_uv=False)


def _cca_summaries(rho: np.ndarray, structural_one: bool) -> tuple[float | None, float, tuple[str, ...]]:
    """(Gaussian MI or None, Gaussian W₂², flags) from canonical correlations."""
    flags: tuple[str, ...] = ()
    top = float(rho[0]) if rho.size else 0.0
    if top > 1 + 1e-8:  # ‖C‖₂ ≤ 1 exactly: anything beyond rounding is a bug
        raise AssertionError(f"internal error: canonical correlation {top!r} > 1")
    perfect = structural_one or top >= 1 - PERFECT_CORRELATION_TOL
    r = np.minimum(rho, 1.0)  # only rounding (≤ 1e-8) can exceed 1; flagged below when it matters
    w2 = float(np.sum(2.0 * (2.0 - np.sqrt(1.0 + r) - np.sqrt(1.0 - r))))
    if perfect:
        return None, w2, ("canonical_correlation_one",)
    mi = float(-0.5 * np.sum(np.log1p(-(r * r))))
    return mi, w2, flags


def _gaussian_from_moments(metric: str, m: Any, i: int, j: int, parameters: Mapping[str, Any]) -> Result:
    """Gaussian MI or W₂² of inputs i and j from merged moments: the exact road of
    :func:`spectral_alignment` (full numerical rank, no ridge), for :func:`bigalign.compare_layers`."""
    ex, ey = exact_side(m.sides[i], True), exact_side(m.sides[j], True)
    _degenerate(metric, ex, "x", True)
    _degenerate(metric, ey, "y", True)
    dx, dy = m.sides[i].mean.size, m.sides[j].mean.size
    kx, ky = numerical_rank(ex.values, dx), numerical_rank(ey.values, dy)
    G = ex.vectors[:, :kx].T @ _cross_cov(m, i, j, True) @ ey.vectors[:, :ky]
    rho = _canonical(G, ex.values[:kx], ey.values[:ky], 0.0, 0.0)
    mi, w2, flags = _cca_summaries(rho, kx + ky > m.n - 1)
    if metric == "gaussian_mi" and mi is None:
        raise DegenerateInputError(
            f"gaussian_mi is infinite: a canonical correlation is 1 (numerical ranks {kx} + {ky} vs n − 1 = {m.n - 1}, "
            f"largest ρ = {float(rho[0]) if rho.size else 0.0:.15g}), so one representation determines a direction of "
            "the other exactly. Use bigalign.spectral_alignment(x, y, ridge=...) or kmi(..., ridge=...) for a "
            "finite, regularised value.",
            reason="canonical_correlation_one",
        )
    value = mi if metric == "gaussian_mi" else w2
    rank_flags = tuple(f"{nm}_rank_deficient" for k, d, nm in ((kx, dx, "x"), (ky, dy, "y")) if k < d)
    return Result(
        metric=metric, value=float(value), estimator="biased", method="exact-streaming", n_samples=m.n,
        terms={"canonical_correlations_top": float(rho[0]) if rho.size else 0.0, "n_canonical": int(rho.size)},
        parameters={**parameters, "rank_x": int(kx), "rank_y": int(ky)}, flags=tuple(flags) + rank_flags,
    )  # fmt: skip


def gaussian_mi_from_moments(m: Any, i: int, j: int, estimator: str, parameters: Mapping[str, Any]) -> Result:
    """−½ Σ log(1 − ρᵢ²) over the canonical correlations of inputs i and j (``estimator`` ignored: plug-in)."""
    return _gaussian_from_moments("gaussian_mi", m, i, j, parameters)


def gaussian_w2_from_moments(m: Any, i: int, j: int, estimator: str, parameters: Mapping[str, Any]) -> Result:
    """Σ 2(2 − √(1+ρᵢ) − √(1−ρᵢ)), the squared Gaussian W₂ of the whitened joint to the product (plug-in)."""
    return _gaussian_from_moments("gaussian_w2", m, i, j, parameters)


def _alignment_bounds(
    ex: Eigen, ey: Eigen, sx: Subspace, sy: Subspace, SQy: np.ndarray, StQx: np.ndarray
) -> tuple[float, float, float]:
    """(lo, hi, F_known): bounds on the full-rank value ‖Σ_xy‖²_F/(‖A_x‖_F‖A_y‖_F).

    Proof.  Split d_x-space by the computed basis Q_x and its complement Q_x⊥,
    and d_y-space likewise.  Then
        ‖Σ‖²_F = ‖Q_xᵀΣQ_y‖² + ‖Q_xᵀΣQ_y⊥‖² + ‖Q_x⊥ᵀΣQ_y‖² + ‖Q_x⊥ᵀΣQ_y⊥‖²,
    and the first three blocks are known exactly from Q_xᵀΣ and ΣQ_y:
        F_known = ‖Q_xᵀΣ‖² + ‖ΣQ_y‖² − ‖Q_xᵀΣQ_y‖².
    The fourth is (1/n)(X_cQ_x⊥)ᵀ(Y_cQ_y⊥); with ‖PᵀR‖_F ≤ ‖P‖₂‖R‖_F and
    ‖X_cQ_x⊥/√n‖²₂ = ‖C_x‖₂ (C_x = Q_x⊥ᵀA_xQ_x⊥), ‖X_cQ_x⊥/√n‖²_F = tr C_x = t_x:
        0 ≤ ‖Q_x⊥ᵀΣQ_y⊥‖²_F ≤ min(‖C_x‖₂·t_y, t_x·‖C_y‖₂).
    Every term is ≥ 0, and ‖A‖²_F lies in ``frob2_bounds`` [L, U] (exact on the
    exact road; on the randomized road ‖A‖²_F = ‖B‖² + 2‖E‖² + ‖C‖²_F with
    t²/(d − ℓ) ≤ ‖C‖²_F ≤ t², see :mod:`bigalign.linalg`).  Hence
        F_known/√(U_xU_y) ≤ value ≤ (F_known + min(‖C_x‖₂t_y, t_x‖C_y‖₂))/√(L_xL_y).  ∎
    (The same identities hold for the uncentred operators.)
    """
    QtSQ = sx.Q.T @ SQy
    f_known = float(np.vdot(StQx, StQx) + np.vdot(SQy, SQy) - np.vdot(QtSQ, QtSQ))
    unknown = min(sx.tail_norm2_hi * sy.tail_trace, sx.tail_trace * sy.tail_norm2_hi)
    (lx, ux), (ly, uy) = ex.frob2_bounds, ey.frob2_bounds
    lo = f_known / math.sqrt(ux * uy)
    hi = (f_known + unknown) / math.sqrt(lx * ly)
    return lo, hi, f_known


def _readonly(a: Any) -> np.ndarray:
    a = np.array(a, dtype=float, copy=True)
    a.setflags(write=False)
    return a


def _plt() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover
        raise ImportError("plotting needs matplotlib: pip install 'bigalign[plot]'") from exc
    return plt


def _list(a: np.ndarray | None) -> list | None:
    return None if a is None else np.asarray(a).tolist()


# --------------------------------------------------------------------------- #
# spectrum
# --------------------------------------------------------------------------- #


@dataclass(frozen=True, repr=False)
class SpectrumResult(ResultProtocol):
    """The leading eigenpairs of a representation's covariance (or Nyström kernel).

    Follows the result protocol (:class:`bigalign.result.ResultProtocol`):
    ``value`` (and ``float(result)``) is ``effective_dimension``; ``estimator``
    is ``"biased"`` (the 1/n plug-in covariance); ``stderr`` and ``ci`` are None.

    Attributes
    ----------
    eigenvalues : ndarray of shape (rank,)
        Descending eigenvalues of A = (1/n)X_cᵀX_c (``center=True``) or
        (1/n)XᵀX; for ``kernel="rbf"`` of (1/n)Φ_cᵀΦ_c with Φ the Nyström
        features, i.e. the eigenvalues of the (centred) Nyström Gram / n.
    components : ndarray of shape (rank, n_features)
        The unit eigenvectors, one per row (scikit-learn's convention), signs
        fixed so each row's largest-magnitude entry is positive.  For rbf they
        live in the Nyström feature space.
    explained_variance_ratio : ndarray of shape (rank,)
        eigenvalues / tr A (tr A is exact on both roads).
    total_variance : float
        tr A.
    effective_dimension : float
        The participation ratio (Σλ)²/Σλ² = (tr A)²/‖A‖²_F over the *whole*
        spectrum.  Exact on the exact road; on the randomized road an estimate
        (unseen eigenvalues assumed no larger than the smallest Ritz value)
        inside ``effective_dimension_bounds``, which are rigorous.
    effective_dimension_bounds : (float, float)
    residuals : ndarray of shape (rank,)
        ‖Av − λv‖ per eigenpair: each eigenvalue is within its residual of a
        true eigenvalue of A (rounding level on the exact road).
    n_passes : int
        Passes over the data: 1 (exact) or n_power_iter + 2 (randomized).
    numerical_rank : int
        How many of the computed eigenvalues exceed rounding level
        (10·d·ε·λ₁); the rest are reported as computed (they may be ~1e-17 or
        slightly negative) and left out of the plot.
    method : {"exact", "randomized"}
    parameters : mapping
        How ``method="auto"`` decided, oversampling, power iterations, seed,
        kernel parameters, block size, scheduler.
    flags : tuple of str
        ``"numerically_rank_deficient"`` when fewer than ``rank`` eigenvalues
        exceed rounding level (n ≤ d, collinear or constant columns).
    """

    eigenvalues: np.ndarray
    components: np.ndarray
    explained_variance_ratio: np.ndarray
    total_variance: float
    effective_dimension: float
    effective_dimension_bounds: tuple[float, float]
    residuals: np.ndarray
    n_samples: int
    n_features: int
    rank: int
    method: str
    kernel: str
    center: bool
    n_passes: int
    numerical_rank: int
    parameters: Mapping[str, Any] = field(default_factory=dict)
    flags: tuple[str, ...] = ()

    metric = "spectrum"
    estimator = "biased"

    def __post_init__(self) -> None:
        object.__setattr__(self, "parameters", _freeze(self.parameters))
        object.__setattr__(self, "flags", tuple(self.flags))

    @property
    def value(self) -> float:
        """The effective dimension (participation ratio) of the whole spectrum."""
        return float(self.effective_dimension)

    def to_dict(self, *, include_components: bool = False) -> dict[str, Any]:
        """JSON-ready dict (components only on request: they are rank × n_features)."""
        out = {
            **self.protocol_dict(),
            "view": "spectrum",
            "eigenvalues": _list(self.eigenvalues),
            "explained_variance_ratio": _list(self.explained_variance_ratio),
            "total_variance": float(self.total_variance),
            "effective_dimension": float(self.effective_dimension),
            "effective_dimension_bounds": [float(v) for v in self.effective_dimension_bounds],
            "residuals": _list(self.residuals),
            "n_samples": int(self.n_samples),
            "n_features": int(self.n_features),
            "rank": int(self.rank),
            "method": self.method,
            "kernel": self.kernel,
            "center": bool(self.center),
            "n_passes": int(self.n_passes),
            "numerical_rank": int(self.numerical_rank),
            "parameters": {k: _jsonable(v) for k, v in self.parameters.items()},
            "flags": list(self.flags),
        }
        if include_components:
            out["components"] = _list(self.components)
        return out

    def plot(self, ax: Any = None, *, cumulative: bool = True, **line_kw: Any) -> Any:
        """Log–log plot of eigenvalue against index (and the cumulative explained variance)."""
        plt = _plt()
        if ax is None:
            _, ax = plt.subplots(figsize=(5.5, 4))
        lam = np.asarray(self.eigenvalues)[: self.numerical_rank]  # rounding-level values carry no information
        idx = np.arange(1, lam.size + 1)
        ax.loglog(idx, lam, marker="o", ms=2.5, lw=1.2, **line_kw)
        ax.set_xlabel("eigenvalue index i")
        ax.set_ylabel("eigenvalue λᵢ" + (" (Nyström Gram / n)" if self.kernel == "rbf" else ""))
        ax.set_title(
            f"spectrum ({self.method}), n = {self.n_samples}, d = {self.n_features}, eff. dim ≈ {self.effective_dimension:.3g}",
            fontsize=9,
        )
        ax.grid(True, which="both", alpha=0.25)
        if cumulative:
            ax2 = ax.twinx()
            ax2.semilogx(idx, np.cumsum(self.explained_variance_ratio[: lam.size]), color="tab:gray", lw=1, ls="--")
            ax2.set_ylabel("cumulative explained variance", color="tab:gray")
            ax2.set_ylim(0, 1.02)
        return ax

    def __repr__(self) -> str:
        fl = f", flags={list(self.flags)}" if self.flags else ""
        return (
            f"SpectrumResult(rank={self.rank}, λ₁={float(self.eigenvalues[0]):.6g}, effective_dimension="
            f"{self.effective_dimension:.4g}, method={self.method!r}, n_passes={self.n_passes}, n_samples={self.n_samples}{fl})"
        )


@with_engine_doc
def spectrum(
    x: Any,
    /,
    *,
    rank: int | None = None,
    center: bool = True,
    kernel: Literal["linear", "rbf"] = "linear",
    method: Literal["auto", "exact", "randomized"] = "auto",
    n_oversamples: int = DEFAULT_OVERSAMPLES,
    n_power_iter: int = DEFAULT_POWER_ITER,
    bandwidth: Any = "median",
    n_features: int | None = None,
    seed: int = 0,
    block_size: int | None = None,
    scheduler: Any = None,
    client: Any = None,
    num_workers: int | None = None,
    memory_per_worker: int | None = None,
) -> SpectrumResult:
    """Leading eigenvalues and eigenvectors of a representation's covariance, streamed.

    Parameters
    ----------
    x : array-like of shape (n_samples, n_features)
        numpy, dask or zarr array or a store layer.
    rank : int, optional
        Number of leading eigenpairs.  ``None``: all of them (exact road only).
    center : bool, default=True
        Eigenvalues of (1/n)X_cᵀX_c (centred; the PCA spectrum, the eigenvalues
        of HKH/n) or of (1/n)XᵀX (uncentred, the eigenvalues of K/n).
    kernel : {"linear", "rbf"}, default="linear"
        ``"rbf"``: the spectrum of the Nyström-approximated RBF Gram / n,
        i.e. of (1/n)ΦᵀΦ with Φ the Nyström features (``n_features``
        landmarks, default 1024, drawn once from the seed; bandwidth as below).
    method : {"auto", "exact", "randomized"}, default="auto"
        ``"exact"``: accumulate the d×d covariance from merged centred
        moments in one pass and eigendecompose it.  ``"randomized"``:
        Halko–Martinsson–Tropp with ``n_power_iter`` power iterations and
        re-orthonormalisation, ``n_power_iter + 2`` passes, O(d·(rank +
        n_oversamples)) state.  ``"auto"``: exact when the (feature) dimension
        d ≤ 8192 or ``rank=None``, else randomized; the choice and the reason
        are in ``parameters["method_reason"]``.
    n_oversamples : int, default=10
        Extra sketch columns p (sketch width ℓ = rank + p, at most d).
    n_power_iter : int, default=2
        Power iterations q: the sketch spans A^{q+1}Ω.
    bandwidth : "median" or float, default="median"
        RBF bandwidth σ (k = exp(−‖x−x'‖²/(2σ²))); ``"median"``: the median
        pairwise distance of a seeded 1,000-row subsample.
    n_features : int, optional
        Nyström landmarks for ``kernel="rbf"`` (default 1024).
    seed : int, default=0
        Seeds the test matrix Ω and, for rbf, the subsample and landmarks:
        the same seed gives the same result.
    {engine}

    Returns
    -------
    SpectrumResult
        ``.eigenvalues``, ``.components``, ``.explained_variance_ratio``,
        ``.effective_dimension`` (participation ratio), ``.n_passes``,
        ``.residuals``, ``.plot()``.

    Raises
    ------
    InvalidInputError
        Bad options; rank > d; ``method="randomized"`` without a rank; d > 8192
        with ``rank=None``.
    DegenerateInputError
        x constant (``center=True``) or identically zero (``center=False``).
    NonFiniteError
        NaN or infinite values (the message names the rows).

    Notes
    -----
    Exact: O(n·d²) time, O(d²) memory, one pass, O(d³) eigensolver.
    Randomized: (q + 2) passes of 4·n·d·ℓ flops each, O(d·ℓ) memory, each
    pass merged exactly (no separate mean pass; see :mod:`bigalign.linalg`).
    Accuracy: Halko, Martinsson & Tropp (2011), Corollary 10.10 bounds
    E‖(I − QQᵀ)A‖ by [(1 + √(k/(p−1)))λ_{k+1}^m + (e√(k+p)/p)(Σ_{j>k}λ_j^{2m})^{1/2}]^{1/m}
    with m = q + 1 applications of A (for even q), and every Ritz value is
    within 2‖(I − QQᵀ)A‖ of its eigenvalue (their §5.3).

    Examples
    --------
    >>> import numpy as np, bigalign
    >>> x = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 2.0], [0.0, -2.0]])
    >>> s = bigalign.spectrum(x)
    >>> s.eigenvalues.tolist(), s.explained_variance_ratio.tolist()
    ([2.0, 0.5], [0.8, 0.2])
    >>> round(s.effective_dimension, 6)   # (2 + 0.5)² / (4 + 0.25)
    1.470588
    """
    func = "spectrum"
    check_choice(func, "kernel", kernel, SPECTRAL_KERNELS)
    center = _check_bool(func, "center", center)
    rank = _check_int(func, "rank", rank, 1, allow_none=True)
    p = int(_check_int(func, "n_oversamples", n_oversamples, 0))  # type: ignore[arg-type]
    q = int(_check_int(func, "n_power_iter", n_power_iter, 0))  # type: ignore[arg-type]
    seed = _check_seed(func, seed)
    rep = as_representation(x, "x")
    params: dict[str, Any] = {"seed": seed}
    fmap = None
    D = rep.d
    if kernel == "linear":
        check_applies(func, "the linear kernel", bandwidth=(bandwidth, "median"), n_features=(n_features, None))
    if kernel == "rbf":
        fmap, fparams = _nystroem(rep, bandwidth, n_features, seed, func)
        params.update(fparams)
        D = int(fmap.n_features)
    if rank is not None and rank > D:
        raise InvalidInputError(
            f"rank must be at most the number of {'Nyström features' if fmap else 'features'} ({D}); got rank={rank}. "
            f"Pass rank <= {D}{' or more landmarks (n_features=...)' if fmap else ''}."
        )
    chosen, reason = _resolve_method(func, method, [D], rank)
    params["method_reason"] = reason
    ekw = _feature_kw(engine_kwargs(locals()), [rep], [D], fmap is not None)
    if chosen == "exact":
        m, plan = exact_moments([rep], ["x"], (), [fmap], ekw)
        eig = exact_side(m.sides[0], center)
        n_passes = 1
    else:
        ell = min(rank + p, D)  # type: ignore[operator]
        run_ = randomized_sides([rep], ["x"], [D], [ell], n_power_iter=q, seed=seed, center=center, transforms=[fmap], engine_kw=ekw)
        eig, plan, n_passes = run_.eigens[0], run_.plan, run_.n_passes
        params.update(n_oversamples=p, n_power_iter=q, sketch_width=ell)
    params.update(engine_parameters(plan))
    _degenerate(func, eig, "x", center)
    r = D if rank is None else rank
    lam = eig.values[:r]
    flags: list[str] = []
    rnum = min(numerical_rank(eig.values, D), r)
    if rnum < r:
        flags.append("numerically_rank_deficient")
    lo, hi = eig.frob2_bounds
    tr2 = eig.trace * eig.trace
    return SpectrumResult(
        eigenvalues=_readonly(lam),
        components=_readonly(eig.vectors[:, :r].T),
        explained_variance_ratio=_readonly(lam / eig.trace),
        total_variance=float(eig.trace),
        effective_dimension=float(tr2 / eig.frob2),
        effective_dimension_bounds=(float(tr2 / hi), float(tr2 / lo)),
        residuals=_readonly(eig.residuals[:r]),
        n_samples=eig.n,
        n_features=D,
        rank=r,
        method=chosen,
        kernel=kernel,
        center=center,
        n_passes=n_passes,
        numerical_rank=rnum,
        parameters=params,
        flags=tuple(flags),
    )


# --------------------------------------------------------------------------- #
# spectral alignment
# --------------------------------------------------------------------------- #


@dataclass(frozen=True, repr=False)
class SpectralAlignmentResult(ResultProtocol):
    """The spectral decomposition of the (linear-kernel) alignment of x and y.

    Follows the result protocol (:class:`bigalign.result.ResultProtocol`):
    ``estimator`` is ``"biased"`` (at full rank ``value`` is biased linear CKA);
    ``stderr`` and ``ci`` are None (``bounds`` hold the randomized road's error).

    Attributes
    ----------
    value : float
        ⟨η̂, (C⊙C) μ̂⟩ = Σᵢⱼ η̂ᵢμ̂ⱼCᵢⱼ² over the eigenpairs kept (``rank_x`` ×
        ``rank_y``), with η̂ = η/‖η‖ normalised by the norm of the *whole*
        spectrum.  At full rank it is biased linear CKA (``center=True``) or
        the uncentred kernel alignment (``center=False``).
    full_value : float or None
        The full-rank value, exact from the moments (exact road); None on the
        randomized road.
    bounds : (float, float)
        (lo, hi) that contain the full-rank value, from what the computed
        eigenpairs know (see :func:`spectral_alignment`, Notes); lo ≥ value.
    eta, mu : ndarray
        Eigenvalues η of K/n and μ of L/n kept (descending).
    eta_hat, mu_hat : ndarray
        η/‖η‖, μ/‖μ‖ (whole-spectrum norms; estimated on the randomized road).
    overlap : ndarray of shape (rank_x, rank_y)
        C = UᵀV, Cᵢⱼ = ⟨uᵢ, vⱼ⟩ of the unit eigenvectors of K and L.
    contributions : ndarray of shape (rank_x, rank_y)
        η̂ᵢμ̂ⱼCᵢⱼ², the per-eigenpair terms of ``value`` (they sum to it).
    canonical_correlations : ndarray or None
        Descending canonical correlations (with ``ridge``) of the centred
        representations: the singular values of C over the whole numerical
        rank (exact road), or within the leading principal subspaces
        (randomized road; flag ``"canonical_correlations_in_principal_subspaces"``).
    gaussian_mi : float or None
        −½ Σ log(1 − ρᵢ²), the mutual information (nats) of Gaussians with these
        covariances; None when a canonical correlation is 1 (flag
        ``"canonical_correlation_one"``: it is infinite — use a ridge).
    gaussian_wasserstein : float or None
        Σᵢ 2(2 − √(1+ρᵢ) − √(1−ρᵢ)): the *squared* 2-Wasserstein distance between
        the whitened Gaussian joint and the product of its marginals
        (the corrected formula of docs/formulas.md).
    coco : float or None
        The largest singular value of the centred cross-covariance Σ_xy
        (exact road); ``coco_bounds`` contain it on both roads.
    hsic : float or None
        Biased HSIC = Σ s²ᵢ·n²/(n−1)² over the singular values sᵢ of Σ_xy, i.e.
        ``bigalign.hsic(x, y, estimator="biased")`` (exact road).
    """

    value: float
    full_value: float | None
    bounds: tuple[float, float]
    eta: np.ndarray
    mu: np.ndarray
    eta_hat: np.ndarray
    mu_hat: np.ndarray
    overlap: np.ndarray
    rank_x: int
    rank_y: int
    canonical_correlations: np.ndarray | None
    gaussian_mi: float | None
    gaussian_wasserstein: float | None
    coco: float | None
    coco_bounds: tuple[float, float] | None
    hsic: float | None
    ridge: float
    center: bool
    method: str
    n_samples: int
    n_passes: int
    parameters: Mapping[str, Any] = field(default_factory=dict)
    flags: tuple[str, ...] = ()

    metric = "spectral_alignment"
    estimator = "biased"

    def __post_init__(self) -> None:
        object.__setattr__(self, "parameters", _freeze(self.parameters))
        object.__setattr__(self, "flags", tuple(self.flags))
        if not math.isfinite(self.value):  # a bug, not a user error
            raise AssertionError(f"internal error: spectral alignment produced {self.value!r}")

    @property
    def contributions(self) -> np.ndarray:
        return np.outer(self.eta_hat, self.mu_hat) * self.overlap**2

    @property
    def contributions_x(self) -> np.ndarray:
        """Σⱼ η̂ᵢμ̂ⱼCᵢⱼ²: how much each eigenpair of x contributes."""
        return self.contributions.sum(axis=1)

    @property
    def contributions_y(self) -> np.ndarray:
        return self.contributions.sum(axis=0)

    def to_dict(self, *, include_matrices: bool = False) -> dict[str, Any]:
        """JSON-ready dict; the rank_x × rank_y overlap only on request."""
        out = {
            **self.protocol_dict(),
            "view": "spectral_alignment",
            "value": float(self.value),
            "full_value": None if self.full_value is None else float(self.full_value),
            "bounds": [float(v) for v in self.bounds],
            "eta": _list(self.eta),
            "mu": _list(self.mu),
            "eta_hat": _list(self.eta_hat),
            "mu_hat": _list(self.mu_hat),
            "contributions_x": _list(self.contributions_x),
            "contributions_y": _list(self.contributions_y),
            "rank_x": int(self.rank_x),
            "rank_y": int(self.rank_y),
            "canonical_correlations": _list(self.canonical_correlations),
            "gaussian_mi": self.gaussian_mi,
            "gaussian_wasserstein": self.gaussian_wasserstein,
            "coco": self.coco,
            "coco_bounds": None if self.coco_bounds is None else [float(v) for v in self.coco_bounds],
            "hsic": self.hsic,
            "ridge": float(self.ridge),
            "center": bool(self.center),
            "method": self.method,
            "n_samples": int(self.n_samples),
            "n_passes": int(self.n_passes),
            "parameters": {k: _jsonable(v) for k, v in self.parameters.items()},
            "flags": list(self.flags),
        }
        if include_matrices:
            out["overlap"] = _list(self.overlap)
        return out

    def plot(self, ax: Any = None, *, max_components: int = 40, cmap: str = "viridis") -> Any:
        """Heatmap of C⊙C (leading ``max_components`` eigenpairs of each side) with the spectra η̂, μ̂ alongside.

        With ``ax`` given, only the heatmap is drawn there.
        """
        plt = _plt()
        kx, ky = min(max_components, self.rank_x), min(max_components, self.rank_y)
        c2 = self.overlap[:kx, :ky] ** 2
        if ax is None:
            fig = plt.figure(figsize=(6.4, 5.6))
            gs = fig.add_gridspec(2, 2, width_ratios=(1, 4), height_ratios=(1, 4), wspace=0.05, hspace=0.05)
            ax = fig.add_subplot(gs[1, 1])
            top = fig.add_subplot(gs[0, 1], sharex=ax)
            left = fig.add_subplot(gs[1, 0], sharey=ax)
            top.bar(np.arange(ky), self.mu_hat[:ky], color="tab:orange", width=0.9)
            top.set_yscale("log")
            top.set_ylabel("μ̂ⱼ", fontsize=8)
            top.tick_params(labelbottom=False, labelsize=7)
            left.barh(np.arange(kx), self.eta_hat[:kx], color="tab:blue", height=0.9)
            left.set_xscale("log")
            left.invert_xaxis()
            left.set_xlabel("η̂ᵢ", fontsize=8)
            left.tick_params(labelsize=7)
            left.set_ylabel("eigenvector i of K (x)")
            ax.tick_params(labelleft=False)
            top.set_title(
                f"C⊙C (overlap²), {self.method}; value = {self.value:.4g}"
                + (f", bounds [{self.bounds[0]:.4g}, {self.bounds[1]:.4g}]" if self.bounds[1] > self.bounds[0] * (1 + 1e-9) else ""),
                fontsize=9,
            )
        im = ax.imshow(c2, cmap=cmap, vmin=0.0, vmax=max(float(c2.max()), 1e-300), aspect="auto", interpolation="nearest")
        ax.set_xlabel("eigenvector j of L (y)")
        ax.figure.colorbar(im, ax=ax, label="Cᵢⱼ²", fraction=0.046, pad=0.04)
        return ax

    def __repr__(self) -> str:
        fl = f", flags={list(self.flags)}" if self.flags else ""
        b = f", bounds=({self.bounds[0]:.6g}, {self.bounds[1]:.6g})" if self.full_value is None or self.bounds[0] != self.bounds[1] else ""
        return (
            f"SpectralAlignmentResult(value={self.value:.6g}{b}, rank=({self.rank_x}, {self.rank_y}), "
            f"method={self.method!r}, n_samples={self.n_samples}{fl})"
        )


@with_engine_doc
def spectral_alignment(
    x: Any,
    y: Any,
    /,
    *,
    rank: int | None = None,
    center: bool = True,
    ridge: float = 0.0,
    method: Literal["auto", "exact", "randomized"] = "auto",
    n_oversamples: int = DEFAULT_OVERSAMPLES,
    n_power_iter: int = DEFAULT_POWER_ITER,
    seed: int = 0,
    block_size: int | None = None,
    scheduler: Any = None,
    client: Any = None,
    num_workers: int | None = None,
    memory_per_worker: int | None = None,
) -> SpectralAlignmentResult:
    """Why x and y align: the spectral form KA = ⟨η̂, (C⊙C) μ̂⟩ and the canonical correlations.

    Parameters
    ----------
    x, y : array-like of shape (n_samples, n_features_x), (n_samples, n_features_y)
        numpy, dask or zarr arrays or store layers; the same samples in the same order.
    rank : int, optional
        Keep the leading ``rank`` eigenpairs of each side.  ``None``: all
        (the whole numerical rank; exact road).
    center : bool, default=True
        Centred kernels (the value at full rank is biased linear CKA) or
        uncentred (kernel alignment KA).
    ridge : float, default=0.0
        Regularises the canonical correlations for d > n or collinear
        features: ρ are the singular values of
        (Σ_xx + r_xI)^{-1/2}Σ_xy(Σ_yy + r_yI)^{-1/2}, r = ridge·tr Σ (a
        fraction of the total variance, so it is scale free: the same
        relative ridge as :func:`kcc`, :func:`kmi`, :func:`kare` and :func:`stitch`).  Also used
        for the Gaussian MI and Wasserstein measures.
    method : {"auto", "exact", "randomized"}, default="auto"
        As for :func:`spectrum`: exact when max(d_x, d_y) ≤ 8192 or
        ``rank=None``; randomized needs ``rank``.
    n_oversamples, n_power_iter, seed
        The randomized road's sketch (see :func:`spectrum`); x and y share
        its passes: n_power_iter + 2 in all.
    {engine}

    Returns
    -------
    SpectralAlignmentResult
        ``value``, ``full_value``, ``bounds``, ``eta_hat``, ``mu_hat``,
        ``overlap`` (C), ``contributions``, ``canonical_correlations``,
        ``gaussian_mi``, ``gaussian_wasserstein``, ``coco``, ``hsic``, ``.plot()``.

    Raises
    ------
    DegenerateInputError
        x or y constant (``center=True``) or zero (``center=False``).
    InvalidInputError, NonFiniteError, PairingError
        As for :func:`bigalign.cka`.

    Notes
    -----
    With the unit eigenvectors wᵢ of A_x = (1/n)X_cᵀX_c, uᵢ = X_cwᵢ/√(nηᵢ) are
    those of K/n, so Cᵢⱼ = wᵢᵀΣ_xy w'ⱼ/√(ηᵢμⱼ) and ηᵢμⱼCᵢⱼ² = (wᵢᵀΣ_xy w'ⱼ)²:
    the full sum is ‖Σ_xy‖²_F/(‖A_x‖_F‖A_y‖_F), biased CKA, exactly.
    Eigenvalues at rounding level (≤ 10·d·ε·λ₁) are left out of C (their
    eigenvectors are not determined; flag ``"x_rank_deficient"``).

    **Bounds** (proof in ``_alignment_bounds``): with Q_x the computed basis
    (the leading ``rank`` eigenvectors, or all ℓ Ritz vectors on the
    randomized road), t_x = tr A_x − tr(Q_xᵀA_xQ_x) the variance outside it
    and ‖C_x‖₂ its largest eigenvalue outside (≤ t_x),

        F_known = ‖Q_xᵀΣ_xy‖²_F + ‖Σ_xyQ_y‖²_F − ‖Q_xᵀΣ_xyQ_y‖²_F,
        lo = F_known/√(U_xU_y),  hi = (F_known + min(‖C_x‖₂t_y, t_x‖C_y‖₂))/√(L_xL_y),

    where [L, U] ∋ ‖A‖²_F (exact on the exact road).  All quantities come
    from the last pass; the full value always lies in [lo, hi] (up to rounding).

    Randomized road: the canonical correlations are those of the projections
    on the leading ``rank`` principal components (as in SVCCA), and COCO is
    given by its bounds lo = max(‖Q_xᵀΣ‖₂, ‖ΣQ_y‖₂),
    hi = √(‖Q_xᵀΣ‖²₂ + (‖(I − Q_xQ_xᵀ)ΣQ_y‖₂ + √(‖C_x‖₂‖C_y‖₂))²).

    Cost: exact — one pass, O(n·(d_x + d_y)²), plus two dense eigensolvers;
    randomized — n_power_iter + 2 passes, O((d_x + d_y)·ℓ) state.

    Examples
    --------
    >>> import numpy as np, bigalign
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(200, 4))
    >>> y = x @ rng.normal(size=(4, 3)) + 0.5 * rng.normal(size=(200, 3))
    >>> r = bigalign.spectral_alignment(x, y)
    >>> abs(r.value - bigalign.cka(x, y, estimator="biased").value) < 1e-12
    True
    >>> abs(float(r.contributions.sum()) - r.value) < 1e-12   # the per-eigenpair terms sum to the value
    True
    """
    func = "spectral_alignment"
    center = _check_bool(func, "center", center)
    rank = _check_int(func, "rank", rank, 1, allow_none=True)
    p = int(_check_int(func, "n_oversamples", n_oversamples, 0))  # type: ignore[arg-type]
    q = int(_check_int(func, "n_power_iter", n_power_iter, 0))  # type: ignore[arg-type]
    ridge = _check_nonneg(func, "ridge", ridge)
    seed = _check_seed(func, seed)
    rx, ry = as_representation(x, "x"), as_representation(y, "y")
    check_pairing([rx, ry])
    dx, dy = rx.d, ry.d
    chosen, reason = _resolve_method(func, method, [dx, dy], rank)
    params: dict[str, Any] = {"method_reason": reason, "seed": seed}
    ekw = _feature_kw(engine_kwargs(locals()), [rx, ry], [dx, dy], False)
    n = rx.n
    flags: list[str] = []
    if chosen == "exact":
        m, plan = exact_moments([rx, ry], ["x", "y"], [(0, 1)], [None, None], ekw)
        ex, ey = exact_side(m.sides[0], center), exact_side(m.sides[1], center)
        _degenerate(func, ex, "x", center)
        _degenerate(func, ey, "y", center)
        S = _cross_cov(m, 0, 1, center)
        kx, ky = numerical_rank(ex.values, dx), numerical_rank(ey.values, dy)
        for k, d, nm in ((kx, dx, "x"), (ky, dy, "y")):
            if k < d:
                flags.append(f"{nm}_rank_deficient")
        r_x, r_y = (kx, ky) if rank is None else (min(rank, kx), min(rank, ky))
        Wx, Wy = ex.vectors[:, :r_x], ey.vectors[:, :r_y]
        G = Wx.T @ S @ Wy
        eta, mu = ex.values[:r_x], ey.values[:r_y]
        sx, sy = ex.subspace(r_x), ey.subspace(r_y)
        lo, hi, _ = _alignment_bounds(ex, ey, sx, sy, S @ sy.Q, S.T @ sx.Q)
        nx, ny = math.sqrt(ex.frob2), math.sqrt(ey.frob2)
        full = float(np.vdot(S, S)) / (nx * ny)
        # canonical correlations, COCO, HSIC: always of the centred representations
        if center:
            cx, cy, Sc = ex, ey, S
        else:
            cx, cy, Sc = exact_side(m.sides[0], True), exact_side(m.sides[1], True), _cross_cov(m, 0, 1, True)
        if cx.constant or cy.constant:
            rho, mi, w2, coco, coco_b, hs = None, None, None, 0.0, (0.0, 0.0), 0.0
            flags.append("canonical_correlations_undefined_constant_input")
        else:
            ccx, ccy = numerical_rank(cx.values, dx), numerical_rank(cy.values, dy)
            Gc = cx.vectors[:, :ccx].T @ Sc @ cy.vectors[:, :ccy]
            rgx, rgy = ridge * cx.trace, ridge * cy.trace
            rho = _canonical(Gc, cx.values[:ccx], cy.values[:ccy], rgx, rgy)
            structural = ridge == 0 and ccx + ccy > n - 1
            mi, w2, fl = _cca_summaries(rho, structural)
            flags.extend(fl)
            coco = float(np.linalg.norm(Sc, 2))
            coco_b = (coco, coco)
            hs = float(np.vdot(Sc, Sc)) * n * n / ((n - 1) ** 2) if n > 1 else 0.0
        n_passes = 1
        est_norms = (nx, ny)
    else:
        ell_x, ell_y = min(rank + p, dx), min(rank + p, dy)  # type: ignore[operator]
        run_ = randomized_sides(
            [rx, ry], ["x", "y"], [dx, dy], [ell_x, ell_y], n_power_iter=q, seed=seed, center=center,
            crosses=((0, 1), (1, 0)), engine_kw=ekw,
        )  # fmt: skip
        ex, ey = run_.eigens
        _degenerate(func, ex, "x", center)
        _degenerate(func, ey, "y", center)
        Qx, Qy = run_.Qs
        plan, n_passes = run_.plan, run_.n_passes
        SQy = applied_cross(run_.state, 0, 1, Qy, center)  # (1/n)X_cᵀY_cQ_y
        StQx = applied_cross(run_.state, 1, 0, Qx, center)  # (1/n)Y_cᵀX_cQ_x
        Wx, Wy = Qx.T @ ex.vectors, Qy.T @ ey.vectors  # Ritz vectors in the Q bases
        Gall = Wx.T @ (Qx.T @ SQy) @ Wy
        kx, ky = numerical_rank(ex.values, dx), numerical_rank(ey.values, dy)
        r_x, r_y = min(rank, kx), min(rank, ky)  # type: ignore[type-var]
        for k, nm in ((kx, "x"), (ky, "y")):
            if k < rank:  # type: ignore[operator]
                flags.append(f"{nm}_rank_deficient")
        G = Gall[:r_x, :r_y]
        eta, mu = ex.values[:r_x], ey.values[:r_y]
        sx, sy = ex.subspace(rank), ey.subspace(rank)  # type: ignore[arg-type]
        lo, hi, _ = _alignment_bounds(ex, ey, sx, sy, SQy, StQx)
        nx, ny = math.sqrt(ex.frob2), math.sqrt(ey.frob2)
        est_norms = (nx, ny)
        full = None
        if center:
            rgx, rgy = ridge * ex.trace, ridge * ey.trace
            rho = _canonical(G, eta, mu, rgx, rgy)
            mi, w2, fl = _cca_summaries(rho, ridge == 0 and r_x + r_y > n - 1)
            flags.extend(fl)
            flags.append("canonical_correlations_in_principal_subspaces")
            # COCO bounds (see Notes)
            t1 = float(np.linalg.norm(StQx, 2))
            resid = SQy - Qx @ (Qx.T @ SQy)
            c_hi = math.sqrt(t1 * t1 + (float(np.linalg.norm(resid, 2)) + math.sqrt(sx.tail_norm2_hi * sy.tail_norm2_hi)) ** 2)
            coco, coco_b = None, (max(t1, float(np.linalg.norm(SQy, 2))), c_hi)
        else:
            rho, mi, w2, coco, coco_b = None, None, None, None, None
        hs = None
        params.update(n_oversamples=p, n_power_iter=q, sketch_width=[ell_x, ell_y])
    params.update(engine_parameters(plan))
    params["norm_eta"], params["norm_mu"] = est_norms
    value = float(np.vdot(G, G)) / (est_norms[0] * est_norms[1])
    return SpectralAlignmentResult(
        value=value,
        full_value=full,
        bounds=(float(lo), float(hi)),
        eta=_readonly(eta),
        mu=_readonly(mu),
        eta_hat=_readonly(eta / est_norms[0]),
        mu_hat=_readonly(mu / est_norms[1]),
        overlap=_readonly(_overlap(G, eta, mu)),
        rank_x=int(r_x),
        rank_y=int(r_y),
        canonical_correlations=None if rho is None else _readonly(rho),
        gaussian_mi=mi,
        gaussian_wasserstein=w2,
        coco=coco,
        coco_bounds=coco_b,
        hsic=hs,
        ridge=ridge,
        center=center,
        method=chosen,
        n_samples=n,
        n_passes=n_passes,
        parameters=params,
        flags=tuple(flags),
    )


# --------------------------------------------------------------------------- #
# task alignment and KARE
# --------------------------------------------------------------------------- #


def _task_pass(
    func: str, x: Any, targets: Any, *, target_type: str, center: bool, kernel: str, bandwidth: Any, n_features: int | None,
    seed: int, ekw_in: dict[str, Any],
) -> tuple[Any, Any, _Targets, dict[str, Any], int]:
    """One pass of merged moments of (features of) x and the (one-hot) targets."""
    check_choice(func, "kernel", kernel, SPECTRAL_KERNELS)
    rx = as_representation(x, "x")
    tg = _targets(func, targets, target_type, rx.n)
    if tg.rep.kind == "layer":  # plain-array targets are in x's row order by definition (no ids to check, no warning)
        check_pairing([rx, tg.rep])
    params: dict[str, Any] = {"target_type": tg.kind}
    fmap = None
    D = rx.d
    if kernel == "linear":
        check_applies(func, "the linear kernel", bandwidth=(bandwidth, "median"), n_features=(n_features, None))
    if kernel == "rbf":
        fmap, fparams = _nystroem(rx, bandwidth, n_features, seed, func)
        params.update(fparams, seed=seed)
        D = int(fmap.n_features)
    if D > EXACT_MAX_D:
        raise InvalidInputError(
            f"{func} works with the {D}×{D} feature covariance, and D = {D} > {EXACT_MAX_D} would need "
            f"{8 * D * D / 2**30:.1f} GiB per state. Use kernel='rbf' with n_features <= {EXACT_MAX_D} landmarks, or "
            "project x first (e.g. onto bigalign.spectrum(x, rank=...).components)."
        )
    ekw = _feature_kw(ekw_in, [rx, tg.rep], [D, tg.dim], fmap is not None or tg.transform is not None)
    m, plan = exact_moments([rx, tg.rep], ["x", "targets"], [(0, 1)], [fmap, tg.transform], ekw)
    params.update(engine_parameters(plan))
    return m, plan, tg, params, D


@dataclass(frozen=True, repr=False)
class TaskAlignmentResult(ResultProtocol):
    """How a representation's kernel lines up with a task.

    Follows the result protocol (:class:`bigalign.result.ResultProtocol`):
    ``estimator`` is ``"biased"`` (plug-in alignment); ``stderr``/``ci`` None.

    Attributes
    ----------
    value : float
        Kernel–target alignment KA(K, YYᵀ) = ⟨K, YYᵀ⟩/(‖K‖_F‖YYᵀ‖_F), with Y the
        targets (one-hot labels, or the regression targets); centred
        (Cortes et al.'s centred alignment, = biased linear CKA of x and Y) when
        ``center=True``.
    eigenvalues : ndarray
        Eigenvalues ηᵢ of K/n (descending, the leading ``rank``).
    power : ndarray
        ηᵢwᵢ² = ‖uᵢᵀY‖²/n, the target power along each eigenvector uᵢ of K.
    cumulative_power : ndarray
        C(m) = Σ_{i≤m} ηᵢwᵢ² / Σᵢ ηᵢwᵢ² for m = 1..rank (Canatar et al. 2021):
        the fraction of the target's power (within the span of the kernel's
        eigenvectors) in the leading m eigenfunctions.  C(rank) = 1 at full rank.
    power_in_span : float
        Σᵢ ηᵢwᵢ² / (‖Y‖²_F/n): the fraction of the target power that the kernel's
        eigenvectors span at all (for the linear kernel: the R² of least
        squares on x, with intercept when centred).
    """

    value: float
    eigenvalues: np.ndarray
    power: np.ndarray
    cumulative_power: np.ndarray
    power_in_span: float
    n_samples: int
    n_outputs: int
    target_type: str
    classes: tuple | None
    kernel: str
    center: bool
    rank: int
    method: str = "exact"
    n_passes: int = 1
    parameters: Mapping[str, Any] = field(default_factory=dict)
    flags: tuple[str, ...] = ()

    metric = "task_alignment"
    estimator = "biased"

    def __post_init__(self) -> None:
        object.__setattr__(self, "parameters", _freeze(self.parameters))
        object.__setattr__(self, "flags", tuple(self.flags))
        if not math.isfinite(self.value):
            raise AssertionError(f"internal error: task alignment produced {self.value!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.protocol_dict(),
            "view": "task_alignment",
            "value": float(self.value),
            "eigenvalues": _list(self.eigenvalues),
            "power": _list(self.power),
            "cumulative_power": _list(self.cumulative_power),
            "power_in_span": float(self.power_in_span),
            "n_samples": int(self.n_samples),
            "n_outputs": int(self.n_outputs),
            "target_type": self.target_type,
            "classes": None if self.classes is None else [_jsonable(c) for c in self.classes],
            "kernel": self.kernel,
            "center": bool(self.center),
            "rank": int(self.rank),
            "method": self.method,
            "n_passes": int(self.n_passes),
            "parameters": {k: _jsonable(v) for k, v in self.parameters.items()},
            "flags": list(self.flags),
        }

    def plot(self, ax: Any = None) -> Any:
        """The cumulative power C(m) of the target next to the kernel's cumulative eigenvalue mass."""
        plt = _plt()
        if ax is None:
            _, ax = plt.subplots(figsize=(5.5, 4))
        m = np.arange(1, self.cumulative_power.size + 1)
        lam = np.asarray(self.eigenvalues)
        ax.semilogx(m, self.cumulative_power, lw=1.8, label="target power C(m)")
        ax.semilogx(m, np.cumsum(lam) / lam.sum(), lw=1.2, ls="--", color="tab:gray", label="eigenvalue mass Σ_{i≤m}ηᵢ/Σηᵢ")
        ax.set_xlabel("number of leading eigenfunctions m")
        ax.set_ylabel("cumulative fraction")
        ax.set_ylim(0, 1.02)
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(loc="lower right", fontsize=8)
        ax.set_title(f"task alignment: KA(K, YYᵀ) = {self.value:.3g}, power in span = {self.power_in_span:.3g}", fontsize=9)
        return ax

    def __repr__(self) -> str:
        fl = f", flags={list(self.flags)}" if self.flags else ""
        return (
            f"TaskAlignmentResult(kernel_target_alignment={self.value:.6g}, power_in_span={self.power_in_span:.4g}, "
            f"rank={self.rank}, target_type={self.target_type!r}, n_samples={self.n_samples}{fl})"
        )


_TASK_DOC = """targets : array-like of shape (n_samples,) or (n_samples, n_outputs)
        Class labels (integers, booleans or strings; one-hot encoded per
        block) or regression targets (floats), as numpy, dask or zarr arrays
        or a store layer (e.g. labels written with the activations).
    target_type : {"auto", "labels", "regression"}, default="auto"
        ``"auto"``: integer, boolean or string targets are labels, floats are
        regression targets.  Labels are read once in full (n values) to
        find the classes.
    kernel : {"linear", "rbf"}, default="linear"
        ``"rbf"``: K = ΦΦᵀ with Φ the Nyström features (``n_features``
        landmarks, default 1024; bandwidth ``"median"`` or a number).
    bandwidth, n_features, seed
        For ``kernel="rbf"`` (see :func:`spectrum`)."""


def _with_task_doc(func: Any) -> Any:
    func.__doc__ = func.__doc__.replace("    {task}\n", "    " + _TASK_DOC + "\n")
    return with_engine_doc(func)


@_with_task_doc
def task_alignment(
    x: Any,
    targets: Any,
    /,
    *,
    target_type: Literal["auto", "labels", "regression"] = "auto",
    center: bool = True,
    kernel: Literal["linear", "rbf"] = "linear",
    rank: int | None = None,
    bandwidth: Any = "median",
    n_features: int | None = None,
    seed: int = 0,
    block_size: int | None = None,
    scheduler: Any = None,
    client: Any = None,
    num_workers: int | None = None,
    memory_per_worker: int | None = None,
) -> TaskAlignmentResult:
    """Task alignment: kernel–target alignment and the cumulative power C(m) of the target.

    Parameters
    ----------
    x : array-like of shape (n_samples, n_features)
    {task}
    center : bool, default=True
        Centre K and Y (HKH, HY): the alignment is then Cortes et al.'s
        centred kernel–target alignment and the eigenbasis is that of the
        covariance.
    rank : int, optional
        How many leading eigenpairs to report (default: the whole numerical rank).
    {engine}

    Returns
    -------
    TaskAlignmentResult
        ``value`` (kernel–target alignment), ``eigenvalues``, ``power``,
        ``cumulative_power``, ``power_in_span``, ``.plot()``.

    Raises
    ------
    DegenerateInputError
        x constant, or targets with a single class / constant.

    Notes
    -----
    One pass: the merged moments of the features and the one-hot targets
    give A = (1/n)Φ_cᵀΦ_c (D×D) and Σ_φy = (1/n)Φ_cᵀY_c (D×c); with the unit
    eigenvectors wᵢ of A, the target power along uᵢ = Φ_cwᵢ/√(nηᵢ) is
    ‖uᵢᵀY_c‖²/n = ‖wᵢᵀΣ_φy‖²/ηᵢ.  O(n·(D + c)²) time, O((D + c)²) memory.

    Examples
    --------
    >>> import numpy as np, bigalign
    >>> x = np.array([[2.0, 0.0], [-2.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    >>> t = bigalign.task_alignment(x, x[:, 0])      # the target is the top eigenfunction
    >>> t.cumulative_power.tolist()
    [1.0, 1.0]
    """
    func = "task_alignment"
    center = _check_bool(func, "center", center)
    rank = _check_int(func, "rank", rank, 1, allow_none=True)
    seed = _check_seed(func, seed)
    m, plan, tg, params, D = _task_pass(
        func, x, targets, target_type=target_type, center=center, kernel=kernel, bandwidth=bandwidth,
        n_features=n_features, seed=seed, ekw_in=engine_kwargs(locals()),
    )  # fmt: skip
    ex = exact_side(m.sides[0], center)
    _degenerate(func, ex, "x", center)
    et = exact_side(m.sides[1], center)
    if (center and et.constant) or (not center and et.zero):
        raise DegenerateInputError(
            f"{func} is undefined: the targets are {'constant' if center else 'zero'}, so the target kernel is zero. "
            "Expected targets that vary across samples.",
            reason="targets_constant",
        )
    S = _cross_cov(m, 0, 1, center)
    k = numerical_rank(ex.values, D)
    eta = ex.values[:k]
    P = ex.vectors[:, :k].T @ S
    power = np.einsum("ij,ij->i", P, P) / eta
    total_span = float(power.sum())
    total = et.trace
    flags: list[str] = []
    if k < D:
        flags.append("x_rank_deficient")
    if not total_span > 0:
        raise DegenerateInputError(
            f"{func}: the targets have no power in the span of the kernel's eigenvectors (they are uncorrelated with "
            "every feature), so C(m) is 0/0. Expected targets that depend on x.",
            reason="target_orthogonal",
        )
    r = k if rank is None else min(rank, k)
    value = float(np.vdot(S, S)) / math.sqrt(ex.frob2 * et.frob2)
    return TaskAlignmentResult(
        value=value,
        eigenvalues=_readonly(eta[:r]),
        power=_readonly(power[:r]),
        cumulative_power=_readonly(np.cumsum(power[:r]) / total_span),
        power_in_span=total_span / total,
        n_samples=m.n,
        n_outputs=tg.dim,
        target_type=tg.kind,
        classes=None if tg.classes is None else tuple(tg.classes),
        kernel=kernel,
        center=center,
        rank=r,
        parameters=params,
        flags=tuple(flags),
    )


@dataclass(frozen=True, repr=False)
class KareResult(ResultProtocol):
    """The kernel alignment risk estimator at one or more ridges.

    Follows the result protocol (:class:`bigalign.result.ResultProtocol`):
    ``estimator`` is ``"biased"`` (plug-in); ``stderr``/``ci`` None.

    Attributes
    ----------
    value : float
        KARE at the ridge (the first ridge when several were given).
    ridge : ndarray
        The ridges λ.
    risk : ndarray
        KARE(λ) for each ridge: the predicted test risk (mean squared error,
        summed over outputs) of kernel ridge regression with ridge λ.
    numerator, denominator : ndarray
        (1/n)·tr Yᵀ(K/n + λI)⁻²Y and [(1/n)·tr (K/n + λI)⁻¹]².
    """

    value: float
    ridge: np.ndarray
    risk: np.ndarray
    numerator: np.ndarray
    denominator: np.ndarray
    n_samples: int
    n_features: int
    n_outputs: int
    target_type: str
    kernel: str
    center: bool
    method: str = "exact"
    n_passes: int = 1
    parameters: Mapping[str, Any] = field(default_factory=dict)
    flags: tuple[str, ...] = ()

    metric = "kare"
    estimator = "biased"

    def __post_init__(self) -> None:
        object.__setattr__(self, "parameters", _freeze(self.parameters))
        object.__setattr__(self, "flags", tuple(self.flags))
        if not (np.all(np.isfinite(self.risk)) and math.isfinite(self.value)):
            raise AssertionError(f"internal error: KARE produced {self.risk!r}")

    @property
    def best_ridge(self) -> float:
        """The ridge with the smallest predicted risk."""
        return float(self.ridge[int(np.argmin(self.risk))])

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.protocol_dict(),
            "view": "kare",
            "value": float(self.value),
            "ridge": _list(self.ridge),
            "risk": _list(self.risk),
            "numerator": _list(self.numerator),
            "denominator": _list(self.denominator),
            "best_ridge": self.best_ridge,
            "n_samples": int(self.n_samples),
            "n_features": int(self.n_features),
            "n_outputs": int(self.n_outputs),
            "target_type": self.target_type,
            "kernel": self.kernel,
            "center": bool(self.center),
            "method": self.method,
            "n_passes": int(self.n_passes),
            "parameters": {k: _jsonable(v) for k, v in self.parameters.items()},
            "flags": list(self.flags),
        }

    def plot(self, ax: Any = None) -> Any:
        """Predicted risk against the ridge (log–log)."""
        plt = _plt()
        if ax is None:
            _, ax = plt.subplots(figsize=(5.5, 4))
        ax.loglog(self.ridge, self.risk, marker="o", ms=3)
        ax.set_xlabel("ridge λ")
        ax.set_ylabel("KARE(λ)")
        ax.grid(True, which="both", alpha=0.25)
        ax.set_title(f"KARE, {self.kernel} kernel, n = {self.n_samples}; best λ = {self.best_ridge:.3g}", fontsize=9)
        return ax

    def __repr__(self) -> str:
        fl = f", flags={list(self.flags)}" if self.flags else ""
        r = f"ridge={float(self.ridge[0]):.4g}" if self.ridge.size == 1 else f"{self.ridge.size} ridges, best={self.best_ridge:.4g}"
        return f"KareResult(kare={self.value:.6g}, {r}, kernel={self.kernel!r}, n_samples={self.n_samples}{fl})"


@_with_task_doc
def kare(
    x: Any,
    targets: Any,
    /,
    *,
    ridge: Any,
    kernel: Literal["linear", "rbf"] = "linear",
    center: bool = False,
    target_type: Literal["auto", "labels", "regression"] = "auto",
    bandwidth: Any = "median",
    n_features: int | None = None,
    seed: int = 0,
    block_size: int | None = None,
    scheduler: Any = None,
    client: Any = None,
    num_workers: int | None = None,
    memory_per_worker: int | None = None,
) -> KareResult:
    """Kernel alignment risk estimator (Jacot et al. 2020), from D×D algebra on streamed moments.

    KARE(λ) = [(1/n)·yᵀ(K/n + λI)⁻²y] / [(1/n)·tr (K/n + λI)⁻¹]²  (docs/formulas.md),
    the predicted test risk of kernel ridge regression with ridge λ, from the
    training data alone.  K = ΦΦᵀ for the features Φ as given (``kernel=
    "linear"``: Φ = x) — **not centred** by default, exactly the printed
    formula; ``center=True`` uses HKH and Hy (regression with an intercept).

    Parameters
    ----------
    x : array-like of shape (n_samples, n_features)
    {task}
    ridge : float or sequence of float
        Relative ridges r > 0: λ = r · tr(K/n) is added to the eigenvalues
        of K/n (tr(K/n) is the total variance of the features; 1 for the
        uncentred rbf/laplacian kernel, whose k(x, x) = 1), the same relative
        scale as every ridge in bigalign.  Several ridges cost no more than
        one.  ``result.ridge`` holds the r given, ``parameters["ridge_absolute"]`` the λ.
    center : bool, default=False
    {engine}

    Returns
    -------
    KareResult
        ``value`` (at the first ridge), ``risk`` per ridge, ``best_ridge``,
        ``.plot()``.  Multi-output targets (one-hot labels): yᵀ(·)y is
        tr Yᵀ(·)Y, the risk summed over outputs.

    Raises
    ------
    InvalidInputError
        A ridge ≤ 0 (the formula needs K/n + λI invertible), bad options.
    DegenerateInputError
        Constant targets.

    Notes
    -----
    With A = (1/n)ΦᵀΦ = WΛWᵀ (D×D), g = Wᵀ(1/n)Φᵀy: the non-zero eigenvalues of
    K/n are those of A, (1/n)(uᵢᵀy)² = ‖gᵢ‖²/ηᵢ, so with r the numerical rank

        (1/n)yᵀ(K/n + λI)⁻²y = Σᵢ (‖gᵢ‖²/ηᵢ)/(ηᵢ + λ)² + ρ²/λ²,
        (1/n)tr (K/n + λI)⁻¹   = [Σᵢ 1/(ηᵢ + λ) + (n − r)/λ]/n,

    ρ² = ‖y‖²/n − Σᵢ‖gᵢ‖²/ηᵢ the (mean) residual of least squares of y on Φ.
    One pass, O(n·(D + c)²) time, O((D + c)²) memory, any number of ridges.
    ρ² is a difference: when y lies in the span of Φ (always for D ≥ n) it is
    zero up to rounding ~ε‖y‖², reported with the flag
    ``"target_in_feature_span"`` and taken as 0.

    Examples
    --------
    >>> import numpy as np, bigalign
    >>> x = np.eye(3)                      # K = I: KARE = (1/n)‖y‖²(1/3+λ)⁻² / (1/3+λ)⁻² = ‖y‖²/n
    >>> round(bigalign.kare(x, np.array([1.0, 2.0, 2.0]), ridge=0.1).value, 12)
    3.0
    """
    func = "kare"
    center = _check_bool(func, "center", center)
    seed = _check_seed(func, seed)
    lam = np.atleast_1d(np.asarray(ridge, dtype=float)) if not isinstance(ridge, str) else np.array([np.nan])
    if lam.ndim != 1 or lam.size == 0 or not np.all(np.isfinite(lam)) or not np.all(lam > 0):
        raise InvalidInputError(
            f"the 'ridge' parameter of kare must be a positive number or a 1-D sequence of them; got {ridge!r}. "
            "KARE needs K/n + λI invertible: pass e.g. ridge=1e-3 or ridge=np.logspace(-4, 1, 20)."
        )
    m, plan, tg, params, D = _task_pass(
        func, x, targets, target_type=target_type, center=center, kernel=kernel, bandwidth=bandwidth,
        n_features=n_features, seed=seed, ekw_in=engine_kwargs(locals()),
    )  # fmt: skip
    ex = exact_side(m.sides[0], center)
    et = exact_side(m.sides[1], center)
    if (center and et.constant) or (not center and et.zero):
        raise DegenerateInputError(
            f"kare: the targets are {'constant' if center else 'zero'}, so the risk of predicting them is trivially 0. "
            "Expected targets that vary across samples.",
            reason="targets_constant",
        )
    n = m.n
    if not ex.trace > 0:
        raise DegenerateInputError(
            f"kare: x is {'constant' if center else 'zero'}, so K/n has no variance to scale the relative ridge "
            "(λ = ridge · tr(K/n)) and the kernel carries no information. Expected x that varies across samples.",
            reason="x_constant",
        )
    rel_ridge, lam = lam, lam * ex.trace  # relative → absolute: λ = ridge · tr(K/n)
    params.update(ridge_absolute=[float(v) for v in lam])
    S = _cross_cov(m, 0, 1, center)
    k = numerical_rank(ex.values, D)
    eta = ex.values[:k]
    g = ex.vectors[:, :k].T @ S
    q = np.einsum("ij,ij->i", g, g) / eta  # (1/n)‖uᵢᵀY‖²
    yy = et.trace  # (1/n)‖Y‖²_F
    rho2 = yy - float(q.sum())
    flags: list[str] = []
    tol = 64 * np.finfo(float).eps * max(D, 1) * yy
    if rho2 < -tol:  # pragma: no cover - a bug, not a user error
        raise AssertionError(f"internal error: least-squares residual {rho2!r} < 0")
    if rho2 <= tol:
        rho2 = 0.0
        flags.append("target_in_feature_span")
    if k < D:
        flags.append("x_rank_deficient")
    L = lam[:, None]
    num = (q[None, :] / (eta[None, :] + L) ** 2).sum(axis=1) + rho2 / lam**2
    tr = ((1.0 / (eta[None, :] + L)).sum(axis=1) + (n - k) / lam) / n
    den = tr * tr
    risk = num / den
    params.update(numerical_rank=k)
    return KareResult(
        value=float(risk[0]),
        ridge=_readonly(rel_ridge),
        risk=_readonly(risk),
        numerator=_readonly(num),
        denominator=_readonly(den),
        n_samples=n,
        n_features=D,
        n_outputs=tg.dim,
        target_type=tg.kind,
        kernel=kernel,
        center=center,
        parameters=params,
        flags=tuple(flags),
    )
