"""The orthogonal Procrustes shape distance and its angular form (Williams et al. 2021).

With X_c, Y_c the column-centred representations (n × d_x, n × d_y; the
narrower one is zero-padded to the common width, which is the same as letting
Q range over matrices with orthonormal columns), the optimal rotation Q*
aligning X_c to Y_c has  ‖X_cQ* − Y_c‖²_F = ‖X_c‖²_F + ‖Y_c‖²_F − 2‖X_cᵀY_c‖_*
(Schönemann 1966: the nuclear norm ‖·‖_* is the trace of the optimal
⟨X_cQ, Y_c⟩).  Hence everything follows from the d_x×d_y cross-covariance's
singular values and the two traces, which one streaming pass of merged centred
moments gives exactly (:mod:`bigalign.moments`).

Conventions
-----------
``angular=False`` (default), ``normalize=False``
    d = ‖X_cQ* − Y_c‖_F / √n — the root-mean-square distance per sample after
    the best rotation (units of the activations).
``angular=False``, ``normalize=True``
    X_c, Y_c first scaled to unit Frobenius norm: d = √(2 − 2ρ) ∈ [0, √2].
``angular=True``
    θ = arccos ρ ∈ [0, π/2] radians, ρ = ‖X_cᵀY_c‖_* / (‖X_c‖_F‖Y_c‖_F) (the
    Procrustes "similarity"); it is a metric on shapes (Williams et al.,
    their eq. 3 with α = 1); ``normalize`` does not change it.

All three are invariant to translations and orthogonal transforms of either
input; the normalised ones and the angle also to isotropic scaling.  They are
*not* invariant to general invertible linear maps (CCA is).

References
----------
Williams, Kunz, Kornblith & Linderman, "Generalized shape metrics on neural
representations", NeurIPS 2021, arXiv:2110.14739.
Schönemann, "A generalized solution of the orthogonal Procrustes problem",
Psychometrika 31 (1966).
"""

from __future__ import annotations

import math
from typing import Any, Unpack

import numpy as np

from ..errors import DegenerateInputError, InvalidInputError
from ..intervals import check_ci, with_interval
from ..moments import Moments
from ..result import Result
from ._common import (
    engine_parameters,
    grouped_linear_moments,
    linear_moments,
    loo_interval,
    paired_n,
    with_ci_doc,
    with_engine_doc,
)
from ..options import EngineKwargs, EngineOptions

__all__ = ["procrustes", "procrustes_from_moments", "procrustes_distance_from_moments", "procrustes_angular_from_moments"]

METHOD = "exact-streaming"


def _check_bool(param: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise InvalidInputError(f"the {param!r} parameter of procrustes must be True or False; got {value!r} instead.")
    return bool(value)


def procrustes_from_moments(m: Moments, i: int, j: int, *, angular: bool, normalize: bool, parameters: dict) -> Result:
    """The Procrustes distance of inputs i and j from merged centred moments."""
    n = m.n
    M, _ = m.pair(i, j)
    sx, sy = m.sides[i], m.sides[j]
    tx, ty = sx.trace, sy.trace  # ‖X_c‖²_F, ‖Y_c‖²_F
    flags: tuple[str, ...] = tuple(f"{nm}_constant" for s, nm in ((sx, "x"), (sy, "y")) if s.is_constant)
    if (angular or normalize) and flags:
        which = " and ".join(f[0] for f in flags)
        raise DegenerateInputError(
            f"the {'angular' if angular else 'normalised'} Procrustes distance is undefined: {which} is constant, so its "
            "centred representation has zero norm and ρ = ‖X_cᵀY_c‖_*/(‖X_c‖‖Y_c‖) is 0/0. Expected representations that "
            "vary across samples. Drop the constant representation, or use angular=False, normalize=False.",
            reason=flags[0],
        )
    # scale-free: the singular values of M/(‖X_c‖‖Y_c‖) (exact for inputs of any finite magnitude)
    if flags:
        nuc = 0.0
        rho = float("nan")
    else:
        nx, ny = math.sqrt(tx), math.sqrt(ty)
        sv = np.linalg.svd(M / nx / ny, compute_uv=False)
        rho = float(sv.sum())
        nuc = rho * nx * ny
        if rho > 1 + 1e-10:  # von Neumann: ρ ≤ 1 exactly; beyond rounding is a bug
            raise AssertionError(f"internal error: Procrustes ρ = {rho!r} > 1")
    over = (not flags) and rho > 1.0  # rounding above 1 (≤ 1e-10): the distance is 0
    if over:
        flags += ("rounded_to_one",)
    if angular:
        value = 0.0 if over else math.acos(rho)
        metric = "procrustes_angular"
    elif normalize:
        value = 0.0 if over else math.sqrt(2.0 - 2.0 * rho)
        metric = "procrustes"
    else:
        d2 = tx + ty - 2.0 * nuc
        if d2 < 0:  # only rounding (X_c ≈ Y_c·Q): ρ ≤ 1 guarantees d2 ≥ 0 exactly
            if d2 < -1e-10 * (tx + ty):
                raise AssertionError(f"internal error: Procrustes d² = {d2!r} < 0")
            d2 = 0.0
            flags += ("rounded_to_zero",)
        value = math.sqrt(d2 / n)
        metric = "procrustes"
    terms = {"trace_x": tx, "trace_y": ty, "nuclear_norm_xy": nuc}
    if not math.isnan(rho):
        terms["rho"] = rho
    return Result(
        metric=metric,
        value=float(value),
        estimator="biased",
        method=METHOD,
        n_samples=n,
        terms=terms,
        parameters={"angular": angular, "normalize": normalize, **parameters},
        flags=flags,
    )


def procrustes_distance_from_moments(m: Moments, i: int, j: int, estimator: str, parameters: dict) -> Result:
    """The Euclidean Procrustes distance ‖X_cQ* − Y_c‖_F/√n, for compare_layers (plug-in: ``estimator`` unused)."""
    return procrustes_from_moments(m, i, j, angular=False, normalize=False, parameters=dict(parameters))


def procrustes_angular_from_moments(m: Moments, i: int, j: int, estimator: str, parameters: dict) -> Result:
    """The angular Procrustes distance arccos ρ, for compare_layers (plug-in: ``estimator`` unused)."""
    return procrustes_from_moments(m, i, j, angular=True, normalize=False, parameters=dict(parameters))


@with_ci_doc
@with_engine_doc
def procrustes(
    x: Any,
    y: Any,
    /,
    *,
    angular: bool = False,
    normalize: bool = False,
    ci: float | None = None,
    **engine: Unpack[EngineKwargs],
) -> Result:
    """Orthogonal Procrustes shape distance of two representations, or its angular form.

    Parameters
    ----------
    x, y : array-like of shape (n_samples, n_features_x), (n_samples, n_features_y)
        numpy, dask or zarr arrays or store layers; the same samples in the same order.
        Different widths are allowed (the narrower is zero-padded).
    angular : bool, default=False
        ``True``: the angle θ = arccos(‖X_cᵀY_c‖_*/(‖X_c‖_F‖Y_c‖_F)) in radians,
        in [0, π/2].  ``False``: the Euclidean distance after the best rotation.
    normalize : bool, default=False
        Euclidean form only: scale X_c and Y_c to unit Frobenius norm first
        (d = √(2 − 2ρ)); otherwise d = ‖X_cQ* − Y_c‖_F/√n.  Rejected with
        ``angular=True`` (the angle is scale free already).
    {ci}
        The interval is made on the measure's own (identity) scale: the
        distance and the angle are not ratios pinned at a bound in practice,
        and a value at 0 (a perfect match) has a degenerate interval anyway.
        Each leave-one-group-out value repeats the SVD of the d_x×d_y
        cross-covariance: 20 more SVDs, O(20·d_x·d_y·min(d_x, d_y)).
    {engine}

    Returns
    -------
    Result
        ``metric`` ``"procrustes"`` or ``"procrustes_angular"``; ``value``;
        terms ``trace_x`` = ‖X_c‖²_F, ``trace_y``, ``nuclear_norm_xy`` =
        ‖X_cᵀY_c‖_*, ``rho`` (the Procrustes similarity in [0, 1]).

    Raises
    ------
    DegenerateInputError
        A constant input with ``angular=True`` or ``normalize=True`` (0/0).
    InvalidInputError, NonFiniteError, PairingError
        As for :func:`bigalign.cka`.

    Notes
    -----
    One streaming pass: O(n·(d_x + d_y)²) time, O((d_x + d_y)²) memory, then
    one SVD of the d_x×d_y cross-covariance, O(d_x·d_y·min(d_x, d_y)).  Exact
    (no approximation); invariant to translation and to orthogonal transforms
    of either input (and to isotropic scaling when angular or normalised).
    Near a perfect match the value is the square root of a difference of
    O(‖X_c‖²) terms, so its absolute rounding error is ≈ √ε·‖X_c‖/√n (about
    1e-8 relative to the scale) rather than ε; away from 0 it is exact to ~1e-12.

    Examples
    --------
    >>> import numpy as np, bigalign
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(100, 5))
    >>> q, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    >>> bigalign.procrustes(x, x @ q + 1.0).value < 1e-6    # ≈ √ε·scale at a perfect match (see Notes)
    True
    >>> bigalign.procrustes(x, 2 * x, angular=True).value < 1e-6
    True
    """
    engine_opts = EngineOptions.build("procrustes", engine)
    angular = _check_bool("angular", angular)
    normalize = _check_bool("normalize", normalize)
    if angular and normalize:
        raise InvalidInputError(
            "the 'normalize' parameter of procrustes applies to the Euclidean form only (the angle is scale free); "
            "got normalize=True with angular=True. Drop normalize=True."
        )
    n = paired_n(x, y)
    if n < 2:
        raise InvalidInputError(f"procrustes needs at least 2 samples; got {n}.")
    level = check_ci("procrustes", ci)
    if level is None:
        m, plan = linear_moments(x, y, engine_opts)
        return procrustes_from_moments(m, 0, 1, angular=angular, normalize=normalize, parameters=engine_parameters(plan))
    states, plan = grouped_linear_moments(x, y, engine_opts, n, "procrustes")
    res = procrustes_from_moments(states.total(), 0, 1, angular=angular, normalize=normalize, parameters=engine_parameters(plan))
    iv = loo_interval(
        "procrustes", res.value, states,
        lambda mm: procrustes_from_moments(mm, 0, 1, angular=angular, normalize=normalize, parameters={}).value, level,
        estimator=res.estimator,  # plug-in without an unbiased form: the jackknife's bias-corrected centre
    )  # fmt: skip
    return with_interval(res, iv)
