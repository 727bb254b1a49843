"""One streamed state per row group: the leave-one-group-out states of a ``ci=`` in the same pass.

:class:`GroupedStatistic` wraps any additive :class:`~bigalign.engine.Statistic`
(one whose ``combine`` merges the states of disjoint row sets exactly, like the
merged moments of :mod:`bigalign.moments`).  Its state is a dict
``{group: inner state}`` over the contiguous row groups of
:func:`bigalign.intervals.row_groups`; a block that straddles a group boundary
is cut at it, so the groups are defined by row index and never by the engine's
blocks: the states (and hence every interval) do not depend on ``block_size``
or the scheduler beyond rounding.  Combining two grouped states merges the
inner states of a group present in both and otherwise just joins the dicts, so
the tree of combines costs no more than the ungrouped one.

:class:`GroupedStates` then gives the total (the merge of all groups) and every
leave-one-group-out state (the merge of all groups but one) without a second
read: as the total minus the group where the inner statistic can subtract
(``leave_out``: merged moments can, :func:`bigalign.moments.unmerge` — G
subtractions, each the arithmetic of one merge), else by divide and conquer —
the left half's leave-one-out states are the right half's merge joined to the
left half's own, recursively — O(G·log G) merges and O(log G) extra states
beside the G group states.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from .intervals import DEFAULT_CI_GROUPS, group_of_rows, row_groups

__all__ = ["GroupedStatistic", "GroupedStates", "grouped_statistic"]


@dataclass(frozen=True)
class GroupedStatistic:
    """``inner`` accumulated separately over each contiguous row group (``bounds``: G + 1 row boundaries)."""

    inner: Any
    bounds: tuple[int, ...]

    def partial(self, blocks: Sequence[np.ndarray], start: int) -> dict[int, Any]:
        stop = start + int(blocks[0].shape[0])
        out: dict[int, Any] = {}
        for g, lo, hi in group_of_rows(np.asarray(self.bounds), start, stop):
            out[g] = self.inner.partial([b[lo - start : hi - start] for b in blocks], lo)
        return out

    def combine(self, a: dict[int, Any], b: dict[int, Any]) -> dict[int, Any]:
        out = dict(a)
        for g, s in b.items():
            out[g] = self.inner.combine(out[g], s) if g in out else s
        return out

    def finalize(self, state: dict[int, Any]) -> "GroupedStates":
        G = len(self.bounds) - 1
        if sorted(state) != list(range(G)):  # pragma: no cover - every row is in one block
            raise AssertionError(f"internal error: row groups {sorted(state)} of {G} were streamed")
        return GroupedStates([state[g] for g in range(G)], self.inner.combine, np.asarray(self.bounds), getattr(self.inner, "leave_out", None))


def grouped_statistic(inner: Any, n: int, groups: int = DEFAULT_CI_GROUPS, *, func: str = "ci") -> GroupedStatistic:
    """``inner`` over the ``groups`` contiguous row groups of n rows (an error below 2 rows per group)."""
    return GroupedStatistic(inner, tuple(int(b) for b in row_groups(n, groups, func=func)))


def _merge_all(parts: Sequence[Any], combine: Callable[[Any, Any], Any]) -> Any:
    """Merge in a balanced in-order tree (the order of rows is kept)."""
    if len(parts) == 1:
        return parts[0]
    h = len(parts) // 2
    return combine(_merge_all(parts[:h], combine), _merge_all(parts[h:], combine))


@dataclass
class GroupedStates:
    """The G group states of one pass; the total and the leave-one-group-out states on demand."""

    groups: list[Any]
    combine: Callable[[Any, Any], Any]
    bounds: np.ndarray
    #: (total, groups, g) -> the state without group g, where the inner statistic can subtract
    leave_out: Callable[[Any, list, int], Any] | None = None
    _total: Any = None

    def total(self) -> Any:
        """The merge of all groups (made once)."""
        if self._total is None:
            self._total = _merge_all(self.groups, self.combine)
        return self._total

    @property
    def n_groups(self) -> int:
        return len(self.groups)

    def leave_one_out(self) -> Iterator[tuple[int, Any]]:
        """(g, merge of every group but g), g = 0 … G − 1, one at a time: the total minus group g
        where the statistic can subtract (G subtractions), else by divide and conquer."""
        if self.leave_out is not None:
            total = self.total()
            for g in range(len(self.groups)):
                yield g, self.leave_out(total, self.groups, g)
            return
        yield from self._loo(0, len(self.groups), None)

    def _loo(self, lo: int, hi: int, outside: Any) -> Iterator[tuple[int, Any]]:
        if hi - lo == 1:
            yield lo, outside
            return
        mid = (lo + hi) // 2
        left = _merge_all(self.groups[lo:mid], self.combine)
        right = _merge_all(self.groups[mid:hi], self.combine)
        yield from self._loo(lo, mid, right if outside is None else self.combine(outside, right))
        del right
        yield from self._loo(mid, hi, left if outside is None else self.combine(outside, left))

    def values(self, f: Callable[[Any], float]) -> np.ndarray:
        """f of every leave-one-group-out state."""
        return np.array([float(f(s)) for _, s in self.leave_one_out()])
