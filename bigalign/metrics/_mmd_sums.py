"""The streamed sums of MMD: the pooled sample, exact kernel tiles over it, and explicit features.

See :mod:`bigalign.metrics.mmd` for the formulas.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from numba import njit

from .._checks import finite_float64
from .._numba.tiles import KERNEL_CODES, _k, _refined, sqdist
from ..engine import content_id, rep_token
from ..errors import InvalidInputError
from ..io import Representation, as_representation
from ..tiles import TileStatistic

METHODS = ("auto", "exact", "rff", "orf", "nystroem")
TESTS = ("auto", "permutation", "asymptotic")
#: ``mmd_test(method="auto")`` permutes up to this many pooled samples (exact tiles cost
#: O(n²·(d + B)): B = 1,000 permutations ≈ 4·10⁹ extra flops at 2,000), asymptotic beyond.
PERMUTATION_MAX_N = 2_000
#: The permutation labels are held as an n × B int8 matrix: at most this many bytes.
MAX_LABEL_BYTES = 256 * 2**20
#: Rows of *each* sample in the kernel matrix whose spectrum gives the asymptotic null (exact kernels).
NULL_SAMPLE = 500
_PERMUTATION_TAG = 0x3DD  # labels draw from default_rng([seed, tag])
_FEATURE_TAG = 2  # the feature-map stream of the kernel metrics


# ----------------------------------------------------------------------------
# two samples, one pooled input
# ----------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _PoolSource:
    """The two samples behind a pooled input (deterministic repr and dask token)."""

    x: Representation
    y: Representation

    def __repr__(self) -> str:
        return f"pooled({rep_token(self.x)!r}, {rep_token(self.y)!r})"

    def __dask_tokenize__(self) -> Any:
        return ("pooled", content_id(self.x), content_id(self.y))


@dataclass
class PooledRepresentation(Representation):
    """Rows of x (0..n_x−1) followed by rows of y, read lazily from both (never copied)."""

    n_x: int = 0

    @property
    def parts(self) -> tuple[Representation, Representation]:
        return self.source.x, self.source.y

    def _cast(self, a: np.ndarray) -> np.ndarray:
        return a if a.dtype == self.dtype else np.asarray(a, dtype=self.dtype)

    def read(self, start: int, stop: int) -> np.ndarray:
        rx, ry = self.parts
        nx = self.n_x
        pieces = []
        if start < nx:
            pieces.append(self._cast(np.asarray(rx.read(start, min(stop, nx)))))
        if stop > nx:
            pieces.append(self._cast(np.asarray(ry.read(max(start, nx) - nx, stop - nx))))
        return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)

    def take(self, rows: np.ndarray) -> np.ndarray:
        rx, ry = self.parts
        rows = np.asarray(rows)
        a, b = rows[rows < self.n_x], rows[rows >= self.n_x] - self.n_x
        pieces = ([self._cast(np.asarray(rx.take(a)))] if a.size else []) + ([self._cast(np.asarray(ry.take(b)))] if b.size else [])
        return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)


def pooled(x: Any, y: Any) -> PooledRepresentation:
    """The pooled input [x; y]: two samples in the same space (d must match, n may differ)."""
    rx, ry = as_representation(x, "x"), as_representation(y, "y")
    if rx.d != ry.d:
        raise InvalidInputError(
            f"x and y must be samples in the same space, with the same number of features; got x: {rx.d}, "
            f"y: {ry.d} features. MMD compares two distributions on one space (e.g. one layer before and after "
            "fine-tuning). To compare representations of different widths on the same inputs, use hsic() or cka()."
        )
    dtype = rx.dtype if rx.dtype == ry.dtype else np.dtype(np.float64)
    return PooledRepresentation(
        name="x and y (pooled)", shape=(rx.n + ry.n, rx.d), dtype=dtype, kind="pooled",
        source=_PoolSource(rx, ry), native_rows=None, n_x=rx.n,
    )  # fmt: skip


def _checked(block: np.ndarray, start: int, n_x: int) -> np.ndarray:
    """A float64 copy of pooled rows start.. whose errors name x or y and their own row numbers."""
    stop = start + block.shape[0]
    if stop <= n_x:
        return finite_float64(block, "x", start)
    if start >= n_x:
        return finite_float64(block, "y", start - n_x)
    k = n_x - start
    return np.concatenate([finite_float64(block[:k], "x", start), finite_float64(block[k:], "y", 0)])


def _label_block(n_x: int, start: int, stop: int, labels: np.ndarray | None) -> np.ndarray:
    """(rows × L) float64: column 0 marks the rows of x; then the permuted labellings."""
    e0 = (np.arange(start, stop) < n_x).astype(np.float64)[:, None]
    if labels is None:
        return e0
    return np.concatenate([e0, labels[start:stop].astype(np.float64)], axis=1)


def draw_labels(n: int, n_x: int, n_perm: int, seed: int) -> np.ndarray:
    """(n × B) int8: column b marks the n_x rows labelled x by the b-th random relabelling."""
    if n * n_perm > MAX_LABEL_BYTES:
        raise InvalidInputError(
            f"the permutation test holds an n × B matrix of labels: n = {n} pooled samples × B = {n_perm} "
            f"permutations is {n * n_perm / 2**20:.0f} MiB, above the {MAX_LABEL_BYTES // 2**20} MiB allowed. "
            "Use fewer permutations (n_permutations=...), or method='asymptotic'."
        )
    rng = np.random.default_rng([seed, _PERMUTATION_TAG])
    out = np.empty((n, n_perm), dtype=np.int8)
    for b in range(n_perm):  # sequential draws: the labels do not depend on anything else
        out[:, b] = rng.permutation(n) < n_x
    return out


# ----------------------------------------------------------------------------
# exact kernels: tiles over the pooled sample
# ----------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def kernel_tile(d2, a, b, na, nb, code, scale, diagonal, out):  # pragma: no cover - compiled lazily
    """out[i, j] = k(aᵢ, bⱼ) from GEMM squared distances (refined where small); 0 on the diagonal of a diagonal tile."""
    bi, bj = d2.shape
    for i in range(bi):
        for j in range(bj):
            if diagonal and i == j:
                out[i, j] = 0.0
            else:
                out[i, j] = _k(_refined(d2[i, j], a[i], b[j], na[i], nb[j]), code, scale)


def kernel_tile_numpy(a: np.ndarray, b: np.ndarray, code: int, scale: float, diagonal: bool) -> np.ndarray:
    """The numpy twin of :func:`kernel_tile`, from explicit differences (for tests)."""
    d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    k = np.exp(-d2 * scale) if code == KERNEL_CODES["rbf"] else np.exp(-np.sqrt(d2) * scale)
    if diagonal:
        np.fill_diagonal(k, 0.0)
    return k


@dataclass(frozen=True, eq=False)
class PooledTileStatistic(TileStatistic):
    """Pair statistic over the pooled sample: off-diagonal kernel sums split by labels.

    Per (sub-)tile: A = e_bᵀK̃e_b for each label vector e_b (column 0 marks the rows of x;
    then the permuted labellings) as the pair sums, and the row sums of K̃ as the per-row
    sums; :meth:`finish` gives (A, r̃ = K̃1).  The tile loop, state and grouped form are
    :class:`bigalign.tiles.TileStatistic`'s: grouped by the pooled row groups, the
    partial row sums give the kernel sums of every group pair (the leave-out of ``ci=``).
    """

    kernel: str
    scale: float
    shift: np.ndarray
    n_x: int
    labels: np.ndarray | None = None

    def prepare(self, blocks: Sequence[np.ndarray], start: int) -> tuple:
        """(z, ‖z‖², labels): the pooled rows less the shift (errors name x or y and their rows) and their labels."""
        z = _checked(blocks[0], start, self.n_x)
        z -= self.shift
        return z, np.einsum("ij,ij->i", z, z), _label_block(self.n_x, start, start + z.shape[0], self.labels)

    def values(self, pi: Any, pj: Any) -> np.ndarray:
        """K̃ on the tile: kernel values from GEMM squared distances, 0 on the diagonal of a diagonal tile."""
        (zi, ni, _), (zj, nj, _) = pi, pj
        k = np.empty((zi.shape[0], zj.shape[0]))
        kernel_tile(sqdist(zi, zj, ni, nj), zi, zj, ni, nj, KERNEL_CODES[self.kernel], self.scale, pi is pj, k)
        return k

    def sums(self, values: Any, pi: Any, pj: Any, a: slice, c: slice, same: bool) -> tuple[Any, Any, Any]:
        k = values[a, c]
        ei, ej = pi[2][a], pj[2][c]
        return np.einsum("il,il->l", ei, k @ ej), k.sum(axis=1), None if same else k.sum(axis=0)

    def finish(self, pairs: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return pairs, rows


# ----------------------------------------------------------------------------
# explicit features (linear, rff/orf, Nyström): one row-block pass
# ----------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Features:
    """φ(x) = map(x) − offset, or x − shift for the linear kernel (MMD is invariant to both shifts)."""

    fmap: Any
    shift: np.ndarray
    offset: np.ndarray | None = None

    def __call__(self, z: np.ndarray) -> np.ndarray:
        phi = z - self.shift if self.fmap is None else self.fmap(z)
        if self.offset is not None:
            phi -= self.offset
        return phi


@dataclass(frozen=True, eq=False)
class _Stacked:
    """[full map | m/2 map | m/4 map] (Nyström with nested landmark prefixes m, m/2, m/4) as one map."""

    maps: tuple[Any, ...]

    def __call__(self, z: np.ndarray) -> np.ndarray:
        return np.concatenate([f(z) for f in self.maps], axis=1)


@dataclass
class FeatureSums:
    n: int
    s: np.ndarray  # (D, L)  Φᵀe_b
    q: np.ndarray  # (G, L)  Σ_{rows with e_b} ‖φ_g‖²
    s_all: np.ndarray  # (D,)
    q_all: np.ndarray  # (G,)
    cx: np.ndarray | None = None  # Σ_{x rows} φφᵀ (asymptotic null only)
    cy: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class PooledFeatureStatistic:
    """Row-block statistic over the pooled sample: feature sums per labelling and group."""

    features: _Features
    bounds: np.ndarray
    n_x: int
    labels: np.ndarray | None = None
    second_moments: int = 0  # accumulate Σφφᵀ per sample over the first this-many features

    def partial(self, blocks: Sequence[np.ndarray], start: int) -> FeatureSums:
        z = _checked(blocks[0], start, self.n_x)
        phi = self.features(z)
        q = np.add.reduceat(phi * phi, self.bounds[:-1], axis=1)
        e = _label_block(self.n_x, start, start + z.shape[0], self.labels)
        out = FeatureSums(n=z.shape[0], s=phi.T @ e, q=q.T @ e, s_all=phi.sum(axis=0), q_all=q.sum(axis=0))
        if self.second_moments:
            k = max(0, min(z.shape[0], self.n_x - start))
            p = phi[:, : self.second_moments]
            out.cx, out.cy = p[:k].T @ p[:k], p[k:].T @ p[k:]
        return out

    def combine(self, a: FeatureSums, b: FeatureSums) -> FeatureSums:
        both = a.cx is not None
        return FeatureSums(
            n=a.n + b.n, s=a.s + b.s, q=a.q + b.q, s_all=a.s_all + b.s_all, q_all=a.q_all + b.q_all,
            cx=a.cx + b.cx if both else None, cy=a.cy + b.cy if both else None,
        )  # fmt: skip

    def finalize(self, state: FeatureSums) -> FeatureSums:
        return state


def _block_sums(v: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    return np.add.reduceat(v, bounds[:-1], axis=0)


def feature_group_terms(fs: FeatureSums, bounds: np.ndarray, n_x: int, n_y: int, col: int = 0) -> np.ndarray:
    """(3, G): per group, Σ_{i≠j} k over x pairs, over y pairs, Σ k over (x, y) pairs (labelling ``col``)."""
    sx = fs.s[:, col]
    sy = fs.s_all - sx
    qx = fs.q[:, col]
    qy = fs.q_all - qx
    return np.stack([_block_sums(sx * sx, bounds) - qx, _block_sums(sy * sy, bounds) - qy, _block_sums(sx * sy, bounds)])


def residual_fractions(fs: FeatureSums, offset: np.ndarray | None, bounds: np.ndarray) -> np.ndarray:
    """(G,): ρ = 1 − Σᵢ ‖φ_g(zᵢ)‖² / n of each map g over the pooled sample (k(z, z) = 1: rbf, laplacian).

    The pass accumulates the features less a fixed offset c (the subsample mean),
    q = Σᵢ ‖φᵢ − c‖² and s = Σᵢ (φᵢ − c); hence Σᵢ ‖φᵢ‖² = q + 2·cᵀs + n‖c‖² per map.
    For a Nyström map it is tr K̃ = tr(K_nZ W⁺ K_Zn), so ρ is the fraction of tr K = n
    its landmarks miss (:func:`~bigalign.metrics._kernel_approx.residual_fraction`).
    """
    n = fs.n
    raw = fs.q_all.astype(np.float64)
    if offset is not None:
        raw = raw + _block_sums(2.0 * offset * fs.s_all + n * offset * offset, bounds)
    return 1.0 - raw / n


def feature_all_labellings(fs: FeatureSums, n_x: int) -> np.ndarray:
    """(3, L): the same three sums, all groups together, for every labelling."""
    sy = fs.s_all[:, None] - fs.s
    qx = fs.q.sum(axis=0)
    qy = fs.q_all.sum() - qx
    return np.stack([np.einsum("dl,dl->l", fs.s, fs.s) - qx, np.einsum("dl,dl->l", sy, sy) - qy, np.einsum("dl,dl->l", fs.s, sy)])


# ----------------------------------------------------------------------------
