"""Naive O(n²) float64 references for the non-linear kernels, written from the formulas.

Nothing here imports bigalign.  Kernel matrices are built from *explicit*
pairwise differences (never the GEMM identity ‖a‖² + ‖b‖² − 2aᵀb), centring is
the literal product H K H with H = I − 11ᵀ/n, and the unbiased HSIC is Song et
al.'s formula with zeroed diagonals (docs/formulas.md):

    rbf        k(x, x') = exp(−‖x − x'‖² / (2σ²))
    laplacian  k(x, x') = exp(−‖x − x'‖ / σ)          (Euclidean norm)

    HSIC_b = tr(K H L H) / (n−1)²
    HSIC_u = [tr(K̃L̃) + (1ᵀK̃1)(1ᵀL̃1)/((n−1)(n−2)) − 2/(n−2)·1ᵀK̃L̃1] / (n(n−3))
    CKA    = HSIC(K, L) / √(HSIC(K, K)·HSIC(L, L))
    KA     = ⟨K, L⟩_F / (‖K‖_F‖L‖_F)                   (uncentred)

Also the *random-feature* references used to check the debiasing:

* ``naive_feature_cka``: the plain linear CKA of the feature matrices Φ, Ψ
  (what one gets by handing random features to a linear CKA) — the estimator
  that is biased low (test_kernels.py measures it);
* ``debiased_feature_terms``: the same-group-dropping U-statistic over G
  feature groups, computed by brute force from per-group Gram matrices, and
  its delete-one-group jackknife computed by literally deleting each group and
  recomputing.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "sq_dist_matrix",
    "kernel_matrix",
    "hsic_b",
    "hsic_u",
    "hsic",
    "cka",
    "cka_terms",
    "kernel_alignment",
    "median_pairwise_distance",
    "linear_gram",
    "naive_feature_cka",
    "debiased_feature_terms",
    "debiased_feature_cka",
    "group_hsic_matrix",
    "jackknife_feature_cka",
    "nonlinear_pair",
]


def sq_dist_matrix(a: np.ndarray) -> np.ndarray:
    """‖aᵢ − aⱼ‖² from explicit differences, one row at a time (exact to rounding;
    exactly 0 for duplicate rows)."""
    a = np.asarray(a, dtype=np.float64)
    n = a.shape[0]
    out = np.empty((n, n))
    for i in range(n):
        diff = a - a[i]
        out[i] = np.einsum("jk,jk->j", diff, diff)
    return out


def kernel_matrix(a: np.ndarray, kernel: str, sigma: float) -> np.ndarray:
    d2 = sq_dist_matrix(a)
    if kernel == "rbf":
        return np.exp(-d2 / (2.0 * sigma * sigma))
    if kernel == "laplacian":
        return np.exp(-np.sqrt(d2) / sigma)
    raise ValueError(kernel)


def linear_gram(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return a @ a.T


def hsic_b(K: np.ndarray, L: np.ndarray) -> float:
    """tr(K H L H) / (n−1)², with the literal centring matrix."""
    n = K.shape[0]
    H = np.eye(n) - np.ones((n, n)) / n
    return float(np.trace(K @ H @ L @ H)) / (n - 1) ** 2


def hsic_u(K: np.ndarray, L: np.ndarray) -> float:
    """Song et al.'s unbiased HSIC with zeroed diagonals."""
    n = K.shape[0]
    if n < 4:
        raise ValueError("the unbiased HSIC needs n >= 4")
    Kt, Lt = np.array(K, dtype=np.float64), np.array(L, dtype=np.float64)
    np.fill_diagonal(Kt, 0.0)
    np.fill_diagonal(Lt, 0.0)
    one = np.ones(n)
    t1 = float(np.sum(Kt * Lt.T))  # tr(K̃L̃) = Σᵢⱼ K̃ᵢⱼ L̃ⱼᵢ, without the O(n³) product
    t2 = float(one @ Kt @ one) * float(one @ Lt @ one) / ((n - 1) * (n - 2))
    t3 = 2.0 / (n - 2) * float((one @ Kt) @ (Lt @ one))  # 1ᵀK̃L̃1
    return (t1 + t2 - t3) / (n * (n - 3))


def hsic(K: np.ndarray, L: np.ndarray, estimator: str) -> float:
    if estimator == "unbiased":
        return hsic_u(K, L)
    if estimator == "biased":
        return hsic_b(K, L)
    raise ValueError(estimator)


def cka_terms(K: np.ndarray, L: np.ndarray, estimator: str) -> dict[str, float]:
    return {"hsic_xy": hsic(K, L, estimator), "hsic_xx": hsic(K, K, estimator), "hsic_yy": hsic(L, L, estimator)}


def cka(K: np.ndarray, L: np.ndarray, estimator: str) -> float:
    t = cka_terms(K, L, estimator)
    return t["hsic_xy"] / math.sqrt(t["hsic_xx"] * t["hsic_yy"])


def kernel_alignment(K: np.ndarray, L: np.ndarray) -> float:
    """Uncentred ⟨K, L⟩_F / (‖K‖_F‖L‖_F)."""
    return float(np.sum(K * L)) / (float(np.linalg.norm(K)) * float(np.linalg.norm(L)))


def median_pairwise_distance(a: np.ndarray) -> float:
    """Median of ‖aᵢ − aⱼ‖ over the pairs i < j (the median heuristic)."""
    d2 = sq_dist_matrix(a)
    iu = np.triu_indices(d2.shape[0], k=1)
    return float(np.median(np.sqrt(d2[iu])))


# ----------------------------------------------------------------------------
# random-feature estimators (brute force from feature matrices)
# ----------------------------------------------------------------------------


def naive_feature_cka(phi: np.ndarray, psi: np.ndarray, estimator: str = "unbiased") -> float:
    """Plain CKA of K̂ = ΦΦᵀ and L̂ = ΨΨᵀ: the self terms use the same features twice."""
    return cka(linear_gram(phi), linear_gram(psi), estimator)


def _group_grams(phi: np.ndarray, bounds: np.ndarray) -> list[np.ndarray]:
    return [linear_gram(phi[:, bounds[g] : bounds[g + 1]]) for g in range(len(bounds) - 1)]


def group_hsic_matrix(phi: np.ndarray, psi: np.ndarray, bounds: np.ndarray, estimator: str = "unbiased") -> np.ndarray:
    """H[g, h] = HSIC(K_g, L_h) with K_g = Φ_gΦ_gᵀ, L_h = Ψ_hΨ_hᵀ (explicit n×n Grams per group)."""
    Ks, Ls = _group_grams(phi, bounds), _group_grams(psi, bounds)
    return np.array([[hsic(Kg, Lh, estimator) for Lh in Ls] for Kg in Ks])


def _debiased_from_group_matrices(Hxy: np.ndarray, Hxx: np.ndarray, Hyy: np.ndarray, keep: list[int]) -> float:
    """Debiased CKA from the feature groups ``keep`` (each of the G' kept groups rescaled to carry
    1/G' of the kernel, i.e. every HSIC term multiplied by (G/G')² — which cancels in CKA).

    cross  Σ_{g,h} HSIC(K_g, L_h)                  — unbiased as is (x and y features independent)
    self   G'/(G'−1) · Σ_{g≠h} HSIC(K_g, K_h)      — the same-group products dropped
    """
    Gp = len(keep)
    hxy = sum(Hxy[g, h] for g in keep for h in keep)
    hxx = Gp / (Gp - 1) * sum(Hxx[g, h] for g in keep for h in keep if g != h)
    hyy = Gp / (Gp - 1) * sum(Hyy[g, h] for g in keep for h in keep if g != h)
    return hxy / math.sqrt(hxx * hyy)


def debiased_feature_terms(
    phi: np.ndarray, psi: np.ndarray, bounds: np.ndarray, estimator: str = "unbiased"
) -> dict[str, float]:
    """Feature-group U-statistic, by brute force from per-group Grams.

    With K̂ = Σ_g K_g (G independent groups, E K_g = K/G):
      cross  HSIC(K̂, L̂)                       — unbiased as is (x and y features independent);
      self   G/(G−1) · Σ_{g≠h} HSIC(K_g, K_h)  — drop the same-group products.
    The cross term is computed from the full K̂ = ΦΦᵀ, L̂ = ΨΨᵀ (not from the group matrix).
    """
    G = len(bounds) - 1
    Hxx = group_hsic_matrix(phi, phi, bounds, estimator)
    Hyy = group_hsic_matrix(psi, psi, bounds, estimator)
    off = ~np.eye(G, dtype=bool)
    return {
        "hsic_xy": hsic(linear_gram(phi), linear_gram(psi), estimator),
        "hsic_xx": G / (G - 1) * float(Hxx[off].sum()),
        "hsic_yy": G / (G - 1) * float(Hyy[off].sum()),
    }


def debiased_feature_cka(phi: np.ndarray, psi: np.ndarray, bounds: np.ndarray, estimator: str = "unbiased") -> float:
    t = debiased_feature_terms(phi, psi, bounds, estimator)
    return t["hsic_xy"] / math.sqrt(t["hsic_xx"] * t["hsic_yy"])


def jackknife_feature_cka(phi: np.ndarray, psi: np.ndarray, bounds: np.ndarray, estimator: str = "unbiased") -> float:
    """Delete-one-group jackknife standard error of the debiased CKA: for each g, the
    estimate recomputed from the other G−1 groups of both Φ and Ψ;
    se = √((G−1)/G · Σ_g (θ₋g − θ̄)²)."""
    G = len(bounds) - 1
    Hxy = group_hsic_matrix(phi, psi, bounds, estimator)
    Hxx = group_hsic_matrix(phi, phi, bounds, estimator)
    Hyy = group_hsic_matrix(psi, psi, bounds, estimator)
    reps = np.array([_debiased_from_group_matrices(Hxy, Hxx, Hyy, [h for h in range(G) if h != g]) for g in range(G)])
    return float(math.sqrt((G - 1) / G * np.sum((reps - reps.mean()) ** 2)))


# ----------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------


def nonlinear_pair(rng: np.random.Generator, n: int, dx: int, dy: int, noise: float = 0.3):
    """x ~ N(0, I_dx); y = tanh/sin/square of random projections of x + noise (dy < 3: squares only).

    A clearly dependent pair whose dependence is not linear, so the rbf and
    laplacian CKA are well away from 0 and relative comparisons are meaningful.
    """
    x = rng.normal(size=(n, dx))
    w = rng.normal(size=(dx, dy)) / math.sqrt(dx)
    z = x @ w
    k = dy // 3
    y = np.concatenate([np.tanh(2 * z[:, :k]), np.sin(2 * z[:, k : 2 * k]), z[:, 2 * k :] ** 2], axis=1)
    return x, y + noise * rng.normal(size=y.shape)
