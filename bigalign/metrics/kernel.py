"""Kernel alignment family: kernel alignment (KA), HSIC and CKA.

Linear kernels are computed exactly from streamed moments
(:mod:`bigalign.moments`) in one pass, O(n·d²) time and O(d²) memory.

References
----------
Insulla, Huang & Rosasco, "Towards a Learning Theory of Representation
Alignment", arXiv:2502.14047.
Gretton et al., "Measuring statistical dependence with Hilbert-Schmidt norms", ALT 2005.
Song, Smola, Gretton, Bedo & Borgwardt, "Feature selection via dependence
maximization", JMLR 13 (2012) — the unbiased HSIC.
Kornblith, Norouzi, Lee & Hinton, "Similarity of neural network
representations revisited", ICML 2019 — CKA.
Murphy, Zylberberg & Fyshe, "Correcting biased centered kernel alignment
measures in biological and artificial neural networks", arXiv:2405.01012.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
from typing import Any, Literal, Unpack

from .._checks import check_applies
from ..errors import DegenerateInputError, InvalidInputError
from ..features import KERNELS
from ..moments import Moments, group_hsic, scale
from ..intervals import check_ci, estimator_interval, with_interval
from ..result import Result
from ._kernel_approx import KernelTerms, jackknife_stderr
from ._kernel_nonlinear import METHODS, METRIC_FNS, check_degenerate, check_target, jackknife_or_half, nonlinear_terms
from ._common import (
    ESTIMATORS,
    check_choice,
    check_unbiased_n,
    engine_parameters,
    grouped_linear_moments,
    linear_moments,
    loo_interval,
    paired_n,
    sqnorm,
    with_ci_doc,
    with_engine_doc,
)
from ..options import EngineKwargs, EngineOptions

__all__ = ["cka", "hsic", "kernel_alignment"]

METHOD = "exact-streaming"


# ----------------------------------------------------------------------------
# formulas on merged moments (shared with compare_layers)
# ----------------------------------------------------------------------------


def hsic_value(m: Moments, i: int, j: int, estimator: str) -> float:
    """HSIC of the linear kernels of inputs i and j (see :func:`bigalign.moments.group_hsic`)."""
    h = float(group_hsic(m, i, j, estimator, normalized=True).sum())
    return h * scale(m, i) * scale(m, j)


def _numerically_nonpositive(m: Moments, i: int, estimator: str, value: float) -> bool:
    """Is a normalised self-HSIC ≤ 0, or zero up to the rounding of the terms it is a difference of?"""
    if value <= 0:
        return True
    if estimator == "biased":
        return False
    n, c = m.n, scale(m, i)
    s = m.sides[i]
    mag = (sqnorm(s.M / c) + s.t4 / c / c * (1 + 2.0 / (n - 2)) + (s.trace / c) ** 2 / ((n - 1) * (n - 2))) / (n * (n - 3))
    return value <= 1e-12 * mag


def _representable(value: float, normalized: float, what: str) -> float:
    """``value`` if float64 can hold it; a clear error instead of inf or a spurious 0."""
    if not math.isfinite(value) or (value == 0.0 and normalized != 0.0):
        raise InvalidInputError(
            f"{what} is {'beyond' if value != 0 else 'below'} the float64 range for inputs of this magnitude "
            "(it scales with the fourth power of the activations). Rescale the inputs (e.g. divide by their "
            "standard deviation); CKA and kernel alignment are scale invariant and need no rescaling."
        )
    return value


def _constant_flags(m: Moments, i: int, j: int) -> tuple[str, ...]:
    flags = []
    if m.sides[i].is_constant:
        flags.append("x_constant")
    if m.sides[j].is_constant:
        flags.append("y_constant")
    return tuple(flags)


def hsic_from_moments(m: Moments, i: int, j: int, estimator: str, parameters: dict) -> Result:
    flags = _constant_flags(m, i, j)
    if flags:
        value = 0.0
    else:
        hn = float(group_hsic(m, i, j, estimator, normalized=True).sum())
        value = _representable(hn * scale(m, i) * scale(m, j), hn, "HSIC")
    if value < 0:
        flags += ("negative_unbiased_estimate",)
    return Result(
        metric="hsic",
        value=value,
        estimator=estimator,
        method=METHOD,
        n_samples=m.n,
        terms={"hsic_xy": value},
        parameters=parameters,
        flags=flags,
    )


def cka_from_moments(m: Moments, i: int, j: int, estimator: str, parameters: dict) -> Result:
    flags = _constant_flags(m, i, j)
    if flags:
        which = " and ".join("x" if f == "x_constant" else "y" for f in flags)
        raise DegenerateInputError(
            f"CKA is undefined: {which} is constant (every sample has the same representation), so its "
            "centred kernel is zero and CKA is 0/0. Expected representations that vary across samples. "
            "Drop the constant representation, or use hsic(), which is exactly 0 for it.",
            reason=flags[0],
        )
    nxy = float(group_hsic(m, i, j, estimator, normalized=True).sum())
    nxx = float(group_hsic(m, i, i, estimator, normalized=True).sum())
    nyy = float(group_hsic(m, j, j, estimator, normalized=True).sum())
    if _numerically_nonpositive(m, i, estimator, nxx) or _numerically_nonpositive(m, j, estimator, nyy):
        raise DegenerateInputError(
            f"unbiased CKA is undefined here: the unbiased HSIC(x, x) and HSIC(y, y) must both be positive, and "
            f"one is not (normalised values {nxx:.3g}, {nyy:.3g}: too few samples for the unbiased estimator "
            f"to be reliable; n = {m.n}). Use more samples or estimator='biased'.",
            reason="nonpositive_self_hsic",
        )
    value = nxy / math.sqrt(nxx * nyy)  # scale-free: exact for inputs of any finite magnitude
    cx, cy = scale(m, i), scale(m, j)
    hxy, hxx, hyy = nxy * cx * cy, nxx * cx * cx, nyy * cy * cy
    if not all(math.isfinite(h) and (h != 0 or n0 == 0) for h, n0 in ((hxy, nxy), (hxx, nxx), (hyy, nyy))):
        flags += ("terms_out_of_float64_range",)
    if value < 0:
        flags += ("negative_unbiased_estimate",)
    return Result(
        metric="cka",
        value=value,
        estimator=estimator,
        method=METHOD,
        n_samples=m.n,
        terms={"hsic_xy": hxy, "hsic_xx": hxx, "hsic_yy": hyy},
        parameters=parameters,
        flags=flags,
    )


def ka_from_moments(m: Moments, i: int, j: int, estimator: str, parameters: dict) -> Result:
    """Uncentred KA = ⟨K, L⟩ / (‖K‖‖L‖) = ‖XᵀY‖² / (‖XᵀX‖‖YᵀY‖) (a V-statistic)."""
    import numpy as np

    si, sj = m.sides[i], m.sides[j]
    for s, nm in ((si, "x"), (sj, "y")):
        if s.is_zero:
            raise DegenerateInputError(
                f"kernel alignment is undefined: {nm} is identically zero, so its kernel has zero norm. "
                "Expected a representation with at least one non-zero value.",
                reason=f"{nm}_zero",
            )
    M, _ = m.pair(i, j)
    gi, gj = si.uncentred_gram(), sj.uncentred_gram()
    # normalise by the mean squared row norms before squaring: exact at any finite magnitude
    ci, cj = np.trace(gi) / m.n, np.trace(gj) / m.n
    cross = (M + m.n * np.outer(si.mean, sj.mean)) / np.sqrt(ci) / np.sqrt(cj)
    kl_n, kk_n, ll_n = sqnorm(cross), math.sqrt(sqnorm(gi / ci)), math.sqrt(sqnorm(gj / cj))
    kl, kk, ll = kl_n * ci * cj, kk_n * ci, ll_n * cj
    return Result(
        metric="kernel_alignment",
        value=kl_n / (kk_n * ll_n),
        estimator="biased",
        method=METHOD,
        n_samples=m.n,
        terms={"inner_kl": kl, "norm_k": kk, "norm_l": ll},
        parameters=parameters,
        flags=_constant_flags(m, i, j),
    )


# ----------------------------------------------------------------------------
# public façades
# ----------------------------------------------------------------------------

_KERNEL_DOC = """kernel : {"linear", "rbf", "laplacian"}, default="linear"
        rbf: exp(−‖x−x'‖²/(2σ²)); laplacian: exp(−‖x−x'‖/σ); σ = bandwidth.
    bandwidth : "median", float, or (bandwidth_x, bandwidth_y), default="median"
        For rbf/laplacian.  ``"median"``: the median pairwise Euclidean
        distance of a seeded random subsample of 1,000 rows, fixed once for
        the whole computation and written on the Result.
    method : {"auto", "exact", "block", "rff", "orf", "nystroem"}, default="auto"
        linear: always exact (streamed moments).  rbf/laplacian: ``"exact"``
        tiles (O(n²·d) time, O(n + tile) memory); ``"block"``: exact tiles
        inside seeded random blocks of ``block_rows`` rows, O(n·B·d), an
        unbiased estimate of the exact full-sample terms with the standard
        error of its distance to them; or one streaming pass over random
        Fourier features (``"rff"``), orthogonal random features (``"orf"``)
        or Nyström landmarks (``"nystroem"``).  ``"auto"``: exact tiles or
        the block road, whichever a calibrated cost model predicts reaches
        ``target_stderr`` first (docs/approximate.md).  The choice, the
        reason and the predicted standard error are in ``result.parameters``.
    n_features : int, optional
        Feature columns for rff/orf (default 2048 = 1024 frequencies × cos/sin)
        or landmarks for nystroem (default 1024).  Only with those methods.
    block_rows : int, optional
        Rows per random block of ``method="block"`` (default 1024, at least 8).
        Only with ``method="block"``.
    target_stderr : float, optional
        ``method="auto"`` only: the standard error (distance to the exact
        value on the same rows) to size the approximation for; default 1e-3;
        0 asks for exact tiles.
    seed : int, default=0
        Seeds the bandwidth subsample, the random blocks, the feature map and
        the landmarks: the same seed gives bit-identical results."""


def _linear_params(plan: Any, target_stderr: Any) -> dict[str, Any]:
    """Parameters of a linear-kernel result (exact: any target_stderr is met, and recorded)."""
    extra = {} if target_stderr is None else {"target_stderr": float(target_stderr), "method_reason": "linear kernel: exact"}
    return {"kernel": "linear", **engine_parameters(plan), **extra}


#: how ``ci`` treats the ratios CKA and KA (their docstrings' ``{ratio_ci}``)
_RATIO_CI_DOC = """The ratio is recomputed from its own terms for every leave-one-group-out
        state (numerator and self-terms from the same rows), and the interval
        made on the logit scale when the estimate and every leave-one-group-out
        value lie in (0, 1), mapped back (so it stays inside); otherwise (a
        negative unbiased estimate, a value of exactly 1) on the identity scale,
        as ``parameters["ci_scale"]`` says.  Roads as for :func:`hsic`.
        Biased CKA: the interval of the unbiased CKA on the same rows.  KA (a
        V-statistic): on the tile and block roads the interval of the ratio of
        its off-diagonal pair means (its unbiased form, kernels with a unit
        diagonal); on the linear and feature roads, which have no such form,
        centred at the jackknife's bias-corrected estimate."""


def with_kernel_doc(func: Any) -> Any:
    func.__doc__ = func.__doc__.replace("    {kernel}\n", "    " + _KERNEL_DOC + "\n").replace("{ratio_ci}", _RATIO_CI_DOC)
    return func


@dataclass(frozen=True)
class KernelOptions:
    """The options of one hsic / cka / kernel_alignment call, checked by ``_run_kernel``."""

    kernel: str
    bandwidth: Any
    method: str
    n_features: int | None
    block_rows: int | None
    target_stderr: float | None
    seed: Any
    ci: float | None
    engine: EngineOptions


def _run_kernel(func: str, x: Any, y: Any, opts: KernelOptions, estimator: str, level: float | None = None) -> tuple[Any, Any]:
    """(moments, plan) for linear kernels — (grouped states, plan) with an interval level — or a NonlinearJob
    for rbf/laplacian."""
    kernel, method = opts.kernel, opts.method
    check_choice(func, "kernel", kernel, KERNELS)
    check_choice(func, "method", method, METHODS)
    if kernel == "linear":
        if method not in ("auto", "exact"):
            raise InvalidInputError(
                f"method={method!r} approximates non-linear kernels; with kernel='linear' {func} is exact at "
                "any n in one streaming pass. Use method='auto' (or 'exact'), or a non-linear kernel."
            )
        check_applies(func, "the linear kernel", bandwidth=(opts.bandwidth, "median"), n_features=(opts.n_features, None))
        if opts.target_stderr is not None:
            check_target(opts.target_stderr, method)
        if opts.block_rows is not None:
            raise InvalidInputError(
                f"block_rows sizes the random blocks of method='block' for non-linear kernels; with kernel='linear' {func} "
                "is exact at any n in one streaming pass. Drop block_rows, or use a non-linear kernel."
            )
        if level is not None:
            return grouped_linear_moments(x, y, opts.engine, paired_n(x, y), func)
        return linear_moments(x, y, opts.engine)
    return nonlinear_terms(
        x, y, kernel=kernel, bandwidth=opts.bandwidth, method=method, n_features=opts.n_features,
        seed=opts.seed, estimator=estimator, options=opts.engine, block_rows=opts.block_rows,
        target_stderr=opts.target_stderr, metric=func, ci_level=level,
    ), None  # fmt: skip


#: the scale of each measure's interval (intervals.jackknife_interval): CKA and KA lie in (0, 1) away from
#: their bounds, so their interval is made on the logit scale and mapped back; HSIC is unbounded
CI_SCALES = {"hsic": "identity", "cka": "logit", "kernel_alignment": "logit"}
_FROM_MOMENTS = {"hsic": hsic_from_moments, "cka": cka_from_moments, "kernel_alignment": ka_from_moments}


def _kernel_result(func: str, x: Any, y: Any, opts: KernelOptions, estimator: str) -> Result:
    """The façades' common body: the linear road (with its interval) or the non-linear one."""
    level = check_ci(func, opts.ci)
    out, plan = _run_kernel(func, x, y, opts, estimator, level)
    if plan is None:
        return nonlinear_result(func, out, estimator, level)
    fm = _FROM_MOMENTS[func]
    params = _linear_params(plan, opts.target_stderr)
    if level is None:
        return fm(out, 0, 1, estimator, params)
    res = fm(out.total(), 0, 1, estimator, params)
    # a biased (V-statistic) CKA or HSIC: the interval of the unbiased estimator on the same moments
    # (intervals.estimator_interval); KA (uncentred) has no unbiased form in the moment state: the jackknife's
    # bias-corrected centre
    unbiased = None if func == "kernel_alignment" else (lambda m: fm(m, 0, 1, "unbiased", {}).value)
    iv = loo_interval(func, res.value, out, lambda m: fm(m, 0, 1, estimator, {}).value, level, CI_SCALES[func],
                      estimator=res.estimator, f_unbiased=unbiased)  # fmt: skip
    return with_interval(res, iv)


def _defined_value(metric: str, t: Any) -> float:
    """The metric of one leave-one-group-out set of terms; a DegenerateInputError where it is undefined."""
    if metric == "cka" and (t.hxx <= 0 or t.hyy <= 0):
        raise DegenerateInputError(f"HSIC(x, x) = {t.hxx:.3g}, HSIC(y, y) = {t.hyy:.3g} must be positive", reason="nonpositive_self_hsic")
    if metric == "kernel_alignment" and (t.kk <= 0 or t.ll <= 0):
        raise DegenerateInputError(f"‖K‖² = {t.kk:.3g}, ‖L‖² = {t.ll:.3g} must be positive", reason="nonpositive_norm")
    return float(METRIC_FNS[metric](t))


def nonlinear_result(metric: str, job: Any, estimator: str, level: float | None = None) -> Result:
    """Result of a non-linear-kernel metric from its terms (exact or approximate); with ``level``, its
    sampling interval from the job's leave-one-group-out states."""
    t = job.terms
    fn: Any = METRIC_FNS[metric]
    if metric == "hsic":
        terms = {"hsic_xy": t.hxy}
    elif metric == "cka":
        check_degenerate(job, "CKA")
        if t.hxx <= 0 or t.hyy <= 0:
            raise DegenerateInputError(
                f"CKA is undefined here: the estimated HSIC(x, x) = {t.hxx:.3g} and HSIC(y, y) = {t.hyy:.3g} must "
                f"both be positive ({job.method}, n = {t.n}). Use more samples, more features, or estimator='biased'.",
                reason="nonpositive_self_hsic",
            )
        terms = {"hsic_xy": t.hxy, "hsic_xx": t.hxx, "hsic_yy": t.hyy}
    else:
        if t.kk <= 0 or t.ll <= 0:
            raise DegenerateInputError(
                f"kernel alignment is undefined here: the estimated ‖K‖² = {t.kk:.3g} and ‖L‖² = {t.ll:.3g} must "
                "be positive. Use more features.",
                reason="nonpositive_norm",
            )
        terms = {"inner_kl": t.kl, "norm_k": float(np.sqrt(t.kk)), "norm_l": float(np.sqrt(t.ll))}
    value = float(fn(t))
    flags = tuple(job.flags)
    if metric != "kernel_alignment" and value < 0 and estimator == "unbiased":
        flags += ("negative_unbiased_estimate",)
    stderr = jackknife_or_half(job, fn)
    params = {**job.parameters, **({"stderr": job.stderr_kind} if job.stderr_kind else {})}
    if "target_stderr" in params:  # method="auto": the achieved beside the predicted
        params["achieved_stderr"] = 0.0 if stderr is None else stderr
    res = Result(
        metric=metric,
        value=value,
        estimator=estimator,
        method=job.method,
        n_samples=t.n,
        terms=terms,
        parameters=params,
        stderr=stderr,
        flags=flags,
    )
    if level is None:
        return res
    # a biased (V-statistic) estimate: the interval of its unbiased form on the same rows and sums
    # (intervals.estimator_interval), the point value staying the biased one
    if job.ci_states is not None:  # feature roads: one moment state per row group in the same pass
        states, terms_of = job.ci_states
        f_unbiased = None  # KA's feature terms have no unbiased form: the jackknife's bias-corrected centre
        if estimator == "biased" and metric != "kernel_alignment":
            f_unbiased = lambda m: _defined_value(metric, terms_of(m, estimator="unbiased"))  # noqa: E731
        # rff/orf: the row jackknife holds the feature map fixed, so it cannot see the feature draw's error, whose sd
        # is the stderr: added in quadrature, the interval is about the exact measure's population value (Nyström's
        # stderr is a conservative bound on a one-sided error, not a noise sd: not added)
        extra = stderr if job.method in ("rff", "orf") and stderr is not None else 0.0
        if extra and f_unbiased is not None:  # a biased estimate's interval is its unbiased form's, feature error included
            extra = jackknife_stderr(terms_of(states.total(), estimator="unbiased"), fn)
        iv = loo_interval(metric, value, states, lambda m: _defined_value(metric, terms_of(m)), level, CI_SCALES[metric],
                          estimator=estimator, f_unbiased=f_unbiased, extra_se=extra)  # fmt: skip
        return with_interval(res, iv)
    if job.loo is None:  # pragma: no cover - nonlinear_terms keeps leave-out terms on every road when ci is given
        raise AssertionError(f"internal error: no leave-one-group-out terms for the interval of {job.method}")
    return with_interval(res, tile_interval(metric, job, value, level, estimator))


def _off_diagonal(t: KernelTerms) -> KernelTerms:
    """KA's terms without the diagonal pairs (kernels with a unit diagonal: tiles, block road): the ratio of the
    pair means over i ≠ j, the unbiased form of the V-statistic KA."""
    return dataclasses.replace(t, kl=t.kl - t.n, kk=t.kk - t.n, ll=t.ll - t.n)


def tile_interval(metric: str, job: Any, value: float, level: float, estimator: str = "unbiased") -> Any:
    """The block-jackknife interval from the leave-one-group-out terms an exact-tile or block job kept; for a biased
    estimate, the interval of the unbiased form from the same sums (KA: its off-diagonal pair means)."""

    def values(terms: list[KernelTerms]) -> np.ndarray:
        loo = []
        for g, t in enumerate(terms):
            try:
                v = _defined_value(metric, t)
            except DegenerateInputError as exc:
                raise DegenerateInputError(
                    f"{metric}: the sampling interval is undefined here: with row group {g} of {len(terms)} left out the "
                    f"estimate is undefined ({exc}; n = {t.n}). Use more samples, estimator='biased', or leave ci out.",
                    reason="undefined_leave_out",
                ) from exc
            loo.append(v)
        return np.array(loo)

    unbiased = None
    if estimator == "biased":
        if metric == "kernel_alignment":
            full, loo = _off_diagonal(job.terms), [_off_diagonal(t) for t in job.loo]
        else:
            full, loo = job.unbiased
        unbiased = (_defined_value(metric, full), values(loo))
    return estimator_interval(value, None if unbiased else values(job.loo), level, scale=CI_SCALES[metric],  # type: ignore[arg-type]
                              estimator=estimator, unbiased=unbiased)  # fmt: skip


@with_kernel_doc
@with_ci_doc
@with_engine_doc
def hsic(
    x: Any,
    y: Any,
    /,
    *,
    estimator: Literal["unbiased", "biased"] = "unbiased",
    kernel: Literal["linear", "rbf", "laplacian"] = "linear",
    bandwidth: Any = "median",
    method: Literal["auto", "exact", "block", "rff", "orf", "nystroem"] = "auto",
    n_features: int | None = None,
    block_rows: int | None = None,
    target_stderr: float | None = None,
    seed: int = 0,
    ci: float | None = None,
    **engine: Unpack[EngineKwargs],
) -> Result:
    """Hilbert–Schmidt independence criterion between two representations.

    Parameters
    ----------
    x, y : array-like of shape (n_samples, n_features_x), (n_samples, n_features_y)
        numpy, dask or zarr arrays or store layers; the same samples in the same order.
    estimator : {"unbiased", "biased"}, default="unbiased"
        ``"biased"``: tr(KHLH)/(n−1)².  ``"unbiased"``: the U-statistic of
        Song et al. (2012), which can be negative when x and y are (nearly)
        independent; needs n ≥ 4.
    {kernel}
    {ci}
        HSIC is unbounded: identity scale.  Linear kernel: one moment state per
        row group, each leave-one-group-out state the total minus one group;
        rff/orf/nystroem: the same on the feature moments, with the feature map
        held fixed; rff/orf add their ``stderr`` (the feature draw's error,
        which that jackknife cannot see) in quadrature, so the interval is
        about the exact measure's population value
        (``parameters["ci_approximation_se"]``), while ``stderr`` stays the
        approximation error on these rows.  Exact tiles of rbf/laplacian: the G × G
        group-pair sums and n × G partial row sums of the same tile pass give each
        leave-one-group-out value exactly (bandwidths fixed at the full-sample
        choice).  Block road: the jackknife over 20 groups of its random blocks
        (needs ≥ 40 blocks).  Biased estimates, every road: the interval of
        the unbiased estimator from the same moments, sums or blocks.
    {engine}

    Returns
    -------
    Result
        ``value`` = ``hsic_xy``; ``stderr`` for approximate methods.  A
        constant x or y gives exactly 0 with the flag ``"x_constant"``/``"y_constant"``
        (linear kernel).

    Raises
    ------
    InvalidInputError
        Mismatched n, 1-D input, non-numeric dtype, n < 4 for the unbiased estimator.
    NonFiniteError
        NaN or infinite values (the message names the input and rows).
    PairingError
        Store layers whose sample ids differ.

    Notes
    -----
    linear: exact, one streaming pass, O(n·(d_x + d_y)²) time, O((d_x + d_y)²) memory.
    rbf/laplacian: see ``method``.

    Examples
    --------
    >>> import numpy as np, bigalign
    >>> x = np.arange(4.0).reshape(4, 1)      # centred: -1.5, -0.5, 0.5, 1.5
    >>> round(bigalign.hsic(x, x, estimator="biased").value, 6)   # (Σ u²)² / (n-1)² = 25/9
    2.777778
    """
    opts = KernelOptions(kernel, bandwidth, method, n_features, block_rows, target_stderr, seed, ci,
                         EngineOptions.build("hsic", engine))  # fmt: skip
    check_choice("hsic", "estimator", estimator, ESTIMATORS)
    check_unbiased_n("hsic", paired_n(x, y), estimator)
    return _kernel_result("hsic", x, y, opts, estimator)


@with_kernel_doc
@with_ci_doc
@with_engine_doc
def cka(
    x: Any,
    y: Any,
    /,
    *,
    estimator: Literal["unbiased", "biased"] = "unbiased",
    kernel: Literal["linear", "rbf", "laplacian"] = "linear",
    bandwidth: Any = "median",
    method: Literal["auto", "exact", "block", "rff", "orf", "nystroem"] = "auto",
    n_features: int | None = None,
    block_rows: int | None = None,
    target_stderr: float | None = None,
    seed: int = 0,
    ci: float | None = None,
    **engine: Unpack[EngineKwargs],
) -> Result:
    """Centred kernel alignment: HSIC(x, y) / √(HSIC(x, x)·HSIC(y, y)).

    The default is the *unbiased* ("debiased") CKA built from Song et al.'s
    unbiased HSIC.  Why: the biased (V-statistic) CKA is inflated whenever the
    number of features is not small next to n — for independent random
    representations with d ≫ n it approaches 1 (Murphy et al. 2024) — while
    the debiased CKA stays near 0 for independent data and agrees with the
    biased one when n ≫ d.  It can be slightly negative; bigalign reports that
    honestly (flag ``"negative_unbiased_estimate"``) instead of clamping.

    Parameters
    ----------
    x, y : array-like of shape (n_samples, n_features_x), (n_samples, n_features_y)
        numpy, dask or zarr arrays or store layers; the same samples in the same order.
    estimator : {"unbiased", "biased"}, default="unbiased"
    {kernel}
    {ci}
        {ratio_ci}
    {engine}

    Returns
    -------
    Result
        ``value`` and the terms ``hsic_xy``, ``hsic_xx``, ``hsic_yy``;
        ``stderr`` for approximate methods.

    Raises
    ------
    DegenerateInputError
        x or y constant (CKA is 0/0), or a non-positive unbiased self-HSIC.
    InvalidInputError, NonFiniteError, PairingError
        As for :func:`hsic`.

    Notes
    -----
    linear: exact, one streaming pass over both inputs: O(n·(d_x + d_y)²) time,
    O((d_x + d_y)²) memory, any n.  Biased CKA lies in [0, 1] (up to rounding:
    bigalign never clamps, so 1 + 2e-16 can occur); both are
    invariant to orthogonal transforms and isotropic scaling of either input.
    Random features: the self-terms HSIC(x, x), HSIC(y, y) are debiased by
    dropping same-frequency-group products (naive random-feature CKA is
    biased low); the standard error is a delete-one-group jackknife.

    Examples
    --------
    >>> import numpy as np, bigalign
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(100, 5))
    >>> q, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    >>> round(bigalign.cka(x, 3 * x @ q).value, 12)
    1.0
    """
    opts = KernelOptions(kernel, bandwidth, method, n_features, block_rows, target_stderr, seed, ci,
                         EngineOptions.build("cka", engine))  # fmt: skip
    check_choice("cka", "estimator", estimator, ESTIMATORS)
    check_unbiased_n("cka", paired_n(x, y), estimator)
    return _kernel_result("cka", x, y, opts, estimator)


@with_kernel_doc
@with_ci_doc
@with_engine_doc
def kernel_alignment(
    x: Any,
    y: Any,
    /,
    *,
    kernel: Literal["linear", "rbf", "laplacian"] = "linear",
    bandwidth: Any = "median",
    method: Literal["auto", "exact", "block", "rff", "orf", "nystroem"] = "auto",
    n_features: int | None = None,
    block_rows: int | None = None,
    target_stderr: float | None = None,
    seed: int = 0,
    ci: float | None = None,
    **engine: Unpack[EngineKwargs],
) -> Result:
    """Uncentred kernel alignment KA = ⟨K, L⟩_F / (‖K‖_F‖L‖_F).

    With linear kernels KA = ‖XᵀY‖²_F / (‖XᵀX‖_F‖YᵀY‖_F).  Unlike CKA it is
    not invariant to translations: a large common mean pushes it towards 1.

    Parameters
    ----------
    x, y : array-like of shape (n_samples, n_features_x), (n_samples, n_features_y)
    {kernel}
    {ci}
        {ratio_ci}
    {engine}

    Returns
    -------
    Result
        ``value`` in [0, 1] (up to rounding) and the terms ``inner_kl`` = ⟨K, L⟩, ``norm_k``, ``norm_l``.

    Raises
    ------
    DegenerateInputError
        x or y identically zero (linear kernel).

    Notes
    -----
    linear: exact, one pass, O(n·(d_x + d_y)²) time, O((d_x + d_y)²) memory.
    The uncentred Gram is rebuilt from merged centred moments as M + nμμᵀ (a
    sum, which does not cancel).  Random features: ‖K‖² is debiased like the
    self-terms of CKA.

    Examples
    --------
    >>> import numpy as np, bigalign
    >>> x = np.eye(4)
    >>> bigalign.kernel_alignment(x, 2 * x).value
    1.0
    """
    opts = KernelOptions(kernel, bandwidth, method, n_features, block_rows, target_stderr, seed, ci,
                         EngineOptions.build("kernel_alignment", engine))  # fmt: skip
    return _kernel_result("kernel_alignment", x, y, opts, "biased")
