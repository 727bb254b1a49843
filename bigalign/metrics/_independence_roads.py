"""The roads of COCO / KCC / KMI: from the inputs to covariances (:mod:`bigalign.metrics.independence`).

A *job* is one call's covariances with the road that produced them, its parameters and flags, and
what the road's error estimate and ``ci=`` need: streamed linear moments, the exact n×n kernel
matrices factored by pivoted Cholesky (with their leave-one-row-group-out re-factorisations), or
one pass over explicit feature maps (rff/orf feature groups, Nyström landmark prefixes).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

from .._checks import check_applies
from ..engine import prepare
from ..errors import InvalidInputError
from ..features import BANDWIDTH_SAMPLE, KERNELS, bandwidth_ratio, resolve_bandwidths, resolve_method, sample_rows
from ..gram import blas_threads_for, centre_gram, gram, read_all
from ..grouped import GroupedStates
from ..intervals import row_groups
from ..io import as_representation
from ..moments import Moments
from ..options import EngineOptions
from ._common import check_choice, check_in_memory, engine_parameters, grouped_linear_moments, linear_moments, paired_n
from ._independence_values import Covariances, covariances_from_moments
from ._kernel_approx import NYSTROEM_MAX_RESIDUAL, NYSTROEM_STDERR, residual_fraction
from ._kernel_nonlinear import feature_moments, sub_moments


METHODS = ("auto", "exact", "rff", "orf", "nystroem")
#: ``method="exact"`` holds the n×n kernel matrices: allowed up to this n (≈ 3·n²·8 bytes at peak).
GRAM_MAX_N = 5_000
#: ``method="auto"`` is exact up to this n (O(n³): ≈ 10 s at 2,000 on a loaded 2-core VM), approximate beyond.
GRAM_AUTO_N = 2_000
#: Default feature columns (rff/orf) or landmarks (Nyström): the D×D algebra is O(D³) and the
#: jackknife repeats part of it per group (≈ 10 s at D = 512, n = 3,000 on a loaded 2-core VM, a
#: minute or more at 2,048).  Measured accuracy at D = 192: see the tests.
DEFAULT_N_FEATURES = 512


# ----------------------------------------------------------------------------
# getting the covariances: linear moments, exact Grams, or feature maps
# ----------------------------------------------------------------------------


@dataclass
class _Job:
    cov: Covariances
    method: str
    parameters: dict[str, Any]
    flags: tuple[str, ...]
    half: Covariances | None = None  # Nyström with the first m/2 landmarks (error estimate)
    quarter: Covariances | None = None  # ... and with the first m/4
    residuals: tuple[float, float, float] | None = None  # Nyström: ρ = tr(K − K̃)/tr(K) at m, m/2, m/4
    trace_bounds: tuple[float, float] | None = None  # Nyström: 1 − ‖φ̄‖² ≥ tr Σ of the exact kernel, x and y
    grouped: bool = False  # rff/orf: jackknife over groups
    ci_jobs: "_LeaveOuts | None" = None  # ci=: the job of the rows minus each contiguous row group


@dataclass
class _LeaveOuts:
    """The G leave-one-group-out jobs of ``ci=`` (for :func:`~bigalign.metrics._common.loo_interval`).

    Moment roads (linear, rff/orf, Nyström): each job's covariances come from the moment states of the
    other groups, kept in the same pass (:mod:`bigalign.grouped`), with the feature maps fixed by the
    seed and the bandwidths fixed at the full sample's.  Exact kernel matrices: each job comes from the
    kernel matrix restricted to the other rows, re-centred and re-factored (no second read).
    """

    n_groups: int
    jobs: Callable[[], Iterator["_Job"]]

    def values(self, f: Callable[["_Job"], float]) -> np.ndarray:
        return np.array([float(f(job)) for job in self.jobs()])


def _moment_leave_outs(states: GroupedStates, job_of: Callable[[Moments], "_Job"]) -> _LeaveOuts:
    return _LeaveOuts(states.n_groups, lambda: (job_of(mm) for _, mm in states.leave_one_out()))


def _gram_leave_outs(kx: np.ndarray, ky: np.ndarray, bounds: np.ndarray, params: dict[str, Any]) -> _LeaveOuts:
    """Leave-one-group-out jobs from the uncentred kernel matrices of all rows."""

    def jobs() -> Iterator[_Job]:
        n = kx.shape[0]
        for g in range(bounds.size - 1):
            keep = np.r_[0 : bounds[g], bounds[g + 1] : n]
            factors, flags = [], []
            for k, name in ((kx, "x"), (ky, "y")):
                sub = k[np.ix_(keep, keep)]
                constant = bool(np.all(sub == 1.0))  # k(x, x') = 1 only for x = x' (rbf, laplacian)
                factors.append(np.zeros((keep.size, 0)) if constant else _pivoted_cholesky_factor(centre_gram(sub)))
                if constant:
                    flags.append(f"{name}_constant")
            f, h = factors
            m = keep.size
            yield _Job(Covariances(m, f.T @ f / m, h.T @ h / m, f.T @ h / m), "exact-gram", params, tuple(flags))

    return _LeaveOuts(bounds.size - 1, jobs)


def _pivoted_cholesky_factor(kc: np.ndarray) -> np.ndarray:
    """F (n×r) with K̃ = FFᵀ to rounding, by LAPACK's pivoted Cholesky (stops at rank r)."""
    from scipy.linalg.lapack import dpstrf

    n = kc.shape[0]
    # stop when the largest remaining pivot is rounding: the residual K̃ − FFᵀ is then ≤ tol entrywise
    # (a centred Gram has rank ≤ n − 1; its last pivot is ~n·ε, not signal)
    tol = 100.0 * n * np.finfo(np.float64).eps * max(float(np.max(np.diagonal(kc))), 0.0)
    # kc is symmetric: its transpose is the same matrix in Fortran order, factored in place
    c, piv, rank, info = dpstrf(kc.T, tol=tol, lower=1, overwrite_a=1)
    if info < 0:  # pragma: no cover - LAPACK argument error
        raise AssertionError(f"internal error: dpstrf info={info}")
    f = np.empty((n, rank))
    f[piv - 1] = np.tril(c[:, :rank])
    return f


def _gram_factor(
    rep: Any, name: str, kernel: str, sigma: float, shift: np.ndarray, keep: bool = False
) -> tuple[np.ndarray, bool, np.ndarray | None]:
    with blas_threads_for(rep.n * rep.n):
        return _gram_factor_body(rep, name, kernel, sigma, shift, keep)


def _gram_factor_body(
    rep: Any, name: str, kernel: str, sigma: float, shift: np.ndarray, keep: bool
) -> tuple[np.ndarray, bool, np.ndarray | None]:
    """(factor F of the centred kernel matrix, x constant, the uncentred kernel matrix if ``keep``)."""
    xs = read_all(rep, name, shift)
    constant = bool(np.all(xs == xs[0]))
    k = gram(xs, kernel, sigma)
    del xs
    kept = k.copy() if keep else None
    kc = centre_gram(k)
    if constant:
        return np.zeros((kc.shape[0], 0)), True, kept
    return _pivoted_cholesky_factor(kc), False, kept


@dataclass(frozen=True)
class _Options:
    """The options of one coco / kcc / kmi call (``level``: the checked ``ci``)."""

    kernel: str
    bandwidth: Any
    method: str
    n_features: int | None
    seed: Any
    level: float | None
    engine: EngineOptions


def _job(func: str, x: Any, y: Any, opts: _Options) -> _Job:
    kernel, method, seed = opts.kernel, opts.method, opts.seed
    check_choice(func, "kernel", kernel, KERNELS)
    check_choice(func, "method", method, METHODS)
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise InvalidInputError(f"the 'seed' parameter of {func} must be an integer; got {seed!r} instead.")
    n = paired_n(x, y)
    if n < 2:
        raise InvalidInputError(f"{func} needs at least 2 paired samples (a covariance); got n = {n}. Pass more samples.")
    if kernel == "linear":
        if method not in ("auto", "exact"):
            raise InvalidInputError(
                f"method={method!r} approximates non-linear kernels; with kernel='linear' {func} is exact at any n "
                "from streamed moments. Use method='auto' (or 'exact'), or a non-linear kernel."
            )
        check_applies(func, "the linear kernel", bandwidth=(opts.bandwidth, "median"), n_features=(opts.n_features, None))
        loos = None
        if opts.level is None:
            m, plan = linear_moments(x, y, opts.engine)
        else:  # one moment state per contiguous row group, in the same pass
            states, plan = grouped_linear_moments(x, y, opts.engine, n, func)
            m = states.total()
            loos = _moment_leave_outs(states, lambda mm: _moment_job(mm, 0, 1, "exact-streaming", {}))
        job = _moment_job(m, 0, 1, "exact-streaming", {"kernel": "linear", **engine_parameters(plan)})
        return dataclasses.replace(job, ci_jobs=loos)

    reps = prepare([x, y], ["x", "y"])
    _, (xs, ys) = sample_rows(reps, BANDWIDTH_SAMPLE, int(seed))
    sx, sy, mx, my = resolve_bandwidths(opts.bandwidth, xs, ys)
    chosen, reason = resolve_method(
        method, n, bandwidth_ratio([sx, sy], [mx, my]), exact_max_n=GRAM_AUTO_N, exact="exact kernel matrices"
    )
    shifts = [xs.mean(axis=0), ys.mean(axis=0)]
    params: dict[str, Any] = {
        "kernel": kernel, "bandwidth_x": sx, "bandwidth_y": sy, "median_x": mx, "median_y": my,
        "bandwidth_sample": int(xs.shape[0]), "seed": int(seed), "method_reason": reason,
    }  # fmt: skip
    if chosen == "exact":
        if n > GRAM_MAX_N:
            raise InvalidInputError(
                f"method='exact' with kernel={kernel!r} holds the n×n kernel matrices, allowed up to n = {GRAM_MAX_N} "
                f"(≈ {3 * GRAM_MAX_N**2 * 8 / 2**30:.1f} GiB at peak); got n = {n}. Use method='nystroem' (or 'orf'), "
                f"or method='auto', which streams features beyond n = {GRAM_AUTO_N}."
            )
        check_in_memory(func, opts.engine, 3 * n * n * 8, f"method='exact' with kernel={kernel!r} holds the {n}×{n} kernel "
                        "matrices", "Use method='nystroem' (or 'orf'), which streams features, or a larger memory_per_worker.")  # fmt: skip
        bounds = None if opts.level is None else row_groups(n, func=func)  # too few rows: an error before the work
        f, cx, kx = _gram_factor(reps[0], "x", kernel, sx, shifts[0], keep=bounds is not None)
        g, cy, ky = _gram_factor(reps[1], "y", kernel, sy, shifts[1], keep=bounds is not None)
        cov = Covariances(n, f.T @ f / n, g.T @ g / n, f.T @ g / n)
        params.update(representation="kernel matrices, pivoted Cholesky", rank_x=f.shape[1], rank_y=g.shape[1])
        flags = tuple(fl for fl, c in (("x_constant", cx), ("y_constant", cy)) if c)
        loos = None if bounds is None else _gram_leave_outs(kx, ky, bounds, params)  # type: ignore[arg-type]
        return _Job(cov, "exact-gram", params, flags, ci_jobs=loos)
    m, views, plan, fparams = feature_moments(
        reps, kernel=kernel, method=chosen, sigmas=[sx, sy], shifts=shifts, n_features=opts.n_features or DEFAULT_N_FEATURES,
        seed=int(seed), pairs=[(0, 1)], options=opts.engine, ci_rows=None if opts.level is None else n, ci_func=func,
    )  # fmt: skip
    loos = None
    if opts.level is not None:  # one feature-moment state per contiguous row group, in the same pass
        states, m = m, m.total()
        # the leave-out value is the value's own finalize (rff/orf: with the feature-group bias correction)
        loos = _moment_leave_outs(states, lambda mm: dataclasses.replace(
            _moment_job(sub_moments(mm, views[0][0], views[1][0]), 0, 1, chosen, {}), grouped=chosen != "nystroem"))
    params.update(fparams, block_size=plan.block_rows, n_blocks=plan.n_blocks, scheduler=plan.scheduler)
    full = sub_moments(m, views[0][0], views[1][0])
    flags = tuple(f for f, s in (("x_constant", full.sides[0]), ("y_constant", full.sides[1])) if s.is_constant)
    cov = covariances_from_moments(full, 0, 1)
    if chosen == "nystroem":
        # nested landmark prefixes m, m/2, m/4 (views[k] = [full, half, quarter]: feature_moments)
        levels = [full] + [sub_moments(m, views[0][a], views[1][a]) for a in (1, 2)]
        # ρ of the pair: the mean of the two inputs' missed trace fractions (k(x, x) = 1: rbf, laplacian)
        rho = tuple(0.5 * (residual_fraction(lv.sides[0]) + residual_fraction(lv.sides[1])) for lv in levels)
        if rho[0] > NYSTROEM_MAX_RESIDUAL:
            flags += ("nystroem_not_converged",)
        # 1 − ‖φ̄‖² = tr Σ̃ + ρ: an upper bound of the exact kernel's tr Σ (1ᵀK̃1 ≤ 1ᵀK1 as K̃ ⪯ K)
        bounds = (1.0 - float(full.sides[0].mean @ full.sides[0].mean), 1.0 - float(full.sides[1].mean @ full.sides[1].mean))
        ridge = "" if func == "coco" else ", combined in quadrature with the ridge bias bound (terms)"
        params.update(stderr=NYSTROEM_STDERR + ridge, residual_trace_fraction=rho[0])
        return _Job(
            cov, "nystroem", params, flags, half=covariances_from_moments(levels[1], 0, 1),
            quarter=covariances_from_moments(levels[2], 0, 1), residuals=rho, trace_bounds=bounds,  # type: ignore[arg-type]
            ci_jobs=loos,
        )  # fmt: skip
    params["stderr"] = "jackknife over feature groups"
    return _Job(cov, chosen, params, flags, grouped=True, ci_jobs=loos)


def _moment_job(m: Moments, i: int, j: int, method: str, params: dict[str, Any]) -> _Job:
    """The job of inputs i and j of merged moments (covariances and constant-input flags)."""
    flags = tuple(f for f, s in (("x_constant", m.sides[i]), ("y_constant", m.sides[j])) if s.is_constant)
    return _Job(covariances_from_moments(m, i, j), method, dict(params), flags)


def _small_blas(x: Any, y: Any, opts: _Options) -> Any:
    """One BLAS thread for small problems (thread wake-ups cost more than the work; see bigalign.stats).

    The size is the number of float64 values the pass and the algebra touch:
    n·(d_x + d_y + 2D) + (2D)², D the feature width (d for linear, n for exact).
    """
    rx, ry = as_representation(x, "x"), as_representation(y, "y")
    n = max(rx.n, ry.n)
    if opts.kernel == "linear":
        width = max(rx.d, ry.d)
    elif opts.method == "exact" or (opts.method == "auto" and n <= GRAM_AUTO_N):
        width = n
    else:
        nf = opts.n_features
        width = int(nf) if isinstance(nf, (int, np.integer)) and not isinstance(nf, bool) and nf > 0 else DEFAULT_N_FEATURES
    return blas_threads_for(n * (rx.d + ry.d + 2 * width) + 4 * width * width)
