"""Merged centred moments: the exact sufficient statistics of every linear-kernel metric.

The columns of each input are split into G contiguous *groups* (one group for a
plain linear kernel; one group per random frequency or orthogonal block for
random features, so that the self-terms can be debiased and jackknifed).  For
each input (a *side*) over a set of rows we keep, in float64,

* ``n``, the column ``mean`` μ,
* ``M = Σ uᵢuᵢᵀ`` with ``uᵢ = xᵢ − μ`` (the centred co-moment),
* ``T = Σ pᵢpᵢᵀ`` (G × G) and ``A = Σ pᵢuᵢᵀ`` (G × d), where ``pᵢ[g] = ‖uᵢ restricted to group g‖²``,
* the column minima and maxima (exact detection of constant columns),

and for each pair of inputs (a *cross*)

* ``M = Σ uᵢvᵢᵀ``, ``T = Σ pᵢqᵢᵀ``, ``A = Σ pᵢvᵢᵀ``, ``B = Σ qᵢuᵢᵀ``.

Merging two row sets re-centres each part on the merged mean with exact
identities (Chan, Golub & LeVeque's pairwise update for ``M``, extended to the
fourth-order terms), so nothing of the form ``XᵀX − nμμᵀ`` ever cancels: a
float32 input offset by 1e4 keeps full accuracy.

From these sums the HSIC of the linear kernels of any two groups follows exactly
(``group_hsic``); summed over groups it is the HSIC of the whole inputs.  Memory
is O(d_x² + d_y² + d_x·d_y + G·d) whatever n is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from dask.sizeof import sizeof

from ._checks import finite_float64, raise_nonfinite
from .errors import InvalidInputError

#: magnitudes beyond which Σ‖u‖⁴ could overflow (or underflow) float64
MAX_MAGNITUDE = 1e50
MIN_MAGNITUDE = 1e-50

__all__ = ["Side", "Cross", "Moments", "MomentStatistic", "merge", "group_hsic", "scale"]


def _gsum_rows(a: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Sum the rows of ``a`` within each group (S·a)."""
    return np.add.reduceat(a, bounds[:-1], axis=0)


def _gsum_cols(a: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Sum the columns of ``a`` within each group (a·Sᵀ)."""
    return np.add.reduceat(a, bounds[:-1], axis=1)


@dataclass
class Side:
    n: int
    mean: np.ndarray
    M: np.ndarray
    T: np.ndarray  # (G, G)  Σ pᵢpᵢᵀ
    A: np.ndarray  # (G, d)  Σ pᵢuᵢᵀ
    colmin: np.ndarray
    colmax: np.ndarray
    bounds: np.ndarray  # group boundaries, length G + 1

    @property
    def group_traces(self) -> np.ndarray:
        """P[g] = Σᵢ pᵢ[g] (the traces of the diagonal blocks of M)."""
        return np.add.reduceat(np.diag(self.M).copy(), self.bounds[:-1])

    @property
    def trace(self) -> float:
        return float(np.trace(self.M))

    @property
    def t4(self) -> float:
        """Σᵢ ‖uᵢ‖⁴ (all groups together)."""
        return float(self.T.sum())

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
    M: np.ndarray  # (d_x, d_y)  Σ uᵢvᵢᵀ
    T: np.ndarray  # (G_x, G_y)  Σ pᵢqᵢᵀ
    A: np.ndarray  # (G_x, d_y)  Σ pᵢvᵢᵀ
    B: np.ndarray  # (G_y, d_x)  Σ qᵢuᵢᵀ

    @property
    def t4(self) -> float:
        """Σᵢ ‖uᵢ‖²‖vᵢ‖²."""
        return float(self.T.sum())


@dataclass
class Moments:
    """Merged moments of several inputs over the same rows, and chosen pairs of them."""

    sides: list[Side]
    crosses: dict[tuple[int, int], Cross] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return self.sides[0].n

    def pair(self, i: int, j: int) -> tuple[np.ndarray, np.ndarray]:
        """(M, T) between inputs i and j (i == j: the self terms), oriented i × j."""
        if i == j:
            s = self.sides[i]
            return s.M, s.T
        if (i, j) in self.crosses:
            c = self.crosses[(i, j)]
            return c.M, c.T
        c = self.crosses[(j, i)]
        return c.M.T, c.T.T


@sizeof.register(Moments)
def _sizeof_moments(m: Moments) -> int:
    """Bytes of the arrays (distributed sizes states with this: memory limits, spilling, transfer accounting)."""
    arrays = [a for sd in m.sides for a in (sd.mean, sd.M, sd.T, sd.A, sd.colmin, sd.colmax)]
    arrays += [a for c in m.crosses.values() for a in (c.M, c.T, c.A, c.B)]
    return int(sum(a.nbytes for a in arrays)) + 64 * (1 + len(m.sides) + len(m.crosses))


def _side_block(x: np.ndarray, name: str, start: int, bounds: np.ndarray) -> tuple[Side, np.ndarray, np.ndarray]:
    """Side statistics of one block; also returns the centred block and its group row norms."""
    with np.errstate(invalid="ignore"):  # NaN is reported below as NonFiniteError, not as a warning
        lo = x.min(axis=0)
        hi = x.max(axis=0)
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        raise_nonfinite(x, name, start)
    lo = lo.astype(np.float64)
    hi = hi.astype(np.float64)
    amax = max(float(np.max(np.abs(lo))), float(np.max(np.abs(hi))))
    if amax > MAX_MAGNITUDE or 0 < amax < MIN_MAGNITUDE:
        raise InvalidInputError(
            f"{name} has values of magnitude {amax:.3g} (rows {start}..{start + x.shape[0] - 1}); the exact "
            f"fourth-order sums of the unbiased estimators need magnitudes within [{MIN_MAGNITUDE:g}, "
            f"{MAX_MAGNITUDE:g}] to stay inside float64. Rescale the input (e.g. divide by its standard deviation); "
            "CKA and kernel alignment are scale invariant."
        )
    const = lo == hi
    if x.dtype.kind == "f":
        # cast and centre in one pass (float64 accumulation; no separate float64 copy of the block)
        mean = x.mean(axis=0, dtype=np.float64)
        mean[const] = lo[const]  # exact: a constant column centres to exact zeros
        u = np.subtract(x, mean, dtype=np.float64)
    else:  # integers, bfloat16
        u = np.array(x, dtype=np.float64, order="C", copy=True)
        mean = u.mean(axis=0)
        mean[const] = lo[const]
        u -= mean
    if len(bounds) > 2:
        p = _gsum_cols(u * u, bounds)
    else:
        p = np.einsum("ij,ij->i", u, u)[:, None]  # row norms without an n×d temporary
    side = Side(n=u.shape[0], mean=mean, M=u.T @ u, T=p.T @ p, A=p.T @ u, colmin=lo, colmax=hi, bounds=bounds)
    return side, u, p


def _recentre_side(s: Side, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(A, T) of side ``s`` after moving its rows by ``d`` (uᵢ → uᵢ + d); exact because Σuᵢ = 0."""
    b = s.bounds
    P = s.group_traces
    if len(b) == 2:  # one group: matrix–vector products instead of d×d temporaries
        Md = s.M @ d
        dd = float(d @ d)
        A = s.A + np.outer(P + s.n * dd, d) + 2.0 * Md[None, :]
        T = s.T + 4.0 * float(s.A[0] @ d) + 2.0 * P * dd + 4.0 * float(d @ Md) + s.n * dd * dd
        return A, T
    rho = np.add.reduceat(d * d, b[:-1])
    SdM = _gsum_rows(d[:, None] * s.M, b)  # S diag(d) M          (G, d)
    A = s.A + np.outer(P + s.n * rho, d) + 2.0 * SdM
    AdS = _gsum_cols(s.A * d[None, :], b)  # A diag(d) Sᵀ          (G, G)
    SdMdS = _gsum_cols(SdM * d[None, :], b)  # S diag(d) M diag(d) Sᵀ
    T = s.T + 2.0 * (AdS + AdS.T) + np.outer(P, rho) + np.outer(rho, P) + 4.0 * SdMdS + s.n * np.outer(rho, rho)
    return A, T


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
        T=tA + tB,
        A=aA + aB,
        colmin=np.minimum(A.colmin, B.colmin),
        colmax=np.maximum(A.colmax, B.colmax),
        bounds=A.bounds,
    )
    return side, dA, dB


def _recentre_cross(c: Cross, sx: Side, sy: Side, d: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(A, B, T) of a cross after moving x by ``d`` and y by ``e``."""
    bx, by, n = sx.bounds, sy.bounds, sx.n
    Px, Py = sx.group_traces, sy.group_traces
    if len(bx) == 2 and len(by) == 2:  # one group each: matrix–vector products
        dd, ee = float(d @ d), float(e @ e)
        Me, Mtd = c.M @ e, c.M.T @ d
        A = c.A + np.outer(Px + n * dd, e) + 2.0 * Mtd[None, :]
        B = c.B + np.outer(Py + n * ee, d) + 2.0 * Me[None, :]
        T = (c.T + 2.0 * float(c.A[0] @ e) + 2.0 * float(c.B[0] @ d) + Px * ee + dd * Py
             + 4.0 * float(d @ Me) + n * dd * ee)  # fmt: skip
        return A, B, T
    rx = np.add.reduceat(d * d, bx[:-1])
    ry = np.add.reduceat(e * e, by[:-1])
    SdM = _gsum_rows(d[:, None] * c.M, bx)  # S_x diag(d) M_xy        (G_x, d_y)
    SeMt = _gsum_rows(e[:, None] * c.M.T, by)  # S_y diag(e) M_xyᵀ     (G_y, d_x)
    A = c.A + np.outer(Px + n * rx, e) + 2.0 * SdM
    B = c.B + np.outer(Py + n * ry, d) + 2.0 * SeMt
    T = (
        c.T
        + 2.0 * _gsum_cols(c.A * e[None, :], by)  # A diag(e) S_yᵀ
        + 2.0 * _gsum_rows(d[:, None] * c.B.T, bx)  # S_x diag(d) Bᵀ
        + np.outer(Px, ry)
        + np.outer(rx, Py)
        + 4.0 * _gsum_cols(SdM * e[None, :], by)  # S_x diag(d) M diag(e) S_yᵀ
        + n * np.outer(rx, ry)
    )
    return A, B, T


def merge(A: Moments, B: Moments) -> Moments:
    """Merge the moments of two disjoint row sets (associative and commutative up to rounding)."""
    merged = [merge_sides(sa, sb) for sa, sb in zip(A.sides, B.sides)]
    sides = [m[0] for m in merged]
    crosses = {}
    for key, ca in A.crosses.items():
        cb = B.crosses[key]
        i, j = key
        sa_i, sa_j, sb_i, sb_j = A.sides[i], A.sides[j], B.sides[i], B.sides[j]
        nA, nB = sa_i.n, sb_i.n
        M = ca.M + cb.M + (nA * nB / (nA + nB)) * np.outer(sb_i.mean - sa_i.mean, sb_j.mean - sa_j.mean)
        a1, b1, t1 = _recentre_cross(ca, sa_i, sa_j, merged[i][1], merged[j][1])
        a2, b2, t2 = _recentre_cross(cb, sb_i, sb_j, merged[i][2], merged[j][2])
        crosses[key] = Cross(M=M, T=t1 + t2, A=a1 + a2, B=b1 + b2)
    return Moments(sides=sides, crosses=crosses)


def scale(m: Moments, i: int) -> float:
    """c_i = tr(M_i)/n, the mean squared centred row norm of input i (1 for a constant input)."""
    c = m.sides[i].trace / m.n
    return c if c > 0 else 1.0


def group_hsic(m: Moments, i: int, j: int, estimator: str, normalized: bool = False) -> np.ndarray:
    """HSIC between the linear kernels of every group of input i and every group of input j.

    Returns a (G_i, G_j) matrix H; ``H.sum()`` is the HSIC of the whole inputs
    (HSIC is bilinear in the kernels and the kernel of an input is the sum of
    its groups' kernels).  With ``normalized=True`` it returns H / (c_i·c_j)
    (see :func:`scale`), computed without ever forming the unscaled squares,
    so ratios such as CKA stay exact for inputs of any finite magnitude
    (1e-150 or 1e150 alike).

    biased:   ‖M_gh‖²_F / (n−1)²
    unbiased: [‖M_gh‖² − T_gh + P_g·Q_h/((n−1)(n−2)) − 2·T_gh/(n−2)] / (n(n−3))
              — Song et al.'s U-statistic with rows centred on the global mean
              (it is invariant to that shift, which zeroes every 1ᵀ-term).
    """
    n = m.n
    M, T = m.pair(i, j)
    P, Q = m.sides[i].group_traces, m.sides[j].group_traces
    if normalized:
        ci, cj = scale(m, i), scale(m, j)
        M = M / np.sqrt(ci) / np.sqrt(cj)
        T, P, Q = T / ci / cj, P / ci, Q / cj
    bi, bj = m.sides[i].bounds, m.sides[j].bounds
    mm = _gsum_cols(_gsum_rows(M * M, bi), bj) if (len(bi) > 2 or len(bj) > 2) else np.array([[np.vdot(M, M)]])
    if estimator == "biased":
        return mm / (n - 1) ** 2
    return (mm - T + np.outer(P, Q) / ((n - 1) * (n - 2)) - 2.0 * T / (n - 2)) / (n * (n - 3))


def _bounds(d: int, groups: Sequence[int] | None) -> np.ndarray:
    if groups is None:
        return np.array([0, d], dtype=np.int64)
    return np.asarray(groups, dtype=np.int64)


@dataclass(frozen=True)
class MomentStatistic:
    """Statistic (partial / combine / finalize) accumulating :class:`Moments`.

    Parameters
    ----------
    names : sequence of str
        Names of the inputs, for error messages.
    pairs : sequence of (i, j)
        Which crosses to accumulate (``i`` indexes x, ``j`` indexes y).
    groups : sequence of (sequence of int or None), optional
        Per input, the group boundaries of its columns (``[0, ..., d]``);
        ``None`` is one group.
    transforms : sequence of callables or None, optional
        Per input, a feature map applied to each float64 block before the
        moments (e.g. random Fourier features); ``None`` keeps the rows.
    """

    names: tuple[str, ...]
    pairs: tuple[tuple[int, int], ...]
    groups: tuple = ()
    transforms: tuple = ()

    def partial(self, blocks: Sequence[np.ndarray], start: int) -> Moments:
        sides, us, ps = [], [], []
        for k, blk in enumerate(blocks):
            x = np.asarray(blk)
            tf = self.transforms[k] if self.transforms else None
            if tf is not None:
                x = tf(finite_float64(x, self.names[k], start))
            g = self.groups[k] if self.groups else None
            s, u, p = _side_block(x, self.names[k], start, _bounds(x.shape[1], g))
            sides.append(s)
            us.append(u)
            ps.append(p)
        crosses = {(i, j): Cross(M=us[i].T @ us[j], T=ps[i].T @ ps[j], A=ps[i].T @ us[j], B=ps[j].T @ us[i]) for i, j in self.pairs}
        return Moments(sides=sides, crosses=crosses)

    def combine(self, a: Moments, b: Moments) -> Moments:
        return merge(a, b)

    def finalize(self, state: Moments) -> Moments:
        return state

    def leave_out(self, total: Moments, groups: Sequence[Moments], g: int) -> Moments:
        """The moments of every row group but ``g`` from their merge ``total`` (:func:`unmerge`), with the
        column ranges of the other groups (so a column constant on the rest is detected exactly)."""
        rest = unmerge(total, groups[g])
        others = [m for k, m in enumerate(groups) if k != g]
        for k, side in enumerate(rest.sides):
            side.colmin = np.min([m.sides[k].colmin for m in others], axis=0)
            side.colmax = np.max([m.sides[k].colmax for m in others], axis=0)
            const = side.colmin == side.colmax
            side.mean[const] = side.colmin[const]
        return rest


def _zeroed_side(s: Side, A: np.ndarray | None = None) -> Side:
    """``s`` with its fourth-order sums replaced (A by ``A`` or zeros, T by zeros): the recentring maps are
    affine in them with unit coefficient, so recentring this side isolates the terms added by the shift."""
    return Side(n=s.n, mean=s.mean, M=s.M, T=np.zeros_like(s.T), A=np.zeros_like(s.A) if A is None else A,
                colmin=s.colmin, colmax=s.colmax, bounds=s.bounds)  # fmt: skip


def unmerge(total: Moments, part: Moments) -> Moments:
    """The moments of the rows of ``total`` that are not in ``part`` (``part``'s rows a subset of them):
    the inverse of :func:`merge`, ``merge(unmerge(T, B), B) == T`` up to rounding.

    Chan's update run backwards gives the rest's n, mean and M; the fourth-order sums of the rest,
    centred on the total mean, are the total's minus ``part``'s recentred ones; they are moved back
    to the rest's own mean by inverting the recentring maps, which are affine in those sums with unit
    coefficient (A' = A + f(M, d); T' = T + g(A, M, d)).  One merge's arithmetic, no re-read of rows.
    The column minima and maxima of the rest are not recoverable: the total's are kept (a constant
    column of the rest that varies in ``part`` is then not flagged constant; the sums are exact).
    """
    sides, shifts = [], []
    for t, b in zip(total.sides, part.sides):
        n = t.n - b.n
        mean = (t.n * t.mean - b.n * b.mean) / n
        const = t.colmin == t.colmax
        mean[const] = t.mean[const]
        delta = b.mean - mean
        M = t.M - b.M - (n * b.n / t.n) * np.outer(delta, delta)
        d_rest, d_part = mean - t.mean, b.mean - t.mean
        bA, bT = _recentre_side(b, d_part)
        rest = Side(n=n, mean=mean, M=M, T=t.T - bT, A=t.A - bA, colmin=t.colmin, colmax=t.colmax, bounds=t.bounds)
        f_A, _ = _recentre_side(_zeroed_side(rest), d_rest)
        A = rest.A - f_A
        _, g_T = _recentre_side(_zeroed_side(rest, A), d_rest)
        sides.append(Side(n=n, mean=mean, M=M, T=rest.T - g_T, A=A, colmin=t.colmin, colmax=t.colmax, bounds=t.bounds))
        shifts.append((d_rest, d_part))
    crosses = {}
    for (i, j), ct in total.crosses.items():
        cb = part.crosses[(i, j)]
        si, sj, bi, bj = sides[i], sides[j], part.sides[i], part.sides[j]
        n, nb = si.n, bi.n
        M = ct.M - cb.M - (n * nb / (n + nb)) * np.outer(bi.mean - si.mean, bj.mean - sj.mean)
        a_b, b_b, t_b = _recentre_cross(cb, bi, bj, shifts[i][1], shifts[j][1])
        zero = Cross(M=M, T=np.zeros_like(ct.T), A=np.zeros_like(ct.A), B=np.zeros_like(ct.B))
        f_A, f_B, _ = _recentre_cross(zero, si, sj, shifts[i][0], shifts[j][0])
        A, B = ct.A - a_b - f_A, ct.B - b_b - f_B
        _, _, g_T = _recentre_cross(Cross(M=M, T=zero.T, A=A, B=B), si, sj, shifts[i][0], shifts[j][0])
        crosses[(i, j)] = Cross(M=M, T=ct.T - t_b - g_T, A=A, B=B)
    return Moments(sides=sides, crosses=crosses)
