"""Exact HSIC / CKA / KA for shift-invariant kernels, by tiles over pairs of row blocks.

Each tile (I, J ≥ I) of :class:`bigalign.tiles.TileStatistic` computes its squared
distances with one GEMM per input and hands them to a fused Numba loop that accumulates Σk·l, Σk², Σl² over
off-diagonal pairs and the off-diagonal row sums of K and L.  The state is
O(n) (the row sums) plus three scalars; no kernel matrix is ever held beyond a
tile.  Both rbf and laplacian kernels have k(x, x) = 1, which the formulas use
for the diagonal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .._numba.tiles import KERNEL_CODES, accumulate_tile
from ..tiles import GroupedTiles, TileStatistic, shifted_rows


@dataclass
class KernelSums:
    """Off-diagonal sums over all pairs: A_kl = Σ_{i≠j} k l, A_kk, A_ll, row sums r̃, s̃."""

    n: int
    kl: float
    kk: float
    ll: float
    r: np.ndarray
    s: np.ndarray


@dataclass
class GroupedSums:
    """The grouped state of a kernel tile pass: group-pair sums and partial row sums."""

    n: int
    bounds: np.ndarray  # (G + 1,) row group boundaries
    pairs: np.ndarray  # (3, G, G): Σ k·l, Σ k², Σ l² by (row group, column group), ordered pairs i ≠ j
    rows: np.ndarray  # (2, n, G): partial row sums of K̃, L̃ by column group

    @property
    def groups(self) -> int:
        return int(self.bounds.size - 1)

    def full(self) -> KernelSums:
        """The full-sample sums (those of the plain tile pass, up to the order of additions)."""
        kl, kk, ll = (float(self.pairs[t].sum()) for t in range(3))
        return KernelSums(n=self.n, kl=kl, kk=kk, ll=ll, r=self.rows[0].sum(axis=1), s=self.rows[1].sum(axis=1))

    def without(self, g: int) -> KernelSums:
        """The sums of the rows minus group g, exactly (sums of the kept entries)."""
        keep = np.ones(self.groups, dtype=bool)
        keep[g] = False
        lo, hi = int(self.bounds[g]), int(self.bounds[g + 1])
        kept_rows = np.r_[0:lo, hi : self.n]
        kl, kk, ll = (float(self.pairs[t][np.ix_(keep, keep)].sum()) for t in range(3))
        r = self.rows[0][kept_rows][:, keep].sum(axis=1)
        s = self.rows[1][kept_rows][:, keep].sum(axis=1)
        return KernelSums(n=int(kept_rows.size), kl=kl, kk=kk, ll=ll, r=r, s=s)


def group_pair_array(grouped: GroupedTiles, terms: int) -> np.ndarray:
    """(terms, G, G): the grouped pass's pair sums as an array (0 where a group pair has no pairs)."""
    G = grouped.groups
    out = np.zeros((terms, G, G))
    for (g, h), s in grouped.pairs.items():
        out[:, g, h] = s
    return out


@dataclass(frozen=True, eq=False)
class KernelTileStatistic(TileStatistic):
    """Σ k·l, Σ k², Σ l² over the pairs i ≠ j and the off-diagonal row sums of K and L.

    The tile loop, the state and its grouped form are :class:`bigalign.tiles.TileStatistic`'s;
    this road prepares shifted float64 rows (GEMM distances) and runs the fused kernel loop.
    """

    kernel: str
    scale_x: float
    scale_y: float
    shift_x: np.ndarray
    shift_y: np.ndarray
    names: tuple[str, str] = ("x", "y")

    def prepare(self, blocks: Sequence[np.ndarray], start: int) -> tuple:
        """((x, ‖x‖²), (y, ‖y‖²)): each input's rows less its shift, in float64."""
        return (shifted_rows(blocks[0], self.names[0], start, self.shift_x), shifted_rows(blocks[1], self.names[1], start, self.shift_y))

    def sums(self, values: Any, pi: Any, pj: Any, a: slice, c: slice, same: bool) -> tuple[Any, Any, Any]:
        """The sub-tile's [⟨K, L⟩, ‖K‖², ‖L‖²] and the row and column sums of K̃, L̃ ((2, rows) each)."""
        (xi, nxi), (yi, nyi) = pi
        (xj, nxj), (yj, nyj) = pj
        dx, dy = values
        xa, xc = xi[a], xj[c]
        rows = np.zeros((2, xa.shape[0]))
        cols = rows if same else np.zeros((2, xc.shape[0]))
        vals = self._accumulate(
            dx[a, c], dy[a, c], xa, xc, yi[a], yj[c], nxi[a], nxj[c], nyi[a], nyj[c], same, rows[0], rows[1], cols[0], cols[1]
        )  # fmt: skip
        return np.array(vals), rows, None if same else cols

    def _accumulate(self, dx, dy, xi, xj, yi, yj, nxi, nxj, nyi, nyj, diagonal, rk, rl, ck, cl):  # type: ignore[no-untyped-def]
        """The tile's ⟨K, L⟩, ‖K‖², ‖L‖², adding row sums to rk, rl and column sums to ck, cl (Numba)."""
        return accumulate_tile(
            dx, dy, xi, xj, yi, yj, nxi, nxj, nyi, nyj,
            KERNEL_CODES[self.kernel], self.scale_x, self.scale_y, diagonal, rk, rl, ck, cl,
        )  # fmt: skip

    def finish(self, pairs: np.ndarray, rows: np.ndarray) -> KernelSums:
        return KernelSums(n=rows.shape[1], kl=float(pairs[0]), kk=float(pairs[1]), ll=float(pairs[2]), r=rows[0], s=rows[1])

    def finish_grouped(self, grouped: GroupedTiles) -> GroupedSums:
        return GroupedSums(n=grouped.n, bounds=grouped.bounds, pairs=group_pair_array(grouped, 3), rows=grouped.rows)  # type: ignore[arg-type]


def hsic_from_sums(n: int, a_kl: float, r: np.ndarray, s: np.ndarray, estimator: str) -> float:
    """HSIC from off-diagonal sums, for kernels with unit diagonal.

    unbiased: [tr(K̃L̃) + 1ᵀK̃1·1ᵀL̃1/((n−1)(n−2)) − 2·1ᵀK̃L̃1/(n−2)] / (n(n−3))
              with tr(K̃L̃) = A_kl, 1ᵀK̃1 = Σr̃, 1ᵀK̃L̃1 = r̃ᵀs̃.
    biased:   tr(KHLH)/(n−1)² with K = K̃ + I:  Σ K∘L = A_kl + n, K1 = r̃ + 1,
              tr(KHLH) = ΣK∘L − (2/n)(K1)ᵀ(L1) + (1ᵀK1)(1ᵀL1)/n².
    """
    if estimator == "unbiased":
        return (a_kl + r.sum() * s.sum() / ((n - 1) * (n - 2)) - 2.0 * float(r @ s) / (n - 2)) / (n * (n - 3))
    rf, sf = r + 1.0, s + 1.0
    return (a_kl + n - 2.0 / n * float(rf @ sf) + rf.sum() * sf.sum() / n**2) / (n - 1) ** 2
