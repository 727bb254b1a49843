"""The tile base class of the exact pairwise roads (bigalign.tiles), on a toy road with a naive reference.

The toy road keeps, over ordered pairs i ≠ j, Σ‖xᵢ − xⱼ‖² and Σ 1 (pair sums) and each row's
Σ_j ‖xᵢ − xⱼ‖² (per-row sums); its unordered twin keeps Σ_{i<j} ‖xᵢ − xⱼ‖².  Whatever the tile
size, the plain pass must give the naive sums and the grouped pass the naive sums of every
group pair and every row's sums by column group.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pytest

from bigalign.engine import run_pairs
from bigalign.intervals import row_groups
from bigalign.metrics._kernel_exact import KernelTileStatistic
from bigalign.metrics._mmd_sums import PooledTileStatistic
from bigalign.metrics.dcor import DistanceTileStatistic
from bigalign.metrics.neighbors import NeighbourTileStatistic
from bigalign.metrics.rsa import RsaTileStatistic
from bigalign.tiles import GroupedTileStatistic, TileStatistic, shifted_rows


@dataclass(frozen=True, eq=False)
class ToyTiles(TileStatistic):
    shift: np.ndarray

    def prepare(self, blocks, start):  # type: ignore[no-untyped-def]
        return (shifted_rows(blocks[0], "x", start, self.shift),)

    def sums(self, values, pi, pj, a, c, same):  # type: ignore[no-untyped-def]
        d = values[0][a, c].copy()
        if same:
            np.fill_diagonal(d, 0.0)
        ones = np.ones_like(d)
        if same:
            np.fill_diagonal(ones, 0.0)
        return np.array([d.sum(), ones.sum()]), d.sum(axis=1), None if same else d.sum(axis=0)

    def finish(self, pairs, rows):  # type: ignore[no-untyped-def]
        return pairs, rows


@dataclass(frozen=True, eq=False)
class UnorderedToy(ToyTiles):
    ordered: ClassVar[bool] = False

    def sums(self, values, pi, pj, a, c, same):  # type: ignore[no-untyped-def]
        d = values[0][a, c]
        return float(np.triu(d, 1).sum() if same else d.sum()), None, None


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return np.random.default_rng(3).normal(size=(67, 4)) + 5.0


def naive(x: np.ndarray) -> np.ndarray:
    return ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)


@pytest.mark.parametrize("block_size", [7, 16, 67, 100])
def test_plain_pass_matches_the_naive_sums(x, block_size):
    d = naive(x)
    (pairs, rows), _ = run_pairs(ToyTiles(x[:5].mean(0)), [x], names=["x"], check_pairing=False, block_size=block_size, scheduler="sync")
    n = len(x)
    np.testing.assert_allclose(pairs, [d.sum(), n * (n - 1)], rtol=1e-10)
    np.testing.assert_allclose(rows, d.sum(axis=1), rtol=1e-10)
    (total, no_rows), _ = run_pairs(UnorderedToy(x[:5].mean(0)), [x], names=["x"], check_pairing=False, block_size=block_size, scheduler="sync")
    assert total == pytest.approx(np.triu(d, 1).sum(), rel=1e-10) and no_rows is None


@pytest.mark.parametrize("block_size", [5, 16, 67])
def test_grouped_pass_resolves_every_group_pair(x, block_size):
    d = naive(x)
    n, G = len(x), 8
    b = row_groups(n, G)
    grp = np.searchsorted(b, np.arange(n), side="right") - 1
    shift = x[:5].mean(0)
    out, _ = run_pairs(GroupedTileStatistic(ToyTiles(shift), b), [x], names=["x"], check_pairing=False, block_size=block_size, scheduler="sync")
    assert out.groups == G and out.n == n
    for g in range(G):
        for h in range(G):
            want = d[np.ix_(grp == g, grp == h)].sum()
            np.testing.assert_allclose(out.pairs[(g, h)][0], want, rtol=1e-10)
        np.testing.assert_allclose(out.rows[:, g], d[:, grp == g].sum(axis=1), rtol=1e-10)
    np.testing.assert_allclose(out.total()[0], d.sum(), rtol=1e-10)
    np.testing.assert_allclose(out.total(skip=3)[0], d[np.ix_(grp != 3, grp != 3)].sum(), rtol=1e-10)
    un, _ = run_pairs(GroupedTileStatistic(UnorderedToy(shift), b), [x], names=["x"], check_pairing=False, block_size=block_size, scheduler="sync")
    assert set(un.pairs) <= {(g, h) for g in range(G) for h in range(g, G)} and un.rows is None
    assert un.total(skip=2) == pytest.approx(np.triu(d, 1)[np.ix_(grp != 2, grp != 2)].sum(), rel=1e-10)


def test_every_exact_pairwise_road_is_a_tile_statistic():
    for road in (KernelTileStatistic, DistanceTileStatistic, PooledTileStatistic, RsaTileStatistic, NeighbourTileStatistic):
        assert issubclass(road, TileStatistic), road
        assert "partial" not in vars(road) and "combine" not in vars(road), f"{road.__name__} keeps its own tile plumbing"


def test_base_defaults_are_abstract():
    t = TileStatistic()
    with pytest.raises(NotImplementedError):
        t.prepare([np.zeros((2, 2))], 0)
    with pytest.raises(NotImplementedError):
        t.finish(None, None)
    assert isinstance(t.finish_grouped("g"), str)
