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

Sampling interval (``ci=``)
---------------------------
x and y are separate samples, so the block jackknife cuts each into G = 20
contiguous row groups and leaves out group g of x and group g of y together:
the delete-a-group jackknife of a two-sample U-statistic, θ₍₋g₎ the estimate on
n_x − |g_x| and n_y − |g_y| rows.  Exact tiles keep, in the same pass, every
row's kernel sums by column group (:class:`bigalign.tiles.GroupedTileStatistic`
over the pooled row groups), hence the kernel sums Σ_xx, Σ_yy, Σ_xy of every
pair of groups; the linear kernel keeps its feature sums per row group.  The
interval is on the identity scale (the unbiased MMD² can be negative); the
biased estimate's interval is that of the unbiased MMD² from the same sums (the
same population value).  rff/orf keep their feature sums per row group like the
linear kernel (the map fixed at its draw) and add the draw's own error, the
``stderr``, in quadrature, so the interval is about the exact MMD².  Not on the Nyström road (an error: its estimate is biased low by the
missed trace, which no row interval sees).

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

from dataclasses import dataclass
from typing import Any, Literal, Unpack

import numpy as np

from ..errors import DegenerateInputError, InvalidInputError
from ..intervals import check_ci, with_interval
from ..result import Result
from ..stats import TestResult
from ._common import check_choice, check_int, with_engine_doc
from ._mmd_estimate import _Estimate, _estimate, weighted_chi2_sf
from ._mmd_sums import METHODS, PERMUTATION_MAX_N, TESTS

# the sums and estimates live in sibling modules by concern; their names (and the helpers
# they use) stay importable from here
from .._numba.tiles import KERNEL_CODES, sqdist  # noqa: F401
from ..features import BANDWIDTH_SAMPLE, draw_nystroem, draw_random_fourier, sample_rows  # noqa: F401
from ..io import as_representation  # noqa: F401
from ._kernel_approx import nystroem_stderr  # noqa: F401
from ._mmd_estimate import _feature_estimate, _tile_estimate, mmd_from_sums  # noqa: F401
from ._mmd_sums import (  # noqa: F401
    MAX_LABEL_BYTES,
    NULL_SAMPLE,
    _FEATURE_TAG,
    _PERMUTATION_TAG,
    FeatureSums,
    PooledFeatureStatistic,
    PooledRepresentation,
    PooledTileStatistic,
    draw_labels,
    feature_all_labellings,
    feature_group_terms,
    kernel_tile,
    kernel_tile_numpy,
    pooled,
    residual_fractions,
)
from ..options import EngineKwargs, EngineOptions

__all__ = ["MMDTestResult", "mmd", "mmd_test"]


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
    ci: float | None = None,
    **engine: Unpack[EngineKwargs],
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
    ci : float, optional
        Confidence level (e.g. 0.95) of a sampling interval for the population
        MMD², ``result.ci``: a block jackknife over rows from the same pass.
        x and y are separate samples, so each is cut into 20 contiguous row
        groups and group g of x and group g of y are left out together (the
        two-sample U-statistic's jackknife).  On the identity scale (the
        unbiased MMD² can be negative); the biased estimate's interval is the
        unbiased MMD²'s from the same sums (its ``value`` may lie outside it at
        small n: flag ``"value_outside_ci"``).  The bandwidth stays at the
        full-sample choice.  Offered on the exact roads (the linear kernel;
        rbf/laplacian on exact tiles) and on rff/orf (the features fixed at
        their draw, whose error, the ``stderr``, is added in quadrature: the
        interval is about the exact MMD²); not on Nyström (an error); needs 40
        rows in each sample.
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
    engine_opts = EngineOptions.build("mmd", engine)
    est = _estimate(
        "mmd", x, y, kernel=kernel, bandwidth=bandwidth, estimator=estimator, method=method, n_features=n_features,
        seed=seed, options=engine_opts, ci_level=check_ci("mmd", ci),
    )  # fmt: skip
    return with_interval(_result(est, estimator), est.interval)


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
    **engine: Unpack[EngineKwargs],
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
    engine_opts = EngineOptions.build("mmd_test", engine)
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
        seed=seed, options=engine_opts, n_perm=n_perm if chosen == "permutation" else 0,
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
