"""Non-linear kernels: bandwidth, method choice, and the exact or approximate pass.

Everything here produces :class:`~bigalign.metrics._kernel_approx.KernelTerms`
(the HSIC and KA terms) from which the façades in ``kernel.py`` build CKA,
HSIC or KA and their standard errors.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..engine import _n_workers, prepare, resolve_scheduler, run, run_pairs
from ..errors import DegenerateInputError, InvalidInputError
from ..features import (
    BANDWIDTH_SAMPLE,
    KERNEL_EXACT_MAX_N,
    NYSTROEM_MIN_RATIO,
    bandwidth_ratio,
    resolve_bandwidths,
    resolve_method,
    draw_nystroem,
    draw_random_fourier,
    kernel_scale,
    sample_rows,
)
from ..grouped import grouped_statistic
from ..moments import MomentStatistic
from ._kernel_approx import (
    FeatureMomentStatistic,
    NYSTROEM_MAX_RESIDUAL,
    NYSTROEM_STDERR,
    KernelTerms,
    jackknife_stderr,
    nystroem_stderr,
    residual_fraction,
    terms_from_groups,
    terms_from_single,
    zero_terms,
)
from ._blocks import partition, run_blocks
from ._common import feature_options
from ._kernel_block import (
    BLOCK_STDERR, MIN_BLOCK, N_MEANS, BlockEstimate, KernelBlockTerms, block_estimate, block_stderr, terms_from_means,
)  # fmt: skip
from ._kernel_exact import KernelSums, KernelTileStatistic, hsic_from_sums
from ._tile_groups import GroupedTileStatistic
from ..intervals import DEFAULT_CI_GROUPS, row_groups
from ..moments import Cross, Moments
from ..options import EngineOptions

_bandwidths = resolve_bandwidths  # the name the kernel modules used

METHODS = ("auto", "exact", "block", "rff", "orf", "nystroem")
#: ``method="auto"`` computes exact tiles up to this many samples (the shared default, see bigalign.features)
EXACT_MAX_N = KERNEL_EXACT_MAX_N
DEFAULT_RANDOM_FEATURES = 2048  # feature columns (= 1024 frequencies × [cos, sin])
DEFAULT_LANDMARKS = 1024
#: precision of the random-feature maps and per-block products (accumulated in float64) of cka, hsic and
#: kernel_alignment; the rounding it adds is <= 1e-8 relative, >= 10⁶x below the approximation error
#: (benchmarks/results/rff_float32.md).  Other callers of feature_moments default to float64.
KERNEL_FEATURE_PRECISION = "float32"
#: random block size of ``method="block"`` when not given (``method="auto"`` sizes it from its target)
DEFAULT_BLOCK_ROWS = 1024


@dataclass
class NonlinearJob:
    terms: KernelTerms
    method: str
    parameters: dict[str, Any]
    half: KernelTerms | None = None  # Nyström with the first m/2 landmarks (error estimate)
    quarter: KernelTerms | None = None  # ... and with the first m/4
    residuals: tuple[float, float, float] | None = None  # Nyström: ρ = tr(K − K̃)/tr(K) at m, m/2, m/4
    flags: tuple[str, ...] = ()
    stderr_kind: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    block: BlockEstimate | None = None  # the block road: per-block degenerate differences
    ci_states: Any = None  # with ci=: (GroupedStates of the pass, (moments, estimator=) -> KernelTerms)
    loo: list[KernelTerms] | None = None  # ci: the terms of the rows minus each contiguous row group
    #: ci of a biased estimate (tiles, block road): the unbiased terms of all rows and of each leave-out, from the
    #: same sums (intervals.estimator_interval: a biased estimate's interval is its unbiased form's)
    unbiased: tuple[KernelTerms, list[KernelTerms]] | None = None


#: the metric as a function of the terms (numpy arrays allowed)
METRIC_FNS: dict[str, Any] = {
    "hsic": lambda t: t.hxy,
    "cka": lambda t: t.hxy / np.sqrt(t.hxx * t.hyy),
    "kernel_alignment": lambda t: t.kl / np.sqrt(t.kk * t.ll),
}


def check_n_features(n_features: Any) -> None:
    if n_features is not None and (isinstance(n_features, bool) or not isinstance(n_features, (int, np.integer)) or n_features < 1):
        raise InvalidInputError(
            f"n_features must be a positive integer (random feature columns, or Nystroem landmarks) or None for the "
            f"default; got {n_features!r}."
        )


def check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidInputError(f"seed must be a non-negative integer; got {seed!r}.")
    return int(seed)


# ----------------------------------------------------------------------------
# method="auto" for the kernel metrics: predicted accuracy per second
# ----------------------------------------------------------------------------

#: default ``target_stderr`` of ``method="auto"``: the standard error (of the distance to the exact value
#: on the same rows) the approximation is sized for
DEFAULT_TARGET_STDERR = 1e-3
#: cost model of a pair of rows (CPU seconds on one core of the calibration machine, see docs/approximate.md;
#: marginal cost of exact tiles between n = 5,000 and 10,000: 51 ns at d = 16, 108 ns at d = 768):
#: COST_PER_DIM·(d_x + d_y) for the two distance GEMMs + COST_PER_PAIR for the fused loop (two exp)
COST_PER_DIM = 3.7e-11
COST_PER_PAIR = 5.0e-8
#: ... plus, for the block road, gathering and preparing its rows (random-order reads, float64 copies, small
#: per-block GEMMs): COST_PER_VALUE per input value (measured at n = 5·10⁴, d = 768 + 768, B = 64: 3.2 CPU s
#: of which 0.13 s pairs)
COST_PER_VALUE = 4.0e-8
#: exact tiles are chosen outright when predicted to take at most this many seconds
EXACT_CHEAP_S = 2.0
#: the block road needs at least this many blocks (the degrees of freedom of its error bar)
MIN_BLOCKS = 10
#: the pilot: partitions of the bandwidth sample into blocks of PILOT_BLOCK rows
PILOT_BLOCK = 64
PILOT_PARTITIONS = 4
#: the block size is chosen for a predicted stderr of TARGET_SAFETY × target (the pilot's constant is noisy)
TARGET_SAFETY = 0.8


def pair_seconds(dx: int, dy: int) -> float:
    """Predicted single-core seconds of one pair of rows in a kernel tile."""
    return COST_PER_DIM * (dx + dy) + COST_PER_PAIR


def predicted_seconds(road: str, n: int, dx: int, dy: int, workers: int, block: int | None = None) -> float:
    """Wall seconds the cost model predicts on an otherwise idle machine: exact tiles visit n²/2 pairs,
    the block road 3·n·B/4 (each block as three half × half sub-tiles) and gathers every row once."""
    if road == "exact":
        return n * n / 2.0 * pair_seconds(dx, dy) / max(1, workers)
    return (0.75 * n * float(block) * pair_seconds(dx, dy) + COST_PER_VALUE * n * (dx + dy)) / max(1, workers)  # type: ignore[arg-type]


def pilot_constant(xs: np.ndarray, ys: np.ndarray, stat: KernelTileStatistic, metric: str, estimator: str, seed: int) -> float:
    """c in stderr²(n, B) ≈ c/(n·B) · (1 − (B−1)/(n−1)): the block road's error constant, measured on
    the (in-memory) bandwidth sample with PILOT_PARTITIONS partitions into blocks of PILOT_BLOCK rows.

    The pair-level degenerate part dominates, whose variance falls as 1/B²; higher-order parts
    fall faster, so extrapolating from small pilot blocks over-predicts (conservative).  NaN when
    the metric is undefined on the pilot blocks.
    """
    n_p = xs.shape[0]
    if n_p // PILOT_BLOCK < 2:  # too few sampled rows for two pilot blocks
        return float("nan")
    f = METRIC_FNS[metric]
    per_block = KernelBlockTerms(stat)
    cs = []
    for k in range(PILOT_PARTITIONS):
        perm, bounds = partition(n_p, PILOT_BLOCK, seed * PILOT_PARTITIONS + k)
        out = np.stack([per_block(xs[perm[a:b]], ys[perm[a:b]]) for a, b in zip(bounds[:-1], bounds[1:])])
        est = block_estimate(n_p, out, estimator)
        se = block_stderr(est, f, _Terms(est.terms))
        cs.append(se * se * n_p * PILOT_BLOCK / est.fpc if est.fpc > 0 else float("nan"))
    return float(np.mean(cs))


class _Terms:
    def __init__(self, d: dict[str, float]):
        self.__dict__.update(d)


def choose_road(
    n: int, dx: int, dy: int, workers: int, target: float, pilot: Any
) -> tuple[str, int | None, str, dict[str, Any]]:  # fmt: skip
    """(road, B, reason, parameters) of ``method="auto"`` for a non-linear kernel metric.

    Exact tiles when the cost model predicts them to be cheap (≤ EXACT_CHEAP_S) or no slower than
    the block road sized for the target; else the block road with the smallest B whose predicted
    stderr is TARGET_SAFETY × target.  ``pilot()`` returns the error constant (computed only when
    needed).  Random features and Nyström are never chosen: their error does not shrink with n,
    while the block road's cost for a fixed target does not grow with n (B ∝ 1/(n·target²)), so
    at every n where exact tiles are too slow the block road is the cheaper of the two.
    """
    t_exact = predicted_seconds("exact", n, dx, dy, workers)
    info: dict[str, Any] = {"target_stderr": target, "predicted_seconds_exact": t_exact}
    if target == 0:
        return "exact", None, "target_stderr = 0: exact tiles", {**info, "predicted_stderr": 0.0}
    if t_exact <= EXACT_CHEAP_S:
        return "exact", None, f"exact tiles predicted to take {t_exact:.2g} s (<= {EXACT_CHEAP_S:g} s)", {**info, "predicted_stderr": 0.0}
    c = float(pilot())
    info["pilot_constant"] = c
    if not np.isfinite(c):
        return "exact", None, "the metric is undefined on the pilot blocks (too few rows per block): exact tiles", {**info, "predicted_stderr": 0.0}
    t2 = (TARGET_SAFETY * target) ** 2
    # c·(n − B)/(n²·B) ≤ t²  ⇔  B ≥ c·n/(t²·n² + c)
    B = max(MIN_BLOCK * 8, int(np.ceil(c * n / (t2 * n * n + c))))
    if n // B < MIN_BLOCKS:
        return "exact", None, (
            f"the target stderr {target:g} needs blocks of {B} rows, fewer than {MIN_BLOCKS} blocks at n = {n}: exact tiles"
        ), {**info, "predicted_stderr": 0.0}  # fmt: skip
    t_block = predicted_seconds("block", n, dx, dy, workers, B)
    predicted = float(np.sqrt(c / (n * B) * max(0.0, 1.0 - (B - 1.0) / (n - 1.0))))
    info.update(predicted_seconds_block=t_block, predicted_stderr=predicted)
    if t_block >= t_exact:
        return "exact", None, f"block road for stderr {target:g} predicted no faster than exact tiles ({t_block:.3g} s vs {t_exact:.3g} s)", info
    return "block", B, (
        f"block road with B = {B} predicted to reach stderr {predicted:.2g} <= {target:g} in {t_block:.3g} s "
        f"(exact tiles: {t_exact:.3g} s)"
    ), info  # fmt: skip


def block_job(
    reps: list, kernel: str, sigmas: list[float], shifts: list[np.ndarray], estimator: str, options: EngineOptions,
    params: dict[str, Any], block: int, seed: int, with_loo: bool = False,
) -> NonlinearJob:  # fmt: skip
    """The block road over the pair (reps[0], reps[1]): exact tiles inside seeded random blocks of ``block`` rows.

    ``with_loo``: also the terms without each of G contiguous groups of the blocks (in block order), for
    the sampling interval (the blocks' U-statistic means are i.i.d. under exchangeable rows).
    """
    n = reps[0].n
    stat = KernelTileStatistic(kernel, kernel_scale(kernel, sigmas[0]), kernel_scale(kernel, sigmas[1]), shifts[0], shifts[1])
    workers = _n_workers(*resolve_scheduler(options.scheduler, options.client), options.num_workers)
    out, bparams = run_blocks(reps, block, seed, KernelBlockTerms(stat), options, workers)
    est = block_estimate(n, out, estimator)
    t = est.terms
    terms = KernelTerms(n=n, hxy=t["hxy"], hxx=t["hxx"], hyy=t["hyy"], kl=t["kl"], kk=t["kk"], ll=t["ll"])
    sizes = bparams.pop("block_rows")
    params = dict(params, block_rows=block, block_sizes=sizes, **bparams)
    if options.block_size:
        params["block_size"] = int(options.block_size)
    # every block's kernel ≡ 1 (u₂ of K is its mean of k², 1 iff all k = 1)
    flags = tuple(f for f, k in (("x_constant_kernel", 3), ("y_constant_kernel", 6)) if np.all(out[:, k] == 1.0))
    loo = unbiased = None
    if with_loo:
        gb = row_groups(out.shape[0], DEFAULT_CI_GROUPS)
        U = out[:, :N_MEANS]

        def block_terms(rows: Any, est: str) -> KernelTerms:
            return KernelTerms(n=n, **{k: float(v) for k, v in terms_from_means(n, U[rows].mean(axis=0), est).items()})

        kept = [np.r_[0 : gb[g], gb[g + 1] : U.shape[0]] for g in range(DEFAULT_CI_GROUPS)]
        loo = [block_terms(k, estimator) for k in kept]
        if estimator == "biased":
            unbiased = (block_terms(slice(None), "unbiased"), [block_terms(k, "unbiased") for k in kept])
        params["ci_blocks"] = (
            f"jackknife over {DEFAULT_CI_GROUPS} groups of the random blocks (i.i.d. under exchangeable rows): about the "
            "population value; the random blocks ignore storage order, so rows that depend on their neighbours are "
            "not protected against (the exact road's contiguous row groups are)"
        )
    return NonlinearJob(terms=terms, method="block", parameters=params, flags=flags, stderr_kind=BLOCK_STDERR, block=est, loo=loo,
                        unbiased=unbiased)  # fmt: skip



def check_target(target_stderr: Any, method: str) -> float:
    if target_stderr is None:
        return DEFAULT_TARGET_STDERR
    if method != "auto":
        raise InvalidInputError(
            f"target_stderr sizes the approximation that method='auto' chooses; with method={method!r} it does not "
            "apply. Drop target_stderr, or use method='auto'."
        )
    if isinstance(target_stderr, bool) or not isinstance(target_stderr, (int, float, np.integer, np.floating)) or not (
        np.isfinite(target_stderr) and target_stderr >= 0
    ):
        raise InvalidInputError(f"target_stderr must be a finite number >= 0 (0: exact); got {target_stderr!r}.")
    return float(target_stderr)


def check_block_rows(block_rows: Any, method: str, n: int) -> int | None:
    if block_rows is None:
        return None
    if method != "block":
        raise InvalidInputError(
            f"block_rows is the random block size of method='block'; with method={method!r} it does not apply "
            "(method='auto' sizes its blocks from target_stderr). Drop block_rows, or use method='block'."
        )
    if isinstance(block_rows, bool) or not isinstance(block_rows, (int, np.integer)) or block_rows < MIN_BLOCK:
        raise InvalidInputError(f"block_rows must be an integer >= {MIN_BLOCK} (two halves of >= 4 rows); got {block_rows!r}.")
    if n // int(block_rows) < 1:
        raise InvalidInputError(f"block_rows = {block_rows} exceeds n = {n}. Use block_rows <= n (or method='exact').")
    return int(block_rows)


def nonlinear_terms(
    x: Any,
    y: Any,
    *,
    kernel: str,
    bandwidth: Any,
    method: str,
    n_features: int | None,
    seed: int,
    estimator: str,
    options: EngineOptions,
    block_rows: int | None = None,
    target_stderr: float | None = None,
    metric: str = "cka",
    ci_level: float | None = None,
) -> NonlinearJob:
    reps = prepare([x, y], ["x", "y"])
    n = reps[0].n
    bounds = None if ci_level is None else row_groups(n, DEFAULT_CI_GROUPS, func=metric)
    seed = check_seed(seed)
    check_n_features(n_features)
    if n_features is not None and method not in ("rff", "orf", "nystroem"):
        raise InvalidInputError(
            f"n_features sizes method='rff', 'orf' or 'nystroem'; with method={method!r} it does not apply. "
            "Drop n_features, or name one of those methods."
        )
    target = check_target(target_stderr, method)
    block = check_block_rows(block_rows, method, n)
    _, (xs, ys) = sample_rows(reps, BANDWIDTH_SAMPLE, seed)
    sx, sy, mx, my = _bandwidths(bandwidth, xs, ys)
    shift_x, shift_y = xs.mean(axis=0), ys.mean(axis=0)
    params: dict[str, Any] = {
        "kernel": kernel,
        "bandwidth_x": sx,
        "bandwidth_y": sy,
        "median_x": mx,
        "median_y": my,
        "bandwidth_sample": int(xs.shape[0]),
        "seed": int(seed),
    }
    if method == "auto":
        workers = _n_workers(*resolve_scheduler(options.scheduler, options.client), options.num_workers)
        stat = KernelTileStatistic(kernel, kernel_scale(kernel, sx), kernel_scale(kernel, sy), shift_x, shift_y)
        chosen, block, reason, info = choose_road(
            n, reps[0].d, reps[1].d, workers, target, lambda: pilot_constant(xs, ys, stat, metric, estimator, seed)
        )
        params.update(info)
    else:
        chosen, reason = method, "requested"
    params["method_reason"] = reason
    if chosen == "exact":
        job = exact_job(reps, kernel, [sx, sy], [shift_x, shift_y], estimator, options, params, bounds=bounds)
        return job
    if chosen == "block":
        b = block or min(DEFAULT_BLOCK_ROWS, n)
        if ci_level is not None and n // b < 2 * DEFAULT_CI_GROUPS:
            raise InvalidInputError(
                f"{metric}: ci= on the block road is the jackknife over {DEFAULT_CI_GROUPS} groups of its random blocks and "
                f"needs at least {2 * DEFAULT_CI_GROUPS} blocks; n = {n} holds {n // b} of block_rows = {b}. Use "
                f"block_rows <= {n // (2 * DEFAULT_CI_GROUPS)}, method='exact', or leave ci out."
            )
        job = block_job(reps, kernel, [sx, sy], [shift_x, shift_y], estimator, options, params, b, seed, with_loo=ci_level is not None)
        return job
    if chosen not in ("rff", "orf", "nystroem"):
        raise InvalidInputError(f"the 'method' parameter must be one of {list(METHODS)}; got {method!r} instead.")
    ratio = bandwidth_ratio([sx, sy], [mx, my])
    m, views, plan, fparams = feature_moments(
        reps, kernel=kernel, method=chosen, sigmas=[sx, sy], shifts=[shift_x, shift_y],
        n_features=n_features, seed=int(seed), pairs=[(0, 1)], options=options, precision=KERNEL_FEATURE_PRECISION,
        ci_rows=None if ci_level is None else n, ci_func=metric,
    )  # fmt: skip
    params.update(fparams, block_size=plan.block_rows, n_blocks=plan.n_blocks, scheduler=plan.scheduler)
    if ci_level is None:
        job = feature_job(m, views, 0, 1, chosen, estimator, params)
    else:
        states = m
        job = feature_job(states.total(), views, 0, 1, chosen, estimator, params)
        job = dataclasses.replace(job, ci_states=(states, lambda mm, estimator=estimator: feature_job(mm, views, 0, 1, chosen, estimator, params).terms))
    if chosen == "nystroem" and ratio < NYSTROEM_MIN_RATIO:
        # few landmarks capture little of a narrow kernel (see nystroem_not_converged)
        job = dataclasses.replace(job, flags=job.flags + ("nystroem_small_bandwidth",))
    return job


def exact_job(
    reps: list, kernel: str, sigmas: list[float], shifts: list[np.ndarray], estimator: str, options: EngineOptions, params: dict[str, Any],
    bounds: np.ndarray | None = None,
) -> NonlinearJob:  # fmt: skip
    """Exact tiles over the pair (reps[0], reps[1]).

    With ``bounds`` (contiguous row groups), the same pass keeps the grouped state of
    :class:`~bigalign.metrics._tile_groups.GroupedTileStatistic`, and the job carries the exact
    terms of the rows minus each group (``loo``), with the kernels' bandwidths fixed at the
    full-sample choice.
    """
    n = reps[0].n
    stat = KernelTileStatistic(kernel, kernel_scale(kernel, sigmas[0]), kernel_scale(kernel, sigmas[1]), shifts[0], shifts[1])
    loo = unbiased = None
    if bounds is None:
        sums, plan = run_pairs(stat, reps, check_pairing=False, options=options)
    else:
        grouped, plan = run_pairs(GroupedTileStatistic(stat, bounds), reps, check_pairing=False, options=options)
        sums = grouped.full()
        without = [grouped.without(g) for g in range(grouped.groups)]
        loo = [exact_terms(w, estimator) for w in without]
        if estimator == "biased":  # the interval's unbiased form, from the same sums
            unbiased = (exact_terms(sums, "unbiased"), [exact_terms(w, "unbiased") for w in without])
    params = dict(params, block_size=plan.block_rows, n_tiles=plan.n_blocks * (plan.n_blocks + 1) // 2, scheduler=plan.scheduler)
    if loo is not None:
        params["ci_bandwidth"] = "fixed at the full-sample choice for the leave-one-group-out values"
    # identical rows give d² = 0 exactly (refined), so k = 1 exactly: A_kk = n(n−1) iff K ≡ 1
    flags = tuple(f for f, a in (("x_constant_kernel", sums.kk), ("y_constant_kernel", sums.ll)) if a == n * (n - 1))
    return NonlinearJob(terms=exact_terms(sums, estimator), method="exact-tiles", parameters=params, flags=flags, loo=loo,
                        unbiased=unbiased)  # fmt: skip


def exact_terms(sums: KernelSums, estimator: str) -> KernelTerms:
    """HSIC and KA terms from the off-diagonal sums of kernels with a unit diagonal."""
    n = sums.n
    return KernelTerms(
        n=n,
        hxy=hsic_from_sums(n, sums.kl, sums.r, sums.s, estimator),
        hxx=hsic_from_sums(n, sums.kk, sums.r, sums.r, estimator),
        hyy=hsic_from_sums(n, sums.ll, sums.s, sums.s, estimator),
        kl=sums.kl + n,
        kk=sums.kk + n,
        ll=sums.ll + n,
    )


def feature_moments(
    reps: list,
    *,
    kernel: str,
    method: str,
    sigmas: list[float],
    shifts: list[np.ndarray],
    n_features: int | None,
    seed: int,
    pairs: list[tuple[int, int]],
    options: EngineOptions,
    keys: list[int] | None = None,
    precision: str | None = None,
    ci_rows: int | None = None,
    ci_func: str = "ci",
) -> tuple[Any, list[list[int]], Any, dict[str, Any]]:
    """One streaming pass over the feature maps of several inputs.

    Returns (moments, views, plan, parameters); ``views[k]`` lists the moment
    indices of input k's maps (rff/orf: [map]; nystroem: [m landmarks, the
    first m/2, the first m/4] — nested prefixes of one random order, for the
    error estimate of :func:`~bigalign.metrics._kernel_approx.nystroem_stderr`).
    Input k's random-feature map is drawn from the seed and ``keys[k]``
    (default k), so the same seed and key give the same map whatever else is
    in the pass; Nyström landmarks are the same rows for every input.
    ``precision="float32"`` (rff/orf): the maps and per-block feature products in float32,
    accumulated in float64 (:class:`~bigalign.metrics._kernel_approx.FeatureMomentStatistic`);
    ``"float64"`` keeps every step in float64.
    ``ci_rows=n``: the moments are kept per contiguous row group
    (:class:`~bigalign.grouped.GroupedStates` instead of merged moments), for a sampling interval.
    """
    n = reps[0].n
    precision = precision or "float64"
    if method in ("rff", "orf"):
        D = int(n_features or DEFAULT_RANDOM_FEATURES)
        if D < 6 or D % 2:
            raise InvalidInputError(
                f"n_features for {method} counts feature columns (cos and sin of each frequency), so it must be an "
                f"even number >= 6 (3 groups of frequencies for the debiased estimator); got {n_features!r}."
            )
        keys = list(range(len(reps))) if keys is None else keys
        maps = [
            draw_random_fourier(
                kernel, r.d, D // 2, s, sh, np.random.default_rng([seed, 2, key]), orthogonal=method == "orf", dtype=precision
            )
            for r, s, sh, key in zip(reps, sigmas, shifts, keys)
        ]
        if maps[0].n_groups < 3:
            raise InvalidInputError(
                f"n_features = {D} gives {D // 2} frequencies, which split into only {maps[0].n_groups} equal groups; "
                "the debiased estimator needs >= 3. Use a multiple of 6 or of 64 (e.g. 2048)."
            )
        views = [[k] for k in range(len(reps))]
        inputs, names = list(reps), [r.name for r in reps]
        mpairs = [(i, j) for i, j in pairs]
        groups = tuple(f.bounds for f in maps)
        params: dict[str, Any] = {"n_features": D, "n_groups": maps[0].n_groups, "precision": precision}
        width = D
    else:
        m_land = int(n_features or DEFAULT_LANDMARKS)
        if m_land < 4:
            raise InvalidInputError(f"n_features (landmarks) for nystroem must be >= 4; got {n_features!r}.")
        m_land = min(m_land, n)
        _, lands = sample_rows(reps, m_land, seed + 1)
        order = np.random.default_rng([seed, 3]).permutation(m_land)  # prefixes of it: uniform subsets
        levels = (m_land, m_land // 2, m_land // 4)  # nested: each map's landmarks contain the next one's
        level_maps = [
            [draw_nystroem(kernel, l[order][:size], s, sh) for l, s, sh in zip(lands, sigmas, shifts)] for size in levels
        ]
        k = len(reps)
        maps = [f for lv in level_maps for f in lv]
        views = [[a * k + i for a in range(len(levels))] for i in range(k)]
        inputs, names = list(reps) * len(levels), [r.name for r in reps] * len(levels)
        mpairs = [(a * k + i, a * k + j) for a in range(len(levels)) for i, j in pairs]
        groups = ()
        params = {
            "n_features": m_land,
            "ranks": [f.n_features for f in level_maps[0]],
            "landmarks": "uniform without replacement",
            "landmark_levels": list(levels),
        }
        width = sum(levels)
    cls = FeatureMomentStatistic if method in ("rff", "orf") and precision == "float32" else MomentStatistic
    stat = cls(names=tuple(names), pairs=tuple(mpairs), groups=groups, transforms=tuple(maps))
    if ci_rows is not None:
        stat = grouped_statistic(stat, ci_rows, func=ci_func)
    m, plan = run(stat, inputs, check_pairing=False, options=feature_options(options, reps, width, width))
    return m, views, plan, params


def sub_moments(m: Any, i: int, j: int) -> Any:
    """The moments of inputs i and j only, as inputs 0 and 1."""
    cross = m.crosses[(i, j)] if (i, j) in m.crosses else None
    if cross is None:
        c = m.crosses[(j, i)]
        cross = Cross(M=c.M.T, T=c.T.T, A=c.B, B=c.A)
    return Moments(sides=[m.sides[i], m.sides[j]], crosses={(0, 1): cross})


def _self_moments(m: Any, i: int, j: int) -> Any:
    s = m.sides[i]
    return Moments(sides=[s, s], crosses={(0, 1): Cross(M=s.M, T=s.T, A=s.A, B=s.A)})


def self_job(m: Any, views: list[list[int]], i: int, method: str, estimator: str, params: dict[str, Any]) -> NonlinearJob:
    """An input compared with itself: the cross terms are the (debiased) self terms."""
    job = feature_job(m, views, i, i, method, estimator, params, same=True)
    return dataclasses.replace(job, terms=_as_self(job.terms), half=_as_self(job.half), quarter=_as_self(job.quarter))


def _as_self(t: KernelTerms | None) -> KernelTerms | None:
    if t is None:
        return None
    return dataclasses.replace(t, hxy=t.hxx, hyy=t.hxx, kl=t.kk, ll=t.kk, replicates=_as_self(t.replicates))


def feature_job(
    m: Any, views: list[list[int]], i: int, j: int, method: str, estimator: str, params: dict[str, Any], same: bool = False
) -> NonlinearJob:
    """Terms, flags and error estimate of the pair (input i, input j) from feature moments."""
    sub = _self_moments if same else sub_moments
    full = sub(m, views[i][0], views[j][0])
    flags = tuple(f for f, s in (("x_constant", full.sides[0]), ("y_constant", full.sides[1])) if s.is_constant)
    if method in ("rff", "orf"):
        return NonlinearJob(
            terms=terms_from_groups(full, estimator), method=method, parameters=params, flags=flags,
            stderr_kind="jackknife over feature groups",
        )  # fmt: skip
    levels = [full] + [sub(m, views[i][a], views[j][a]) for a in (1, 2)]
    terms = [terms_from_single(lv, 0, 1, estimator) for lv in levels]
    # ρ of the pair: the mean of the two inputs' residual trace fractions (one input when same)
    rho = tuple(0.5 * (residual_fraction(lv.sides[0]) + residual_fraction(lv.sides[1])) for lv in levels)
    if rho[0] > NYSTROEM_MAX_RESIDUAL:
        flags += ("nystroem_not_converged",)
    return NonlinearJob(
        terms=terms[0],
        half=terms[1],
        quarter=terms[2],
        residuals=rho,  # type: ignore[arg-type]
        method="nystroem",
        parameters={**params, "residual_trace_fraction": rho[0]},
        flags=flags,
        stderr_kind=NYSTROEM_STDERR,
    )




def check_degenerate(job: NonlinearJob, what: str) -> None:
    for f in (f for f in job.flags if f in ("x_constant", "y_constant", "x_constant_kernel", "y_constant_kernel")):
        which = f.split("_")[0]
        raise DegenerateInputError(
            f"{what} is undefined: the kernel of {which} is constant ({which} is constant, or its bandwidth is so "
            "large that every kernel value rounds to 1), so its centred kernel is zero. Expected a varying "
            "representation and a bandwidth comparable to its pairwise distances (e.g. bandwidth='median').",
            reason=f,
        )


def jackknife_or_half(job: NonlinearJob, f: Any) -> float | None:
    """Standard error of f(terms) for approximate methods (None for exact).

    rff/orf: the delete-one-group jackknife.  Nyström: :func:`nystroem_stderr`
    over the nested landmark levels m, m/2, m/4 — plus "no landmarks" (K̃ = 0,
    ρ = 1) where f is defined there (HSIC: 0; CKA and KA are 0/0 there).
    """
    if job.block is not None:
        return block_stderr(job.block, f, job.terms)
    if job.terms.replicates is not None:
        return jackknife_stderr(job.terms, f)
    if job.half is not None and job.quarter is not None and job.residuals is not None:
        values = [_value(f, t) for t in (job.terms, job.half, job.quarter)]
        return nystroem_stderr(values, list(job.residuals), zero=_value(f, zero_terms(job.terms.n)))
    return None


def _value(f: Any, t: KernelTerms) -> float | None:
    """f(t), or None where it is undefined (0/0, the root of a negative self-term)."""
    with np.errstate(all="ignore"):
        try:
            v = float(f(t))
        except ZeroDivisionError:
            return None
    return v if np.isfinite(v) else None


__all__ = ["METHODS", "METRIC_FNS", "NonlinearJob", "choose_road", "check_degenerate", "jackknife_or_half", "nonlinear_terms", "resolve_method"]
