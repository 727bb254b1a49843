"""MMD estimates from the streamed sums, their errors, and the asymptotic null (weighted chi-square).

See :mod:`bigalign.metrics.mmd` for the formulas.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._checks import check_applies, finite_float64
from ..engine import run, run_pairs
from ..errors import DegenerateInputError, InvalidInputError, NonFiniteError
from ..grouped import GroupedStatistic
from ..intervals import DEFAULT_CI_GROUPS, Interval, estimator_interval, jackknife_se, row_groups
from ..tiles import GroupedTileStatistic
from ..features import (
    BANDWIDTH_SAMPLE,
    KERNELS,
    draw_nystroem,
    draw_random_fourier,
    kernel_scale,
    resolve_bandwidth,
    resolve_method,
    sample_rows,
)
from ..io import as_representation
from ..options import EngineOptions
from ._common import ESTIMATORS, check_choice, check_int, feature_options
from ._kernel_approx import NYSTROEM_MAX_RESIDUAL, NYSTROEM_STDERR, nystroem_stderr
from ._kernel_nonlinear import DEFAULT_LANDMARKS, DEFAULT_RANDOM_FEATURES
from ..gram import blas_threads_for, gram
from ._mmd_sums import (
    METHODS,
    NULL_SAMPLE,
    _FEATURE_TAG,
    FeatureSums,
    PooledFeatureStatistic,
    PooledRepresentation,
    PooledTileStatistic,
    _Features,
    _Stacked,
    draw_labels,
    feature_all_labellings,
    feature_group_terms,
    pooled,
    residual_fractions,
)

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
    interval: Interval | None = None  # ci=: the two-sample block jackknife over rows
    loo: list[float] | None = None  # its leave-one-group-out values
    unbiased: tuple[float, list[float]] | None = None  # a biased estimate's unbiased form (value, leave-outs): the interval's


#: recorded in ``parameters["ci_groups_two_sample"]`` of an MMD with an interval
CI_TWO_SAMPLE = (
    "x and y are separate samples: each is cut into the same number of contiguous row groups, and the jackknife "
    "leaves out row group g of x and row group g of y together (a two-sample U-statistic)"
)


def two_sample_groups(n_x: int, n_y: int, func: str) -> np.ndarray:
    """(2G + 1,) pooled row boundaries: G contiguous groups of x's rows, then G of y's (offset by n_x)."""
    bx = row_groups(n_x, DEFAULT_CI_GROUPS, func=func)
    by = row_groups(n_y, DEFAULT_CI_GROUPS, func=func)
    return np.concatenate([bx, n_x + by[1:]])


def _two_sample_interval(func: str, est: "_Estimate", level: float, estimator: str, extra_se: float) -> Interval:
    """The jackknife interval of MMD² (identity scale: the unbiased estimate can be negative and is unbounded above
    in its units) by the one rule of intervals.estimator_interval: a biased estimate gets the interval of the
    unbiased MMD² from the same sums; ``extra_se``: the rff/orf map's stderr, added in quadrature."""
    t = np.array(est.loo)
    if not np.all(np.isfinite(t)):  # pragma: no cover - every leave-out keeps >= 2 rows of each sample
        raise DegenerateInputError(f"{func}: a leave-one-group-out MMD² is undefined; leave ci out.", reason="undefined_leave_out")
    return estimator_interval(est.value, t, level, scale="identity", estimator=estimator, unbiased=est.unbiased,
                              metric=func, extra_se=extra_se)  # fmt: skip


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
    seed: int, options: EngineOptions, n_perm: int = 0, null: bool = False, ci_level: float | None = None,
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
    groups = None if ci_level is None else two_sample_groups(n_x, n_y, func)  # too few rows: an error before the work
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
        est = _feature_estimate(z, feats, bounds, "exact-streaming", params, estimator, labels, null, z.d, options, "exact", groups)
        return _with_ci(func, est, estimator, ci_level)
    sigma, med = resolve_bandwidth(bandwidth, zs, "x and y (pooled)", func)
    params.update(bandwidth=sigma, median=med, bandwidth_sample=int(zs.shape[0]))
    ratio = 0.0 if med is None else sigma / med  # no median (all rows equal): never Nystroem
    chosen, reason = resolve_method(method, n, ratio, n_label="n_x + n_y")
    params["method_reason"] = reason
    if method == "exact":  # requested (under "auto" it applies whenever the road is approximate)
        check_applies(func, "method='exact'", n_features=(n_features, None))
    if ci_level is not None and chosen == "nystroem":
        raise InvalidInputError(
            f"{func}: ci= (a sampling interval over rows) is not available on the Nystroem road, whose estimate sits "
            "below the exact MMD² by its missed trace (a bias no row interval sees); it is available for "
            "kernel='linear', rbf/laplacian on exact tiles (method='exact', or 'auto' with n_x + n_y <= 20,000) and "
            f"method='rff'/'orf'; the method here is {chosen!r} ({reason}). Use one of those, or leave ci out."
        )
    if chosen == "exact":
        est = _tile_estimate(z, kernel, sigma, shift, params, estimator, labels, null, zs, seed, options, groups)
        if ci_level is not None:
            params["ci_bandwidth"] = "fixed at the full-sample choice for the leave-one-group-out values"
        return _with_ci(func, est, estimator, ci_level)
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
        est = _feature_estimate(z, feats, fmap.bounds, chosen, params, estimator, labels, null, D, options, "groups", groups)
        if ci_level is not None:
            params["ci_features"] = (
                "the random features fixed at this draw: the row jackknife plus the draw's error (stderr) in quadrature, "
                "so ci is about the exact MMD²'s population value; stderr alone is about the features"
            )
        return _with_ci(func, est, estimator, ci_level)
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
    return _feature_estimate(z, feats, bounds, "nystroem", params, estimator, labels, null, maps[0].n_features, options, "levels")


def _feature_estimate(
    z: PooledRepresentation, feats: _Features, bounds: np.ndarray, method: str, params: dict[str, Any], estimator: str,
    labels: np.ndarray | None, null: bool, width: int, options: EngineOptions, error: str, groups: np.ndarray | None = None,
) -> _Estimate:  # fmt: skip
    """The feature road; with ``groups`` (the pooled row groups of :func:`two_sample_groups`) one feature-sum state
    per row group in the same pass, and ``loo`` the MMD² of the rows minus group g of x and group g of y."""
    n_x, n_y = z.n_x, z.n - z.n_x
    stat = PooledFeatureStatistic(feats, bounds, n_x, labels, width if null else 0)
    fopts = feature_options(options, [z], int(bounds[-1]) + (labels.shape[1] if labels is not None else 0), 0)
    loo: list[float] | None = None
    if groups is None:
        fs, plan = run(stat, [z], names=["x and y (pooled)"], check_pairing=False, options=fopts)
    else:
        states, plan = run(GroupedStatistic(stat, tuple(int(b) for b in groups)), [z], names=["x and y (pooled)"], check_pairing=False, options=fopts)
        fs = states.total()
        G = states.n_groups // 2
        sizes = np.diff(groups)
        loo, loo_u = [], []
        for k in range(G):
            kept = [s_ for j, s_ in enumerate(states.groups) if j not in (k, G + k)]
            fk = functools.reduce(stat.combine, kept)
            mx, my = n_x - int(sizes[k]), n_y - int(sizes[G + k])
            gk = feature_group_terms(fk, bounds, mx, my)
            for out, e in ((loo, estimator), (loo_u, "unbiased")):
                per_k = mmd_from_sums(gk[0], gk[1], gk[2], fk.q[:, 0], fk.q_all - fk.q[:, 0], mx, my, e)
                out.append(float(per_k[0] if error == "levels" else per_k.sum()))
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
    est.loo = loo
    if loo is not None and estimator == "biased":
        per_u = mmd_from_sums(g[0], g[1], g[2], qx, qy, n_x, n_y, "unbiased")
        est.unbiased = (float(per_u[0] if error == "levels" else per_u.sum()), loo_u)
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
    labels: np.ndarray | None, null: bool, zs: np.ndarray, seed: int, options: EngineOptions, groups: np.ndarray | None = None,
) -> _Estimate:  # fmt: skip
    """Exact tiles over the pooled sample; with ``groups`` (:func:`two_sample_groups`) the grouped pass of
    :class:`~bigalign.tiles.GroupedTileStatistic`, whose partial row sums give the kernel sums of every pair of
    row groups, and ``loo`` the MMD² of the rows minus group g of x and group g of y."""
    n_x, n = z.n_x, z.n
    n_y = n - n_x
    stat = PooledTileStatistic(kernel, kernel_scale(kernel, sigma), shift, n_x, labels)
    loo: list[float] | None = None
    if groups is None:
        (a, r), plan = run_pairs(stat, [z], names=["x and y (pooled)"], check_pairing=False, options=options)
        t = float(r.sum())
        rx = float(r[:n_x].sum())
        kxx, kxy = float(a[0]), rx - float(a[0])
        kyy = t - 2.0 * rx + float(a[0])
    else:
        grouped, plan = run_pairs(GroupedTileStatistic(stat, groups), [z], names=["x and y (pooled)"], check_pairing=False, options=options)
        # S[k, l] = Σ_{i∈k, j∈l, i≠j} k(zᵢ, zⱼ) over the pooled row groups (x: 0..G-1, y: G..2G-1)
        S = np.add.reduceat(grouped.rows, groups[:-1], axis=0)
        G = S.shape[0] // 2
        kxx, kyy, kxy = float(S[:G, :G].sum()), float(S[G:, G:].sum()), float(S[:G, G:].sum())
        sizes = np.diff(groups)
        loo, loo_u = [], []
        for k in range(G):
            keep = np.ones(2 * G, dtype=bool)
            keep[[k, G + k]] = False
            kx, ky = keep[:G], keep[G:]
            mx, my = n_x - int(sizes[k]), n_y - int(sizes[G + k])
            sxx, syy = float(S[:G, :G][np.ix_(kx, kx)].sum()), float(S[G:, G:][np.ix_(ky, ky)].sum())
            sxy = float(S[:G, G:][np.ix_(kx, ky)].sum())
            loo.append(float(mmd_from_sums(sxx, syy, sxy, mx, my, mx, my, estimator)))
            loo_u.append(float(mmd_from_sums(sxx, syy, sxy, mx, my, mx, my, "unbiased")))
    params.update(block_size=plan.block_rows, n_tiles=plan.n_blocks * (plan.n_blocks + 1) // 2, scheduler=plan.scheduler)
    value = float(mmd_from_sums(kxx, kyy, kxy, n_x, n_y, n_x, n_y, estimator))  # k(z, z) = 1: diagonal sums n_x, n_y
    est = _Estimate(value, kxx / (n_x * (n_x - 1)) if n_x > 1 else 0.0, kyy / (n_y * (n_y - 1)) if n_y > 1 else 0.0,
                    kxy / (n_x * n_y), None, "exact-tiles", params)  # fmt: skip
    est.loo = loo
    if loo is not None and estimator == "biased":
        est.unbiased = (float(mmd_from_sums(kxx, kyy, kxy, n_x, n_y, n_x, n_y, "unbiased")), loo_u)
    if labels is not None:
        ab = a[1:]
        rb = labels.T.astype(np.float64) @ r
        est.null_values = mmd_from_sums(ab, t - 2.0 * rb + ab, rb - ab, n_x, n_y, n_x, n_y, estimator)
    if null:
        est.weights = _gram_null_weights(z, kernel, sigma, shift, seed)
        params.update(null_sample=f"<= {NULL_SAMPLE} rows of each sample")
    return est


def _with_ci(func: str, est: _Estimate, estimator: str, level: float | None) -> _Estimate:
    """``est`` with its interval (from the leave-one-group-out values the pass kept) where ci= asked for one."""
    if level is None:
        return est
    assert est.loo is not None
    # rff/orf: the row jackknife holds the map fixed and cannot see its draw's error, whose sd is the stderr: added in
    # quadrature, the interval is about the exact MMD²'s population value (as for cka's random features)
    extra = est.stderr if est.method in ("rff", "orf") and est.stderr is not None else 0.0
    est.interval = _two_sample_interval(func, est, level, estimator, extra)
    est.parameters["ci_groups_two_sample"] = CI_TWO_SAMPLE
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
