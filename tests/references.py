"""Naive O(n²) float64 reference implementations, written from docs/formulas.md.

Nothing here imports bigalign: every function builds the n×n Gram or distance
matrices explicitly and applies the printed formula literally, so that the
library's streaming, moment-based implementation is checked against an
independent route to the same number.

Notation (docs/formulas.md): X (n×d1), Y (n×d2); K = XXᵀ, L = YYᵀ; H = I − 11ᵀ/n.

Precision caveat: a naive Gram of data with a large common mean loses digits
(entries ~ ‖μ‖², signal ~ variance).  HSIC, CKA and D are translation
invariant, so for offset data compare against ``reference(centre_exact(x))``.
KA is *not* translation invariant: only test it on un-offset data.
"""

from __future__ import annotations

import functools
import hashlib
import math

import numpy as np

__all__ = [
    "as64",
    "centre_exact",
    "gram",
    "centring_matrix",
    "centred_gram",
    "hsic_biased",
    "hsic_unbiased",
    "hsic_unbiased_scale",
    "hsic_biased_scale",
    "hsic",
    "cka",
    "kernel_alignment",
    "kernel_alignment_terms",
    "sq_distances",
    "distance_alignment",
    "distance_alignment_terms",
    "REFERENCES",
    "cka_terms",
    "correlated_pair",
    "rel_err",
]


def as64(x) -> np.ndarray:
    """The input's values as a 2-D float64 array (n, d) (flattening trailing axes)."""
    a = np.asarray(x)
    if a.dtype.kind not in "fiu":  # e.g. ml_dtypes.bfloat16 has kind 'V'
        a = a.astype(np.float32)  # bfloat16 -> float32 is exact
    a = a.astype(np.float64)
    return a.reshape(a.shape[0], -1)


def centre_exact(x) -> np.ndarray:
    """x − (column mean), in float64.

    When every value of a column lies within a factor 2 of its mean (the case for
    data with a large offset), x − mean is exact in float64 (Sterbenz lemma), so
    the result is the input translated *exactly*; the metrics that are translation
    invariant then have the same value on it.  (The rounded mean leaves a residual
    mean of ~1e-16·|offset|, which is harmless: the shift itself is exact.)
    """
    a = as64(x)
    return a - a.mean(axis=0)


def _digest(a: np.ndarray) -> tuple:
    a = np.ascontiguousarray(a)
    return (a.shape, hashlib.blake2b(a.tobytes(), digest_size=16).hexdigest())


def _cached(kind: str):
    """Memoise an n×n matrix builder on the *content* of its float64 input, so the
    same data compared under many options build their Grams/distances once."""

    def deco(fn):
        @functools.wraps(fn)
        def wrapper(x):
            a = as64(x)
            key = (kind,) + _digest(a)
            hit = _CACHE.pop(key, None)
            if hit is None:
                hit = fn(a)
                hit.setflags(write=False)
            _CACHE[key] = hit  # most recently used last
            while len(_CACHE) > _CACHE_SIZE:
                _CACHE.pop(next(iter(_CACHE)))
            return hit

        return wrapper

    return deco


_CACHE: dict = {}
_CACHE_SIZE = 24


@_cached("gram")
def gram(a: np.ndarray) -> np.ndarray:
    """Linear-kernel Gram matrix K = XXᵀ."""
    return a @ a.T


def centring_matrix(n: int) -> np.ndarray:
    """H = I − 11ᵀ/n."""
    return np.eye(n) - np.ones((n, n)) / n


@_cached("hkh")
def centred_gram(a: np.ndarray) -> np.ndarray:
    """HKH, written out entrywise: (HKH)ᵢⱼ = Kᵢⱼ − K̄ᵢ. − K̄.ⱼ + K̄.. (O(n²); equal to
    the literal product ``centring_matrix(n) @ K @ centring_matrix(n)``, which
    test_reference checks)."""
    K = gram(a)
    return K - K.mean(axis=0, keepdims=True) - K.mean(axis=1, keepdims=True) + K.mean()


def hsic_biased(x, y) -> float:
    """tr(KHLH) / (n−1)².  As H² = H and tr is cyclic, tr(KHLH) = tr(HKH·HLH) = Σᵢⱼ (HKH)ᵢⱼ(HLH)ᵢⱼ."""
    Kc, Lc = centred_gram(x), centred_gram(y)
    n = Kc.shape[0]
    return float(np.sum(Kc * Lc)) / (n - 1) ** 2


def hsic_unbiased(x, y) -> float:
    """Song et al. (2012), with K̃, L̃ the Grams with zeroed diagonals:

    [tr(K̃L̃) + (1ᵀK̃1)(1ᵀL̃1)/((n−1)(n−2)) − (2/(n−2)) 1ᵀK̃L̃1] / (n(n−3)).
    """
    Kt, Lt = gram(x).copy(), gram(y).copy()
    n = Kt.shape[0]
    if n < 4:
        raise ValueError("the unbiased HSIC needs n >= 4")
    np.fill_diagonal(Kt, 0.0)
    np.fill_diagonal(Lt, 0.0)
    one = np.ones(n)
    term1 = float(np.sum(Kt * Lt))  # tr(K̃L̃) for symmetric K̃, L̃
    term2 = float(one @ Kt @ one) * float(one @ Lt @ one) / ((n - 1) * (n - 2))
    term3 = 2.0 / (n - 2) * float((Kt @ one) @ (Lt @ one))  # 1ᵀK̃L̃1
    return (term1 + term2 - term3) / (n * (n - 3))


def hsic_unbiased_scale(x, y) -> float:
    """|tr(K̃L̃)| + |(1ᵀK̃1)(1ᵀL̃1)/((n−1)(n−2))| + |(2/(n−2)) 1ᵀK̃L̃1|, over n(n−3):
    the size of the terms that cancel in the unbiased HSIC.  Any float64 route to
    the value has an absolute error of (a small multiple of) 1e-16 times this."""
    Kt, Lt = gram(x).copy(), gram(y).copy()
    n = Kt.shape[0]
    np.fill_diagonal(Kt, 0.0)
    np.fill_diagonal(Lt, 0.0)
    one = np.ones(n)
    t1 = np.sum(np.abs(Kt * Lt))
    t2 = abs(float(one @ Kt @ one) * float(one @ Lt @ one)) / ((n - 1) * (n - 2))
    t3 = 2.0 / (n - 2) * float(np.abs(Kt @ one) @ np.abs(Lt @ one))
    return float(t1 + t2 + t3) / (n * (n - 3))


def hsic_biased_scale(x, y) -> float:
    """‖K‖_F‖L‖_F/(n−1)² with the *uncentred* Grams: bounds |HSIC_b(x, y)| and the
    size of what the centring in HKH cancels, so it sets the absolute rounding
    error of the naive route (large when the data have a large mean)."""
    K, L = gram(x), gram(y)
    n = K.shape[0]
    return float(np.linalg.norm(K) * np.linalg.norm(L)) / (n - 1) ** 2


def hsic(x, y, estimator: str = "unbiased") -> float:
    if estimator == "biased":
        return hsic_biased(x, y)
    if estimator == "unbiased":
        return hsic_unbiased(x, y)
    raise ValueError(estimator)


def cka_terms(x, y, estimator: str = "unbiased") -> dict[str, float]:
    return {
        "hsic_xy": hsic(x, y, estimator),
        "hsic_xx": hsic(x, x, estimator),
        "hsic_yy": hsic(y, y, estimator),
    }


def cka(x, y, estimator: str = "unbiased") -> float:
    """HSIC(K, L) / √(HSIC(K, K)·HSIC(L, L))."""
    t = cka_terms(x, y, estimator)
    return t["hsic_xy"] / math.sqrt(t["hsic_xx"] * t["hsic_yy"])


def kernel_alignment_terms(x, y) -> dict[str, float]:
    K, L = gram(x), gram(y)
    return {
        "inner_kl": float(np.sum(K * L)),
        "norm_k": float(np.linalg.norm(K, "fro")),
        "norm_l": float(np.linalg.norm(L, "fro")),
    }


def kernel_alignment(x, y) -> float:
    """Uncentred KA = ⟨K, L⟩_F / (‖K‖_F ‖L‖_F)."""
    t = kernel_alignment_terms(x, y)
    return t["inner_kl"] / (t["norm_k"] * t["norm_l"])


@_cached("dist")
def sq_distances(a: np.ndarray) -> np.ndarray:
    """Explicit pairwise squared Euclidean distances ‖xᵢ − xⱼ‖² (row by row)."""
    n = a.shape[0]
    out = np.empty((n, n))
    for i in range(n):
        diff = a - a[i]
        out[i] = np.einsum("jk,jk->j", diff, diff)
    return out


def distance_alignment_terms(x, y) -> dict[str, float]:
    Dx, Dy = sq_distances(x), sq_distances(y)
    n = Dx.shape[0]
    return {
        "sum_dx4": float(np.sum(Dx * Dx)) / n**2,
        "sum_dy4": float(np.sum(Dy * Dy)) / n**2,
        "sum_dx2_dy2": float(np.sum(Dx * Dy)) / n**2,
    }


def distance_alignment(x, y) -> float:
    """D = (1/n²) Σᵢⱼ (‖xᵢ − xⱼ‖² − ‖yᵢ − yⱼ‖²)²."""
    Dx, Dy = sq_distances(x), sq_distances(y)
    n = Dx.shape[0]
    return float(np.sum((Dx - Dy) ** 2)) / n**2


# (metric name, estimator) -> reference function of (x, y)
REFERENCES = {
    ("cka", "unbiased"): lambda x, y: cka(x, y, "unbiased"),
    ("cka", "biased"): lambda x, y: cka(x, y, "biased"),
    ("hsic", "unbiased"): lambda x, y: hsic(x, y, "unbiased"),
    ("hsic", "biased"): lambda x, y: hsic(x, y, "biased"),
    ("kernel_alignment", None): kernel_alignment,
    ("distance_alignment", None): distance_alignment,
}


def correlated_pair(rng: np.random.Generator, n: int, dx: int, dy: int, noise: float = 0.7):
    """x ~ N(0, I), y = x W + noise: clearly dependent, so HSIC/CKA are well away from 0
    and a relative comparison is meaningful."""
    x = rng.normal(size=(n, dx))
    w = rng.normal(size=(dx, dy)) / math.sqrt(dx)
    y = x @ w + noise * rng.normal(size=(n, dy))
    return x, y


def rel_err(got: float, want: float) -> float:
    return abs(got - want) / abs(want)
