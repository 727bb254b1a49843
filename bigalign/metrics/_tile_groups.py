"""Leave-one-group-out states of the exact O(n²) tile roads, from the same tile pass.

A pairwise statistic built from pair sums (Σ k·l, Σ k², Σ l² over i ≠ j) and row
sums (the centring of HSIC, dCov, CKA) is recomputed exactly on the rows minus a
contiguous row group g from two grouped states kept during the one tile pass:

* per term, the G × G matrix of group-pair sums S[g, h] = Σ_{i∈g, j∈h, i≠j} k_ij·l_ij
  (ordered pairs, so S is symmetric and S.sum() is the full-sample sum);
* per row sum, the n × G partial row sums R[i, h] = Σ_{j∈h, j≠i} k_ij.

With group g left out, the pair sum is Σ_{h, h' ≠ g} S[h, h'] and row i's sum is
Σ_{h ≠ g} R[i, h] (sums of the kept entries, nothing subtracted, so nothing
cancels).  Each tile is cut at the group boundaries into sub-tiles (strided views, no copy) that go
through the road's own fused loop (:class:`~bigalign.metrics._kernel_exact.KernelTileStatistic`
and its distance subclass), so the groups do not depend on the tile size and a
grouped pass computes the same pairs as the plain one.

Memory: 3·G² + 2·n·G floats (at G = 20: 320 bytes per row, 6.4 MB at n = 20,000)
beside the plain state's 2·n.  Time: the same pair loop, in up to
(⌈b/group⌉ + 1)² sub-tiles per tile; the leave-out statistics cost O(n·G²) after the pass.

RSA's Pearson tiles keep instead the G × G matrix of pair moments (count, means,
centred sums) of each group pair, and a leave-out value merges the moments of the
group pairs without g (Chan et al.'s exact update): O(G³) merges, no n × G state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..intervals import group_of_rows
from ._kernel_exact import KernelSums, add_block_rows


@dataclass
class GroupTileState:
    pairs: np.ndarray  # (3, G, G): Σ k·l, Σ k², Σ l² by (row group, column group), ordered pairs i ≠ j
    rows: dict[int, np.ndarray] = field(default_factory=dict)  # block start -> (2, b, G) partial row sums of K, L


@dataclass
class GroupedSums:
    """The grouped state of a tile pass: group-pair sums and partial row sums."""

    n: int
    bounds: np.ndarray  # (G + 1,) row group boundaries
    pairs: np.ndarray  # (3, G, G)
    rows: np.ndarray  # (2, n, G)

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


def pieces(bounds: np.ndarray, start: int, size: int) -> list[tuple[int, int, int]]:
    """(group, lo, hi) of a block's rows cut at the group boundaries, relative to the block start."""
    return [(g, lo - start, hi - start) for g, lo, hi in group_of_rows(bounds, start, start + size)]


@dataclass(frozen=True, eq=False)
class GroupedTileStatistic:
    """A kernel or distance tile statistic whose state is resolved by contiguous row groups.

    ``base`` supplies the block preparation (``_prep``) and the fused loop
    (``_accumulate``) of the road; ``bounds`` the G + 1 group boundaries.
    """

    base: Any
    bounds: np.ndarray

    def partial(self, blocks_i: Sequence[np.ndarray], blocks_j: Sequence[np.ndarray], start_i: int, start_j: int) -> GroupTileState:
        b = self.base
        diagonal, xi, xj, yi, yj, nxi, nxj, nyi, nyj, dx, dy = b.tile(blocks_i, blocks_j, start_i, start_j)
        G = self.bounds.size - 1
        bi, bj = xi.shape[0], xj.shape[0]
        pairs = np.zeros((3, G, G))
        rows_i = np.zeros((2, bi, G))
        rows_j = rows_i if diagonal else np.zeros((2, bj, G))
        for g, a0, a1 in pieces(self.bounds, start_i, bi):
            for h, c0, c1 in pieces(self.bounds, start_j, bj):
                if diagonal and c0 < a0:
                    continue  # the lower sub-tiles of a diagonal tile mirror the upper ones
                same = diagonal and c0 == a0
                rk, rl = np.zeros(a1 - a0), np.zeros(a1 - a0)
                ck, cl = (rk, rl) if same else (np.zeros(c1 - c0), np.zeros(c1 - c0))
                kl, kk, ll = b._accumulate(
                    dx[a0:a1, c0:c1], dy[a0:a1, c0:c1], xi[a0:a1], xj[c0:c1], yi[a0:a1], yj[c0:c1],
                    nxi[a0:a1], nxj[c0:c1], nyi[a0:a1], nyj[c0:c1], same, rk, rl, ck, cl,
                )  # fmt: skip
                vals = np.array([kl, kk, ll])
                rows_i[0, a0:a1, h] += rk
                rows_i[1, a0:a1, h] += rl
                if same:
                    pairs[:, g, g] += vals  # every ordered pair i ≠ j of the group piece
                else:
                    # the sub-tile and its mirror (columns become rows)
                    pairs[:, g, h] += vals
                    pairs[:, h, g] += vals
                    rows_j[0, c0:c1, g] += ck
                    rows_j[1, c0:c1, g] += cl
        state = GroupTileState(pairs=pairs)
        add_block_rows(state.rows, start_i, rows_i)
        if not diagonal:
            add_block_rows(state.rows, start_j, rows_j)
        return state

    def combine(self, a: GroupTileState, b: GroupTileState) -> GroupTileState:
        rows = dict(a.rows)
        for start, r in b.rows.items():
            add_block_rows(rows, start, r)
        return GroupTileState(pairs=a.pairs + b.pairs, rows=rows)

    def finalize(self, state: GroupTileState) -> GroupedSums:
        starts = sorted(state.rows)
        rows = np.concatenate([state.rows[s] for s in starts], axis=1)
        return GroupedSums(n=rows.shape[1], bounds=self.bounds, pairs=state.pairs, rows=rows)


# ---------------------------------------------------------------------------
# RSA: pair moments by group pair
# ---------------------------------------------------------------------------


def merged(moments: dict, skip: int | None = None) -> Any:
    """The pair moments of every group pair (g, h) with neither g nor h equal to ``skip``, merged in key order."""
    total = None
    for key in sorted(moments):
        if skip is not None and skip in key:
            continue
        total = moments[key] if total is None else total.merge(moments[key])
    return total


__all__ = ["GroupedSums", "GroupedTileStatistic", "merged", "pieces"]
