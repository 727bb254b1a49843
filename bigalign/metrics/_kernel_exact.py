"""Exact HSIC / CKA / KA for shift-invariant kernels, by tiles over pairs of row blocks.

Each tile (I, J ≥ I) computes its squared distances with one GEMM per input and
hands them to a fused Numba loop that accumulates Σk·l, Σk², Σl² over
off-diagonal pairs and the off-diagonal row sums of K and L.  The state is
O(n) (the row sums) plus three scalars; no kernel matrix is ever held beyond a
tile.  Both rbf and laplacian kernels have k(x, x) = 1, which the formulas use
for the diagonal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .._checks import finite_float64
from .._numba.tiles import KERNEL_CODES, accumulate_tile, sqdist


@dataclass
class TileState:
    kl: float
    kk: float
    ll: float
    rows: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # start -> (r̃, s̃) pieces


@dataclass
class KernelSums:
    """Off-diagonal sums over all pairs: A_kl = Σ_{i≠j} k l, A_kk, A_ll, row sums r̃, s̃."""

    n: int
    kl: float
    kk: float
    ll: float
    r: np.ndarray
    s: np.ndarray


def add_block_rows(rows: dict, start: int, r: np.ndarray) -> None:
    """Add the row sums ``r`` of the block starting at row ``start`` into ``rows`` (block start -> sums)."""
    rows[start] = rows[start] + r if start in rows else r


def _add_rows(rows: dict, start: int, rk: np.ndarray, rl: np.ndarray) -> None:
    if start in rows:
        a, b = rows[start]
        rows[start] = (a + rk, b + rl)
    else:
        rows[start] = (rk, rl)


@dataclass(frozen=True, eq=False)
class KernelTileStatistic:
    kernel: str
    scale_x: float
    scale_y: float
    shift_x: np.ndarray
    shift_y: np.ndarray
    names: tuple[str, str] = ("x", "y")

    def _prep(self, block: np.ndarray, shift: np.ndarray, name: str, start: int) -> tuple[np.ndarray, np.ndarray]:
        x = finite_float64(block, name, start)
        x -= shift
        return x, np.einsum("ij,ij->i", x, x)

    def tile(self, blocks_i: Sequence[np.ndarray], blocks_j: Sequence[np.ndarray], start_i: int, start_j: int) -> tuple:
        """The tile's shifted rows, their squared norms and squared distances:
        (diagonal, xi, xj, yi, yj, nxi, nxj, nyi, nyj, dx, dy) — shared with the grouped tile state."""
        xi, nxi = self._prep(blocks_i[0], self.shift_x, self.names[0], start_i)
        yi, nyi = self._prep(blocks_i[1], self.shift_y, self.names[1], start_i)
        diagonal = start_i == start_j
        if diagonal:
            xj, nxj, yj, nyj = xi, nxi, yi, nyi
        else:
            xj, nxj = self._prep(blocks_j[0], self.shift_x, self.names[0], start_j)
            yj, nyj = self._prep(blocks_j[1], self.shift_y, self.names[1], start_j)
        return diagonal, xi, xj, yi, yj, nxi, nxj, nyi, nyj, sqdist(xi, xj, nxi, nxj), sqdist(yi, yj, nyi, nyj)

    def partial(self, blocks_i: Sequence[np.ndarray], blocks_j: Sequence[np.ndarray], start_i: int, start_j: int) -> TileState:
        diagonal, xi, xj, yi, yj, nxi, nxj, nyi, nyj, dx, dy = self.tile(blocks_i, blocks_j, start_i, start_j)
        bi, bj = xi.shape[0], xj.shape[0]
        rk, rl = np.zeros(bi), np.zeros(bi)
        ck, cl = np.zeros(bj), np.zeros(bj)
        kl, kk, ll = self._accumulate(dx, dy, xi, xj, yi, yj, nxi, nxj, nyi, nyj, diagonal, rk, rl, ck, cl)
        state = TileState(kl=kl, kk=kk, ll=ll)
        _add_rows(state.rows, start_i, rk, rl)
        if not diagonal:
            # the symmetric tile (J, I): same sums, columns become rows
            state.kl, state.kk, state.ll = 2 * kl, 2 * kk, 2 * ll
            _add_rows(state.rows, start_j, ck, cl)
        return state

    def _accumulate(self, dx, dy, xi, xj, yi, yj, nxi, nxj, nyi, nyj, diagonal, rk, rl, ck, cl):  # type: ignore[no-untyped-def]
        """The tile's ⟨K, L⟩, ‖K‖², ‖L‖², adding row sums to rk, rl and column sums to ck, cl (Numba)."""
        return accumulate_tile(
            dx, dy, xi, xj, yi, yj, nxi, nxj, nyi, nyj,
            KERNEL_CODES[self.kernel], self.scale_x, self.scale_y, diagonal, rk, rl, ck, cl,
        )  # fmt: skip

    def combine(self, a: TileState, b: TileState) -> TileState:
        rows = dict(a.rows)
        for start, (rk, rl) in b.rows.items():
            _add_rows(rows, start, rk, rl)
        return TileState(kl=a.kl + b.kl, kk=a.kk + b.kk, ll=a.ll + b.ll, rows=rows)

    def finalize(self, state: TileState) -> KernelSums:
        starts = sorted(state.rows)
        r = np.concatenate([state.rows[s][0] for s in starts])
        s_ = np.concatenate([state.rows[s][1] for s in starts])
        return KernelSums(n=r.shape[0], kl=state.kl, kk=state.kk, ll=state.ll, r=r, s=s_)


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
