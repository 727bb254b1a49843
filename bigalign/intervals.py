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
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Literal, Sequence

import numpy as np

from .errors import InvalidInputError

__all__ = [
    "CI_ABOUT",
    "CI_ABOUT_GRAPH",
    "DEFAULT_CI_GROUPS",
    "Interval",
    "check_ci",
    "dependency_interval",
    "influence_interval",
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
            **({"ci_center": "jackknife bias-corrected", "ci_center_value": self.center} if self.bias_corrected else {}),
        }


def jackknife_interval(
    value: float,
    loo: Sequence[float] | np.ndarray,
    level: float,
    *,
    scale: Scale = "identity",
    bias_correct: bool = False,
) -> Interval:
    """The block-jackknife interval around ``value`` from leave-one-group-out values ``loo``.

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
    if used == "identity":
        c = centre(value, t)
        return Interval(c - q * se_value, c + q * se_value, level, se_value, G, "identity", c, bias_correct)
    tz = _forward(used, t)
    z0 = centre(float(_forward(used, np.array([value]))[0]), tz)
    se_z = jackknife_se(tz)
    return Interval(_backward(used, z0 - q * se_z), _backward(used, z0 + q * se_z), level, se_value, G, used,
                    _backward(used, z0), bias_correct)


def influence_interval(
    value: float, loo: Sequence[float] | np.ndarray, correction: float, level: float, *, scale: Scale = "identity"
) -> tuple[Interval, float] | None:
    """An interval from the grouped (linearised) jackknife variance minus a second-order ``correction``.

    ``loo`` are the leave-one-group-out values of the statistic's **linear** (Hájek) part — the
    mean of per-row influences without each group — so their jackknife variance V is
    the variance of the linear part, plus twice the second-order (pairwise) variance the
    influences carry; ``correction`` is the estimate of that double-counted part (Hoeffding's
    unbiased variance of a U-statistic of degree 2 subtracts it once).  The interval is
    ``value ± t_ν·√(V − correction)`` with Satterthwaite's degrees of freedom
    ν = (G − 1)·((V − correction)/V)² (the correction, a sum over many pairs, is taken as
    fixed: the difference is as noisy as V, relative to a smaller value).  On the logit scale
    by the delta method (se/(θ(1 − θ))) where 0 < value < 1.  Returns (interval, ν), or None
    where V − correction ≤ 0 (no positive variance: the caller says what it does instead).
    """
    from scipy.stats import t as student_t  # as in jackknife_interval

    t = np.asarray(loo, dtype=np.float64)
    if not np.all(np.isfinite(t)) or not math.isfinite(value) or not math.isfinite(correction):
        raise ValueError("internal error: non-finite leave-one-group-out value or correction")
    G = t.size
    v_lin = jackknife_se(t) ** 2
    var = v_lin - correction
    if not var > 0:
        return None
    df = max(1.0, (G - 1) * (var / v_lin) ** 2)
    q = float(student_t.ppf(0.5 + level / 2.0, df))
    se = math.sqrt(var)
    if scale == "logit" and 0.0 < value < 1.0:
        z, sz = float(_forward("logit", np.array([value]))[0]), se / (value * (1.0 - value))
        return Interval(_backward("logit", z - q * sz), _backward("logit", z + q * sz), level, se, G, "logit", value), df
    return Interval(value - q * se, value + q * se, level, se, G, "identity", value), df


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
    """``result`` (a frozen Result dataclass) with ``ci``, ``ci_level`` and the interval's parameters."""
    if interval is None:
        return result
    params = dict(result.parameters)
    params.update(interval.parameters())
    return replace(result, ci=interval.bounds, ci_level=interval.level, parameters=params)
