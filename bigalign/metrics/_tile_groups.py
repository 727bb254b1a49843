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

from dataclasses import replace
from typing import Any

from ..tiles import GroupedTileStatistic, pieces
from ._kernel_exact import GroupedSums


#: recorded in ``parameters["ci_bias"]`` of a biased estimate with an interval that is not bias-corrected (the
#: kernel block road's, whose leave-out values keep n fixed and so cannot see the V-statistic's O(1/n) bias; the
#: exact roads centre theirs at the jackknife's bias-corrected estimate instead).  Measured on exact tiles
#: before that correction: RBF CKA +0.021 and dCor² +0.040 at n = 500, d = 8, against jackknife se of 0.012
#: (coverage 0.59 and 0.11; benchmarks/results/ci_coverage_tiles.md)
BIASED_CI_NOTE = (
    "the biased (V-statistic) estimate exceeds the population value by O(1/n), which this interval does not "
    "include: it covers poorly at small n; use estimator='unbiased' (or method='exact') for inference"
)


def note_biased(result: Any, estimator: str) -> Any:
    """``result`` with ``parameters["ci_bias"]`` when it is a biased estimate carrying an interval."""
    if estimator != "biased" or result.ci is None:
        return result
    return replace(result, parameters={**result.parameters, "ci_bias": BIASED_CI_NOTE})


__all__ = ["BIASED_CI_NOTE", "GroupedSums", "GroupedTileStatistic", "note_biased", "pieces"]
