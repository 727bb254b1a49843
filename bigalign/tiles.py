"""The one base class of every exact O(n²) pairwise road: tiles over pairs of row blocks.

An exact pairwise statistic (HSIC/CKA/KA on shift-invariant kernels, distance
covariance, energy distance, MMD over a pooled sample, RSA's Pearson tiles, the
exact neighbour search) visits every tile (I, J ≥ I) of row blocks once
(:func:`bigalign.engine.run_pairs`).  What they share lives here:

* block preparation, once per side of a tile (:meth:`TileStatistic.prepare`;
  :func:`shifted_rows` gives the common one: a finite float64 copy, translated,
  with its squared row norms);
* the tile's pairwise values, once per tile (:meth:`TileStatistic.values`; by
  default the squared distances of each input by one GEMM);
* the diagonal tile versus an off-diagonal one: a diagonal tile pairs a block
  with itself (pairs i ≠ j only), an off-diagonal tile (I, J) also stands for
  its mirror (J, I), whose sums over ordered pairs are the same and whose row
  sums are the tile's column sums;
* the state: the tile's pair sums (merged by :meth:`TileStatistic.merge`) and
  per-row sums by block start (merged by :meth:`TileStatistic.merge_rows`,
  stitched in row order by :meth:`TileStatistic.stitch` at the end), combined
  in the engine's fixed tree;
* the grouped state of ``ci=`` (:class:`GroupedTileStatistic`): the same pass
  with each tile cut at contiguous row-group boundaries, keeping pair sums by
  group pair (G × G) and per-row sums by column group (n × G), from which the
  statistic of the rows minus any group follows exactly.

A road says only what is its own: which values a (sub-)tile computes and which
sums it keeps (:meth:`TileStatistic.sums`), and what the sums become
(:meth:`TileStatistic.finish`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence

import numpy as np

from ._checks import finite_float64
from ._numba.tiles import sqdist
from .intervals import group_of_rows

__all__ = ["ALL", "GroupedTileStatistic", "GroupedTiles", "TileState", "TileStatistic", "pieces", "shifted_rows"]

#: the whole tile (the plain road's "sub-tile")
ALL = slice(None)


def shifted_rows(block: np.ndarray, name: str, start: int, shift: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A finite float64 copy of ``block`` less ``shift`` (errors name ``name`` and absolute rows), and its
    squared row norms: the preparation of every GEMM-distance road (the shift keeps the GEMM accurate)."""
    x = finite_float64(block, name, start)
    x -= shift
    return x, np.einsum("ij,ij->i", x, x)


def pieces(bounds: np.ndarray, start: int, size: int) -> list[tuple[int, int, int]]:
    """(group, lo, hi) of a block's rows cut at the group boundaries, relative to the block start."""
    return [(g, lo - start, hi - start) for g, lo, hi in group_of_rows(bounds, start, start + size)]


@dataclass
class TileState:
    """The sums of one or more tiles: the road's pair sums and its per-row sums by block start."""

    pairs: Any = None
    rows: dict[int, Any] = field(default_factory=dict)


def _with_rows(state: TileState, start_i: int, rows_i: Any, start_j: int, rows_j: Any, diagonal: bool) -> TileState:
    """``state`` with a tile's per-row sums (none when ``rows_i`` is None), the column side's only off the diagonal."""
    if rows_i is not None:
        state.rows[start_i] = rows_i
        if not diagonal:
            state.rows[start_j] = rows_j
    return state


def _merged_rows(rows: dict, more: dict, merge: Any) -> dict:
    """Per-row sums by block start, those of ``more`` merged in (``merge`` where both have a block)."""
    out = dict(rows)
    for s, r in more.items():
        out[s] = merge(out[s], r) if s in out else r
    return out


class TileStatistic:
    """Base of the exact pairwise roads (the engine's ``PairStatistic`` protocol).

    A road implements

    ``prepare(blocks, start)``
        the row blocks of its inputs, ready for the tile (float64, shifted or
        normalised, squared norms, labels...); called once per side of a tile;
    ``sums(values, pi, pj, a, c, same)``
        the sums of the sub-tile rows ``a`` × columns ``c`` (slices of the
        tile; :data:`ALL` on the plain road): ``(pairs, rows, cols)``, its pair
        sums (or None), the per-row sums of the rows ``a`` (last axis: the
        rows; or None) and those of the columns ``c`` (None when ``same``).
        ``same``: the sub-tile pairs rows with themselves (i ≠ j only);
    ``finish(pairs, rows)``
        the result, from the total pair sums and the per-row sums of all n rows;

    and may change ``values`` (the tile's pairwise values, once per tile:
    default the squared distances of each input by GEMM), ``ordered`` (True:
    the pair sums run over ordered pairs i ≠ j, so an off-diagonal tile counts
    twice for itself and its mirror; False: over pairs i < j, counted once),
    ``merge`` / ``merge_rows`` (default +) and ``stitch`` (default: concatenate
    along the last axis).
    """

    ordered: ClassVar[bool] = True

    # --- the road's own ---------------------------------------------------
    def prepare(self, blocks: Sequence[np.ndarray], start: int) -> Any:
        raise NotImplementedError

    def values(self, pi: Any, pj: Any) -> Any:
        """Squared distances of each input's rows (GEMM identity), for ``prepare`` giving (rows, norms) per input."""
        return tuple(sqdist(a, b, na, nb) for (a, na), (b, nb) in zip(pi, pj))

    def sums(self, values: Any, pi: Any, pj: Any, a: slice, c: slice, same: bool) -> tuple[Any, Any, Any]:
        raise NotImplementedError

    def finish(self, pairs: Any, rows: Any) -> Any:
        raise NotImplementedError

    def finish_grouped(self, grouped: "GroupedTiles") -> Any:
        """The result of the grouped pass (default: the grouped sums themselves)."""
        return grouped

    def merge(self, a: Any, b: Any) -> Any:
        return a + b

    def merge_rows(self, a: Any, b: Any) -> Any:
        return a + b

    def stitch(self, parts: list) -> Any:
        return np.concatenate(parts, axis=-1)

    # --- shared plumbing --------------------------------------------------
    def mirrored(self, pairs: Any) -> Any:
        """The pair sums of an off-diagonal tile and its mirror (J, I)."""
        return 2.0 * pairs if self.ordered else pairs

    def tile(self, blocks_i: Sequence[np.ndarray], blocks_j: Sequence[np.ndarray], start_i: int, start_j: int) -> tuple:
        """(diagonal, pi, pj, values): both sides prepared (once for a diagonal tile) and the tile's values."""
        diagonal = start_i == start_j
        pi = self.prepare(blocks_i, start_i)
        pj = pi if diagonal else self.prepare(blocks_j, start_j)
        return diagonal, pi, pj, self.values(pi, pj)

    def partial(self, blocks_i: Sequence[np.ndarray], blocks_j: Sequence[np.ndarray], start_i: int, start_j: int) -> TileState:
        diagonal, pi, pj, v = self.tile(blocks_i, blocks_j, start_i, start_j)
        pairs, rows, cols = self.sums(v, pi, pj, ALL, ALL, diagonal)
        state = TileState(pairs if diagonal or pairs is None else self.mirrored(pairs))
        return _with_rows(state, start_i, rows, start_j, cols, diagonal)

    def combine(self, a: TileState, b: TileState) -> TileState:
        pairs = None if a.pairs is None else self.merge(a.pairs, b.pairs)
        return TileState(pairs, _merged_rows(a.rows, b.rows, self.merge_rows))

    def finalize(self, state: TileState) -> Any:
        rows = self.stitch([state.rows[s] for s in sorted(state.rows)]) if state.rows else None
        return self.finish(state.pairs, rows)


# ---------------------------------------------------------------------------
# the grouped state of ci=: the same pass, resolved by contiguous row groups
# ---------------------------------------------------------------------------


@dataclass
class GroupedTiles:
    """The grouped sums of a tile pass over n rows in G contiguous groups (``bounds``: G + 1 edges).

    ``pairs[(g, h)]``: the pair sums of the pairs (i ∈ g, j ∈ h) — for an ordered road every
    ordered (g, h), so that the full sum is the sum of all entries; for an unordered one
    (pairs i < j) the key is (min, max).  ``rows``: (..., n, G), row i's sums over the
    columns j ≠ i of each group (None when the road keeps no per-row sums).  Leaving group g
    out keeps the entries without g: sums of kept entries, nothing subtracted.
    """

    n: int
    bounds: np.ndarray
    pairs: dict[tuple[int, int], Any]
    rows: np.ndarray | None
    merge: Any = None

    @property
    def groups(self) -> int:
        return int(self.bounds.size - 1)

    def total(self, skip: int | None = None) -> Any:
        """The pair sums of every group pair without group ``skip`` (all when None), merged in key order."""
        out = None
        for key in sorted(self.pairs):
            if skip is not None and skip in key:
                continue
            out = self.pairs[key] if out is None else self.merge(out, self.pairs[key])
        return out


@dataclass(frozen=True, eq=False)
class GroupedTileStatistic:
    """A road's tile statistic (``base``, a :class:`TileStatistic`) with its state resolved by row groups.

    Each tile is cut at the group boundaries into sub-tiles (views, no copy) that go
    through the road's own ``sums``, so the groups do not depend on the tile size and
    the grouped pass computes the same pairs as the plain one.  Memory: G² pair sums
    and (..., n, G) row sums; time: the same pair loop in up to (⌈b/group⌉ + 1)²
    sub-tiles per tile.
    """

    base: Any
    bounds: np.ndarray

    def _add(self, pairs: dict, key: tuple[int, int], s: Any) -> None:
        pairs[key] = self.base.merge(pairs[key], s) if key in pairs else s

    def partial(self, blocks_i: Sequence[np.ndarray], blocks_j: Sequence[np.ndarray], start_i: int, start_j: int) -> TileState:
        b = self.base
        diagonal, pi, pj, v = b.tile(blocks_i, blocks_j, start_i, start_j)
        G = self.bounds.size - 1
        bi, bj = blocks_i[0].shape[0], blocks_j[0].shape[0]
        pairs: dict = {}
        rows_i = rows_j = None
        for g, a0, a1 in pieces(self.bounds, start_i, bi):
            for h, c0, c1 in pieces(self.bounds, start_j, bj):
                if diagonal and c0 < a0:
                    continue  # the lower sub-tiles of a diagonal tile mirror the upper ones
                same = diagonal and c0 == a0
                s, ra, cc = b.sums(v, pi, pj, slice(a0, a1), slice(c0, c1), same)
                if s is not None:
                    if not b.ordered:
                        self._add(pairs, (min(g, h), max(g, h)), s)
                    elif same:
                        self._add(pairs, (g, g), s)  # every ordered pair i ≠ j of the group piece
                    else:  # the sub-tile and its mirror (columns become rows)
                        self._add(pairs, (g, h), s)
                        self._add(pairs, (h, g), s)
                if ra is not None:
                    if rows_i is None:
                        rows_i = np.zeros(ra.shape[:-1] + (bi, G))
                        rows_j = rows_i if diagonal else np.zeros(ra.shape[:-1] + (bj, G))
                    rows_i[..., a0:a1, h] += ra
                    if not same:
                        rows_j[..., c0:c1, g] += cc  # type: ignore[index]
        return _with_rows(TileState(pairs), start_i, rows_i, start_j, rows_j, diagonal)

    def combine(self, a: TileState, b: TileState) -> TileState:
        pairs = dict(a.pairs)
        for key, s in b.pairs.items():
            self._add(pairs, key, s)
        return TileState(pairs, _merged_rows(a.rows, b.rows, np.add))

    def finalize(self, state: TileState) -> Any:
        rows = np.concatenate([state.rows[s] for s in sorted(state.rows)], axis=-2) if state.rows else None
        grouped = GroupedTiles(n=int(self.bounds[-1]), bounds=self.bounds, pairs=state.pairs, rows=rows, merge=self.base.merge)
        return self.base.finish_grouped(grouped)
