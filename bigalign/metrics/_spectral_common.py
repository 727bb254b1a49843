"""What the spectral measures share: options, the rbf feature map, targets, and the maths on moments.

The Gaussian measures on merged moments (``gaussian_mi_from_moments``,
``gaussian_w2_from_moments``), the canonical-correlation summaries and the
alignment bounds; see :mod:`bigalign.metrics.spectral` for the formulas.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import DegenerateInputError, InvalidInputError
from ..features import BANDWIDTH_SAMPLE, draw_nystroem, resolve_bandwidth, sample_rows
from ..io import Representation, as_representation
from ..grouped import GroupedStates
from ..linalg import Eigen, Subspace, exact_moments, exact_side, numerical_rank
from ..options import EngineOptions
from ..result import Result, _jsonable
from ._common import check_choice, feature_options

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


def _check_ci_road(func: str, level: float | None, chosen: str) -> None:
    """``ci=`` needs the exact (one-pass moment) road: the randomized road's sketch basis comes from earlier passes."""
    if level is not None and chosen != "exact":
        raise InvalidInputError(
            f"{func}: ci= (a sampling interval over rows) is available on method='exact' (one pass of d×d moments, one "
            f"state per row group, every leave-one-group-out value recomputed from them); the {chosen!r} road has none "
            "yet (its basis comes from earlier passes over all rows). Use method='exact' (d <= "
            f"{EXACT_MAX_D}, or project x first onto bigalign.spectrum(x, rank=...).components), or leave ci out."
        )


def _moments_pass(
    func: str, inputs: list[Any], names: list[str], pairs: list[tuple[int, int]], transforms: list[Any],
    options: EngineOptions, level: float | None,
) -> tuple[Any, Any, GroupedStates | None]:  # fmt: skip
    """(merged moments, plan, grouped states or None): the exact road's one pass, kept per row group for ``ci=``."""
    if level is None:
        m, plan = exact_moments(inputs, names, pairs, transforms, options)
        return m, plan, None
    states, plan = exact_moments(inputs, names, pairs, transforms, options, ci_rows=inputs[0].n, ci_func=func)
    return states.total(), plan, states


def _check_seed(func: str, seed: Any) -> int:
    return int(_check_int(func, "seed", seed, 0))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- #
# feature maps (rbf = Nyström features) and targets
# --------------------------------------------------------------------------- #


def _nystroem(rep: Representation, bandwidth: Any, n_features: int | None, seed: int, func: str) -> tuple[Any, dict[str, Any]]:
    """The Nyström map of ``rep`` for the rbf kernel, drawn once (seeded) before any pass."""
    _, (xs,) = sample_rows([rep], BANDWIDTH_SAMPLE, seed)
    sigma, med = resolve_bandwidth(bandwidth, xs, rep.name, func)
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


def _feature_options(options: EngineOptions, reps: list[Representation], widths: list[int], mapped: bool) -> EngineOptions:
    """Engine options; with a feature map the features, not the inputs, size the blocks."""
    return feature_options(options, reps, sum(widths), 0) if mapped else options


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
