"""Alignment of a representation with a task: :func:`task_alignment` and KARE (:func:`kare`).

See :mod:`bigalign.metrics.spectral` for the formulas.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Unpack

import numpy as np

from .._checks import check_applies
from ..errors import DegenerateInputError, InvalidInputError
from ..io import as_representation, check_pairing
from ..grouped import GroupedStates
from ..intervals import check_ci, with_interval
from ..linalg import exact_side, numerical_rank
from ..result import ResultProtocol, _freeze, _jsonable
from ._common import check_choice, engine_parameters, loo_interval, with_ci_doc, with_engine_doc
from ._spectral_common import (
    EXACT_MAX_D,
    SPECTRAL_KERNELS,
    _Targets,
    _check_bool,
    _check_int,
    _check_seed,
    _cross_cov,
    _degenerate,
    _feature_options,
    _list,
    _moments_pass,
    _nystroem,
    _plt,
    _readonly,
    _targets,
)
from ..options import EngineKwargs, EngineOptions

# --------------------------------------------------------------------------- #
# task alignment and KARE
# --------------------------------------------------------------------------- #


def _task_pass(
    func: str, x: Any, targets: Any, *, target_type: str, center: bool, kernel: str, bandwidth: Any, n_features: int | None,
    seed: int, options: EngineOptions, level: float | None = None,
) -> tuple[Any, Any, _Targets, dict[str, Any], int, GroupedStates | None]:
    """One pass of merged moments of (features of) x and the (one-hot) targets (kept per row group with ``level``)."""
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
    options = _feature_options(options, [rx, tg.rep], [D, tg.dim], fmap is not None or tg.transform is not None)
    m, plan, states = _moments_pass(func, [rx, tg.rep], ["x", "targets"], [(0, 1)], [fmap, tg.transform], options, level)
    params.update(engine_parameters(plan))
    return m, plan, tg, params, D, states


@dataclass(frozen=True, repr=False)
class TaskAlignmentResult(ResultProtocol):
    """How a representation's kernel lines up with a task.

    Follows the result protocol (:class:`bigalign.result.ResultProtocol`):
    ``estimator`` is ``"biased"`` (plug-in alignment); ``stderr`` None; ``ci``
    (with ``ci=``) a sampling interval for the population kernel–target alignment ``value``.

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
    ci: tuple[float, float] | None = None
    ci_level: float | None = None

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
    return with_ci_doc(with_engine_doc(func))


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
    ci: float | None = None,
    **engine: Unpack[EngineKwargs],
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
    {ci}
        The interval is about the population kernel–target alignment
        (``value``; not C(m) or the power), on the logit scale (it lies in
        (0, 1)), centred at the jackknife's bias-corrected estimate (a ratio
        of plug-in moments).  Each leave-one-group-out value comes from the
        moments of the other groups; for rbf the Nyström map is fixed by the
        seed, so the interval is about that map's alignment.
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
    engine_opts = EngineOptions.build("task_alignment", engine)
    func = "task_alignment"
    level = check_ci(func, ci)
    center = _check_bool(func, "center", center)
    rank = _check_int(func, "rank", rank, 1, allow_none=True)
    seed = _check_seed(func, seed)
    m, plan, tg, params, D, states = _task_pass(
        func, x, targets, target_type=target_type, center=center, kernel=kernel, bandwidth=bandwidth,
        n_features=n_features, seed=seed, options=engine_opts, level=level,
    )  # fmt: skip
    ex, et = _task_sides(func, m, center)
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
    result = TaskAlignmentResult(
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
    if states is None:
        return result
    # a value in (0, 1): logit scale; a ratio of plug-in moments: the bias-corrected centre
    iv = loo_interval(func, result.value, states, lambda mm: _alignment_value(func, mm, center), level,  # type: ignore[arg-type]
                      "logit", estimator="biased")  # fmt: skip
    return with_interval(result, iv)


def _task_sides(func: str, m: Any, center: bool) -> tuple[Any, Any]:
    """The eigendecompositions of x's and the targets' covariances; an error where either is degenerate."""
    ex = exact_side(m.sides[0], center)
    _degenerate(func, ex, "x", center)
    et = exact_side(m.sides[1], center)
    if (center and et.constant) or (not center and et.zero):
        raise DegenerateInputError(
            f"{func} is undefined: the targets are {'constant' if center else 'zero'}, so the target kernel is zero. "
            "Expected targets that vary across samples.",
            reason="targets_constant",
        )
    return ex, et


def _alignment_value(func: str, m: Any, center: bool) -> float:
    """Kernel–target alignment from merged moments (task_alignment's ``value``)."""
    ex, et = _task_sides(func, m, center)
    S = _cross_cov(m, 0, 1, center)
    return float(np.vdot(S, S)) / math.sqrt(ex.frob2 * et.frob2)


@dataclass(frozen=True, repr=False)
class KareResult(ResultProtocol):
    """The kernel alignment risk estimator at one or more ridges.

    Follows the result protocol (:class:`bigalign.result.ResultProtocol`):
    ``estimator`` is ``"biased"`` (plug-in); ``stderr`` None; ``ci`` (with
    ``ci=``) a sampling interval for KARE at the first ridge (``value``).

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
    ci: tuple[float, float] | None = None
    ci_level: float | None = None

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
    ci: float | None = None,
    **engine: Unpack[EngineKwargs],
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
    {ci}
        The interval is about KARE at the first ridge (``value``) as a
        function of the population moments at this n (KARE depends on n by
        definition: it predicts the risk of a fit on n rows), on the identity
        scale (KARE > 0 is far from 0 unless the target is fitted exactly),
        centred at the estimate: a jackknife bias correction would extrapolate
        the n-dependence of the definition away.  Each leave-one-group-out
        value recomputes the relative ridge, the residual and every
        eigenvalue from the D×D moments of the other groups.
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
    engine_opts = EngineOptions.build("kare", engine)
    func = "kare"
    level = check_ci(func, ci)
    center = _check_bool(func, "center", center)
    seed = _check_seed(func, seed)
    lam = np.atleast_1d(np.asarray(ridge, dtype=float)) if not isinstance(ridge, str) else np.array([np.nan])
    if lam.ndim != 1 or lam.size == 0 or not np.all(np.isfinite(lam)) or not np.all(lam > 0):
        raise InvalidInputError(
            f"the 'ridge' parameter of kare must be a positive number or a 1-D sequence of them; got {ridge!r}. "
            "KARE needs K/n + λI invertible: pass e.g. ridge=1e-3 or ridge=np.logspace(-4, 1, 20)."
        )
    m, plan, tg, params, D, states = _task_pass(
        func, x, targets, target_type=target_type, center=center, kernel=kernel, bandwidth=bandwidth,
        n_features=n_features, seed=seed, options=engine_opts, level=level,
    )  # fmt: skip
    n = m.n
    rel_ridge = lam
    lam, num, den, k, flags = _kare_terms(m, center, rel_ridge, D)
    risk = num / den
    params.update(ridge_absolute=[float(v) for v in lam])
    params.update(numerical_rank=k)
    result = KareResult(
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
    if states is None:
        return result
    # KARE > 0, unbounded above: identity scale; centred at the estimate (the docstring says why)
    iv = loo_interval(func, result.value, states, lambda mm: _kare_first(mm, center, rel_ridge, D), level)  # type: ignore[arg-type]
    return with_interval(result, iv)


def _kare_first(m: Any, center: bool, rel_ridge: np.ndarray, D: int) -> float:
    _, num, den, _, _ = _kare_terms(m, center, rel_ridge[:1], D)
    return float(num[0] / den[0])


def _kare_terms(m: Any, center: bool, rel_ridge: np.ndarray, D: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, list[str]]:
    """(absolute ridges λ, numerator, denominator, numerical rank, flags) of KARE from merged moments."""
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
    lam = rel_ridge * ex.trace  # relative → absolute: λ = ridge · tr(K/n)
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
    return lam, num, tr * tr, k, flags
