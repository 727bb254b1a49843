"""Spectral alignment of two representations: :func:`spectral_alignment`.

See :mod:`bigalign.metrics.spectral` for the formulas.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Unpack

import numpy as np

from ..io import as_representation, check_pairing
from ..intervals import check_ci, with_interval
from ..linalg import applied_cross, exact_side, numerical_rank, randomized_sides
from ..result import ResultProtocol, _freeze, _jsonable
from ._common import engine_parameters, loo_interval, with_ci_doc, with_engine_doc
from ._spectral_common import (
    DEFAULT_OVERSAMPLES,
    DEFAULT_POWER_ITER,
    _alignment_bounds,
    _canonical,
    _cca_summaries,
    _check_bool,
    _check_ci_road,
    _check_int,
    _check_nonneg,
    _check_seed,
    _cross_cov,
    _degenerate,
    _list,
    _moments_pass,
    _overlap,
    _plt,
    _readonly,
    _resolve_method,
)
from ..options import EngineKwargs, EngineOptions

# --------------------------------------------------------------------------- #
# spectral alignment
# --------------------------------------------------------------------------- #


@dataclass(frozen=True, repr=False)
class SpectralAlignmentResult(ResultProtocol):
    """The spectral decomposition of the (linear-kernel) alignment of x and y.

    Follows the result protocol (:class:`bigalign.result.ResultProtocol`):
    ``estimator`` is ``"biased"`` (at full rank ``value`` is biased linear CKA);
    ``stderr`` is None (``bounds`` hold the randomized road's error); ``ci``
    (with ``ci=``) is a sampling interval for the population ``value``.

    Attributes
    ----------
    value : float
        ⟨η̂, (C⊙C) μ̂⟩ = Σᵢⱼ η̂ᵢμ̂ⱼCᵢⱼ² over the eigenpairs kept (``rank_x`` ×
        ``rank_y``), with η̂ = η/‖η‖ normalised by the norm of the *whole*
        spectrum.  At full rank it is biased linear CKA (``center=True``) or
        the uncentred kernel alignment (``center=False``).
    full_value : float or None
        The full-rank value, exact from the moments (exact road); None on the
        randomized road.
    bounds : (float, float)
        (lo, hi) that contain the full-rank value, from what the computed
        eigenpairs know (see :func:`spectral_alignment`, Notes); lo ≥ value.
    eta, mu : ndarray
        Eigenvalues η of K/n and μ of L/n kept (descending).
    eta_hat, mu_hat : ndarray
        η/‖η‖, μ/‖μ‖ (whole-spectrum norms; estimated on the randomized road).
    overlap : ndarray of shape (rank_x, rank_y)
        C = UᵀV, Cᵢⱼ = ⟨uᵢ, vⱼ⟩ of the unit eigenvectors of K and L.
    contributions : ndarray of shape (rank_x, rank_y)
        η̂ᵢμ̂ⱼCᵢⱼ², the per-eigenpair terms of ``value`` (they sum to it).
    canonical_correlations : ndarray or None
        Descending canonical correlations (with ``ridge``) of the centred
        representations: the singular values of C over the whole numerical
        rank (exact road), or within the leading principal subspaces
        (randomized road; flag ``"canonical_correlations_in_principal_subspaces"``).
    gaussian_mi : float or None
        −½ Σ log(1 − ρᵢ²), the mutual information (nats) of Gaussians with these
        covariances; None when a canonical correlation is 1 (flag
        ``"canonical_correlation_one"``: it is infinite — use a ridge).
    gaussian_wasserstein : float or None
        Σᵢ 2(2 − √(1+ρᵢ) − √(1−ρᵢ)): the *squared* 2-Wasserstein distance between
        the whitened Gaussian joint and the product of its marginals
        (the corrected formula of docs/formulas.md).
    coco : float or None
        The largest singular value of the centred cross-covariance Σ_xy
        (exact road); ``coco_bounds`` contain it on both roads.
    hsic : float or None
        Biased HSIC = Σ s²ᵢ·n²/(n−1)² over the singular values sᵢ of Σ_xy, i.e.
        ``bigalign.hsic(x, y, estimator="biased")`` (exact road).
    """

    value: float
    full_value: float | None
    bounds: tuple[float, float]
    eta: np.ndarray
    mu: np.ndarray
    eta_hat: np.ndarray
    mu_hat: np.ndarray
    overlap: np.ndarray
    rank_x: int
    rank_y: int
    canonical_correlations: np.ndarray | None
    gaussian_mi: float | None
    gaussian_wasserstein: float | None
    coco: float | None
    coco_bounds: tuple[float, float] | None
    hsic: float | None
    ridge: float
    center: bool
    method: str
    n_samples: int
    n_passes: int
    parameters: Mapping[str, Any] = field(default_factory=dict)
    flags: tuple[str, ...] = ()
    ci: tuple[float, float] | None = None
    ci_level: float | None = None

    metric = "spectral_alignment"
    estimator = "biased"

    def __post_init__(self) -> None:
        object.__setattr__(self, "parameters", _freeze(self.parameters))
        object.__setattr__(self, "flags", tuple(self.flags))
        if not math.isfinite(self.value):  # a bug, not a user error
            raise AssertionError(f"internal error: spectral alignment produced {self.value!r}")

    @property
    def contributions(self) -> np.ndarray:
        return np.outer(self.eta_hat, self.mu_hat) * self.overlap**2

    @property
    def contributions_x(self) -> np.ndarray:
        """Σⱼ η̂ᵢμ̂ⱼCᵢⱼ²: how much each eigenpair of x contributes."""
        return self.contributions.sum(axis=1)

    @property
    def contributions_y(self) -> np.ndarray:
        return self.contributions.sum(axis=0)

    def to_dict(self, *, include_matrices: bool = False) -> dict[str, Any]:
        """JSON-ready dict; the rank_x × rank_y overlap only on request."""
        out = {
            **self.protocol_dict(),
            "view": "spectral_alignment",
            "value": float(self.value),
            "full_value": None if self.full_value is None else float(self.full_value),
            "bounds": [float(v) for v in self.bounds],
            "eta": _list(self.eta),
            "mu": _list(self.mu),
            "eta_hat": _list(self.eta_hat),
            "mu_hat": _list(self.mu_hat),
            "contributions_x": _list(self.contributions_x),
            "contributions_y": _list(self.contributions_y),
            "rank_x": int(self.rank_x),
            "rank_y": int(self.rank_y),
            "canonical_correlations": _list(self.canonical_correlations),
            "gaussian_mi": self.gaussian_mi,
            "gaussian_wasserstein": self.gaussian_wasserstein,
            "coco": self.coco,
            "coco_bounds": None if self.coco_bounds is None else [float(v) for v in self.coco_bounds],
            "hsic": self.hsic,
            "ridge": float(self.ridge),
            "center": bool(self.center),
            "method": self.method,
            "n_samples": int(self.n_samples),
            "n_passes": int(self.n_passes),
            "parameters": {k: _jsonable(v) for k, v in self.parameters.items()},
            "flags": list(self.flags),
        }
        if include_matrices:
            out["overlap"] = _list(self.overlap)
        return out

    def plot(self, ax: Any = None, *, max_components: int = 40, cmap: str = "viridis") -> Any:
        """Heatmap of C⊙C (leading ``max_components`` eigenpairs of each side) with the spectra η̂, μ̂ alongside.

        With ``ax`` given, only the heatmap is drawn there.
        """
        plt = _plt()
        kx, ky = min(max_components, self.rank_x), min(max_components, self.rank_y)
        c2 = self.overlap[:kx, :ky] ** 2
        if ax is None:
            fig = plt.figure(figsize=(6.4, 5.6))
            gs = fig.add_gridspec(2, 2, width_ratios=(1, 4), height_ratios=(1, 4), wspace=0.05, hspace=0.05)
            ax = fig.add_subplot(gs[1, 1])
            top = fig.add_subplot(gs[0, 1], sharex=ax)
            left = fig.add_subplot(gs[1, 0], sharey=ax)
            top.bar(np.arange(ky), self.mu_hat[:ky], color="tab:orange", width=0.9)
            top.set_yscale("log")
            top.set_ylabel("μ̂ⱼ", fontsize=8)
            top.tick_params(labelbottom=False, labelsize=7)
            left.barh(np.arange(kx), self.eta_hat[:kx], color="tab:blue", height=0.9)
            left.set_xscale("log")
            left.invert_xaxis()
            left.set_xlabel("η̂ᵢ", fontsize=8)
            left.tick_params(labelsize=7)
            left.set_ylabel("eigenvector i of K (x)")
            ax.tick_params(labelleft=False)
            top.set_title(
                f"C⊙C (overlap²), {self.method}; value = {self.value:.4g}"
                + (f", bounds [{self.bounds[0]:.4g}, {self.bounds[1]:.4g}]" if self.bounds[1] > self.bounds[0] * (1 + 1e-9) else ""),
                fontsize=9,
            )
        im = ax.imshow(c2, cmap=cmap, vmin=0.0, vmax=max(float(c2.max()), 1e-300), aspect="auto", interpolation="nearest")
        ax.set_xlabel("eigenvector j of L (y)")
        ax.figure.colorbar(im, ax=ax, label="Cᵢⱼ²", fraction=0.046, pad=0.04)
        return ax

    def __repr__(self) -> str:
        fl = f", flags={list(self.flags)}" if self.flags else ""
        b = f", bounds=({self.bounds[0]:.6g}, {self.bounds[1]:.6g})" if self.full_value is None or self.bounds[0] != self.bounds[1] else ""
        return (
            f"SpectralAlignmentResult(value={self.value:.6g}{b}, rank=({self.rank_x}, {self.rank_y}), "
            f"method={self.method!r}, n_samples={self.n_samples}{fl})"
        )


@with_ci_doc
@with_engine_doc
def spectral_alignment(
    x: Any,
    y: Any,
    /,
    *,
    rank: int | None = None,
    center: bool = True,
    ridge: float = 0.0,
    method: Literal["auto", "exact", "randomized"] = "auto",
    n_oversamples: int = DEFAULT_OVERSAMPLES,
    n_power_iter: int = DEFAULT_POWER_ITER,
    seed: int = 0,
    ci: float | None = None,
    **engine: Unpack[EngineKwargs],
) -> SpectralAlignmentResult:
    """Why x and y align: the spectral form KA = ⟨η̂, (C⊙C) μ̂⟩ and the canonical correlations.

    Parameters
    ----------
    x, y : array-like of shape (n_samples, n_features_x), (n_samples, n_features_y)
        numpy, dask or zarr arrays or store layers; the same samples in the same order.
    rank : int, optional
        Keep the leading ``rank`` eigenpairs of each side.  ``None``: all
        (the whole numerical rank; exact road).
    center : bool, default=True
        Centred kernels (the value at full rank is biased linear CKA) or
        uncentred (kernel alignment KA).
    ridge : float, default=0.0
        Regularises the canonical correlations for d > n or collinear
        features: ρ are the singular values of
        (Σ_xx + r_xI)^{-1/2}Σ_xy(Σ_yy + r_yI)^{-1/2}, r = ridge·tr Σ (a
        fraction of the total variance, so it is scale free: the same
        relative ridge as :func:`kcc`, :func:`kmi`, :func:`kare` and :func:`stitch`).  Also used
        for the Gaussian MI and Wasserstein measures.
    method : {"auto", "exact", "randomized"}, default="auto"
        As for :func:`spectrum`: exact when max(d_x, d_y) ≤ 8192 or
        ``rank=None``; randomized needs ``rank``.
    n_oversamples, n_power_iter, seed
        The randomized road's sketch (see :func:`spectrum`); x and y share
        its passes: n_power_iter + 2 in all.
    {ci}
        The interval is about the population ``value`` (the spectral
        alignment at the requested rank; at full rank the population biased
        CKA), on the logit scale (it lies in (0, 1)), centred at the
        jackknife's bias-corrected estimate (a ratio of plug-in moments,
        biased by O(1/n)).  Each leave-one-group-out value is recomputed from
        the d×d moments of the other groups (two eigendecompositions each).
        Exact road only.  The canonical correlations, COCO and HSIC
        fields carry no interval (use :func:`kcc`, :func:`coco`, :func:`bigalign.hsic`).
    {engine}

    Returns
    -------
    SpectralAlignmentResult
        ``value``, ``full_value``, ``bounds``, ``eta_hat``, ``mu_hat``,
        ``overlap`` (C), ``contributions``, ``canonical_correlations``,
        ``gaussian_mi``, ``gaussian_wasserstein``, ``coco``, ``hsic``, ``.plot()``.

    Raises
    ------
    DegenerateInputError
        x or y constant (``center=True``) or zero (``center=False``).
    InvalidInputError, NonFiniteError, PairingError
        As for :func:`bigalign.cka`.

    Notes
    -----
    With the unit eigenvectors wᵢ of A_x = (1/n)X_cᵀX_c, uᵢ = X_cwᵢ/√(nηᵢ) are
    those of K/n, so Cᵢⱼ = wᵢᵀΣ_xy w'ⱼ/√(ηᵢμⱼ) and ηᵢμⱼCᵢⱼ² = (wᵢᵀΣ_xy w'ⱼ)²:
    the full sum is ‖Σ_xy‖²_F/(‖A_x‖_F‖A_y‖_F), biased CKA, exactly.
    Eigenvalues at rounding level (≤ 10·d·ε·λ₁) are left out of C (their
    eigenvectors are not determined; flag ``"x_rank_deficient"``).

    **Bounds** (proof in ``_alignment_bounds``): with Q_x the computed basis
    (the leading ``rank`` eigenvectors, or all ℓ Ritz vectors on the
    randomized road), t_x = tr A_x − tr(Q_xᵀA_xQ_x) the variance outside it
    and ‖C_x‖₂ its largest eigenvalue outside (≤ t_x),

        F_known = ‖Q_xᵀΣ_xy‖²_F + ‖Σ_xyQ_y‖²_F − ‖Q_xᵀΣ_xyQ_y‖²_F,
        lo = F_known/√(U_xU_y),  hi = (F_known + min(‖C_x‖₂t_y, t_x‖C_y‖₂))/√(L_xL_y),

    where [L, U] ∋ ‖A‖²_F (exact on the exact road).  All quantities come
    from the last pass; the full value always lies in [lo, hi] (up to rounding).

    Randomized road: the canonical correlations are those of the projections
    on the leading ``rank`` principal components (as in SVCCA), and COCO is
    given by its bounds lo = max(‖Q_xᵀΣ‖₂, ‖ΣQ_y‖₂),
    hi = √(‖Q_xᵀΣ‖²₂ + (‖(I − Q_xQ_xᵀ)ΣQ_y‖₂ + √(‖C_x‖₂‖C_y‖₂))²).

    Cost: exact — one pass, O(n·(d_x + d_y)²), plus two dense eigensolvers;
    randomized — n_power_iter + 2 passes, O((d_x + d_y)·ℓ) state.

    Examples
    --------
    >>> import numpy as np, bigalign
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(200, 4))
    >>> y = x @ rng.normal(size=(4, 3)) + 0.5 * rng.normal(size=(200, 3))
    >>> r = bigalign.spectral_alignment(x, y)
    >>> abs(r.value - bigalign.cka(x, y, estimator="biased").value) < 1e-12
    True
    >>> abs(float(r.contributions.sum()) - r.value) < 1e-12   # the per-eigenpair terms sum to the value
    True
    """
    engine_opts = EngineOptions.build("spectral_alignment", engine)
    func = "spectral_alignment"
    level = check_ci(func, ci)
    center = _check_bool(func, "center", center)
    rank = _check_int(func, "rank", rank, 1, allow_none=True)
    p = int(_check_int(func, "n_oversamples", n_oversamples, 0))  # type: ignore[arg-type]
    q = int(_check_int(func, "n_power_iter", n_power_iter, 0))  # type: ignore[arg-type]
    ridge = _check_nonneg(func, "ridge", ridge)
    seed = _check_seed(func, seed)
    rx, ry = as_representation(x, "x"), as_representation(y, "y")
    check_pairing([rx, ry])
    dx, dy = rx.d, ry.d
    chosen, reason = _resolve_method(func, method, [dx, dy], rank)
    params: dict[str, Any] = {"method_reason": reason, "seed": seed}
    _check_ci_road(func, level, chosen)
    states = None
    n = rx.n
    flags: list[str] = []
    if chosen == "exact":
        m, plan, states = _moments_pass(func, [rx, ry], ["x", "y"], [(0, 1)], [None, None], engine_opts, level)
        ex, ey = exact_side(m.sides[0], center), exact_side(m.sides[1], center)
        _degenerate(func, ex, "x", center)
        _degenerate(func, ey, "y", center)
        S = _cross_cov(m, 0, 1, center)
        kx, ky = numerical_rank(ex.values, dx), numerical_rank(ey.values, dy)
        for k, d, nm in ((kx, dx, "x"), (ky, dy, "y")):
            if k < d:
                flags.append(f"{nm}_rank_deficient")
        r_x, r_y = (kx, ky) if rank is None else (min(rank, kx), min(rank, ky))
        Wx, Wy = ex.vectors[:, :r_x], ey.vectors[:, :r_y]
        G = Wx.T @ S @ Wy
        eta, mu = ex.values[:r_x], ey.values[:r_y]
        sx, sy = ex.subspace(r_x), ey.subspace(r_y)
        lo, hi, _ = _alignment_bounds(ex, ey, sx, sy, S @ sy.Q, S.T @ sx.Q)
        nx, ny = math.sqrt(ex.frob2), math.sqrt(ey.frob2)
        full = float(np.vdot(S, S)) / (nx * ny)
        # canonical correlations, COCO, HSIC: always of the centred representations
        if center:
            cx, cy, Sc = ex, ey, S
        else:
            cx, cy, Sc = exact_side(m.sides[0], True), exact_side(m.sides[1], True), _cross_cov(m, 0, 1, True)
        if cx.constant or cy.constant:
            rho, mi, w2, coco, coco_b, hs = None, None, None, 0.0, (0.0, 0.0), 0.0
            flags.append("canonical_correlations_undefined_constant_input")
        else:
            ccx, ccy = numerical_rank(cx.values, dx), numerical_rank(cy.values, dy)
            Gc = cx.vectors[:, :ccx].T @ Sc @ cy.vectors[:, :ccy]
            rgx, rgy = ridge * cx.trace, ridge * cy.trace
            rho = _canonical(Gc, cx.values[:ccx], cy.values[:ccy], rgx, rgy)
            structural = ridge == 0 and ccx + ccy > n - 1
            mi, w2, fl = _cca_summaries(rho, structural)
            flags.extend(fl)
            coco = float(np.linalg.norm(Sc, 2))
            coco_b = (coco, coco)
            hs = float(np.vdot(Sc, Sc)) * n * n / ((n - 1) ** 2) if n > 1 else 0.0
        n_passes = 1
        est_norms = (nx, ny)
    else:
        ell_x, ell_y = min(rank + p, dx), min(rank + p, dy)  # type: ignore[operator]
        run_ = randomized_sides(
            [rx, ry], ["x", "y"], [dx, dy], [ell_x, ell_y], n_power_iter=q, seed=seed, center=center,
            crosses=((0, 1), (1, 0)), options=engine_opts,
        )  # fmt: skip
        ex, ey = run_.eigens
        _degenerate(func, ex, "x", center)
        _degenerate(func, ey, "y", center)
        Qx, Qy = run_.Qs
        plan, n_passes = run_.plan, run_.n_passes
        SQy = applied_cross(run_.state, 0, 1, Qy, center)  # (1/n)X_cᵀY_cQ_y
        StQx = applied_cross(run_.state, 1, 0, Qx, center)  # (1/n)Y_cᵀX_cQ_x
        Wx, Wy = Qx.T @ ex.vectors, Qy.T @ ey.vectors  # Ritz vectors in the Q bases
        Gall = Wx.T @ (Qx.T @ SQy) @ Wy
        kx, ky = numerical_rank(ex.values, dx), numerical_rank(ey.values, dy)
        r_x, r_y = min(rank, kx), min(rank, ky)  # type: ignore[type-var]
        for k, nm in ((kx, "x"), (ky, "y")):
            if k < rank:  # type: ignore[operator]
                flags.append(f"{nm}_rank_deficient")
        G = Gall[:r_x, :r_y]
        eta, mu = ex.values[:r_x], ey.values[:r_y]
        sx, sy = ex.subspace(rank), ey.subspace(rank)  # type: ignore[arg-type]
        lo, hi, _ = _alignment_bounds(ex, ey, sx, sy, SQy, StQx)
        nx, ny = math.sqrt(ex.frob2), math.sqrt(ey.frob2)
        est_norms = (nx, ny)
        full = None
        if center:
            rgx, rgy = ridge * ex.trace, ridge * ey.trace
            rho = _canonical(G, eta, mu, rgx, rgy)
            mi, w2, fl = _cca_summaries(rho, ridge == 0 and r_x + r_y > n - 1)
            flags.extend(fl)
            flags.append("canonical_correlations_in_principal_subspaces")
            # COCO bounds (see Notes)
            t1 = float(np.linalg.norm(StQx, 2))
            resid = SQy - Qx @ (Qx.T @ SQy)
            c_hi = math.sqrt(t1 * t1 + (float(np.linalg.norm(resid, 2)) + math.sqrt(sx.tail_norm2_hi * sy.tail_norm2_hi)) ** 2)
            coco, coco_b = None, (max(t1, float(np.linalg.norm(SQy, 2))), c_hi)
        else:
            rho, mi, w2, coco, coco_b = None, None, None, None, None
        hs = None
        params.update(n_oversamples=p, n_power_iter=q, sketch_width=[ell_x, ell_y])
    params.update(engine_parameters(plan))
    params["norm_eta"], params["norm_mu"] = est_norms
    value = float(np.vdot(G, G)) / (est_norms[0] * est_norms[1])
    result = SpectralAlignmentResult(
        value=value,
        full_value=full,
        bounds=(float(lo), float(hi)),
        eta=_readonly(eta),
        mu=_readonly(mu),
        eta_hat=_readonly(eta / est_norms[0]),
        mu_hat=_readonly(mu / est_norms[1]),
        overlap=_readonly(_overlap(G, eta, mu)),
        rank_x=int(r_x),
        rank_y=int(r_y),
        canonical_correlations=None if rho is None else _readonly(rho),
        gaussian_mi=mi,
        gaussian_wasserstein=w2,
        coco=coco,
        coco_bounds=coco_b,
        hsic=hs,
        ridge=ridge,
        center=center,
        method=chosen,
        n_samples=n,
        n_passes=n_passes,
        parameters=params,
        flags=tuple(flags),
    )
    if states is None:
        return result
    # a value in (0, 1): logit scale; a ratio of plug-in moments: the bias-corrected centre
    iv = loo_interval(func, result.value, states, lambda mm: _exact_value(func, mm, center, rank, dx, dy), level,  # type: ignore[arg-type]
                      "logit", estimator="biased")  # fmt: skip
    return with_interval(result, iv)


def _exact_value(func: str, m: Any, center: bool, rank: int | None, dx: int, dy: int) -> float:
    """The exact road's ``value`` from merged moments (for the leave-one-group-out values of ``ci=``)."""
    ex, ey = exact_side(m.sides[0], center), exact_side(m.sides[1], center)
    _degenerate(func, ex, "x", center)
    _degenerate(func, ey, "y", center)
    kx, ky = numerical_rank(ex.values, dx), numerical_rank(ey.values, dy)
    r_x, r_y = (kx, ky) if rank is None else (min(rank, kx), min(rank, ky))
    G = ex.vectors[:, :r_x].T @ _cross_cov(m, 0, 1, center) @ ey.vectors[:, :r_y]
    return float(np.vdot(G, G)) / (math.sqrt(ex.frob2) * math.sqrt(ey.frob2))
