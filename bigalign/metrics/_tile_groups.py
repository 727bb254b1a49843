"""Leave-one-group-out states of the exact O(n²) tile roads, from the same tile pass.

A pairwise statistic built from pair sums (Σ k·l, Σ k², Σ l² over i ≠ j) and row
sums (the centring of HSIC, dCov, CKA) is recomputed exactly on the rows minus a
contiguous row group g from two grouped states kept during the one tile pass:

* per term, the G × G matrix of group-pair sums S[g, h] = Σ_{i∈g, j∈h, i≠j} k_ij·l_ij
  (ordered pairs, so S is symmetric and S.sum() is the full-sample sum);
* per row sum, the n × G partial row sums R[i, h] = Σ_{j∈h, j≠i} k_ij.

With group g left out, the pair sum is Σ_{h, h' ≠ g} S[h, h'] and row i's sum is
Σ_{h ≠ g} R[i, h] (sums of the kept entries, nothing subtracted, so nothing
cancels).  The grouped pass is :class:`bigalign.tiles.GroupedTileStatistic` over the
road's own tile statistic (:class:`~bigalign.metrics._kernel_exact.KernelTileStatistic`
and its distance subclass, whose grouped result is
:class:`~bigalign.metrics._kernel_exact.GroupedSums`): each tile is cut at the group
boundaries into sub-tiles (strided views, no copy) that go through the road's own fused
loop, so the groups do not depend on the tile size and a grouped pass computes the same
pairs as the plain one.

Memory: 3·G² + 2·n·G floats (at G = 20: 320 bytes per row, 6.4 MB at n = 20,000)
beside the plain state's 2·n.  Time: the same pair loop, in up to
(⌈b/group⌉ + 1)² sub-tiles per tile; the leave-out statistics cost O(n·G²) after the pass.

RSA's Pearson tiles keep instead the G × G matrix of pair moments (count, means,
centred sums) of each group pair (an unordered road: pairs i < j), and a leave-out value
merges the moments of the group pairs without g
(:meth:`bigalign.tiles.GroupedTiles.total`, Chan et al.'s exact update): O(G³) merges, no n × G state.
"""

from __future__ import annotations

from ..tiles import GroupedTileStatistic, pieces
from ._kernel_exact import GroupedSums

__all__ = ["GroupedSums", "GroupedTileStatistic", "pieces"]
