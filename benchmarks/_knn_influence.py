"""Mutual kNN's Hoeffding (U-statistic) interval: a construction measured and rejected for the library (too
noisy at n = 5,000: coverage 0.995), kept here so benchmarks/ci_coverage_knn.py can compare it with the others;
and the mutual-neighbour pairs that benchmarks/ci_coverage_knn_hac.py also uses."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy.stats import t as student_t

from bigalign.intervals import Interval, jackknife_se
from bigalign.intervals import _backward, _forward  # the logit maps of the library's intervals
from bigalign.metrics._knn_search import NeighbourLists

Scale = str


_HIT_ROWS = 1 << 16  # queries per chunk of the (rows, k, k) comparison of mutual_pairs


def mutual_pairs(ix: np.ndarray, iy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(query, neighbour) of every mutual-neighbour entry: j in both N_x(i) and N_y(i) (lists of k)."""
    qs, js = [], []
    for a in range(0, ix.shape[0], _HIT_ROWS):
        bx, by = ix[a : a + _HIT_ROWS], iy[a : a + _HIT_ROWS]
        hit = (bx[:, :, None] == by[:, None, :]).any(axis=2)
        r, c = np.nonzero(hit)
        qs.append(r + a)
        js.append(bx[r, c])
    return np.concatenate(qs).astype(np.int64), np.concatenate(js).astype(np.int64)


def mutual_influence(lx: NeighbourLists, ly: NeighbourLists, k: int, n: int, bounds: np.ndarray) -> tuple[float, np.ndarray, float]:
    """mutual kNN as a U-statistic and the pieces of its Hoeffding variance (the interval its exact road
    had before the dependency-graph one; kept for the comparison in benchmarks/ci_coverage_knn.py).

    With a_ij = 1 when j is among i's k neighbours in both spaces, mutual kNN is
    T = (1/(n·k))·Σ_{i≠j} a_ij: a mean over pairs with the kernel a_ij + a_ji (neighbourhoods
    taken as given).  Row j's influence is ψ_j = q_j + c_j, its own score q_j = Σ_i a_ji/k
    and its score as a candidate c_j = Σ_i a_ij/k.  Returns (T, the mean of ψ without each
    row group — the leave-one-group-out values of the linear part, shifted to T —, and the
    pairwise term Σ_{i<j} w_ij·(a_ij + a_ji)²/(n·k)² that the grouped influences count twice:
    w = 1 for a pair across groups, 3 within one (there both rows' influences carry it)).
    """
    qi, cj = mutual_pairs(lx.idx[:, :k], ly.idx[:, :k])
    T = qi.size / (n * k)
    psi = (np.bincount(qi, minlength=n) + np.bincount(cj, minlength=n)) / k
    gid = np.searchsorted(bounds, np.arange(n), side="right") - 1
    G = bounds.size - 1
    sums = np.bincount(gid, weights=psi, minlength=G)
    sizes = np.diff(bounds)
    tot = float(psi.sum())
    loo = T + (tot - sums) / (n - sizes) - tot / n
    lo, hi = np.minimum(qi, cj), np.maximum(qi, cj)
    keys, cnt = np.unique(lo * n + hi, return_counts=True)  # cnt: 1, or 2 when each is a mutual neighbour of the other
    same = gid[keys // n] == gid[keys % n]
    correction = float(np.sum(np.where(same, 3.0, 1.0) * cnt.astype(np.float64) ** 2)) / (n * k) ** 2
    return T, loo, correction



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
