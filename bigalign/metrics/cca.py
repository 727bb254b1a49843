"""SVCCA and PWCCA: canonical correlations summarised, from streamed covariances.

Notation: X_c, Y_c the column-centred representations; A_x = X_cᵀX_c/n =
W_xΛ_xW_xᵀ (eigenvalues descending), A_y likewise, Σ_xy = X_cᵀY_c/n.  Within
the leading k_x eigenvectors of x and k_y of y, the canonical correlations
ρ₁ ≥ … ≥ ρ_r (r = min(k_x, k_y)) are the singular values of

    C = Λ_x^{-1/2} W_xᵀ Σ_xy W_y Λ_y^{-1/2}  =  U diag(ρ) Vᵀ,

and the canonical variates of x are hᵢ = X_cW_xΛ_x^{-1/2}uᵢ/√n (unit norm,
mutually orthogonal, centred).  All of it is d×d algebra on one pass of merged
centred moments (:mod:`bigalign.moments`); where d is too large for the d×d
covariance, SVCCA's principal subspaces come from the randomized
eigendecomposition of :mod:`bigalign.linalg` (Halko et al. 2011).

SVCCA (Raghu et al. 2017)
    Keep the leading principal directions of each input (the fewest that
    explain ``variance_fraction`` of its variance — 0.99 in the paper — or a
    fixed ``n_components``), then the mean canonical correlation of the two
    projections: SVCCA = (1/r) Σᵢ ρᵢ.
PWCCA (Morcos et al. 2018)
    Canonical correlations over the full (numerical) rank, averaged with
    weights αᵢ = Σⱼ |⟨hᵢ, xⱼ⟩| (xⱼ the j-th feature of x over the samples):
    PWCCA = Σᵢ αᵢρᵢ / Σᵢ αᵢ; ⟨hᵢ, X_c⟩ = √n·uᵢᵀΛ_x^{1/2}W_xᵀ.  The weights come
    from x (``weights="x"``, the paper's choice) or y; the measure is not
    symmetric.  (The authors' released code projects on the singular vectors
    uᵢ without the whitening and re-adds the feature means before an
    orthonormalisation; this module follows the paper's definition.)

SVCCA is invariant to translation, orthogonal maps and isotropic scaling of
either input (the principal subspaces are carried along).  PWCCA is invariant
to translation and invertible linear maps of the unweighted input, but of the
weighting input only to isotropic scaling and to permuting or flipping its
features (its weights are L1 norms over features).  With k_x + k_y > n − 1 the
canonical correlations are 1 by construction (flag ``"canonical_correlation_one"``).

References
----------
Raghu, Gilmer, Yosinski & Sohl-Dickstein, "SVCCA: Singular vector canonical
correlation analysis for deep learning dynamics and interpretability",
NeurIPS 2017, arXiv:1706.05806.
Morcos, Raghu & Bengio, "Insights on representational similarity in neural
networks with canonical correlation", NeurIPS 2018, arXiv:1806.05759.
"""

from __future__ import annotations

import math
from typing import Any, Literal, Unpack

import numpy as np

from ..engine import run
from ..errors import DegenerateInputError, InvalidInputError
from ..grouped import grouped_statistic
from ..intervals import check_ci, with_interval
from ..io import as_representation, check_pairing
from ..linalg import Eigen, exact_moments, exact_side, numerical_rank
from ..moments import MomentStatistic
from ..result import Result
from ._common import check_choice, check_int, engine_parameters, loo_interval, with_ci_doc, with_engine_doc
from .spectral import EXACT_MAX_D, spectral_alignment
from ..options import EngineKwargs, EngineOptions

__all__ = ["svcca", "pwcca", "canonical_from_moments", "svcca_from_moments", "pwcca_from_moments"]

DEFAULT_VARIANCE = 0.99


def _degenerate(func: str, eig: Eigen, name: str) -> None:
    if eig.constant:
        raise DegenerateInputError(
            f"{func} is undefined: {name} is constant (every sample has the same representation), so it has no "
            "canonical directions. Expected representations that vary across samples. Drop it.",
            reason=f"{name}_constant",
        )


def _keep(eig: Eigen, dim: int, n_components: int | None, fraction: float | None) -> int:
    """How many leading eigenvectors to keep (never beyond the numerical rank)."""
    rank = numerical_rank(eig.values, dim)
    if n_components is not None:
        return min(n_components, rank)
    if fraction is None:
        return rank
    lam = np.clip(eig.values[:rank], 0.0, None)
    cum = np.cumsum(lam) / lam.sum()
    return int(min(rank, np.searchsorted(cum, fraction * (1 - 1e-12)) + 1))


def canonical_from_moments(m: Any, i: int, j: int, kx: int | None, ky: int | None) -> dict[str, Any]:
    """Canonical correlations within the leading kx/ky principal directions (None: numerical rank)."""
    ex, ey = exact_side(m.sides[i], True), exact_side(m.sides[j], True)
    dx, dy = m.sides[i].mean.size, m.sides[j].mean.size
    rx, ry = numerical_rank(ex.values, dx), numerical_rank(ey.values, dy)
    kx = rx if kx is None else min(kx, rx)
    ky = ry if ky is None else min(ky, ry)
    M, _ = m.pair(i, j)
    Wx, Wy = ex.vectors[:, :kx], ey.vectors[:, :ky]
    lx, ly = ex.values[:kx], ey.values[:ky]
    C = (Wx.T @ (M / m.n) @ Wy) / np.sqrt(lx)[:, None] / np.sqrt(ly)[None, :]
    U, rho, _ = np.linalg.svd(C, full_matrices=False)
    return {"rho": rho, "U": U, "Wx": Wx, "lx": lx, "kx": kx, "ky": ky, "rank_x": rx, "rank_y": ry, "ex": ex, "ey": ey}


def _check_fraction(func: str, v: Any) -> float:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)) or not (0 < float(v) <= 1):
        raise InvalidInputError(f"the 'variance_fraction' parameter of {func} must be a number in (0, 1]; got {v!r} instead.")
    return float(v)


def _flags(rho: np.ndarray, kx: int, ky: int, n: int) -> tuple[str, ...]:
    if kx + ky > n - 1 or (rho.size and rho[0] >= 1 - 1e-12):
        return ("canonical_correlation_one",)
    return ()


@with_ci_doc
@with_engine_doc
def svcca(
    x: Any,
    y: Any,
    /,
    *,
    n_components: int | None = None,
    variance_fraction: float | None = None,
    method: Literal["auto", "exact", "randomized"] = "auto",
    n_oversamples: int | None = None,
    n_power_iter: int | None = None,
    seed: int | None = None,
    ci: float | None = None,
    **engine: Unpack[EngineKwargs],
) -> Result:
    """SVCCA: the mean canonical correlation of the leading principal subspaces of x and y.

    Parameters
    ----------
    x, y : array-like of shape (n_samples, n_features_x), (n_samples, n_features_y)
        numpy, dask or zarr arrays or store layers; the same samples in the same order.
    n_components : int, optional
        Keep this many leading principal directions of each input (at most its
        numerical rank).  Exclusive with ``variance_fraction``.
    variance_fraction : float in (0, 1], optional
        Keep the fewest leading directions explaining this fraction of each
        input's variance (default 0.99, as Raghu et al., when ``n_components``
        is not given).  Exact road only.
    method : {"auto", "exact", "randomized"}, default="auto"
        ``"exact"``: the d×d covariances from one pass.  ``"randomized"``:
        the leading ``n_components`` eigenvectors by randomized subspace
        iteration (n_power_iter + 2 passes, O(d·(k + n_oversamples)) state);
        needs ``n_components``.  ``"auto"``: exact when max(d_x, d_y) ≤ 8192.
    n_oversamples, n_power_iter, seed
        The randomized road's sketch (as :func:`bigalign.spectral_alignment`;
        defaults 10, 2, 0).  An error on the exact road.
    {ci}
        Exact road only.  Made on the logit scale (SVCCA lies in (0, 1) away
        from its bounds; identity where a value is on a bound).  Each
        leave-one-group-out value repeats the whole recipe — the two d×d
        eigendecompositions, the number of components kept and the canonical
        SVD — from that group's merged moments: 20 more times the O(d³) step.
        A plug-in estimate without an unbiased form, centred at the estimate
        itself: its bias is small next to the interval, and the jackknife's
        bias correction measured no better (docs/intervals.md).
    {engine}

    Returns
    -------
    Result
        ``value`` = (1/r)Σρᵢ in [0, 1]; terms ``rho_max``, ``rho_min``,
        ``n_canonical`` (r); parameters ``n_components_x``/``_y`` kept and the
        variance they explain.

    Notes
    -----
    Exact: O(n·(d_x + d_y)²) time, O((d_x + d_y)²) memory, plus two
    eigensolvers O(d³).  Randomized: O(n·d·ℓ) per pass; its canonical
    correlations are those within the computed (approximate) principal
    subspaces.  SVCCA is invariant to translation, orthogonal transforms and
    isotropic scaling of either input.

    Examples
    --------
    >>> import numpy as np, bigalign
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(500, 6))
    >>> round(bigalign.svcca(x, x @ rng.normal(size=(6, 6)) + 2.0).value, 8)
    1.0
    """
    engine_opts = EngineOptions.build("svcca", engine)
    func = "svcca"
    check_choice(func, "method", method, ("auto", "exact", "randomized"))
    level = check_ci(func, ci)
    if n_components is not None and variance_fraction is not None:
        raise InvalidInputError(
            f"{func} takes n_components or variance_fraction, not both; got n_components={n_components!r}, "
            f"variance_fraction={variance_fraction!r}. Drop one."
        )
    k = None if n_components is None else check_int(func, "n_components", n_components, 1)
    frac = None if k is not None else _check_fraction(func, DEFAULT_VARIANCE if variance_fraction is None else variance_fraction)
    rx, ry = as_representation(x, "x"), as_representation(y, "y")
    check_pairing([rx, ry])
    n, dmax = rx.n, max(rx.d, ry.d)
    if n < 3:
        raise InvalidInputError(f"{func} needs at least 3 samples; got {n}.")
    if method == "auto":
        chosen = "exact" if dmax <= EXACT_MAX_D else "randomized"
        reason = f"d = {dmax} {'<=' if chosen == 'exact' else '>'} {EXACT_MAX_D}"
    else:
        chosen, reason = method, "requested"
    if chosen == "randomized":
        if level is not None:
            raise InvalidInputError(
                f"ci= is not available for {func}'s randomized road (d = {dmax}, {reason}); use the exact road "
                "(method='exact', if the d×d covariances fit in memory), or leave ci out."
            )
        if k is None:
            raise InvalidInputError(
                f"{func} with the randomized road needs n_components=... (d = {dmax}); the variance fraction needs the whole "
                "spectrum. Pass n_components=50 (say), or method='exact' if the d×d covariance fits in memory."
            )
        p = check_int(func, "n_oversamples", 10 if n_oversamples is None else n_oversamples, 0)
        q = check_int(func, "n_power_iter", 2 if n_power_iter is None else n_power_iter, 0)
        seed = check_int(func, "seed", 0 if seed is None else seed, 0)
        sa = spectral_alignment(rx, ry, rank=k, method="randomized", n_oversamples=p, n_power_iter=q, seed=seed, **engine_opts.given())
        if sa.canonical_correlations is None:  # pragma: no cover - center=True always yields them
            raise AssertionError("internal error: no canonical correlations")
        rho = np.asarray(sa.canonical_correlations)
        kx, ky = sa.rank_x, sa.rank_y
        params: dict[str, Any] = {k_: v for k_, v in sa.parameters.items() if k_ not in ("norm_eta", "norm_mu", "method_reason")}
        params.update(n_components=k, n_oversamples=p, n_power_iter=q, seed=seed)
        name = "randomized"
    else:
        if n_oversamples is not None or n_power_iter is not None or seed is not None:
            raise InvalidInputError(
                f"n_oversamples, n_power_iter and seed apply to {func}'s randomized road only; got them with method={chosen!r}."
            )
        if level is None:
            m, plan = exact_moments([rx, ry], ["x", "y"], [(0, 1)], [None, None], engine_opts)
            return _svcca_exact(m, 0, 1, k, frac, {"method_reason": reason, **engine_parameters(plan)})
        states, plan = _grouped_moments(rx, ry, engine_opts, func)
        res = _svcca_exact(states.total(), 0, 1, k, frac, {"method_reason": reason, **engine_parameters(plan)})
        iv = loo_interval(func, res.value, states, lambda mm: _svcca_exact(mm, 0, 1, k, frac, {}).value, level, "logit",
                          estimator=res.estimator)  # plug-in: centred at the estimate (intervals.CENTRED_AT_ESTIMATE)
        return with_interval(res, iv)
    params["method_reason"] = reason
    return _svcca_result(rho, kx, ky, n, name, params)


def _svcca_exact(m: Any, i: int, j: int, k: int | None, frac: float | None, parameters: dict[str, Any]) -> Result:
    """SVCCA of inputs i and j from merged centred moments (the exact road)."""
    ex, ey = exact_side(m.sides[i], True), exact_side(m.sides[j], True)
    _degenerate("svcca", ex, "x")
    _degenerate("svcca", ey, "y")
    kx0, ky0 = _keep(ex, ex.dim, k, frac), _keep(ey, ey.dim, k, frac)
    cc = canonical_from_moments(m, i, j, kx0, ky0)
    rho, kx, ky = cc["rho"], cc["kx"], cc["ky"]
    params = {
        "n_components": k, "variance_fraction": frac, **parameters,
        "variance_kept_x": float(ex.values[:kx].sum() / ex.values.clip(0).sum()),
        "variance_kept_y": float(ey.values[:ky].sum() / ey.values.clip(0).sum()),
    }  # fmt: skip
    return _svcca_result(rho, kx, ky, m.n, "exact-streaming", params)


def _svcca_result(rho: np.ndarray, kx: int, ky: int, n: int, name: str, params: dict[str, Any]) -> Result:
    params.update(n_components_x=int(kx), n_components_y=int(ky))
    value = float(rho.mean())
    if value > 1 + 1e-8:  # canonical correlations are ≤ 1 exactly
        raise AssertionError(f"internal error: svcca {value!r} > 1")
    return Result(
        metric="svcca", value=value, estimator="biased", method=name, n_samples=n,
        terms={"rho_max": float(rho[0]), "rho_min": float(rho[-1]), "n_canonical": int(rho.size)},
        parameters=params, flags=_flags(rho, kx, ky, n),
    )  # fmt: skip


def svcca_from_moments(m: Any, i: int, j: int, estimator: str, parameters: dict[str, Any]) -> Result:
    """SVCCA (99% of the variance kept) of inputs i and j from merged moments, for compare_layers (plug-in: ``estimator`` unused)."""
    return _svcca_exact(m, i, j, None, DEFAULT_VARIANCE, dict(parameters))


def pwcca_from_moments(m: Any, i: int, j: int, estimator: str, parameters: dict[str, Any]) -> Result:
    """PWCCA weighted by input i, from merged moments, for compare_layers (plug-in: ``estimator`` unused)."""
    return _pwcca(m, i, j, "x" if i < j else "y", dict(parameters))


def pwcca_from_canonical(cc: dict[str, Any], n: int) -> tuple[float, np.ndarray]:
    """(PWCCA, weights) from :func:`canonical_from_moments` of (weighting side, other side)."""
    rho, U, Wx, lx = cc["rho"], cc["U"], cc["Wx"], cc["lx"]
    r = rho.size
    proj = math.sqrt(n) * (Wx * np.sqrt(lx)[None, :]) @ U[:, :r]  # column i: ⟨hᵢ, X_c⟩ (d_x,)
    alpha = np.abs(proj).sum(axis=0)
    w = alpha / alpha.sum()
    return float(w @ rho), w


@with_ci_doc
@with_engine_doc
def pwcca(
    x: Any,
    y: Any,
    /,
    *,
    weights: Literal["x", "y"] = "x",
    ci: float | None = None,
    **engine: Unpack[EngineKwargs],
) -> Result:
    """PWCCA: canonical correlations of x and y weighted by how much of x each canonical variate accounts for.

    Parameters
    ----------
    x, y : array-like of shape (n_samples, n_features_x), (n_samples, n_features_y)
        numpy, dask or zarr arrays or store layers; the same samples in the same order.
    weights : {"x", "y"}, default="x"
        Whose canonical variates and features give the weights αᵢ = Σⱼ|⟨hᵢ, xⱼ⟩|
        (Morcos et al. weight by the first representation).
    {ci}
        Made on the logit scale (identity where a value is on a bound).  Each
        leave-one-group-out value repeats the two d×d eigendecompositions and
        the canonical SVD from that group's merged moments: 20 more times the
        O(d³) step.  A plug-in estimate without an unbiased form, centred at
        the estimate itself: its bias is small next to the interval, and the
        jackknife's bias correction measured worse (0.910 against 0.975 at
        n = 500; docs/intervals.md).
    {engine}

    Returns
    -------
    Result
        ``value`` = Σαᵢρᵢ/Σαᵢ in [0, 1]; terms ``rho_max``, ``rho_min``,
        ``n_canonical``, ``rho_mean`` (the unweighted mean).

    Notes
    -----
    Exact, one pass: O(n·(d_x + d_y)²) time, O((d_x + d_y)²) memory, plus two
    eigensolvers.  Rank-deficient inputs are reduced to their numerical rank
    (the pseudo-inverse whitening).  Invariant to translation and invertible
    linear maps of y; of x, only to isotropic scaling and to permuting or
    flipping the sign of its features (the weights are L1 norms over x's
    features, which rotations change).  Needs n > d_x + d_y for canonical
    correlations that are not all 1 by construction.

    Examples
    --------
    >>> import numpy as np, bigalign
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(500, 6))
    >>> round(bigalign.pwcca(x, x @ rng.normal(size=(6, 6))).value, 8)
    1.0
    """
    engine_opts = EngineOptions.build("pwcca", engine)
    func = "pwcca"
    check_choice(func, "weights", weights, ("x", "y"))
    level = check_ci(func, ci)
    rx, ry = as_representation(x, "x"), as_representation(y, "y")
    check_pairing([rx, ry])
    n = rx.n
    if n < 3:
        raise InvalidInputError(f"{func} needs at least 3 samples; got {n}.")
    dmax = max(rx.d, ry.d)
    if dmax > EXACT_MAX_D:
        raise InvalidInputError(
            f"{func} whitens each input with its full d×d covariance; d = {dmax} > {EXACT_MAX_D} would need "
            f"{8 * dmax * dmax / 2**30:.1f} GiB per state (and n > d_x + d_y samples for canonical correlations that are "
            "not 1 by construction). Use svcca(x, y, n_components=...), which works in the leading principal subspaces "
            "(randomized for large d)."
        )
    i, j = (0, 1) if weights == "x" else (1, 0)
    if level is None:
        m, plan = exact_moments([rx, ry], ["x", "y"], [(0, 1)], [None, None], engine_opts)
        return _pwcca(m, i, j, weights, engine_parameters(plan))
    states, plan = _grouped_moments(rx, ry, engine_opts, func)
    res = _pwcca(states.total(), i, j, weights, engine_parameters(plan))
    iv = loo_interval(func, res.value, states, lambda mm: _pwcca(mm, i, j, weights, {}).value, level, "logit",
                      estimator=res.estimator)  # plug-in: centred at the estimate (intervals.CENTRED_AT_ESTIMATE)
    return with_interval(res, iv)


def _grouped_moments(rx: Any, ry: Any, options: EngineOptions, func: str) -> tuple[Any, Any]:
    """The exact road's pass with one moment state per contiguous row group (for ``ci=``)."""
    stat = grouped_statistic(MomentStatistic(names=("x", "y"), pairs=((0, 1),)), rx.n, func=func)
    return run(stat, [rx, ry], names=["x", "y"], check_pairing=False, options=options)


def _pwcca(m: Any, i: int, j: int, weights: str, parameters: dict[str, Any]) -> Result:
    """PWCCA weighted by input i (reported as ``weights``; x is input min(i, j))."""
    n = m.n
    for side, nm in ((m.sides[min(i, j)], "x"), (m.sides[max(i, j)], "y")):
        if side.is_constant:
            _degenerate("pwcca", exact_side(side, True), nm)
    cc = canonical_from_moments(m, i, j, None, None)
    value, _ = pwcca_from_canonical(cc, n)
    rho = cc["rho"]
    kx, ky = (cc["kx"], cc["ky"]) if i < j else (cc["ky"], cc["kx"])
    dx, dy = m.sides[min(i, j)].mean.size, m.sides[max(i, j)].mean.size
    flags = _flags(rho, kx, ky, n) + tuple(
        f"{nm}_rank_deficient" for k_, d, nm in ((kx, dx, "x"), (ky, dy, "y")) if k_ < d
    )
    return Result(
        metric="pwcca", value=value, estimator="biased", method="exact-streaming", n_samples=n,
        terms={"rho_max": float(rho[0]), "rho_min": float(rho[-1]), "n_canonical": int(rho.size), "rho_mean": float(rho.mean())},
        parameters={"weights": weights, "rank_x": int(kx), "rank_y": int(ky), **parameters}, flags=flags,
    )  # fmt: skip
