"""The block road for HSIC / CKA / KA: exact kernel tiles inside seeded random row blocks.

Every exact estimator of the kernel family is a function of four *pair means*
of the full sample (per kernel pair (K, L), (K, K), (L, L), over distinct
indices, off-diagonal entries only):

    u₂ = mean_{i≠j} k_ij l_ij,   u₃ = mean_{i,j,q distinct} k_ij l_iq,
    u₄ = mean_{i,j,q,r distinct} k_ij l_qr,   and  mean_{i≠j} k_ij, mean_{i≠j} l_ij.

(Song et al.'s unbiased HSIC is exactly u₂ − 2u₃ + u₄; the biased HSIC and the
uncentred KA are affine in them for a given n.)  Each is a U-statistic, so its
value on a *uniformly random* subset of B rows has the full-sample value as its
expectation.  The block road splits the rows into m = ⌊n/B⌋ seeded random
blocks (see :mod:`bigalign.metrics._blocks`), computes the means exactly inside
each block from the fused tiles (Σ k·l and row sums: Σr·Σs = 2A + 4T₃ + T₄,
rᵀs = A + T₃), averages them over blocks, and rebuilds every estimator at the
full n.  HSIC and KA terms are unbiased for the exact full-sample values; CKA,
a ratio, up to O(stderr²).

Error bar (of the distance to the exact value on the same rows).  By
Hoeffding's decomposition a block's U-statistic is θ + (first-order part: a
sum over its rows of g₁) + (degenerate part D_B).  Over a partition the
first-order parts add up to the full sample's, so the block average differs
from the exact value only by the degenerate parts, of variance ≈ Var(D_B)/m ·
(1 − (B−1)/(n−1)).  Each block is computed as two halves (its tiles are the
half × half sub-tiles, so this costs nothing) and
δ_b = θ(block) − (h₁/B)·θ(half 1) − (h₂/B)·θ(half 2) cancels θ and the
first-order part exactly, leaving a pure degenerate difference whose variance
is κ_b⁻¹·Var(D_B), with κ_b from the pair counts (≈ 1: the pair-level (c = 2)
component dominates; higher ones shrink by further factors of B).  So

    stderr² = (1 − (B̄−1)/(n−1)) · Σ_b κ_b (∇f·δ_b)² / m²

with ∇f the gradient of the metric (CKA, HSIC or KA) in its terms, one
estimate with m degrees of freedom from the same pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np

from ..tiles import ALL
from ._kernel_exact import KernelTileStatistic

__all__ = [
    "BLOCK_STDERR", "BlockEstimate", "KernelBlockTerms", "block_delta_factor", "block_estimate", "block_stderr", "terms_from_means",
]  # fmt: skip

#: fields of one u-vector: (u2, u3, u4) for (K, L), (K, K), (L, L), then mean k, mean l
N_MEANS = 11
MIN_BLOCK = 8  # two halves of >= 4 rows (u₄ needs 4 distinct rows)
BLOCK_STDERR = (
    "degenerate-part estimate from each block's two halves: sqrt((1 - (B-1)/(n-1)) * sum_b kappa_b (grad f . delta_b)^2) / m"
)


def _means(b: int, a_kl: float, a_kk: float, a_ll: float, r: np.ndarray, s: np.ndarray) -> list[float]:
    """The u-vector of one sample of b rows from its off-diagonal sums and row sums."""

    def three(a: float, p: np.ndarray, q: np.ndarray) -> tuple[float, float, float]:
        t3 = float(p @ q) - a
        t4 = float(p.sum()) * float(q.sum()) - 2.0 * a - 4.0 * t3
        n2 = b * (b - 1.0)
        return a / n2, t3 / (n2 * (b - 2.0)), t4 / (n2 * (b - 2.0) * (b - 3.0))

    n2 = b * (b - 1.0)
    return [*three(a_kl, r, s), *three(a_kk, r, r), *three(a_ll, s, s), float(r.sum()) / n2, float(s.sum()) / n2]


@dataclass(frozen=True, eq=False)
class KernelBlockTerms:
    """Per block: the u-vectors of the block and of its two halves, and the sizes (3·11 + 3 values).

    Computed from three sub-tiles (half 1 × half 1, half 2 × half 2, half 1 × half 2) of the
    tile statistic's fused loop: the same pairs as one B × B tile.
    """

    stat: KernelTileStatistic

    def __call__(self, xb: np.ndarray, yb: np.ndarray) -> np.ndarray:
        st = self.stat
        b = xb.shape[0]
        h = b // 2
        p1 = st.prepare([xb[:h], yb[:h]], 0)
        p2 = st.prepare([xb[h:], yb[h:]], 0)
        t11, a1, _ = st.sums(st.values(p1, p1), p1, p1, ALL, ALL, True)
        t22, a2, _ = st.sums(st.values(p2, p2), p2, p2, ALL, ALL, True)
        t12, b1, c2 = st.sums(st.values(p1, p2), p1, p2, ALL, ALL, False)
        h2 = b - h
        r1a, s1a, r2a, s2a = a1[0], a1[1], a2[0], a2[1]
        full = [t11[k] + t22[k] + 2.0 * t12[k] for k in range(3)]
        r = np.concatenate([r1a + b1[0], r2a + c2[0]])
        s = np.concatenate([s1a + b1[1], s2a + c2[1]])
        return np.array(
            _means(b, *full, r, s) + _means(h, *t11, r1a, s1a) + _means(h2, *t22, r2a, s2a) + [b, h, h2], dtype=np.float64
        )


def terms_from_means(n: int, u: np.ndarray, estimator: str) -> dict[str, np.ndarray]:
    """HSIC and KA terms of a sample of n rows from its u-vector(s) (last axis: the 11 means)."""
    u = np.asarray(u, dtype=np.float64)
    n = float(n)
    n2 = n * (n - 1.0)
    mk, ml = u[..., 9] * n2, u[..., 10] * n2  # Σ_{i≠j} k, Σ_{i≠j} l

    def hsic(o: int, sr: np.ndarray, ss: np.ndarray) -> np.ndarray:
        u2, u3, u4 = u[..., o], u[..., o + 1], u[..., o + 2]
        if estimator == "unbiased":
            return u2 - 2.0 * u3 + u4  # Song et al.'s U-statistic (the exact formula, expanded)
        a, t3, t4 = u2 * n2, u3 * n2 * (n - 2.0), u4 * n2 * (n - 2.0) * (n - 3.0)
        rs, tot = a + t3, 2.0 * a + 4.0 * t3 + t4  # rᵀs, Σr·Σs
        # tr(KHLH)/(n−1)² with K = K̃ + I (see _kernel_exact.hsic_from_sums)
        return (a + n - 2.0 / n * (rs + sr + ss + n) + (tot + n * sr + n * ss + n * n) / (n * n)) / (n - 1.0) ** 2

    return {
        "hxy": hsic(0, mk, ml),
        "hxx": hsic(3, mk, mk),
        "hyy": hsic(6, ml, ml),
        "kl": u[..., 0] * n2 + n,
        "kk": u[..., 3] * n2 + n,
        "ll": u[..., 6] * n2 + n,
    }


def block_delta_factor(b: np.ndarray, h1: np.ndarray, h2: np.ndarray) -> np.ndarray:
    """κ_b = Var(D_B) / Var(δ_b) for the pair-level degenerate component.

    D_B = Σ_{pairs in block} g/C(b,2); δ_b weights a cross-half pair by 1/C(b,2) and a pair
    inside half k by 1/C(b,2) − (h_k/b)/C(h_k,2); pairs are uncorrelated, each of variance ζ.
    """
    cb = b * (b - 1.0) / 2.0
    c1, c2 = h1 * (h1 - 1.0) / 2.0, h2 * (h2 - 1.0) / 2.0
    var_delta = h1 * h2 / cb**2 + c1 * (1.0 / cb - (h1 / b) / c1) ** 2 + c2 * (1.0 / cb - (h2 / b) / c2) ** 2
    return (1.0 / cb) / var_delta


@dataclass
class BlockEstimate:
    """The block road's terms at the full n, with per-block degenerate differences δ_b of the terms."""

    n: int
    terms: dict[str, float]
    deltas: dict[str, np.ndarray]  # per block
    kappa: np.ndarray  # per block
    fpc: float  # 1 − (B̄ − 1)/(n − 1)


def block_estimate(n: int, out: np.ndarray, estimator: str) -> BlockEstimate:
    """Combine the per-block vectors of :class:`KernelBlockTerms` (rows: blocks)."""
    U, U1, U2 = out[:, :N_MEANS], out[:, N_MEANS : 2 * N_MEANS], out[:, 2 * N_MEANS : 3 * N_MEANS]
    b, h1, h2 = out[:, -3], out[:, -2], out[:, -1]
    terms = {k: float(v) for k, v in terms_from_means(n, U.mean(axis=0), estimator).items()}
    tf, t1, t2 = (terms_from_means(n, V, estimator) for V in (U, U1, U2))
    w1, w2 = h1 / b, h2 / b
    deltas = {k: tf[k] - w1 * t1[k] - w2 * t2[k] for k in tf}
    fpc = max(0.0, 1.0 - (float(b.mean()) - 1.0) / (n - 1.0))
    return BlockEstimate(n=n, terms=terms, deltas=deltas, kappa=block_delta_factor(b, h1, h2), fpc=fpc)


def block_stderr(est: BlockEstimate, f: Callable[[Any], Any], at: Any) -> float:
    """√((1 − (B̄−1)/(n−1)) · Σ_b κ_b (∇f·δ_b)²) / m.

    ``f`` maps an object with the term attributes (hxy, hxx, hyy, kl, kk, ll; numpy arrays
    allowed) to the metric; ``at`` holds the terms at the estimate.  ∇f·δ_b is a central
    difference along δ_b with a step of 10⁻⁴·(the largest relative size of δ_b), which
    is exact for HSIC and KA terms and accurate to ~10⁻⁸ relative for the CKA ratio.
    """
    base = {k: float(getattr(at, k)) for k in est.deltas}
    rel = max(float(np.max(np.abs(d))) / max(abs(base[k]), 1e-300) for k, d in est.deltas.items())
    eps = 1e-4 / rel if rel > 0 else 1.0
    with np.errstate(all="ignore"):
        up = f(SimpleNamespace(**{k: base[k] + eps * d for k, d in est.deltas.items()}))
        down = f(SimpleNamespace(**{k: base[k] - eps * d for k, d in est.deltas.items()}))
    proj = (np.asarray(up, dtype=np.float64) - np.asarray(down, dtype=np.float64)) / (2 * eps)
    m = est.kappa.shape[0]
    return float(np.sqrt(est.fpc * np.sum(est.kappa * proj**2)) / m)
