"""The scores of the neighbourhood measures from two layers' lists: the per-query scores of mutual,
cycle, LCS and edit-distance kNN, and CKNNA from its three unbiased HSICs' sums."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._numba.topk import cknna_sums, cycle_hits, edit_distances, lcs_lengths, overlap_counts
from ..errors import DegenerateInputError, InvalidInputError
from ..result import Result
from ._knn_search import _SAMPLED_OK, TIE_RULE, NeighbourLists


def per_query_scores(metric: str, lx: NeighbourLists, ly: NeighbourLists, k: int, extra_x: NeighbourLists | None = None) -> tuple[np.ndarray, dict[str, float]]:
    """The score of every query (its mean is the measure) and the measure's terms.

    ``extra_x``: for cycle_knn on sampled queries, x's lists of the rows :func:`cycle_rows` names.
    """
    if metric == "mutual_knn":
        c = overlap_counts(lx.idx, ly.idx, np.array([k], dtype=np.int64))[:, 0]
        return c / k, {"mean_overlap": float(c.mean())}
    if metric == "lcs_knn":
        c = lcs_lengths(lx.idx, ly.idx, k)
        return c / k, {"mean_lcs": float(c.mean())}
    if metric == "edit_distance_knn":
        c = edit_distances(lx.idx, ly.idx, k)
        return 1.0 - c / k, {"mean_edit_distance": float(c.mean())}
    if metric == "cycle_knn":
        src = lx if extra_x is None else extra_x
        q = np.arange(ly.idx.shape[0], dtype=np.int64) if ly.rows is None else ly.rows.astype(np.int64)
        if src.rows is None:  # every sample's list: row j is sample j
            pos = np.arange(src.idx.shape[0], dtype=np.int64)
        else:
            pos = np.full(int(max(src.rows.max(initial=0), ly.idx.max())) + 1, -1, dtype=np.int64)
            pos[src.rows] = np.arange(src.rows.shape[0])
        h = cycle_hits(q, ly.idx, src.idx, pos, k)
        return h.astype(np.float64), {"hits": float(h.sum())}
    raise InvalidInputError(f"unknown neighbourhood measure {metric!r}; expected one of {list(_SAMPLED_OK)}.")  # pragma: no cover


def _hsic_u(n: int, t1: float, sk: float, sl: float, t3: float) -> tuple[float, float]:
    """(Song et al.'s unbiased HSIC from its terms, the size of the terms it is a difference of)."""
    a, b, c = t1, sk * sl / ((n - 1) * (n - 2)), 2.0 * t3 / (n - 2)
    return (a + b - c) / (n * (n - 3)), (abs(a) + abs(b) + abs(c)) / (n * (n - 3))


#: a self-term at or below this fraction of the size of its terms is 0 (rounding)
ZERO_TOL = 1e-12


def _cknna_result(lx: NeighbourLists, ly: NeighbourLists, k: int, n: int, params: dict[str, Any]) -> Result:
    vx, ix, vy, iy = lx.vals, lx.idx, ly.vals, ly.idx
    hxy, _ = _hsic_u(n, *cknna_sums(ix, vx, iy, vy, k))
    hxx, mxx = _hsic_u(n, *cknna_sums(ix, vx, ix, vx, k))
    hyy, myy = _hsic_u(n, *cknna_sums(iy, vy, iy, vy, k))
    if hxx <= ZERO_TOL * mxx or hyy <= ZERO_TOL * myy:
        raise DegenerateInputError(
            f"CKNNA is undefined here (k = {k}, n = {n}): the masked self-terms HSIC(x, x) = {hxx:.3g} and "
            f"HSIC(y, y) = {hyy:.3g} must both be positive (beyond the rounding of their terms). Expected "
            "representations whose similarities vary within neighbourhoods; use more samples or another k.",
            reason="nonpositive_self_hsic",
        )
    value = hxy / math.sqrt(hxx * hyy)
    p = {"k": k, "similarity": "cosine", "tie_rule": TIE_RULE, **params}
    flags = ("negative_unbiased_estimate",) if value < 0 else ()
    return Result("cknna", value, "unbiased", "exact-blocked-topk", n, {"hsic_xy": hxy, "hsic_xx": hxx, "hsic_yy": hyy}, p, flags=flags)
