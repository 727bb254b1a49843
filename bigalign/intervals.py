"""Sampling intervals: the delete-a-group jackknife over contiguous row groups.

Every ``ci=`` of bigalign comes from here.  The rows (stimuli, tokens, images)
are cut into ``G`` contiguous groups in storage order; the measure is computed
once on all rows (``value``) and, from the same streamed states, once with
each group left out (``θ₍₋g₎``).  The delete-a-group jackknife standard error

    se = √((G − 1)/G · Σ_g (θ₍₋g₎ − θ̄)²)

estimates how much the measure moves between samples of rows from the same
population, and the interval is ``value ± t_{G−1}·se`` (Student's t with G − 1
degrees of freedom, which accounts for the jackknife's own noise with few
groups).  This is the *sampling* uncertainty about the population value
(``Result.ci``), not the distance of an approximation from the exact value on
the same rows (``Result.stderr``).

Contiguous groups make it a *block* jackknife: rows that depend on their
neighbours (tokens of one sequence, frames of one recording) stay together,
so the interval stays valid under such local dependence.  For rows stored in
an order that tracks a covariate (sorted by class) the interval is wider than
it needs to be, never narrower: shuffle such stores once if that matters.

Bounded measures are treated on a scale where they are unbounded: a measure
that lives in (0, 1) on the logit scale, one in (−1, 1) on Fisher's z
(atanh), and the interval is mapped back, so it never leaves the range.
Where the estimate or a leave-one-group-out value falls on or outside the
bound (an unbiased estimate can), the identity scale is used and
``parameters["ci_scale"]`` says so.

Biased (plug-in, V-statistic) estimators follow one rule, :func:`estimator_interval`:
their interval is the interval of the *unbiased form of the same measure on the
same rows and sums* (the same population value), wherever the family's state
gives that form (exact tiles, block roads, linear moments and feature moments of
HSIC, CKA and dCov/dCor, energy distance, kernel alignment on the tile and block
roads).  The point value stays the biased estimate; its O(1/n) bias can put it
outside its own interval at small n, and the result is then flagged
``"value_outside_ci"``.  Only where no unbiased form exists (COCO, KCC, KMI,
kernel alignment on its linear and feature roads, the Procrustes distance) is the
interval centred at the jackknife's bias-corrected estimate instead; SVCCA and
PWCCA (:data:`CENTRED_AT_ESTIMATE`), whose small bias that correction only made
noisier (measured), keep it centred at the estimate.

The neighbourhood measures are the one exception to the jackknife: their
variance is mostly interaction between rows that are each other's neighbours,
which any jackknife counts more than once.  Their interval,
:func:`dependency_interval`, sums the covariances of per-row scores over the
neighbour graph and the same contiguous row groups.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Literal, Sequence

import numpy as np

from .errors import InvalidInputError

__all__ = [
    "CENTER_JACKKNIFE",
    "CENTER_UNBIASED",
    "CENTRED_AT_ESTIMATE",
    "CI_ABOUT",
    "CI_ABOUT_GRAPH",
    "DEFAULT_CI_GROUPS",
    "Interval",
    "check_ci",
    "dependency_interval",
    "estimator_interval",
    "jackknife_interval",
    "jackknife_se",
    "row_groups",
    "with_interval",
]

#: groups of the block jackknife (enough that t₁₉ is close to normal, few enough that a
#: grouped state costs at most 20× one state)
DEFAULT_CI_GROUPS = 20

#: what every ``ci`` is about, recorded in ``parameters["ci_about"]``
CI_ABOUT = "sampling of rows (population value), block jackknife"

#: ``parameters["ci_center"]`` of an interval not centred at the estimate itself (see :func:`estimator_interval`)
CENTER_UNBIASED = "unbiased estimator on the same rows"
CENTER_JACKKNIFE = "jackknife bias-corrected"

#: biased (plug-in) measures without an unbiased form whose interval stays centred at the estimate: their O(1/n)
#: bias is a small part of the interval and the jackknife's correction only adds noise (200 repetitions each,
#: n = 500 / 5,000: PWCCA covers 0.975 / 0.935 centred at the estimate and 0.910 / 0.920 at the bias-corrected
#: centre, SVCCA 0.955 / 0.945 and 0.940 / 0.950; the Procrustes distance measured the other way, 0.940 / 0.925
#: against 0.955 / 0.935, and follows the rule; benchmarks/results/ci_coverage_plugin.md)
CENTRED_AT_ESTIMATE = frozenset({"svcca", "pwcca"})

#: the flag of a result whose value lies outside its own interval (a biased estimate's O(1/n) bias at small n)
OUTSIDE_FLAG = "value_outside_ci"

Scale = Literal["identity", "logit", "fisher"]


def check_ci(func: str, ci: Any) -> float | None:
    """The interval level of a ``ci=`` option: None (no interval) or a float in (0, 1)."""
    if ci is None:
        return None
    if isinstance(ci, (bool, np.bool_)) or not isinstance(ci, (int, float, np.floating, np.integer)):
        raise InvalidInputError(
            f"the 'ci' parameter of {func} must be None or a confidence level in (0, 1) such as 0.95; "
            f"got {ci!r} instead."
        )
    level = float(ci)
    if not 0.0 < level < 1.0 or not math.isfinite(level):
        raise InvalidInputError(
            f"the 'ci' parameter of {func} must be a confidence level strictly between 0 and 1 (e.g. 0.95); "
            f"got {ci!r}. Pass ci=0.95 for a 95% interval, or leave it out."
        )
    return level


def row_groups(n: int, groups: int = DEFAULT_CI_GROUPS, *, func: str = "ci") -> np.ndarray:
    """Boundaries (G + 1,) of ``groups`` contiguous row groups of sizes differing by at most one."""
    if groups < 2:
        raise InvalidInputError(f"{func}: the jackknife needs at least 2 row groups; got {groups}.")
    if n < 2 * groups:
        raise InvalidInputError(
            f"{func}: an interval needs at least {2 * groups} rows ({groups} jackknife groups of 2); got n = {n}. "
            "Use more rows, or leave ci out."
        )
    return np.linspace(0, n, groups + 1).round().astype(np.int64)


def group_of_rows(bounds: np.ndarray, start: int, stop: int) -> list[tuple[int, int, int]]:
    """The pieces (group, lo, hi) of rows [start, stop) cut at the group boundaries (absolute rows)."""
    out = []
    g = int(np.searchsorted(bounds, start, side="right")) - 1
    lo = start
    while lo < stop:
        hi = min(stop, int(bounds[g + 1]))
        if hi > lo:
            out.append((g, lo, hi))
        lo = hi
        g += 1
    return out


def jackknife_se(loo: Sequence[float] | np.ndarray) -> float:
    """Delete-a-group jackknife standard error from the G leave-one-group-out values."""
    t = np.asarray(loo, dtype=np.float64)
    G = t.size
    if G < 2:
        raise ValueError("the jackknife needs at least two leave-one-group-out values")
    return float(math.sqrt((G - 1) / G * float(np.sum((t - t.mean()) ** 2))))


_LIMITS = {"logit": (0.0, 1.0), "fisher": (-1.0, 1.0)}


def _forward(scale: str, v: np.ndarray) -> np.ndarray:
    if scale == "logit":
        return np.log(v) - np.log1p(-v)
    if scale == "fisher":
        return np.arctanh(v)
    return v


def _backward(scale: str, z: float) -> float:
    if scale == "logit":
        return float(1.0 / (1.0 + math.exp(-z))) if z > -700 else 0.0
    if scale == "fisher":
        return float(math.tanh(z))
    return float(z)


@dataclass(frozen=True)
class Interval:
    """A sampling interval: ``(low, high)`` at ``level``, its jackknife ``se`` (on the value's scale
    near the estimate) and how it was made."""

    low: float
    high: float
    level: float
    se: float
    groups: int
    scale: str
    center: float = float("nan")
    bias_corrected: bool = False
    #: what the interval is centred at when it is not the estimate: CENTER_UNBIASED or CENTER_JACKKNIFE
    center_kind: str | None = None
    #: the standard error of an error independent of the row sampling (a random-feature road's), added in quadrature
    extra_se: float = 0.0
    #: what the interval is about where it is not the block jackknife (``ci_about``; ``groups`` 0 where none)
    about: str | None = None

    @property
    def bounds(self) -> tuple[float, float]:
        return (self.low, self.high)

    def parameters(self) -> dict[str, Any]:
        """The entries every result with this interval records in ``parameters``."""
        if self.about is not None:
            return {"ci_about": self.about, **({"ci_groups": self.groups} if self.groups else {}), "ci_scale": self.scale, "ci_se": self.se}
        return {
            "ci_about": CI_ABOUT,
            "ci_groups": self.groups,
            "ci_scale": self.scale,
            "ci_se": self.se,
            **({"ci_center": self.center_kind, "ci_center_value": self.center} if self.center_kind else {}),
            **({"ci_approximation_se": self.extra_se} if self.extra_se > 0 else {}),
        }


def jackknife_interval(
    value: float,
    loo: Sequence[float] | np.ndarray,
    level: float,
    *,
    scale: Scale = "identity",
    bias_correct: bool = False,
    extra_se: float = 0.0,
) -> Interval:
    """The block-jackknife interval around ``value`` from leave-one-group-out values ``loo``.

    ``extra_se``: the standard error of an error that the row jackknife cannot see because it
    does not change with the rows (a random feature map held fixed): added in quadrature to
    the jackknife's se (on a transformed scale through the derivative at the centre).

    ``scale`` ("logit" for measures in (0, 1), "fisher" for (−1, 1)) is used
    only where ``value`` and every ``loo`` lie strictly inside the range;
    otherwise the identity scale is used and recorded.

    ``bias_correct=True`` centres the interval at the jackknife's bias-corrected
    estimate G·θ − (G − 1)·mean(θ₍₋g₎) (on the interval's scale) instead of at
    ``value``: for plug-in (V-statistic) estimators, whose O(1/n) bias would
    otherwise sit outside an O(1/√n) interval at small n.  ``Interval.center``
    holds the centre used.
    """
    from scipy.stats import t as student_t  # scipy is a core dependency; imported here to keep import light

    t = np.asarray(loo, dtype=np.float64)
    kind = CENTER_JACKKNIFE if bias_correct else None
    if not np.all(np.isfinite(t)) or not math.isfinite(value):
        raise ValueError("internal error: non-finite leave-one-group-out value")
    G = t.size
    q = float(student_t.ppf(0.5 + level / 2.0, G - 1))

    def centre(v: float, reps: np.ndarray) -> float:
        return float(G * v - (G - 1) * reps.mean()) if bias_correct else float(v)

    used = scale
    if scale != "identity":
        lo, hi = _LIMITS[scale]
        if not (lo < value < hi and np.all(t > lo) and np.all(t < hi)):
            used = "identity"
    se_value = jackknife_se(t)
    if not extra_se >= 0 or not math.isfinite(extra_se):
        raise ValueError(f"internal error: extra standard error {extra_se!r}")
    if used == "identity":
        c = centre(value, t)
        half = q * math.hypot(se_value, extra_se)
        return Interval(c - half, c + half, level, se_value, G, "identity", c, bias_correct, kind, extra_se)
    tz = _forward(used, t)
    z0 = centre(float(_forward(used, np.array([value]))[0]), tz)
    c = _backward(used, z0)
    slope = 1.0 / (c * (1.0 - c)) if used == "logit" else 1.0 / (1.0 - c * c)  # dz/dθ at the centre
    half = q * math.hypot(jackknife_se(tz), extra_se * slope)
    return Interval(_backward(used, z0 - half), _backward(used, z0 + half), level, se_value, G, used, c, bias_correct, kind,
                    extra_se)  # fmt: skip


def estimator_interval(
    value: float,
    loo: Sequence[float] | np.ndarray | None,
    level: float,
    *,
    scale: Scale = "identity",
    estimator: str = "unbiased",
    unbiased: tuple[float, Sequence[float] | np.ndarray] | None = None,
    metric: str | None = None,
    extra_se: float = 0.0,
) -> Interval:
    """The interval of an estimate, by the one rule for every family and road.

    * ``estimator != "biased"``: the jackknife interval around ``value`` from its
      leave-one-group-out values ``loo``.
    * a biased (plug-in, V-statistic) estimate with ``unbiased = (value_u, loo_u)``,
      the unbiased form of the same measure on the same rows and sums: the
      interval of that form (the same population value, whose interval covers
      it; benchmarks/results/ci_coverage_biased.md).  The point value stays the
      biased estimate and may lie outside the interval at small n
      (:func:`with_interval` flags it).  ``loo`` is not used.
    * a biased estimate with no unbiased form (``unbiased=None``): centred at the
      jackknife's bias-corrected estimate G·θ − (G − 1)·mean θ₍₋g₎, which removes
      the O(1/n) bias that the leave-one-group-out values (on fewer rows) see —
      except the ``metric`` names in :data:`CENTRED_AT_ESTIMATE`, whose bias is
      small next to the interval and whose interval measured better around the
      estimate.

    ``extra_se`` (a random-feature road's ``stderr``): see :func:`jackknife_interval`.
    """
    if estimator != "biased" or (unbiased is None and metric in CENTRED_AT_ESTIMATE):
        if loo is None:
            raise ValueError("internal error: no leave-one-group-out values")
        return jackknife_interval(value, loo, level, scale=scale, extra_se=extra_se)
    if unbiased is not None:
        value_u, loo_u = unbiased
        iv = jackknife_interval(float(value_u), loo_u, level, scale=scale, extra_se=extra_se)
        return replace(iv, center=float(value_u), center_kind=CENTER_UNBIASED)
    if loo is None:
        raise ValueError("internal error: no leave-one-group-out values")
    return jackknife_interval(value, loo, level, scale=scale, bias_correct=True, extra_se=extra_se)


#: what a :func:`dependency_interval` is about (``parameters["ci_about"]``)
CI_ABOUT_GRAPH = "sampling of rows (population value), dependency-graph variance over the neighbour graph"


def dependency_interval(
    value: float,
    scores: np.ndarray,
    heads: np.ndarray,
    tails: np.ndarray,
    level: float,
    *,
    bounds: np.ndarray | None = None,
    scale: Scale = "identity",
) -> tuple[Interval, float] | None:
    """An interval from per-row scores whose covariance is local to a graph (a dependency-graph variance).

    ``value`` is (or linearises to) the mean of the n per-row ``scores`` q_a, and two rows' scores
    are taken to covary only where they are adjacent in the graph of the edges
    ``heads[e] → tails[e]`` (e.g. every row to each of its k nearest neighbours, in any
    number of spaces), read as undirected, or — with ``bounds`` (the G + 1 boundaries of
    contiguous row groups, :func:`row_groups`) — where they lie in one row group, so that rows
    depending on their neighbours in storage order are covered as by the block jackknife:
    D(a) = {a} ∪ {b : a → b or b → a} ∪ {b in a's group}.  With e_a = q_a − mean(q), the
    variance of the mean is

        V = (1/n²)·Σ_a e_a·Σ_{b ∈ D(a)} e_b
          = (1/n²)·(Σ_g (Σ_{a ∈ g} e_a)² + Σ_{adjacent a ≠ b in different groups} e_a e_b)

    (each adjacent pair once per direction, however many edges join it: a heteroscedasticity-
    and-autocorrelation-consistent sum over the graph instead of over time lags), and the
    interval is ``value ± q·√V`` — q the normal quantile, or with ``bounds`` Student's t with
    Satterthwaite's ν = (G − 1)·(V/V_g)², V_g = (1/n²)·Σ_g (Σ_{a ∈ g} e_a)² (the group sums carry
    the noise of a G-group jackknife; the many cross-group pairs are taken as fixed) — on
    the logit scale by the delta method (se/(θ(1 − θ))) where ``scale="logit"`` and
    0 < value < 1.  O(n + E log E) for E edges, from nothing but the scores and the graph.
    Returns (interval, ν) — ν = inf without ``bounds`` — or None where V ≤ 0 (possible: the
    off-diagonal terms can be negative): the caller says what it does instead.
    """
    from scipy.stats import norm, t as student_t  # as in jackknife_interval

    q = np.asarray(scores, dtype=np.float64)
    if not np.all(np.isfinite(q)) or not math.isfinite(value):
        raise ValueError("internal error: non-finite per-row score")
    n = q.size
    e = q - q.mean()
    a = np.concatenate([heads, tails]).astype(np.int64)
    b = np.concatenate([tails, heads]).astype(np.int64)
    if bounds is None:
        keep, diag, G = a != b, float(e @ e), 0
    else:
        gid = np.searchsorted(bounds, np.arange(n), side="right") - 1
        keep = gid[a] != gid[b]  # pairs within a group are in the group sums
        G = bounds.size - 1
        diag = float(np.sum(np.bincount(gid, weights=e, minlength=G) ** 2))
    key = np.unique(a[keep] * n + b[keep])  # ordered adjacent pairs, each once
    var = (diag + float(np.sum(e[key // n] * e[key % n]))) / n**2
    if not var > 0:
        return None
    if bounds is None:
        df, z = math.inf, float(norm.ppf(0.5 + level / 2.0))
    else:
        df = max(1.0, (G - 1) * (var / (diag / n**2)) ** 2) if diag > 0 else 1.0
        z = float(student_t.ppf(0.5 + level / 2.0, df))
    se = math.sqrt(var)
    if scale == "logit" and 0.0 < value < 1.0:
        c, sz = float(_forward("logit", np.array([value]))[0]), se / (value * (1.0 - value))
        return Interval(_backward("logit", c - z * sz), _backward("logit", c + z * sz), level, se, G, "logit", value,
                        about=CI_ABOUT_GRAPH), df  # fmt: skip
    return Interval(value - z * se, value + z * se, level, se, G, "identity", value, about=CI_ABOUT_GRAPH), df


def with_interval(result: Any, interval: Interval | None) -> Any:
    """``result`` (a frozen Result dataclass) with ``ci``, ``ci_level`` and the interval's parameters;
    flagged ``"value_outside_ci"`` where its value lies outside the interval (possible only for an interval
    not centred at the estimate: a biased estimate's, :func:`estimator_interval`)."""
    if interval is None:
        return result
    params = dict(result.parameters)
    params.update(interval.parameters())
    flags = tuple(result.flags)
    if interval.center_kind and not interval.low <= result.value <= interval.high and OUTSIDE_FLAG not in flags:
        flags += (OUTSIDE_FLAG,)
    return replace(result, ci=interval.bounds, ci_level=interval.level, parameters=params, flags=flags)
