"""Kernel independence measures: COCO, kernel canonical correlation (KCC), kernel mutual information (KMI).

All three are functions of the centred covariance operators of the two
kernels' feature maps φ (for k) and ψ (for l), estimated from n paired samples
with the 1/n normalisation of Gretton et al. and Bach & Jordan (the same as
:func:`bigalign.spectral_alignment`):

    Σ_xx = (1/n) Σᵢ φ̃ᵢφ̃ᵢᵀ,   Σ_yy = (1/n) Σᵢ ψ̃ᵢψ̃ᵢᵀ,   Σ_xy = (1/n) Σᵢ φ̃ᵢψ̃ᵢᵀ   (φ̃ centred).

COCO (kernel constrained covariance, Gretton et al. 2005)
    COCO = ‖Σ_xy‖₂ = sup_{‖f‖=‖g‖=1} cov(f(x), g(y)) = (1/n)·√λ_max(K̃L̃),
    K̃ = HKH.  Its square is the largest term of HSIC: the squared singular
    values sᵢ of Σ_xy sum to ‖Σ_xy‖²_F = ((n−1)/n)²·HSIC_b, so
    COCO² ≤ ((n−1)/n)²·HSIC_b, with equality when Σ_xy has rank one.

KCC and KMI (Bach & Jordan 2002; Fukumizu, Bach & Gretton 2007)
    The regularised canonical correlations ρ₁ ≥ ρ₂ ≥ … are the singular values of

        V_κ = (Σ_xx + κ_x I)^{-1/2} Σ_xy (Σ_yy + κ_y I)^{-1/2},

    equivalently ρᵢ² = eigenvalues of R_x R_y with R_x = K̃(K̃ + nκ_x I)^{-1}
    (the push-through identity).  KCC = ρ₁;
    KMI = −½ Σᵢ log(1 − ρᵢ²) = −½ log det(I − R_x R_y),
    Bach & Jordan's kernel generalised variance.  The paper writes
    KMI = −½ log|I − κ²K̃L̃|: that is the same determinant when the ridge
    dominates the spectrum (R_x ≈ K̃/(nκ_x)), with the paper's κ² = 1/(n²κ_xκ_y).
    With the linear kernel and κ = 0 the ρᵢ are the classical canonical
    correlations and KMI is the Gaussian mutual information −½ Σ log(1 − ρᵢ²).

The choice of κ
    ``ridge`` κ is *relative*: κ_x = κ·tr Σ_xx and κ_y = κ·tr Σ_yy
    (the total variance in feature space; tr Σ_xx = 1 − mean k(xᵢ, xⱼ) ≤ 1 for
    rbf/laplacian).  So KCC and KMI are invariant to isotropic scaling of x or
    y for the linear kernel, do not depend on the 1/n vs 1/(n−1) convention,
    and κ means the same for every kernel and every number of random features
    (κ/D per feature would make the value depend on D).  Directions of the
    feature space with less than a fraction κ of the total variance are shrunk.
    The default κ = 10⁻² is Bach & Jordan's value for small samples (their
    κ = 2·10⁻² in (K̃ + nκ/2·I) is an absolute ridge of 10⁻² on a kernel whose
    covariance trace is ≤ 1).  It is a fixed number, not a function of n, so
    that the same population quantity ρ(κ) is estimated at every n, by every
    method.  Without regularisation KCC is trivially 1 (and KMI infinite) as
    soon as the kernel matrices have full rank; the empirical ρ(κ) converges to
    the population KCC when κ → 0 more slowly than n^{-1/3} (Fukumizu et al.
    2007) — pass a decreasing κ yourself if that is the target.

Methods
-------
linear kernel
    Exact from streamed centred moments (one pass, O(n·(d_x + d_y)²), any n);
    then d×d algebra.  κ = 0 is allowed when Σ_xx and Σ_yy are non-singular.
``"exact"`` (rbf/laplacian)
    The n×n centred kernel matrices in memory (``GRAM_MAX_N`` = 5,000: about
    3·n²·8 bytes at peak, 600 MB there), factored exactly by pivoted Cholesky
    K̃ = FFᵀ (LAPACK ``dpstrf``, stopping at rounding level), after which the
    rows of F are exact feature vectors: the same algebra as for features, on
    r×r matrices (r ≤ n).  O(n²·d + n³) time.
``"rff"``, ``"orf"``, ``"nystroem"``
    One streaming pass over explicit feature maps (:mod:`bigalign.features`;
    independent maps for x and y), then D×D algebra: O(n·D·(d + D)) + O(D³).
    rff/orf: the standard error is the delete-one-group jackknife over the
    G groups of frequencies (x and y groups deleted together, the rest rescaled
    by G/(G−1), κ_x and κ_y held at their full-sample values), computed from
    downdates of one factorisation (Jacobi's identity for the log-determinants
    of KMI, Schur complements for KCC).  KCC and KMI are non-linear in the
    noisy feature covariances, and their plug-in values from random features
    are biased low by O(1/D) (measured at D = 192, n = 400: KMI −2.3 %, more
    than its spread); the reported value is Quenouille's jackknife
    bias-corrected estimate G·θ − (G−1)·mean(θ₋g), which removed it (and
    brought the coverage of ±2 standard errors from 0.85 to 0.93 under
    independence).  COCO is reported plug-in (its bias was 0.2 standard
    deviations; correcting it only added variance).

    Nyström: the error bar of :mod:`bigalign.metrics._kernel_approx`, as for
    CKA — the same pass gives θ at nested landmark prefixes m, m/2, m/4 and the
    missed trace fractions ρ; stderr = √(d² + (ρ(m)·slope)²), d = |θ(m) − θ(m/2)|,
    slope the largest |Δθ|/Δρ between levels (COCO = ‖Σ_xy‖₂ is 0 without
    landmarks: the level (ρ = 1, 0) counts too; KCC and KMI are 0/0 there).
    ``residual_trace_fraction`` = ρ(m); ρ(m) > 0.5 is flagged
    ``nystroem_not_converged``.  KCC and KMI carry a second, ridge error: κ_x
    is relative to the trace the landmarks capture, tr Σ̃_xx < tr Σ_xx, so the
    ridge is too small and Nyström KCC is biased *up* (measured +0.07 at
    0.3 × median with half the trace missed, where the extrapolation alone
    covered 0.80 of seeds).  The same map with ridges κ·(1 − ‖φ̄‖²) — an
    upper bound of κ·tr Σ_xx, since 1ᵀK̃1 ≤ 1ᵀK1 — gives a value θ_R ≤ θ
    (larger ridges, and a sup over a subspace of the RKHS), so the ridge part of
    the error lies in [0, θ(m) − θ_R]; that bound,
    ``terms["nystroem_ridge_bias_bound"]``, is added in quadrature.  Measured
    (benchmarks/results/nystroem_coverage_family.md: two data sets of n = 500,
    32 and 128 landmarks at 1 and 0.3 × median, 80 seeds): the exact value lies
    within 2·stderr for every seed in all 24 cells (the former bar: 0.0-0.29 of
    seeds at 0.3 × median with 32 landmarks); mean(stderr)/rmse 1.0-15.

Every value is a plug-in (V-statistic) estimate, reported as ``estimator="biased"``.

References
----------
Insulla, Huang & Rosasco, "Towards a Learning Theory of Representation Alignment", arXiv:2502.14047.
Bach & Jordan, "Kernel independent component analysis", JMLR 3 (2002) — KCC, KGV/KMI.
Gretton, Smola, Bousquet, Herbrich, Belitski, Augath, Murayama, Pauls, Schölkopf &
Logothetis, "Kernel constrained covariance for dependence measurement", AISTATS 2005 — COCO.
Gretton, Herbrich, Smola, Bousquet & Schölkopf, "Kernel methods for measuring
independence", JMLR 6 (2005) — COCO and KMI.
Fukumizu, Bach & Gretton, "Statistical consistency of kernel canonical correlation
analysis", JMLR 8 (2007) — the regularised operator V_κ and the rate of κ.
"""

from __future__ import annotations

import math
from typing import Any, Literal, Unpack

import numpy as np

from ..errors import DegenerateInputError, InvalidInputError
from ..intervals import check_ci, jackknife_se, with_interval
from ..moments import Moments
from ..result import Result
from ._common import loo_interval, with_ci_doc, with_engine_doc
from ._independence_roads import (  # noqa: F401  (re-exported: tests and benchmarks use them from here)
    DEFAULT_N_FEATURES,
    GRAM_AUTO_N,
    GRAM_MAX_N,
    METHODS,
    _gram_factor,
    _gram_factor_body,
    _gram_leave_outs,
    _Job,
    _job,
    _LeaveOuts,
    _moment_job,
    _moment_leave_outs,
    _Options,
    _pivoted_cholesky_factor,
    _small_blas,
)
from ._independence_values import (  # noqa: F401  (re-exported: tests and benchmarks use them from here)
    PERFECT_CORRELATION_TOL,
    Covariances,
    _canonical_level,
    _cc_replicates_direct,
    _cc_replicates_fast,
    _coco_replicates,
    _top_singular,
    _values,
    _Values,
    canonical_correlations,
    covariances_from_moments,
    kmi_from_correlations,
)
from ._kernel_approx import NYSTROEM_MAX_RESIDUAL, nystroem_stderr  # noqa: F401
from ..options import EngineKwargs, EngineOptions

__all__ = ["coco", "kcc", "kmi"]


#: Bach & Jordan's small-sample ridge, relative to the trace (see the module docstring).
DEFAULT_RIDGE = 1e-2
#: Up to this many features per side the jackknife replicates are recomputed from scratch;
#: beyond, from downdates of one factorisation (the same numbers to rounding; tested).
DIRECT_REPLICATES_MAX_D = 64


def _ridge(func: str, value: Any, kernel: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InvalidInputError(f"the 'ridge' parameter of {func} must be a number >= 0; got {value!r} instead.")
    k = float(value)
    if not (math.isfinite(k) and k >= 0):
        raise InvalidInputError(f"the 'ridge' parameter of {func} must be a finite number >= 0; got {value!r} instead.")
    if k == 0 and kernel != "linear":
        raise InvalidInputError(
            f"{func} with kernel={kernel!r} needs ridge > 0: without it the kernel canonical correlation is "
            "1 (and KMI infinite) whenever the kernel matrices have full rank, whatever the data (Bach & Jordan 2002). "
            f"Use ridge > 0 (default {DEFAULT_RIDGE:g}), or kernel='linear' for classical CCA."
        )
    return k


def _degenerate_constant(func: str, flags: tuple[str, ...]) -> None:
    constant = [f for f in flags if f in ("x_constant", "y_constant")]
    if constant:
        which = " and ".join(f.split("_")[0] for f in constant)
        raise DegenerateInputError(
            f"{func.upper()} is undefined: {which} is constant (every sample has the same representation, or the "
            "bandwidth makes every kernel value 1), so its covariance is zero and the regularised canonical "
            "correlation is 0/0. Expected a varying representation. Use coco() (exactly 0 for it).",
            reason=constant[0],
        )


def _canonical_result(func: str, x: Any, y: Any, opts: _Options, kappa: float) -> Result:
    with _small_blas(x, y, opts):
        job = _job(func, x, y, opts)
        res = _canonical_result_body(func, job, kappa)
        if job.ci_jobs is None:
            return res
        # KCC lies in [0, 1): logit scale; KMI ≥ 0: identity; both plug-in: the bias-corrected centre
        iv = loo_interval(func, res.value, job.ci_jobs, lambda j: _canonical_result_body(func, j, kappa).value,  # type: ignore[arg-type]
                          opts.level, "logit" if func == "kcc" else "identity", estimator="biased")  # fmt: skip
        return with_interval(res, iv)


def _canonical_result_body(func: str, job: _Job, kappa: float) -> Result:
    _degenerate_constant(func, job.flags)
    v = _values(job.cov, kappa, want_kmi=func == "kmi")
    rho = v.rho
    assert rho is not None
    kcc_v = float(rho[0])
    value = kcc_v if func == "kcc" else float(v.kmi)  # type: ignore[arg-type]
    stderr = None
    terms_extra: dict[str, float] = {}
    if job.grouped:
        direct = max(job.cov.sxx.shape[0], job.cov.syy.shape[0]) <= DIRECT_REPLICATES_MAX_D
        kr, mr = (_cc_replicates_direct if direct else _cc_replicates_fast)(job.cov, v.kx, v.ky)
        reps = kr if func == "kcc" else mr
        stderr = jackknife_se(reps)
        # Quenouille's jackknife bias correction: ρ(κ) and KMI are non-linear in the (noisy) covariances
        G = reps.size
        value = G * value - (G - 1) * float(reps.mean())
    elif job.half is not None and job.quarter is not None and job.residuals is not None and job.trace_bounds is not None:
        # KCC and KMI have no value without landmarks (κ_x = κ·tr Σ_xx = 0: 0/0), so no zero level
        levels = [value] + [_canonical_level(func, c, kappa) for c in (job.half, job.quarter)]
        # the ridge term (module docstring): the same map with the ridges of the traces' upper bounds
        tx, ty = job.trace_bounds
        wide = canonical_correlations(job.cov, kappa * tx, kappa * ty)
        ridge = value - (float(wide[0]) if func == "kcc" else kmi_from_correlations(wide))
        stderr = float(np.hypot(nystroem_stderr(levels, list(job.residuals), zero=None), ridge))
        terms_extra = {"nystroem_ridge_bias_bound": ridge}
    terms: dict[str, float] = {f"rho_{i + 1}": float(r) for i, r in enumerate(rho[:3])}
    terms.update(kcc=kcc_v, ridge_x=v.kx, ridge_y=v.ky)
    terms.update(terms_extra)
    if func == "kmi":
        terms["kmi_plug_in"] = float(v.kmi)  # type: ignore[arg-type]
    extra = {"bias_correction": "jackknife over feature groups"} if job.grouped else {}
    return Result(
        metric=func, value=value, estimator="biased", method=job.method, n_samples=job.cov.n, terms=terms,
        parameters={**job.parameters, **extra, "ridge": kappa, "covariance_normalisation": "1/n"},
        stderr=stderr, flags=job.flags,
    )  # fmt: skip


# ----------------------------------------------------------------------------
# formulas on merged moments (the LINEAR_METRICS signature of compare_layers)
# ----------------------------------------------------------------------------


def coco_from_moments(m: Moments, i: int, j: int, estimator: str, parameters: dict) -> Result:
    """Linear-kernel COCO of inputs i and j from merged moments (``estimator`` is ignored: plug-in)."""
    cov = covariances_from_moments(m, i, j)
    flags = tuple(f for f, s in (("x_constant", m.sides[i]), ("y_constant", m.sides[j])) if s.is_constant)
    v = _values(cov, None, False)
    return Result(
        metric="coco", value=v.coco, estimator="biased", method="exact-streaming", n_samples=m.n,
        terms={"coco": v.coco, "hsic_xy": v.hsic_b}, parameters={**parameters, "covariance_normalisation": "1/n"},
        flags=flags,
    )  # fmt: skip


def _canonical_from_moments(func: str, m: Moments, i: int, j: int, parameters: dict, kappa: float) -> Result:
    return _canonical_result_body(func, _moment_job(m, i, j, "exact-streaming", parameters), kappa)


def kcc_from_moments(
    m: Moments, i: int, j: int, estimator: str, parameters: dict, ridge: float = DEFAULT_RIDGE
) -> Result:
    """Linear-kernel KCC of inputs i and j from merged moments (``estimator`` is ignored: plug-in)."""
    return _canonical_from_moments("kcc", m, i, j, parameters, _ridge("kcc", ridge, "linear"))


def kmi_from_moments(
    m: Moments, i: int, j: int, estimator: str, parameters: dict, ridge: float = DEFAULT_RIDGE
) -> Result:
    """Linear-kernel KMI of inputs i and j from merged moments (``estimator`` is ignored: plug-in)."""
    return _canonical_from_moments("kmi", m, i, j, parameters, _ridge("kmi", ridge, "linear"))


# ----------------------------------------------------------------------------
# public façades
# ----------------------------------------------------------------------------

_RIDGE_DOC = """ridge : float, default=1e-2
        κ ≥ 0, *relative* to the total variance in feature space:
        κ_x = κ·tr Σ_xx, κ_y = κ·tr Σ_yy.  Default 10⁻² (Bach & Jordan's
        small-sample value; fixed, not a function of n, so that every n and
        every method estimates the same ρ(κ)).  κ = 0 is allowed for the
        linear kernel only (classical CCA; needs non-singular covariances)."""


_KERNEL_DOC = """kernel : {"linear", "rbf", "laplacian"}, default="linear"
        rbf: exp(−‖x−x'‖²/(2σ²)); laplacian: exp(−‖x−x'‖/σ); σ = bandwidth.
    bandwidth : "median", float, or (bandwidth_x, bandwidth_y), default="median"
        For rbf/laplacian.  ``"median"``: the median pairwise Euclidean
        distance of a seeded random subsample of 1,000 rows, fixed once and
        written on the Result.
    method : {"auto", "exact", "rff", "orf", "nystroem"}, default="auto"
        linear: always exact (streamed moments, any n).  rbf/laplacian:
        ``"exact"`` holds the n×n kernel matrices (n ≤ 5,000, ``GRAM_MAX_N``;
        O(n²·d + n³) time), or one streaming pass over random Fourier
        features (``"rff"``), orthogonal random features (``"orf"``) or
        Nyström landmarks (``"nystroem"``), then D×D algebra.  ``"auto"``:
        exact for n ≤ 2,000 (``GRAM_AUTO_N``); beyond, Nyström when
        bandwidth ≥ 0.5 × median, else ORF.  The choice and the reason are
        in ``result.parameters``.
    n_features : int, optional
        Feature columns for rff/orf (even; default 512 = 256 frequencies ×
        cos/sin) or landmarks for nystroem (default 512).
    seed : int, default=0
        Seeds the bandwidth subsample, the feature maps and the landmarks: the
        same seed gives bit-identical results."""

_CI_KERNEL_NOTE = """        Every kernel and road gives one.  Linear: one moment state per row
        group in the same pass.  rbf/laplacian: the bandwidths stay at the
        full sample's; on the rff/orf/Nyström roads the feature map stays the
        seed's, and the leave-one-group-out values come from the feature
        moments each row group keeps in the same pass, each the value's own
        finalize (rff/orf with its feature-group bias correction);
        ``method="exact"`` drops each group's rows and columns from the kept
        kernel matrices and re-factors them (2·n² more floats held).  COCO
        and KMI on the identity scale, KCC on the logit scale; all three are
        plug-in estimates, so the interval is centred at the jackknife's
        bias-corrected estimate.  It is about the sampling of rows; the
        approximate roads' ``stderr`` stays about their features."""


def with_kernel_doc(func: Any) -> Any:
    func.__doc__ = func.__doc__.replace("    {kernel}\n", "    " + _KERNEL_DOC + "\n")
    func.__doc__ = func.__doc__.replace("    {ci_kernel}\n", _CI_KERNEL_NOTE + "\n")
    return func


def _with_reg_doc(func: Any) -> Any:
    func.__doc__ = func.__doc__.replace("    {ridge}\n", "    " + _RIDGE_DOC + "\n")
    return func


@with_kernel_doc
@with_ci_doc
@with_engine_doc
def coco(
    x: Any,
    y: Any,
    /,
    *,
    kernel: Literal["linear", "rbf", "laplacian"] = "linear",
    bandwidth: Any = "median",
    method: Literal["auto", "exact", "rff", "orf", "nystroem"] = "auto",
    n_features: int | None = None,
    seed: int = 0,
    ci: float | None = None,
    **engine: Unpack[EngineKwargs],
) -> Result:
    """Kernel constrained covariance: the largest singular value of the centred cross-covariance.

    COCO = ‖Σ_xy‖₂ = sup over unit-norm f, g of cov(f(x), g(y)) = (1/n)·√λ_max(K̃L̃)
    with K̃ = HKH, L̃ = HLH (Gretton et al. 2005).  Zero iff the kernel
    features are uncorrelated; with characteristic kernels (rbf, laplacian)
    the population COCO is zero iff x and y are independent.

    Parameters
    ----------
    x, y : array-like of shape (n_samples, n_features_x), (n_samples, n_features_y)
        numpy, dask or zarr arrays or store layers; the same samples in the same order.
    {kernel}
    {ci}
    {ci_kernel}
    {engine}

    Returns
    -------
    Result
        ``value`` = COCO; ``terms["hsic_xy"]`` = the biased HSIC of the same
        kernels (Σ of the squared singular values of Σ_xy times n²/(n−1)², as
        :func:`bigalign.hsic` with ``estimator="biased"``), so that
        COCO² ≤ ((n−1)/n)²·hsic_xy; ``stderr`` for approximate methods.  A
        constant input gives exactly 0 with the flag ``"x_constant"``/``"y_constant"``.

    Raises
    ------
    InvalidInputError
        Mismatched n, n < 2, a bad option, ``method="exact"`` beyond n = 5,000.
    NonFiniteError, PairingError
        As for :func:`bigalign.hsic`.

    Notes
    -----
    linear: exact, one streaming pass, O(n·(d_x + d_y)²) time, then a Lanczos
    top singular value of the d_x×d_y cross-covariance.  rbf/laplacian exact:
    O(n²·d + n³) time, ≈ 3·n²·8 bytes.  Features: O(n·D·(d + D)) time, O(D²)
    memory, any n; the estimate from random features is biased upward by
    O(1/D) (a maximum of noisy quantities); the jackknife standard error
    reflects the feature randomness.  COCO is a plug-in (V-statistic)
    estimate, biased upward at small n under independence.

    References
    ----------
    Gretton et al., "Kernel constrained covariance for dependence measurement", AISTATS 2005.
    Insulla, Huang & Rosasco, arXiv:2502.14047 (COCO in the family of alignment measures).

    Examples
    --------
    >>> import numpy as np, bigalign
    >>> x = np.array([[1.0], [2.0], [3.0], [4.0]])   # centred: ±0.5, ±1.5; Σ_xy = Σ_xx = 5/4
    >>> bigalign.coco(x, 2 * x).value
    2.5
    """
    engine_opts = EngineOptions.build("coco", engine)
    opts = _Options(kernel, bandwidth, method, n_features, seed, check_ci("coco", ci), engine_opts)
    with _small_blas(x, y, opts):
        job = _job("coco", x, y, opts)
        v = _values(job.cov, None, False)
        stderr = None
        if job.grouped:
            stderr = jackknife_se(_coco_replicates(job.cov))
        elif job.half is not None and job.quarter is not None and job.residuals is not None:
            # COCO = ‖Σ_xy‖₂ is 0 with no landmarks (K̃ = 0, ρ = 1): the zero level anchors the slope
            levels = [v.coco, _top_singular(job.half.sxy)[0], _top_singular(job.quarter.sxy)[0]]
            stderr = nystroem_stderr(levels, list(job.residuals), zero=0.0)
    res = Result(
        metric="coco", value=v.coco, estimator="biased", method=job.method, n_samples=job.cov.n,
        terms={"coco": v.coco, "hsic_xy": v.hsic_b},
        parameters={**job.parameters, "covariance_normalisation": "1/n"}, stderr=stderr, flags=job.flags,
    )  # fmt: skip
    if job.ci_jobs is None:
        return res
    # COCO ≥ 0, unbounded above: identity scale; a plug-in estimate: the bias-corrected centre
    iv = loo_interval("coco", res.value, job.ci_jobs, lambda j: _values(j.cov, None, False).coco,  # type: ignore[arg-type]
                      opts.level, estimator="biased")  # fmt: skip
    return with_interval(res, iv)


@_with_reg_doc
@with_kernel_doc
@with_ci_doc
@with_engine_doc
def kcc(
    x: Any,
    y: Any,
    /,
    *,
    kernel: Literal["linear", "rbf", "laplacian"] = "linear",
    ridge: float = DEFAULT_RIDGE,
    bandwidth: Any = "median",
    method: Literal["auto", "exact", "rff", "orf", "nystroem"] = "auto",
    n_features: int | None = None,
    seed: int = 0,
    ci: float | None = None,
    **engine: Unpack[EngineKwargs],
) -> Result:
    """Regularised kernel canonical correlation (Bach & Jordan 2002).

    KCC = ρ₁ = ‖(Σ_xx + κ_xI)^{-1/2} Σ_xy (Σ_yy + κ_yI)^{-1/2}‖₂
    = sup over f, g of cov(f(x), g(y)) / √((var f(x) + κ_x‖f‖²)(var g(y) + κ_y‖g‖²)),
    in [0, 1).  Equivalently ρ₁² = λ_max(R_xR_y) with R_x = K̃(K̃ + nκ_xI)^{-1}.

    Parameters
    ----------
    x, y : array-like of shape (n_samples, n_features_x), (n_samples, n_features_y)
        numpy, dask or zarr arrays or store layers; the same samples in the same order.
    {ridge}
    {kernel}
    {ci}
    {ci_kernel}
    {engine}

    Returns
    -------
    Result
        ``value`` = ρ₁; ``terms``: ``rho_1``… (up to 3 leading regularised
        canonical correlations), the absolute ridges ``ridge_x`` = κ_x
        and ``ridge_y`` = κ_y; ``stderr`` for approximate methods.

    Raises
    ------
    DegenerateInputError
        x or y constant (0/0), or κ = 0 with a singular covariance.
    InvalidInputError
        Mismatched n, a bad option, κ < 0, κ = 0 with a non-linear kernel.

    Notes
    -----
    The module docstring of :mod:`bigalign.metrics.independence` gives the
    estimator, the choice of κ and the relation to the paper's formula (docs/formulas.md).  Cost: the
    covariances as for :func:`coco`, then a Cholesky factorisation per side
    and an SVD of a D_x×D_y matrix (D: features, d for the linear kernel,
    the rank ≤ n for exact kernels).  The plug-in ρ₁ is biased upward at
    small n (more so at small κ).  Random features: Nyström keeps the
    leading eigendirections that κ does not shrink and is the better
    approximation here (error 10⁻⁴ at 64 landmarks in the tests); rff/orf
    values are jackknife bias-corrected (see the module docstring).

    References
    ----------
    Bach & Jordan, "Kernel independent component analysis", JMLR 3 (2002).
    Fukumizu, Bach & Gretton, "Statistical consistency of kernel canonical correlation analysis", JMLR 8 (2007).

    Examples
    --------
    >>> import numpy as np, bigalign
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(500, 3))
    >>> round(bigalign.kcc(x, x @ rng.normal(size=(3, 3)), ridge=0).value, 12)
    1.0
    """
    engine_opts = EngineOptions.build("kcc", engine)
    kappa = _ridge("kcc", ridge, kernel)
    opts = _Options(kernel, bandwidth, method, n_features, seed, check_ci("kcc", ci), engine_opts)
    return _canonical_result("kcc", x, y, opts, kappa)


@_with_reg_doc
@with_kernel_doc
@with_ci_doc
@with_engine_doc
def kmi(
    x: Any,
    y: Any,
    /,
    *,
    kernel: Literal["linear", "rbf", "laplacian"] = "linear",
    ridge: float = DEFAULT_RIDGE,
    bandwidth: Any = "median",
    method: Literal["auto", "exact", "rff", "orf", "nystroem"] = "auto",
    n_features: int | None = None,
    seed: int = 0,
    ci: float | None = None,
    **engine: Unpack[EngineKwargs],
) -> Result:
    """Kernel mutual information (Bach & Jordan's kernel generalised variance), in nats.

    KMI = −½ Σᵢ log(1 − ρᵢ²) = −½ log det(I − R_xR_y),  R_x = K̃(K̃ + nκ_xI)^{-1},

    over all regularised kernel canonical correlations ρᵢ (see :func:`kcc`).
    It is 0 iff every ρᵢ is 0.  With the linear kernel and κ = 0 it is the
    mutual information of Gaussians with the sample covariances,
    −½ Σ log(1 − ρᵢ²) over the canonical correlations.  The paper's
    −½ log|I − κ²K̃L̃| is its small-correlation form, R_x ≈ K̃/(nκ_x) (κ² = 1/(n²κ_xκ_y)).

    Parameters
    ----------
    x, y : array-like of shape (n_samples, n_features_x), (n_samples, n_features_y)
        numpy, dask or zarr arrays or store layers; the same samples in the same order.
    {ridge}
    {kernel}
    {ci}
    {ci_kernel}
    {engine}

    Returns
    -------
    Result
        ``value`` = KMI (nats); ``terms``: ``rho_1``…, ``kcc`` = ρ₁, the
        absolute ridges; ``stderr`` for approximate methods.

    Raises
    ------
    DegenerateInputError
        x or y constant, κ = 0 with a singular covariance, or a canonical
        correlation of 1 (KMI infinite: use κ > 0).
    InvalidInputError
        As for :func:`kcc`.

    Notes
    -----
    Cost as for :func:`kcc`.  The rff/orf jackknife uses Jacobi's identity:
    deleting the index set g of a positive-definite A changes log det A by
    log det((A^{-1})_{gg}), so all G replicates cost one inverse of the
    (D_x + D_y)-square joint matrix.  The plug-in KMI from rff/orf features
    is biased low by O(1/D) (it sums over every canonical direction); the
    value reported is jackknife bias-corrected (``terms["kmi_plug_in"]`` is
    the uncorrected one).  Nyström needs no correction at the default size.

    References
    ----------
    Bach & Jordan, "Kernel independent component analysis", JMLR 3 (2002).
    Gretton, Herbrich, Smola, Bousquet & Schölkopf, "Kernel methods for measuring independence", JMLR 6 (2005).

    Examples
    --------
    >>> import numpy as np, bigalign
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(100_000, 1))
    >>> y = 0.6 * x + 0.8 * rng.normal(size=(100_000, 1))     # correlation 0.6
    >>> round(bigalign.kmi(x, y, ridge=0).value, 2)   # −½ log(1 − 0.36)
    0.22
    """
    engine_opts = EngineOptions.build("kmi", engine)
    kappa = _ridge("kmi", ridge, kernel)
    opts = _Options(kernel, bandwidth, method, n_features, seed, check_ci("kmi", ci), engine_opts)
    return _canonical_result("kmi", x, y, opts, kappa)
