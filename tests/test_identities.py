"""The identities that tie the alignment measures together, checked on data.

Every identity of docs/measures.md ("How the measures relate") is checked here on
random data *and* on real network activations: the layers of the two MLPs of
``bigalign.demo`` (trained on scikit-learn's digits from seeds 0 and 1), built
once per module.  One side of each identity is bigalign's output; the other is
either another bigalign function (a different code path: e.g. ``cka`` against
three ``hsic`` calls, ``distance_alignment`` against ``kernel_alignment``) *and*
a float64 numpy reference written here from the formula (n×n Grams, explicit
eigendecompositions, SVDs, determinants) — never the same bigalign function twice.

Exact identities are asserted to ``REL`` = 1e-10 relative (the house bar); where a
reference is itself less accurate the tolerance and its reason are stated at the
assertion.  The parametrized invariance test checks every claim of the table in
docs/measures.md: invariant → equal to 1e-9 relative; not invariant → changed by
more than 1e-3 relative.  The last test runs ``examples/measures_family.py --quick``.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import bigalign
from bigalign.demo import build_demo_stores
from bigalign.metrics.mmd import mmd

ROOT = Path(__file__).resolve().parents[1]
SYNC = {"scheduler": "sync"}
REL = 1e-10  # exact identities: agreement to float64 rounding (the house bar)
KINDS = ["random", "real"]


# ---------------------------------------------------------------------------
# data: random pairs and the demo MLPs' activations
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    """The two demo stores (two MLPs trained on digits from seeds 0 and 1), built once per module."""
    d = tmp_path_factory.mktemp("demo")
    build_demo_stores(d)
    return d


@pytest.fixture(scope="module")
def demo(demo_dir) -> dict[str, dict[str, np.ndarray]]:
    """{"A": {layer: (1797, d) float64}, "B": {...}}: every layer of both networks, every digit."""
    out = {}
    for name, path in zip("AB", (demo_dir / "model_seed0.zarr", demo_dir / "model_seed1.zarr")):
        store = bigalign.open_activations(path)
        out[name] = {layer: np.asarray(store[layer][:], dtype=np.float64) for layer in store.layers}
    return out


def _rows(n_total: int, n: int | None, seed: int = 0) -> np.ndarray:
    if n is None or n >= n_total:
        return np.arange(n_total)
    return np.sort(np.random.default_rng(seed).choice(n_total, n, replace=False))


def live(a: np.ndarray) -> np.ndarray:
    """The columns that are not constant (dead ReLUs are constant 0: they make covariances singular)."""
    return a[:, a.std(axis=0) > 0]


def random_pair(n: int, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """x Gaussian (n, 6); y (n, 4) a non-linear function of x plus noise, with a non-zero mean."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6))
    y = np.tanh(x @ rng.normal(size=(6, 4))) + 0.3 * rng.normal(size=(n, 4)) + 0.5
    return x, y


def pair(kind: str, demo: dict, n: int | None, layers=(("A", "hidden2"), ("B", "hidden3"))) -> tuple[np.ndarray, np.ndarray]:
    """(x, y): random data, or two layers of the demo networks on n seeded rows (all 1,797 for n=None)."""
    if kind == "random":
        return random_pair(n or 400)
    (na, la), (nb, lb) = layers
    rows = _rows(demo[na][la].shape[0], n)
    return demo[na][la][rows], demo[nb][lb][rows]


# ---------------------------------------------------------------------------
# numpy references, from the formulas (docs/formulas.md; nothing here calls bigalign)
# ---------------------------------------------------------------------------


def sqdist(a: np.ndarray) -> np.ndarray:
    """‖aᵢ − aⱼ‖² from explicit differences (no Gram-trick cancellation)."""
    return np.sum((a[:, None, :] - a[None, :, :]) ** 2, axis=-1)


def median_distance(a: np.ndarray) -> float:
    d = np.sqrt(sqdist(a))
    return float(np.median(d[np.triu_indices(len(a), 1)]))


def gram(a: np.ndarray, kernel: str, sigma: float | None = None) -> np.ndarray:
    if kernel == "linear":
        return a @ a.T
    return np.exp(-sqdist(a) / (2 * sigma**2))  # rbf: exp(−‖x − x'‖²/(2σ²))


def centre(K: np.ndarray) -> np.ndarray:
    n = len(K)
    H = np.eye(n) - 1.0 / n
    return H @ K @ H


def hsic_b(K: np.ndarray, L: np.ndarray) -> float:
    """tr(KHLH)/(n−1)² (bigalign's biased convention; the paper: 'some use 1/n²')."""
    n = len(K)
    return float(np.sum(centre(K) * centre(L)) / (n - 1) ** 2)


def hsic_u(K: np.ndarray, L: np.ndarray) -> float:
    """Song et al. (2012), literally: zeroed diagonals, n ≥ 4."""
    n = len(K)
    Kt, Lt = K - np.diag(np.diag(K)), L - np.diag(np.diag(L))
    one = np.ones(n)
    t = np.sum(Kt * Lt) + (one @ Kt @ one) * (one @ Lt @ one) / ((n - 1) * (n - 2)) - 2 / (n - 2) * (one @ Kt @ Lt @ one)
    return float(t / (n * (n - 3)))


def hsic_ref(K: np.ndarray, L: np.ndarray, estimator: str) -> float:
    return hsic_b(K, L) if estimator == "biased" else hsic_u(K, L)


def cka_ref(K: np.ndarray, L: np.ndarray, estimator: str) -> float:
    return hsic_ref(K, L, estimator) / math.sqrt(hsic_ref(K, K, estimator) * hsic_ref(L, L, estimator))


def ka_ref(K: np.ndarray, L: np.ndarray) -> float:
    return float(np.sum(K * L) / (np.linalg.norm(K) * np.linalg.norm(L)))


def cov(a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """(1/n) A_cᵀ B_c."""
    ac = a - a.mean(0)
    bc = ac if b is None else b - b.mean(0)
    return ac.T @ bc / len(a)


def inv_sqrt(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(s)
    return (v / np.sqrt(w)) @ v.T


def logdet(s: np.ndarray) -> float:
    sign, val = np.linalg.slogdet(s)
    assert sign > 0
    return float(val)


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), abs(b))


# ---------------------------------------------------------------------------
# 1. CKA = HSIC(x, y) / √(HSIC(x, x)·HSIC(y, y)); CKA = KA of the centred kernels
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_cka_is_normalised_hsic(kind, estimator, kernel, demo):
    x, y = pair(kind, demo, 300)
    sx, sy = (median_distance(x), median_distance(y)) if kernel == "rbf" else (None, None)
    kw = {"kernel": kernel, "estimator": estimator, **SYNC}
    if kernel == "rbf":
        kw["method"] = "exact"
    bw = lambda a, b: {"bandwidth": (a, b)} if kernel == "rbf" else {}  # noqa: E731
    c = bigalign.cka(x, y, **bw(sx, sy), **kw)
    hxy = bigalign.hsic(x, y, **bw(sx, sy), **kw).value
    hxx = bigalign.hsic(x, x, **bw(sx, sx), **kw).value
    hyy = bigalign.hsic(y, y, **bw(sy, sy), **kw).value
    # the identity between bigalign's own outputs (two code paths: one joint pass vs three)
    assert c.value == pytest.approx(hxy / math.sqrt(hxx * hyy), rel=REL)
    assert (c.terms["hsic_xy"], c.terms["hsic_xx"], c.terms["hsic_yy"]) == pytest.approx((hxy, hxx, hyy), rel=REL)
    # and both against the n×n formulas; linear Grams of column-centred data: the biased and the
    # unbiased HSIC of a linear kernel do not change when columns are shifted (both are U/V-statistics
    # of a translation-invariant core), and centring first keeps the naive Gram free of cancellation
    xr, yr = (x - x.mean(0), y - y.mean(0)) if kernel == "linear" else (x, y)
    K, L = gram(xr, kernel, sx), gram(yr, kernel, sy)
    assert hxy == pytest.approx(hsic_ref(K, L, estimator), rel=REL)
    assert c.value == pytest.approx(cka_ref(K, L, estimator), rel=REL)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_cka_is_kernel_alignment_of_centred_kernels(kind, kernel, demo):
    """The paper: CKA is KA of HKH and HLH (the biased estimator: the 1/(n−1)² cancels)."""
    x, y = pair(kind, demo, 300)
    if kernel == "linear":
        # HKH for the linear kernel is the Gram of column-centred features: bigalign's KA on centred data
        ka_centred = bigalign.kernel_alignment(x - x.mean(0), y - y.mean(0), **SYNC).value
        c = bigalign.cka(x, y, estimator="biased", **SYNC).value
        K, L = gram(x, "linear"), gram(y, "linear")
    else:
        sx, sy = median_distance(x), median_distance(y)
        K, L = gram(x, "rbf", sx), gram(y, "rbf", sy)
        ka_centred = ka_ref(centre(K), centre(L))
        c = bigalign.cka(x, y, kernel="rbf", bandwidth=(sx, sy), estimator="biased", method="exact", **SYNC).value
    assert c == pytest.approx(ka_centred, rel=REL)
    assert c == pytest.approx(ka_ref(centre(K), centre(L)), rel=REL)


# ---------------------------------------------------------------------------
# 2. HSIC = MMD²(joint, product of marginals) with the product kernel k⊗l
# ---------------------------------------------------------------------------


def _joint_and_product(a: np.ndarray, b: np.ndarray, combine) -> tuple[np.ndarray, np.ndarray]:
    n = len(a)
    joint = np.stack([combine(a[i], b[i]) for i in range(n)])
    product = np.stack([combine(a[i], b[j]) for i in range(n) for j in range(n)])  # every (xᵢ, yⱼ): the product of the empirical marginals
    return joint, product


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_hsic_is_mmd_of_joint_and_product(kind, kernel, demo):
    """MMD²_b(P̂_xy, P̂_x⊗P̂_y; k⊗l) = tr(KHLH)/n² = ((n−1)/n)²·HSIC_b (bigalign's 1/(n−1)² convention)."""
    n = 30  # the product sample has n² rows
    x, y = pair(kind, demo, n, layers=(("A", "hidden3"), ("B", "logits")))
    if kind == "random":
        x, y = x[:n], y[:n]
    if kernel == "rbf":
        sx, sy = median_distance(x), median_distance(y)
        h = bigalign.hsic(x, y, kernel="rbf", bandwidth=(sx, sy), estimator="biased", method="exact", **SYNC).value
        # k⊗l((x, y), (x', y')) = exp(−‖x−x'‖²/2σx² − ‖y−y'‖²/2σy²): the rbf of bandwidth 1 on (x/σx, y/σy)
        joint, product = _joint_and_product(x / sx, y / sy, lambda a, b: np.concatenate([a, b]))
        got = mmd(joint, product, kernel="rbf", bandwidth=1.0, estimator="biased", method="exact", **SYNC).value
        k = lambda a, b: np.exp(-np.sum((a[:, None] - b[None]) ** 2, -1) / 2)  # noqa: E731
    else:
        h = bigalign.hsic(x, y, estimator="biased", **SYNC).value
        # (xᵀx')(yᵀy') = ⟨x ⊗ y, x' ⊗ y'⟩: the linear kernel on Kronecker rows
        joint, product = _joint_and_product(x, y, np.kron)
        got = mmd(joint, product, kernel="linear", estimator="biased", **SYNC).value
        k = lambda a, b: a @ b.T  # noqa: E731
    # MMD²_b by its definition, from the explicit kernel on the two samples
    want_def = k(joint, joint).mean() + k(product, product).mean() - 2 * k(joint, product).mean()
    assert got == pytest.approx(want_def, rel=REL)
    assert got == pytest.approx(((n - 1) / n) ** 2 * h, rel=REL)
    assert h > 0


# ---------------------------------------------------------------------------
# 3. dCov² = 4·HSIC with the distance-induced kernel (Sejdinovic et al. 2013)
# ---------------------------------------------------------------------------


def distance_kernel(a: np.ndarray, x0: np.ndarray) -> np.ndarray:
    """k(x, x') = ½(‖x − x₀‖ + ‖x' − x₀‖ − ‖x − x'‖)."""
    r = np.linalg.norm(a - x0, axis=1)
    return 0.5 * (r[:, None] + r[None, :] - np.sqrt(sqdist(a)))


def dcov2_szekely(a: np.ndarray, b: np.ndarray, estimator: str) -> float:
    """Székely's double-centred (V) or Székely–Rizzo U-centred (U) distance covariance², literally."""
    A, B = np.sqrt(sqdist(a)), np.sqrt(sqdist(b))
    n = len(a)
    if estimator == "biased":
        dc = lambda D: D - D.mean(0) - D.mean(1)[:, None] + D.mean()  # noqa: E731
        return float(np.sum(dc(A) * dc(B)) / n**2)
    uc = lambda D: D - D.sum(0) / (n - 2) - D.sum(1)[:, None] / (n - 2) + D.sum() / ((n - 1) * (n - 2))  # noqa: E731
    Au, Bu = uc(A), uc(B)
    np.fill_diagonal(Au, 0)
    np.fill_diagonal(Bu, 0)
    return float(np.sum(Au * Bu) / (n * (n - 3)))


@pytest.mark.parametrize("kind", KINDS)
def test_dcov2_is_four_hsic_with_the_distance_kernel(kind, demo):
    """V: dCov²ₙ = (1/n²)Σ AᵢⱼBᵢⱼ = 4·tr(KHLH)/n² = 4·((n−1)/n)²·HSIC_b;  U: dCov²ᵤ = 4·HSICᵤ(K, L),
    K, L the distance-induced kernels (any centre x₀); dCor² = CKA of those kernels."""
    x, y = pair(kind, demo, 200)
    n = len(x)
    vb = bigalign.dcov(x, y, estimator="biased", method="exact", **SYNC).value  # dCov²ₙ (as dcor.distance_covariance_sqr)
    vu = bigalign.dcov(x, y, estimator="unbiased", method="exact", **SYNC).value  # dCov²ᵤ (as dcor.u_distance_covariance_sqr)
    # Székely's definitions, directly
    assert vb == pytest.approx(dcov2_szekely(x, y, "biased"), rel=REL)
    assert vu == pytest.approx(dcov2_szekely(x, y, "unbiased"), rel=REL)
    far = np.full(x.shape[1], 3.0), np.full(y.shape[1], -2.0)
    for x0, y0 in ((x[5], y[7]), far):  # a sample point and a point off the sample: the identity holds for any centre
        K, L = distance_kernel(x, x0), distance_kernel(y, y0)
        # K's entries are O(‖x − x₀‖) while HSIC is O(spread²): the naive sums lose a digit or two to
        # cancellation (measured ≤ 1.1e-13 relative, also with x₀ off the sample), well inside REL
        assert vb == pytest.approx(4 * ((n - 1) / n) ** 2 * hsic_b(K, L), rel=REL)
        assert vu == pytest.approx(4 * hsic_u(K, L), rel=REL)
        # dCor: the 4 and the normalisations cancel — CKA with the distance-induced kernels
        db = bigalign.dcor(x, y, estimator="biased", method="exact", **SYNC).value
        du = bigalign.dcor(x, y, estimator="unbiased", method="exact", **SYNC).value
        assert db == pytest.approx(cka_ref(K, L, "biased"), rel=REL)
        assert du == pytest.approx(cka_ref(K, L, "unbiased"), rel=REL)


# ---------------------------------------------------------------------------
# 4. distance alignment D and kernel alignment for unit-norm features
# ---------------------------------------------------------------------------


def unit_rows(a: np.ndarray) -> np.ndarray:
    r = np.linalg.norm(a, axis=1, keepdims=True)
    assert np.all(r > 0)  # every digit activates some unit in these layers
    return a / r


def d_ref(x: np.ndarray, y: np.ndarray) -> float:
    """The paper: D = (1/n²) Σᵢⱼ (‖xᵢ − xⱼ‖² − ‖yᵢ − yⱼ‖²)²."""
    return float(np.mean((sqdist(x) - sqdist(y)) ** 2))


@pytest.mark.parametrize("kind", KINDS)
def test_distance_alignment_of_unit_norm_features(kind, demo):
    """The paper (fix): with unit-norm features (d² = 2(1 − k)), D = 4(‖K₁‖² + ‖K₂‖² − 2‖K₁‖‖K₂‖·KA),
    where ‖K‖ = ‖K‖_F/n (the paper's 1/n² normalisation: with raw Frobenius norms the right side is over n²)."""
    x, y = pair(kind, demo, 300)
    xn, yn = unit_rows(x), unit_rows(y)
    n = len(x)
    D = bigalign.distance_alignment(xn, yn, **SYNC).value
    KA = bigalign.kernel_alignment(xn, yn, **SYNC).value
    K1, K2 = gram(xn, "linear"), gram(yn, "linear")
    c1, c2 = np.linalg.norm(K1) / n, np.linalg.norm(K2) / n
    rhs = 4 * (c1**2 + c2**2 - 2 * c1 * c2 * KA)
    assert D == pytest.approx(rhs, rel=REL)
    assert D == pytest.approx(d_ref(xn, yn), rel=REL)
    assert KA == pytest.approx(ka_ref(K1, K2), rel=REL)
    # the identity needs k(x, x) to be the same constant on both sides: it holds for rows of one common
    # norm r (then D = 4(…) with the norms of the r²-scaled kernels) and fails when the norms differ
    r = 2.5
    assert bigalign.distance_alignment(r * xn, r * yn, **SYNC).value == pytest.approx(4 * r**4 * (c1**2 + c2**2 - 2 * c1 * c2 * KA), rel=REL)
    raw_d = bigalign.distance_alignment(x, y, **SYNC).value
    raw_c1, raw_c2 = np.linalg.norm(gram(x, "linear")) / n, np.linalg.norm(gram(y, "linear")) / n
    raw_rhs = 4 * (raw_c1**2 + raw_c2**2 - 2 * raw_c1 * raw_c2 * bigalign.kernel_alignment(x, y, **SYNC).value)
    assert rel(raw_d, raw_rhs) > 1e-2


@pytest.mark.parametrize("kind", KINDS)
def test_distance_alignment_corrected_constant(kind, demo):
    """The paper (fix): unit-norm features with ‖K₁‖ = ‖K₂‖ = C give D = 8C²(1 − KA), not the printed 8C(1 − KA).
    ‖K₂‖ = ‖K₁‖ exactly when y's rows are x's rows in another order (L = PKPᵀ)."""
    x, _ = pair(kind, demo, 300)
    xn = unit_rows(x)
    perm = np.arange(len(xn))
    perm[:100] = np.random.default_rng(1).permutation(100)  # reorder a third of the rows: KA < 1
    yn = xn[perm]
    C = np.linalg.norm(gram(xn, "linear")) / len(xn)
    D = bigalign.distance_alignment(xn, yn, **SYNC).value
    KA = bigalign.kernel_alignment(xn, yn, **SYNC).value
    assert KA < 0.999
    assert D == pytest.approx(8 * C**2 * (1 - KA), rel=REL)  # D is a difference of O(C²) terms: 8e-14 measured
    assert rel(D, 8 * C * (1 - KA)) > 0.05, f"C = {C}"  # the printed constant is off by the factor C (here C < 0.95)


# ---------------------------------------------------------------------------
# 5. the spectral form KA = ⟨η̂, (C⊙C) μ̂⟩
# ---------------------------------------------------------------------------


def spectral_form(K: np.ndarray, L: np.ndarray) -> float:
    """Σᵢⱼ η̂ᵢ μ̂ⱼ Cᵢⱼ² over the eigenpairs of K/n and L/n (numpy eigh of the n×n matrices), C = UᵀV."""
    n = len(K)
    eta, U = np.linalg.eigh(K / n)
    mu, V = np.linalg.eigh(L / n)
    C = U.T @ V
    return float((eta / np.linalg.norm(eta)) @ (C * C) @ (mu / np.linalg.norm(mu)))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("variant", ["linear", "linear-centred", "rbf"])
def test_kernel_alignment_spectral_form(kind, variant, demo):
    x, y = pair(kind, demo, 250)
    if variant == "rbf":
        sx, sy = median_distance(x), median_distance(y)
        K, L = gram(x, "rbf", sx), gram(y, "rbf", sy)
        got = bigalign.kernel_alignment(x, y, kernel="rbf", bandwidth=(sx, sy), method="exact", **SYNC).value
        spec = None  # spectral_alignment is linear-kernel only
    elif variant == "linear":
        K, L = gram(x, "linear"), gram(y, "linear")
        got = bigalign.kernel_alignment(x, y, **SYNC).value
        spec = bigalign.spectral_alignment(x, y, center=False, **SYNC).value  # eigenpairs from d×d algebra
    else:
        K, L = centre(gram(x, "linear")), centre(gram(y, "linear"))
        got = bigalign.cka(x, y, estimator="biased", **SYNC).value  # CKA = KA of the centred kernels
        spec = bigalign.spectral_alignment(x, y, center=True, **SYNC).value
    want = spectral_form(K, L)
    assert want == pytest.approx(ka_ref(K, L), rel=REL)  # the identity itself, in numpy
    assert got == pytest.approx(want, rel=REL)
    if spec is not None:
        assert spec == pytest.approx(want, rel=REL)


# ---------------------------------------------------------------------------
# 6. linear HSIC = Σρᵢ² over the singular values of the cross-covariance; COCO = ρ₁
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_linear_hsic_is_sum_of_squared_singular_values(kind, demo):
    """‖Σ_xy‖²_HS = Σ sᵢ² with Σ_xy = (1/n)X_cᵀY_c; bigalign's biased HSIC is tr(KHLH)/(n−1)², so
    Σ sᵢ² = ((n−1)/n)²·HSIC_b (the unbiased HSIC is a different estimator of the same population value)."""
    x, y = pair(kind, demo, None if kind == "real" else 2000)  # d×d algebra: every digit
    n = len(x)
    s = np.linalg.svd(cov(x, y), compute_uv=False)
    h = bigalign.hsic(x, y, estimator="biased", **SYNC).value
    assert ((n - 1) / n) ** 2 * h == pytest.approx(np.sum(s**2), rel=REL)
    assert bigalign.coco(x, y, **SYNC).value == pytest.approx(s[0], rel=REL)
    sp = bigalign.spectral_alignment(x, y, **SYNC)
    assert sp.coco == pytest.approx(s[0], rel=REL)
    assert sp.hsic == pytest.approx(h, rel=REL)


@pytest.mark.parametrize("kind", KINDS)
def test_rbf_coco_and_hsic_are_the_cross_covariance_operator_spectrum(kind, demo):
    """The same for the rbf kernel's feature maps: the squared singular values of the centred
    cross-covariance operator are the eigenvalues of K̃L̃/n² (K̃ = HKH); COCO = √λ_max(K̃L̃)/n."""
    x, y = pair(kind, demo, 250)
    n = len(x)
    sx, sy = median_distance(x), median_distance(y)
    Kc, Lc = centre(gram(x, "rbf", sx)), centre(gram(y, "rbf", sy))
    # K̃L̃ is similar to the PSD K̃^½L̃K̃^½: its eigenvalues are real and ≥ 0 up to rounding (tiny imaginary parts dropped)
    lam = np.sort(np.linalg.eigvals(Kc @ Lc).real)[::-1]
    r = bigalign.coco(x, y, kernel="rbf", bandwidth=(sx, sy), method="exact", **SYNC)
    assert r.value == pytest.approx(math.sqrt(lam[0]) / n, rel=REL)
    h = bigalign.hsic(x, y, kernel="rbf", bandwidth=(sx, sy), estimator="biased", method="exact", **SYNC).value
    assert ((n - 1) / n) ** 2 * h == pytest.approx(np.sum(lam) / n**2, rel=REL)


# ---------------------------------------------------------------------------
# 7. Gaussian MI and W₂ from the canonical correlations, against their definitions
# ---------------------------------------------------------------------------


def gaussian_data(n: int, seed: int = 13) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Jointly Gaussian x (4-d), y (3-d) and the population covariance of (x, y)."""
    rng = np.random.default_rng(seed)
    M = rng.normal(size=(4, 4))
    a, s = np.array([0.9, 0.5, 0.1]), np.array([0.4, 0.8, 1.0])
    z = rng.normal(size=(n, 4))  # x = z M; y = z[:, :3]·a + noise·s
    x = z @ M
    y = z[:, :3] * a + rng.normal(size=(n, 3)) * s
    # population covariance of (x, y): Cov(z) = I
    Ay = np.zeros((4, 3))
    Ay[:3, :3] = np.diag(a)
    sxx, sxy, syy = M.T @ M, M.T @ Ay, Ay.T @ Ay + np.diag(s**2)
    return x, y, np.block([[sxx, sxy], [sxy.T, syy]])


def mi_def(S: np.ndarray, dx: int) -> float:
    """I(x; y) of the Gaussian with covariance S: ½ log(|Σxx||Σyy| / |Σ|)."""
    return 0.5 * (logdet(S[:dx, :dx]) + logdet(S[dx:, dx:]) - logdet(S))


def w2_def(S: np.ndarray, dx: int) -> float:
    """W₂²(N(0, Σ_w), N(0, I)) with Σ_w the whitened joint [[I, R], [Rᵀ, I]], R = Σxx^-½ Σxy Σyy^-½
    (N(0, I) is the product of Σ_w's marginals); for Gaussians W₂² = tr Σ₁ + tr Σ₂ − 2 tr(Σ₂^½ Σ₁ Σ₂^½)^½."""
    R = inv_sqrt(S[:dx, :dx]) @ S[:dx, dx:] @ inv_sqrt(S[dx:, dx:])
    d = len(S)
    Sw = np.block([[np.eye(dx), R], [R.T, np.eye(d - dx)]])
    w = np.linalg.eigvalsh(Sw)
    assert w.min() > 0  # 1 ± ρᵢ > 0: no canonical correlation reaches 1 here
    return float(np.trace(Sw) + d - 2 * np.sum(np.sqrt(w)))


@pytest.mark.parametrize("kind", ["gaussian", "real"])
def test_gaussian_mi_and_w2_against_their_definitions(kind, demo):
    if kind == "gaussian":
        x, y, pop = gaussian_data(20_000)
    else:
        x, y = live(demo["A"]["hidden3"]), live(demo["B"]["logits"])  # live units: full-rank covariances
        pop = None
    dx = x.shape[1]
    r = bigalign.spectral_alignment(x, y, **SYNC)
    S = cov(np.hstack([x, y]))  # the sample joint covariance, 1/n (any common factor cancels in both formulas)
    # MI: the determinant form; the ρ-form is a different route (KMI at κ = 0 is classical CCA)
    assert r.gaussian_mi == pytest.approx(mi_def(S, dx), rel=REL)
    assert bigalign.kmi(x, y, ridge=0, **SYNC).value == pytest.approx(mi_def(S, dx), rel=REL)
    # W₂: the corrected formula Σ 2(2 − √(1+ρᵢ) − √(1−ρᵢ)) against Gelbrich's definition
    assert r.gaussian_wasserstein == pytest.approx(w2_def(S, dx), rel=REL)
    rho = r.canonical_correlations
    printed = float(2 * np.sum(1 - np.sqrt(1 - rho**2)))  # the formula as printed in the paper
    # the paper (fix): "about twice too large" — per ρ the ratio printed/corrected runs from 2 (ρ → 0) down to
    # 1/(2 − √2) ≈ 1.71 (ρ → 1), so > 1.5 for any data (measured 1.86 Gaussian, 1.78 real)
    assert printed > 1.5 * r.gaussian_wasserstein
    if pop is not None:
        # the plug-in estimates converge to the population values: at n = 20,000 the MI's bias is
        # ≈ dx·dy/(2n) = 3e-4 nats and its standard deviation ≈ √(Σρᵢ²/n) < 0.007; 0.03 is > 4 sd + bias
        assert r.gaussian_mi == pytest.approx(mi_def(pop, dx), abs=0.03)
        assert r.gaussian_wasserstein == pytest.approx(w2_def(pop, dx), abs=0.03)  # W₂² is smoother in ρ than the MI


# ---------------------------------------------------------------------------
# 8. linear stitching and the spectral view: R² = Σⱼ μⱼ Σᵢ Cᵢⱼ² / Σⱼ μⱼ
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_stitching_r2_is_the_mu_weighted_overlap(kind, demo):
    """The paper (Theorem 1): the residual of regressing f₂ linearly on f₁ is Ã₂ = Σⱼ μⱼ(1 − Σᵢ Cᵢⱼ²); with an
    intercept (centred eigenpairs) the fitted R² of ``stitch`` is therefore Σⱼ μⱼ Σᵢ Cᵢⱼ² / Σⱼ μⱼ — the overlap
    weighted by y's spectrum only (Remark 4: unlike KA it ignores x's eigenvalues)."""
    x, y = pair(kind, demo, None)  # every digit (d×d algebra); real x has dead units: rank-deficient, min-norm map
    st = bigalign.stitch(x, y, holdout=0.0, **SYNC)
    sp = bigalign.spectral_alignment(x, y, center=True, **SYNC)
    C2 = sp.overlap**2
    spectral_r2 = float(sp.mu @ C2.sum(axis=0) / np.sum(sp.mu))
    # numpy: least squares of centred y on centred x
    xc, yc = x - x.mean(0), y - y.mean(0)
    coef, *_ = np.linalg.lstsq(xc, yc, rcond=None)
    lstsq_r2 = 1 - np.sum((xc @ coef - yc) ** 2) / np.sum(yc**2)
    assert st.fit.r2 == pytest.approx(lstsq_r2, rel=REL)
    assert spectral_r2 == pytest.approx(lstsq_r2, rel=REL)
    assert np.sum(sp.mu) == pytest.approx(np.trace(cov(y)), rel=REL)  # every non-zero eigenvalue of y is kept


# ---------------------------------------------------------------------------
# invariances: every claim of the table in docs/measures.md
# ---------------------------------------------------------------------------

ORTH, SCALE, LINEAR, SHIFT = "orthogonal", "isotropic-scaling", "invertible-linear", "translation"
TRANSFORMS = [ORTH, SCALE, LINEAR, SHIFT]


def _stitch_r2(x, y):
    return bigalign.stitch(x, y, **SYNC).r2


# measure -> (f(x, y), transforms of x it is invariant to); the transform is applied to x (the first argument)
INVARIANCES = {
    "cka_linear_unbiased": (lambda x, y: bigalign.cka(x, y, **SYNC).value, {ORTH, SCALE, SHIFT}),
    "cka_linear_biased": (lambda x, y: bigalign.cka(x, y, estimator="biased", **SYNC).value, {ORTH, SCALE, SHIFT}),
    "cka_rbf_median": (lambda x, y: bigalign.cka(x, y, kernel="rbf", method="exact", **SYNC).value, {ORTH, SCALE, SHIFT}),
    "cka_rbf_fixed_bandwidth": (lambda x, y: bigalign.cka(x, y, kernel="rbf", bandwidth=(4.0, 4.0), method="exact", **SYNC).value, {ORTH, SHIFT}),
    "hsic_linear": (lambda x, y: bigalign.hsic(x, y, **SYNC).value, {ORTH, SHIFT}),
    "kernel_alignment": (lambda x, y: bigalign.kernel_alignment(x, y, **SYNC).value, {ORTH, SCALE}),
    "distance_alignment": (lambda x, y: bigalign.distance_alignment(x, y, **SYNC).value, {ORTH, SHIFT}),
    "dcor": (lambda x, y: bigalign.dcor(x, y, method="exact", **SYNC).value, {ORTH, SCALE, SHIFT}),
    "coco_linear": (lambda x, y: bigalign.coco(x, y, **SYNC).value, {ORTH, SHIFT}),
    "kcc_linear": (lambda x, y: bigalign.kcc(x, y, **SYNC).value, {ORTH, SCALE, SHIFT}),
    "kmi_linear": (lambda x, y: bigalign.kmi(x, y, **SYNC).value, {ORTH, SCALE, SHIFT}),
    "kcc_linear_kappa0": (lambda x, y: bigalign.kcc(x, y, ridge=0, **SYNC).value, {ORTH, SCALE, LINEAR, SHIFT}),
    "gaussian_mi": (lambda x, y: bigalign.spectral_alignment(x, y, **SYNC).gaussian_mi, {ORTH, SCALE, LINEAR, SHIFT}),
    "gaussian_w2": (lambda x, y: bigalign.spectral_alignment(x, y, **SYNC).gaussian_wasserstein, {ORTH, SCALE, LINEAR, SHIFT}),
    "rsa_pearson": (lambda x, y: bigalign.rsa(x, y, **SYNC).value, {ORTH, SCALE, SHIFT}),
    "rsa_spearman": (lambda x, y: bigalign.rsa(x, y, compare="spearman", **SYNC).value, {ORTH, SCALE, SHIFT}),
    "mutual_knn": (lambda x, y: bigalign.mutual_knn(x, y, **SYNC).value, {ORTH, SCALE}),
    "cknna": (lambda x, y: bigalign.cknna(x, y, **SYNC).value, {ORTH, SCALE}),
    "stitch_r2_source": (_stitch_r2, {ORTH, SCALE, LINEAR, SHIFT}),  # x is the source of the map x S + b ≈ y
    "stitch_r2_target": (lambda x, y: _stitch_r2(y, x), {ORTH, SCALE, SHIFT}),  # x is the target
}


@pytest.fixture(scope="module")
def invariance_data(demo) -> dict[str, dict]:
    """Per kind: x, y, the transformed x's and a cache of the untransformed values.
    Real: the live units of A.hidden2 and B.hidden3 on 300 digits (dead units would make CCA singular)."""
    rows = _rows(1797, 300, seed=2)
    out = {}
    for kind in KINDS:
        x, y = random_pair(300, seed=4) if kind == "random" else (live(demo["A"]["hidden2"][rows]), live(demo["B"]["hidden3"][rows]))
        rng = np.random.default_rng(5)
        d = x.shape[1]
        q1, _ = np.linalg.qr(rng.normal(size=(d, d)))
        q2, _ = np.linalg.qr(rng.normal(size=(d, d)))
        a = q1 @ np.diag(np.logspace(-1, 1, d)) @ q2  # invertible, condition number 100
        shift = 3 * rng.normal(size=d) * math.sqrt(np.mean(np.sum(x**2, 1)) / d)  # about 3× a row's size
        moved = {ORTH: x @ q1, SCALE: 3.7 * x, LINEAR: x @ a, SHIFT: x + shift}
        out[kind] = {"x": x, "y": y, "moved": moved, "base": {}}
    return out


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("measure", list(INVARIANCES))
def test_invariance(measure, transform, kind, invariance_data):
    f, invariant_to = INVARIANCES[measure]
    data = invariance_data[kind]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. rank flags; the values are what is checked
        if measure not in data["base"]:
            data["base"][measure] = f(data["x"], data["y"])
        v0 = data["base"][measure]
        v1 = f(data["moved"][transform], data["y"])
    change = rel(v1, v0)
    if transform in invariant_to:
        # rounding only: the worst measured is 3.2e-12 (Gaussian W₂² of the real pair under the condition-100 map:
        # canonical correlations near 1 amplify the rounding of ρ); 1e-9 leaves a wide margin and still catches
        # any real change
        assert change < 1e-9, f"{measure} should be invariant to {transform}: relative change {change:.2e}"
    else:
        # not invariant: a generic transform of this size changes the value by far more than rounding
        # (smallest measured change among these cases: 5.3e-3, KCC with κ = 1e-2 under the invertible map)
        assert change > 1e-3, f"{measure} is claimed NOT invariant to {transform}, but changed by only {change:.2e}"


# ---------------------------------------------------------------------------
# the family figure (examples/measures_family.py --quick)
# ---------------------------------------------------------------------------


@pytest.mark.slow
def test_measures_family_quick(tmp_path, demo_dir):
    """The script runs and the figure's expectations hold on real networks (loose, justified):
    every similarity measure — every dissimilarity reversed — ranks each matched layer pair (A.k, B.k)
    above its random-network control (A.k, untrained.k) and above its shuffled control (A.k, B.k with
    B's rows permuted: same marginals, no pairing); the shuffled controls sit at the null level."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "measures_family.py"), "--quick", "--out", str(tmp_path), "--stores", str(demo_dir)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    res = json.loads((tmp_path / "measures_family.json").read_text())
    assert (tmp_path / "measures_family.png").stat().st_size > 50_000
    md = (tmp_path / "measures_family.md").read_text()
    assert "| A.hidden2 / B.hidden2 | matched |" in md
    n = res["n_samples"]
    assert n == 600  # (its wall time, < 60 s on an idle 2-CPU machine, is not asserted: this machine is shared)
    values = {k: np.array(v) for k, v in res["values"].items()}
    assert len(values) == 15 and all(np.all(np.isfinite(v)) for v in values.values())
    for k, c in res["checks"].items():
        assert c["n_matched"] == 4
        # independent of scale: each comparison is between pairs that share A.k and a layer of the same shape and scale
        assert c["matched_above_its_random_control"] == 4, k
        assert c["matched_above_its_shuffled_control"] == 4, k
    kind = np.array([p["kind"] for p in res["pairs"]])
    shuffled = kind == "shuffled"
    # null level: debiased CKA / dCor² are unbiased for 0 under independence with sd O(1/n) (measured |·| ≤ 0.004
    # at n = 600); mutual kNN of independent representations ≈ k/(n−1) = 0.017 (Huh et al.)
    for k in ("cka_linear", "cka_rbf", "dcor"):
        assert np.all(np.abs(values[k][shuffled]) < 0.05), k
    assert np.all(values["mutual_knn"][shuffled] < 3 * 10 / (n - 1))
    for key in ("spearman_all", "spearman_trained"):
        rho = np.array(res[key])
        np.testing.assert_allclose(rho, rho.T, atol=1e-12)
        np.testing.assert_allclose(np.diag(rho), 1.0, atol=1e-12)
