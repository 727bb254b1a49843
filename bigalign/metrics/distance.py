"""Distance family: the paper's distance alignment D with Euclidean distances.

References
----------
Insulla, Huang & Rosasco, "Towards a Learning Theory of Representation
Alignment", arXiv:2502.14047 (distance alignment, with the corrected constant
D = 4(‖K₁‖² + ‖K₂‖² − 2‖K₁‖‖K₂‖·KA) for kernel-induced distances).
"""

from __future__ import annotations

from typing import Any, Literal, Unpack

from ..intervals import check_ci, with_interval
from ..moments import Moments, scale
from ..result import Result
from ._common import (
    check_choice,
    engine_parameters,
    grouped_linear_moments,
    linear_moments,
    loo_interval,
    paired_n,
    sqnorm,
    with_ci_doc,
    with_engine_doc,
)
from .kernel import _representable
from ..options import EngineKwargs, EngineOptions

__all__ = ["distance_alignment"]

METHOD = "exact-streaming"


def unbiased_distance_alignment(m: Moments, i: int = 0, j: int = 1) -> float:
    """n/(n − 1)·D: the mean of (‖xᵢ−xⱼ‖² − ‖yᵢ−yⱼ‖²)² over the pairs i ≠ j, the unbiased form of D
    (its diagonal terms are 0), whose interval is D's (intervals.estimator_interval)."""
    return distance_alignment_from_moments(m, i, j, "biased", {}).value * m.n / (m.n - 1)


def distance_alignment_from_moments(m: Moments, i: int, j: int, estimator: str, parameters: dict) -> Result:
    """D = (1/n²) Σᵢⱼ (‖xᵢ−xⱼ‖² − ‖yᵢ−yⱼ‖²)² from centred moments.

    With rows centred on the global mean, aᵢⱼ = pᵢ + pⱼ − 2uᵢᵀuⱼ and
    Σᵢⱼ aᵢⱼbᵢⱼ = 2n Σpᵢqᵢ + 2 P_x P_y + 4‖M_xy‖², so
    n²D = 2n(T_xx + T_yy − 2T_xy) + 2(P_x − P_y)² + 4(‖M_xx‖² + ‖M_yy‖² − 2‖M_xy‖²).
    """
    n = m.n
    sx, sy = m.sides[i], m.sides[j]
    Mxy, T = m.pair(i, j)
    # work in units of c = the larger mean squared row norm, so no square over- or underflows
    c = max(scale(m, i), scale(m, j))
    Mx, My, Mxy = sx.M / c, sy.M / c, Mxy / c
    tx, ty, txy = sx.t4 / c / c, sy.t4 / c / c, float(T.sum()) / c / c
    px, py = sx.trace / c, sy.trace / c
    saa = 2 * n * tx + 2 * px * px + 4 * sqnorm(Mx)
    sbb = 2 * n * ty + 2 * py * py + 4 * sqnorm(My)
    sab = 2 * n * txy + 2 * px * py + 4 * sqnorm(Mxy)
    d_n = (2 * n * (tx + ty - 2 * txy) + 2 * (px - py) ** 2 + 4 * (sqnorm(Mx) + sqnorm(My) - 2 * sqnorm(Mxy))) / n**2
    value = _representable(d_n * c * c, d_n, "distance alignment")
    saa, sbb, sab = saa * c * c, sbb * c * c, sab * c * c
    flags = tuple(f for f, s in (("x_constant", sx), ("y_constant", sy)) if s.is_constant)
    return Result(
        metric="distance_alignment",
        value=value,
        estimator="biased",
        method=METHOD,
        n_samples=n,
        terms={"sum_dx4": saa / n**2, "sum_dy4": sbb / n**2, "sum_dx2_dy2": sab / n**2},
        parameters=parameters,
        flags=flags,
    )


@with_engine_doc
@with_ci_doc
def distance_alignment(
    x: Any,
    y: Any,
    /,
    *,
    distance: Literal["euclidean"] = "euclidean",
    ci: float | None = None,
    **engine: Unpack[EngineKwargs],
) -> Result:
    """The paper's distance alignment D = (1/n²) Σᵢⱼ (‖xᵢ − xⱼ‖² − ‖yᵢ − yⱼ‖²)².

    Not a correlation: D ≥ 0 (up to rounding), D = 0 when the two representations have the same
    pairwise distances (e.g. y = xQ + c for orthogonal Q), and D scales with
    the fourth power of the representations' scale.

    Parameters
    ----------
    x, y : array-like of shape (n_samples, n_features_x), (n_samples, n_features_y)
    distance : {"euclidean"}
    {ci}
        D is a plug-in (V-statistic) mean over all n² pairs; its diagonal terms are
        0, so n/(n − 1)·D is the unbiased mean over the pairs i ≠ j, and the
        interval is that unbiased form's on the same moments (the same
        population value; ``parameters["ci_center_value"]``), on the identity
        scale (D is unbounded above).  At small n ``value`` can lie below the
        interval (flag ``"value_outside_ci"``).
    {engine}

    Returns
    -------
    Result
        ``value`` = D; terms ``sum_dx4`` = (1/n²)Σd_x⁴, ``sum_dy4``, ``sum_dx2_dy2``,
        so that value = sum_dx4 + sum_dy4 − 2·sum_dx2_dy2.

    Notes
    -----
    Exact in one pass from the same moments as CKA: O(n·(d_x + d_y)²) time,
    O((d_x + d_y)²) memory.  When x and y have nearly equal distances D is a
    small difference of large terms; its absolute error is about 1e-16 times
    ``sum_dx4``.

    Examples
    --------
    >>> import numpy as np, bigalign
    >>> x = np.random.default_rng(0).normal(size=(50, 3))
    >>> q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))
    >>> bigalign.distance_alignment(x, x @ q + 5).value < 1e-10
    True
    """
    func = "distance_alignment"
    engine_opts = EngineOptions.build(func, engine)
    check_choice(func, "distance", distance, ("euclidean",))
    level = check_ci(func, ci)
    if level is None:
        m, plan = linear_moments(x, y, engine_opts)
        return distance_alignment_from_moments(m, 0, 1, "biased", {"distance": distance, **engine_parameters(plan)})
    states, plan = grouped_linear_moments(x, y, engine_opts, paired_n(x, y), func)
    res = distance_alignment_from_moments(states.total(), 0, 1, "biased", {"distance": distance, **engine_parameters(plan)})
    # the unbiased form: the mean over the pairs i ≠ j (the diagonal terms are 0), n/(n − 1)·D
    iv = loo_interval(func, res.value, states, lambda mm: distance_alignment_from_moments(mm, 0, 1, "biased", {}).value, level,
                      estimator="biased", f_unbiased=unbiased_distance_alignment)  # fmt: skip
    return with_interval(res, iv)
