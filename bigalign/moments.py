"""Merged centred moments: the exact sufficient statistics of every linear metric.

For each input (a *side*) over a set of rows we keep, in float64,

* ``n``, the column ``mean`` μ,
* ``M = Σ uᵢuᵢᵀ`` with ``uᵢ = xᵢ − μ`` (the centred co-moment),
* ``t4 = Σ pᵢ²`` and ``a = Σ pᵢ uᵢ`` with ``pᵢ = ‖uᵢ‖²``,
* the column minima and maxima (exact detection of constant columns),

and for each pair of inputs (a *cross*)

* ``M = Σ uᵢvᵢᵀ``, ``t4 = Σ pᵢqᵢ``, ``a = Σ pᵢvᵢ``, ``b = Σ qᵢuᵢ``.

Merging two row sets re-centres each part on the merged mean with exact
identities (Chan, Golub & LeVeque's pairwise update for ``M``, and its
extension to the fourth-order terms), so nothing of the form ``XᵀX − nμμᵀ``
ever cancels: a float32 input offset by 1e4 keeps full accuracy.

From these sums every linear-kernel metric follows exactly (see
``bigalign.metrics``): with the rows centred on the global mean, the
unbiased HSIC of Song et al. needs only ‖M_xy‖², Σpᵢqᵢ and the traces.
Memory is O(d_x² + d_y² + d_x·d_y) whatever n is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ._checks import raise_nonfinite

__all__ = ["Side", "Cross", "Moments", "MomentStatistic"]


@dataclass
class Side:
    n: int
    mean: np.ndarray
    M: np.ndarray
    t4: float
    a: np.ndarray
    colmin: np.ndarray
    colmax: np.ndarray

    @property
    def trace(self) -> float:
        return float(np.trace(self.M))

    @property
    def constant_columns(self) -> np.ndarray:
        return self.colmin == self.colmax

    @property
    def is_constant(self) -> bool:
        return bool(np.all(self.colmin == self.colmax))

    @property
    def is_zero(self) -> bool:
        return bool(np.all(self.colmin == 0) and np.all(self.colmax == 0))

    def uncentred_gram(self) -> np.ndarray:
        """Σ xᵢxᵢᵀ (the uncentred XᵀX)."""
        return self.M + self.n * np.outer(self.mean, self.mean)


@dataclass
class Cross:
    M: np.ndarray
    t4: float
    a: np.ndarray  # Σ pᵢ vᵢ  (length d_y)
    b: np.ndarray  # Σ qᵢ uᵢ  (length d_x)


@dataclass
class Moments:
    """Merged moments of several inputs over the same rows, and chosen pairs of them."""

    sides: list[Side]
    crosses: dict[tuple[int, int], Cross] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return self.sides[0].n


def _side_block(x: np.ndarray, name: str, start: int) -> tuple[Side, np.ndarray, np.ndarray]:
    """Side statistics of one block; also returns the centred block and its row norms."""
    lo = x.min(axis=0)
    hi = x.max(axis=0)
    u = np.array(x, dtype=np.float64, order="C", copy=True)
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        raise_nonfinite(u, name, start)
    lo = lo.astype(np.float64)
    hi = hi.astype(np.float64)
    const = lo == hi
    mean = u.mean(axis=0)
    mean[const] = lo[const]  # exact: a constant column centres to exact zeros
    u -= mean
    p = np.einsum("ij,ij->i", u, u)
    M = u.T @ u
    side = Side(n=u.shape[0], mean=mean, M=M, t4=float(p @ p), a=u.T @ p, colmin=lo, colmax=hi)
    return side, u, p


def _cross_block(u: np.ndarray, p: np.ndarray, v: np.ndarray, q: np.ndarray) -> Cross:
    return Cross(M=u.T @ v, t4=float(p @ q), a=v.T @ p, b=u.T @ q)


def _recentre_side(s: Side, d: np.ndarray) -> tuple[np.ndarray, float]:
    """(a, t4) of side ``s`` after moving its centre by ``-d`` (uᵢ → uᵢ + d)."""
    P = s.trace
    dd = float(d @ d)
    Md = s.M @ d
    a = s.a + P * d + 2.0 * Md + s.n * dd * d
    t4 = s.t4 + 4.0 * float(d @ s.a) + 2.0 * dd * P + 4.0 * float(d @ Md) + s.n * dd * dd
    return a, t4


def merge_sides(A: Side, B: Side) -> tuple[Side, np.ndarray, np.ndarray]:
    """Merge two sides; also return each part's shift (its mean minus the merged mean)."""
    n = A.n + B.n
    delta = B.mean - A.mean
    mean = A.mean + delta * (B.n / n)
    const = (A.colmin == A.colmax) & (B.colmin == B.colmax) & (A.colmin == B.colmin)
    mean[const] = A.mean[const]
    dA = A.mean - mean
    dB = B.mean - mean
    M = A.M + B.M + (A.n * B.n / n) * np.outer(delta, delta)
    aA, tA = _recentre_side(A, dA)
    aB, tB = _recentre_side(B, dB)
    side = Side(
        n=n,
        mean=mean,
        M=M,
        t4=tA + tB,
        a=aA + aB,
        colmin=np.minimum(A.colmin, B.colmin),
        colmax=np.maximum(A.colmax, B.colmax),
    )
    return side, dA, dB


def _recentre_cross(c: Cross, sx: Side, sy: Side, d: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(a, b, t4) of a cross after moving x by ``d`` and y by ``e``."""
    Px, Py, n = sx.trace, sy.trace, sx.n
    dd, ee = float(d @ d), float(e @ e)
    Me = c.M @ e
    a = c.a + Px * e + 2.0 * (c.M.T @ d) + n * dd * e
    b = c.b + Py * d + 2.0 * Me + n * ee * d
    t4 = c.t4 + 2.0 * float(e @ c.a) + ee * Px + 2.0 * float(d @ c.b) + 4.0 * float(d @ Me) + dd * Py + n * dd * ee
    return a, b, t4


def merge(A: Moments, B: Moments) -> Moments:
    """Merge the moments of two disjoint row sets (associative and commutative up to rounding)."""
    merged = [merge_sides(sa, sb) for sa, sb in zip(A.sides, B.sides)]
    sides = [m[0] for m in merged]
    crosses = {}
    for key, ca in A.crosses.items():
        cb = B.crosses[key]
        i, j = key
        dA_i, dB_i = merged[i][1], merged[i][2]
        dA_j, dB_j = merged[j][1], merged[j][2]
        sa_i, sa_j, sb_i, sb_j = A.sides[i], A.sides[j], B.sides[i], B.sides[j]
        delta_i = sb_i.mean - sa_i.mean
        delta_j = sb_j.mean - sa_j.mean
        nA, nB = sa_i.n, sb_i.n
        M = ca.M + cb.M + (nA * nB / (nA + nB)) * np.outer(delta_i, delta_j)
        a1, b1, t1 = _recentre_cross(ca, sa_i, sa_j, dA_i, dA_j)
        a2, b2, t2 = _recentre_cross(cb, sb_i, sb_j, dB_i, dB_j)
        crosses[key] = Cross(M=M, t4=t1 + t2, a=a1 + a2, b=b1 + b2)
    return Moments(sides=sides, crosses=crosses)


@dataclass(frozen=True)
class MomentStatistic:
    """Statistic (partial / combine / finalize) accumulating :class:`Moments`.

    Parameters
    ----------
    names : sequence of str
        Names of the inputs, for error messages.
    pairs : sequence of (i, j)
        Which crosses to accumulate (``i`` indexes x, ``j`` indexes y).
    """

    names: tuple[str, ...]
    pairs: tuple[tuple[int, int], ...]

    def partial(self, blocks: Sequence[np.ndarray], start: int) -> Moments:
        sides, us, ps = [], [], []
        needed = {i for pr in self.pairs for i in pr} | set(range(len(blocks)))
        for k, blk in enumerate(blocks):
            if k in needed:
                s, u, p = _side_block(np.asarray(blk), self.names[k], start)
                sides.append(s)
                us.append(u)
                ps.append(p)
        crosses = {(i, j): _cross_block(us[i], ps[i], us[j], ps[j]) for i, j in self.pairs}
        return Moments(sides=sides, crosses=crosses)

    def combine(self, a: Moments, b: Moments) -> Moments:
        return merge(a, b)

    def finalize(self, state: Moments) -> Moments:
        return state
