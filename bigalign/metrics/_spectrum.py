"""The eigenvalue spectrum of one representation's covariance (or rbf kernel): :func:`spectrum`.

See :mod:`bigalign.metrics.spectral` for the formulas.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Unpack

import numpy as np

from .._checks import check_applies
from ..errors import InvalidInputError
from ..io import as_representation
from ..intervals import check_ci, with_interval
from ..linalg import exact_side, numerical_rank, randomized_sides
from ..result import ResultProtocol, _freeze, _jsonable
from ._common import check_choice, engine_parameters, loo_interval, with_ci_doc, with_engine_doc
from ._spectral_common import (
    DEFAULT_OVERSAMPLES,
    DEFAULT_POWER_ITER,
    SPECTRAL_KERNELS,
    _check_bool,
    _check_ci_road,
    _check_int,
    _check_seed,
    _degenerate,
    _feature_options,
    _list,
    _moments_pass,
    _nystroem,
    _plt,
    _readonly,
    _resolve_method,
)
from ..options import EngineKwargs, EngineOptions

# --------------------------------------------------------------------------- #
# spectrum
# --------------------------------------------------------------------------- #


@dataclass(frozen=True, repr=False)
class SpectrumResult(ResultProtocol):
    """The leading eigenpairs of a representation's covariance (or Nyström kernel).

    Follows the result protocol (:class:`bigalign.result.ResultProtocol`):
    ``value`` (and ``float(result)``) is ``effective_dimension``; ``estimator``
    is ``"biased"`` (the 1/n plug-in covariance); ``stderr`` is None; ``ci``
    (with ``ci=``) is a sampling interval for the population effective
    dimension (tr Σ)²/‖Σ‖²_F — not for the individual eigenvalues.

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
    ci: tuple[float, float] | None = None
    ci_level: float | None = None

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


@with_ci_doc
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
    ci: float | None = None,
    **engine: Unpack[EngineKwargs],
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
    {ci}
        The interval is about the population **effective dimension**
        (tr Σ)²/‖Σ‖²_F (``value``), on the identity scale, centred at the
        jackknife's bias-corrected estimate (the plug-in ‖Â‖²_F is biased up by
        O(tr²Σ/n), so the plug-in effective dimension is biased down).  Each
        leave-one-group-out value is recomputed from the d×d moments of the
        other groups (an eigendecomposition each).  Exact road only; for rbf
        the Nyström map is fixed by the seed and the interval is about that
        map's feature covariance.
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
    engine_opts = EngineOptions.build("spectrum", engine)
    func = "spectrum"
    level = check_ci(func, ci)
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
    _check_ci_road(func, level, chosen)
    options = _feature_options(engine_opts, [rep], [D], fmap is not None)
    states = None
    if chosen == "exact":
        m, plan, states = _moments_pass(func, [rep], ["x"], [], [fmap], options, level)
        eig = exact_side(m.sides[0], center)
        n_passes = 1
    else:
        ell = min(rank + p, D)  # type: ignore[operator]
        run_ = randomized_sides([rep], ["x"], [D], [ell], n_power_iter=q, seed=seed, center=center, transforms=[fmap], options=options)
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
    result = SpectrumResult(
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
    if states is None:
        return result
    # the effective dimension lies in [1, d] and is far from both ends: identity scale; plug-in: bias-corrected centre
    iv = loo_interval(func, result.value, states, lambda mm: _effective_dimension(func, mm, center), level,  # type: ignore[arg-type]
                      estimator="biased")  # fmt: skip
    return with_interval(result, iv)


def _effective_dimension(func: str, m: Any, center: bool) -> float:
    """(tr A)²/‖A‖²_F of the first input of merged moments (the exact road's ``value``)."""
    eig = exact_side(m.sides[0], center)
    _degenerate(func, eig, "x", center)
    return float(eig.trace * eig.trace / eig.frob2)
