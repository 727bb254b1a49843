"""Spectral views: spectrum, spectral_alignment, task_alignment, kare.

Every exact identity is checked against an independent float64 route that
builds the n×n matrices (or the d×d covariances) with numpy and applies the
formula of docs/formulas.md literally.

Tolerance policy
----------------
* exact identities (spectral form = biased CKA, canonical correlations, MI, W₂², COCO,
  KARE, C(m)): 1e-10 relative — both sides are float64 closed forms of the same sums;
  measured ≤ 1e-13.
* eigenvectors / overlaps against an n×n eigendecomposition: only for eigenvalues
  separated by ≥ 1e-3 relative (the eigenvector condition number is 1/gap), 1e-8.
* block size / scheduler invariance: 1e-12 relative for the exact road (merge-tree
  rounding, measured ≤ 1e-14); bit-identical for a fixed seed and block size across
  sync / threads / a 2-process LocalCluster on the randomized road (the combine tree
  and every GEMM operand are the same; BLAS is deterministic for fixed operands).
* randomized accuracy: Halko, Martinsson & Tropp (2011), Corollary 10.10 — see
  test_randomized_range_error_within_hmt_bound.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.linalg

import bigalign
from bigalign.errors import DegenerateInputError, InvalidInputError, NonFiniteError
from bigalign.io import as_representation
from bigalign.linalg import hmt_expected_error, randomized_sides
from bigalign.metrics import _spectral_common
from bigalign.metrics import spectral as sp
from bigalign.metrics.spectral import kare, spectral_alignment, spectrum, task_alignment
from bigalign.options import EngineOptions

import references as ref

RTOL = 1e-10
SYNC = {"scheduler": "sync"}


# --------------------------------------------------------------------------- #
# data and naive references
# --------------------------------------------------------------------------- #


def decaying(rng, n, d, power=1.0, offset=0.0, dtype=np.float64):
    """Rows with covariance eigenvalues ∝ j^-power in a random basis, plus an offset."""
    z = rng.normal(size=(n, d)) * np.arange(1, d + 1) ** (-power / 2)
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return (z @ q + offset).astype(dtype)


def pair(rng, n=400, dx=12, dy=9, noise=0.8):
    x = decaying(rng, n, dx, 0.7, offset=2.0)
    y = np.tanh(x[:, : min(dx, 6)] @ rng.normal(size=(min(dx, 6), dy))) + noise * rng.normal(size=(n, dy)) - 1.0
    return x, y


def cov(a, center=True):
    a = ref.as64(a)
    if center:
        a = a - a.mean(axis=0)
    return a.T @ a / a.shape[0]


def cross(a, b, center=True):
    a, b = ref.as64(a), ref.as64(b)
    if center:
        a, b = a - a.mean(axis=0), b - b.mean(axis=0)
    return a.T @ b / a.shape[0]


def inv_sqrt(s, r=0.0):
    lam, v = np.linalg.eigh(s + r * np.eye(s.shape[0]))
    return (v / np.sqrt(lam)) @ v.T


def cca_whitening(x, y, ridge=0.0):
    """Canonical correlations by whitening: svd((Σxx + rI)^-1/2 Σxy (Σyy + rI)^-1/2)."""
    sxx, syy, sxy = cov(x), cov(y), cross(x, y)
    rx, ry = ridge * np.trace(sxx), ridge * np.trace(syy)  # the relative ridge: a fraction of tr Σ
    return np.linalg.svd(inv_sqrt(sxx, rx) @ sxy @ inv_sqrt(syy, ry), compute_uv=False)


def n_by_n_eigs(a, center=True):
    """Eigenvalues (desc) and eigenvectors of K/n with K = aaᵀ (centred: HKH), the naive n×n way."""
    k = ref.centred_gram(a) if center else ref.gram(a)
    lam, u = np.linalg.eigh(k / k.shape[0])
    return lam[::-1], u[:, ::-1]


@pytest.fixture(scope="module")
def data():
    return pair(np.random.default_rng(5))


# --------------------------------------------------------------------------- #
# spectrum
# --------------------------------------------------------------------------- #


@pytest.mark.slow
@pytest.mark.parametrize("center", [True, False])
def test_spectrum_exact_matches_numpy(center, data):
    x, _ = data
    s = spectrum(x, center=center, **SYNC)
    lam, vec = np.linalg.eigh(cov(x, center))
    lam, vec = lam[::-1], vec[:, ::-1]
    np.testing.assert_allclose(s.eigenvalues, lam, rtol=RTOL, atol=RTOL * lam[0])
    assert s.method == "exact" and s.n_passes == 1 and s.components.shape == (x.shape[1], x.shape[1])
    np.testing.assert_allclose(np.abs(np.sum(s.components * vec.T, axis=1)), 1.0, atol=1e-8)
    np.testing.assert_allclose(s.explained_variance_ratio, lam / lam.sum(), rtol=RTOL)
    pr = lam.sum() ** 2 / np.sum(lam**2)
    assert s.effective_dimension == pytest.approx(pr, rel=RTOL)
    assert s.effective_dimension_bounds[0] == s.effective_dimension_bounds[1] == pytest.approx(pr, rel=RTOL)
    assert np.all(s.residuals < 1e-12 * lam[0])
    # the leading eigenvalues of the d×d covariance are those of the n×n kernel / n
    lam_n, _ = n_by_n_eigs(x, center)
    np.testing.assert_allclose(s.eigenvalues, lam_n[: lam.size], rtol=1e-9, atol=1e-12 * lam[0])


def test_spectrum_float32_with_large_offset_is_exact():
    """Merged centred moments: a float32 input offset by 1e4 keeps full accuracy."""
    rng = np.random.default_rng(3)
    x = decaying(rng, 3000, 10, 1.0, offset=1e4, dtype=np.float32)
    s = spectrum(x, block_size=333, **SYNC)
    lam = np.linalg.eigvalsh(cov(ref.centre_exact(x)))[::-1]  # x − mean is exact here (Sterbenz)
    np.testing.assert_allclose(s.eigenvalues, lam, rtol=1e-9)
    r = spectrum(x, rank=3, method="randomized", n_power_iter=4, block_size=333, **SYNC)
    np.testing.assert_allclose(r.eigenvalues, lam[:3], rtol=1e-6)


def test_spectrum_rbf_is_the_nystroem_gram_spectrum():
    rng = np.random.default_rng(8)
    x = rng.normal(size=(300, 4))
    s = spectrum(x, kernel="rbf", n_features=60, **SYNC)
    fmap, params = sp._nystroem(as_representation(x), "median", 60, 0, "t")
    phi = fmap(ref.as64(x))
    lam_n, _ = n_by_n_eigs(phi, center=True)  # eigenvalues of H Φ Φᵀ H / n
    np.testing.assert_allclose(s.eigenvalues, lam_n[: s.rank], rtol=1e-9, atol=1e-12 * lam_n[0])
    assert s.parameters["bandwidth"] == params["bandwidth"] and s.n_features == fmap.n_features


def test_randomized_rbf_spectrum_maps_every_block_the_same_way():
    rng = np.random.default_rng(10)
    x = rng.normal(size=(400, 5))
    ex = spectrum(x, kernel="rbf", n_features=80, rank=5, **SYNC)
    rd = spectrum(x, kernel="rbf", n_features=80, rank=5, method="randomized", n_power_iter=6, block_size=57, **SYNC)
    np.testing.assert_allclose(rd.eigenvalues, ex.eigenvalues, rtol=1e-8)


def test_spectrum_rbf_with_all_rows_as_landmarks_is_the_exact_rbf_spectrum():
    """m = n landmarks: the Nyström Gram is the RBF Gram itself (to the 1e-12 eigenvalue cut)."""
    rng = np.random.default_rng(9)
    x = rng.normal(size=(150, 3))
    s = spectrum(x, kernel="rbf", n_features=150, center=True, **SYNC)
    from scipy.spatial.distance import pdist, squareform

    sigma = float(np.median(pdist(x)))  # n < 1000: the bandwidth subsample is every row
    k = np.exp(-squareform(pdist(x, "sqeuclidean")) / (2 * sigma**2))
    h = ref.centring_matrix(150)
    lam = np.linalg.eigvalsh(h @ k @ h / 150)[::-1]
    top = 20
    np.testing.assert_allclose(s.eigenvalues[:top], lam[:top], rtol=1e-8, atol=1e-10 * lam[0])


def test_randomized_range_error_within_hmt_bound():
    """HMT (2011), Corollary 10.10: for the power scheme Y = (AAᵀ)^q AΩ = A^{2q+1}Ω,
        E‖(I − P_Y)A‖ ≤ [(1 + √(k/(p−1)))λ_{k+1}^{2q+1} + (e√(k+p)/p)(Σ_{j>k} λ_j^{2(2q+1)})^{1/2}]^{1/(2q+1)}.
    Our sketch after n_power_iter passes is A^{n_power_iter+1}Ω, i.e. HMT's 2q+1 =
    n_power_iter + 1 (even n_power_iter).  The bound is on the mean; for each fixed
    seed we check the realised error against it.  Measured here over seeds 0–5: the
    realised error is 4.0–5.0× below the bound for q = 0 and 2.2–2.6× below it for q = 2,
    so a failing seed would be a regression, not bad luck.
    Then every Ritz value is within 2‖(I − QQᵀ)A‖ of its eigenvalue (Weyl, since
    ‖A − QQᵀAQQᵀ‖ ≤ 2‖(I − QQᵀ)A‖, HMT §5.3)."""
    rng = np.random.default_rng(21)
    n, d, k, p = 1000, 100, 10, 6
    x = decaying(rng, n, d, 1.2)
    A = cov(x)
    lam = np.linalg.eigvalsh(A)[::-1]
    for q in (0, 2):
        for seed in (0, 1):
            run = randomized_sides(
                [x], ["x"], [d], [k + p], n_power_iter=q, seed=seed, center=True, options=EngineOptions(scheduler="sync")
            )
            Q = run.Qs[0]
            err = np.linalg.norm(A - Q @ (Q.T @ A), 2)
            bound = hmt_expected_error(lam, k, p, q)
            assert err <= bound, (q, seed, err, bound)
            lam_hat = run.eigens[0].values[:k]
            assert np.all(lam[:k] - lam_hat <= 2 * err + 1e-14) and np.all(lam_hat <= lam[:k] * (1 + 1e-12))
        s = spectrum(x, rank=k, method="randomized", n_oversamples=p, n_power_iter=q, seed=seed, **SYNC)
        np.testing.assert_allclose(s.eigenvalues, lam_hat, rtol=1e-12)  # the public façade is this computation
        assert s.n_passes == q + 2


@pytest.mark.slow
def test_randomized_spectrum_matches_exact_on_decaying_spectrum():
    rng = np.random.default_rng(4)
    x = decaying(rng, 2000, 200, 2.0, offset=5.0)
    ex = spectrum(x, rank=20, method="exact", **SYNC)
    rd = spectrum(x, rank=20, method="randomized", **SYNC)
    # the leading Ritz values converge first; those near the sketch's edge (ℓ = 30) more slowly
    np.testing.assert_allclose(rd.eigenvalues[:8], ex.eigenvalues[:8], rtol=1e-6)
    np.testing.assert_allclose(rd.eigenvalues, ex.eigenvalues, rtol=1e-2)
    assert np.all(rd.eigenvalues <= ex.eigenvalues * (1 + 1e-12))  # Ritz values never exceed (interlacing)
    np.testing.assert_allclose(np.abs(np.sum(rd.components[:10] * ex.components[:10], axis=1)), 1.0, atol=1e-5)
    assert rd.n_passes == 4 and rd.parameters["sketch_width"] == 30
    assert rd.total_variance == pytest.approx(ex.total_variance, rel=1e-12)  # exact on both roads
    lo, hi = rd.effective_dimension_bounds
    full = spectrum(x, **SYNC).effective_dimension
    assert lo <= full <= hi and lo <= rd.effective_dimension <= hi
    # the residuals are honest: each Ritz value is within its residual of an eigenvalue
    lam = spectrum(x, **SYNC).eigenvalues
    for v, r in zip(rd.eigenvalues, rd.residuals):
        assert np.min(np.abs(lam - v)) <= r * (1 + 1e-9) + 1e-15


def test_spectrum_is_deterministic_for_a_seed(data):
    x, _ = data
    a = spectrum(x, rank=4, method="randomized", seed=7, **SYNC)
    b = spectrum(x, rank=4, method="randomized", seed=7, **SYNC)
    c = spectrum(x, rank=4, method="randomized", seed=8, n_power_iter=0, n_oversamples=0, **SYNC)
    assert np.array_equal(a.eigenvalues, b.eigenvalues) and np.array_equal(a.components, b.components)
    assert not np.array_equal(a.eigenvalues, c.eigenvalues)


def test_auto_method_is_decided_and_reported(data, monkeypatch):
    x, _ = data
    s = spectrum(x, rank=3, **SYNC)
    assert s.method == "exact" and "d = 12 <= 8192" in s.parameters["method_reason"]
    monkeypatch.setattr(_spectral_common, "EXACT_MAX_D", 8)  # read where the method is chosen
    s = spectrum(x, rank=3, **SYNC)
    assert s.method == "randomized" and "d = 12 > 8" in s.parameters["method_reason"]
    with pytest.raises(InvalidInputError, match="needs rank"):
        spectrum(x, **SYNC)


# --------------------------------------------------------------------------- #
# spectral alignment
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("shape", [(400, 12, 9), (60, 30, 80), (25, 40, 3)], ids=["n>d", "n<d", "n<dx"])
def test_full_rank_spectral_form_is_biased_cka(shape):
    n, dx, dy = shape
    x, y = pair(np.random.default_rng(n + dx), n, dx, dy)
    r = spectral_alignment(x, y, **SYNC)
    want = ref.cka(x, y, "biased")
    assert r.value == pytest.approx(want, rel=RTOL)
    assert r.full_value == pytest.approx(want, rel=RTOL)
    assert r.value == pytest.approx(bigalign.cka(x, y, estimator="biased", **SYNC).value, rel=RTOL)
    assert float(r.contributions.sum()) == pytest.approx(r.value, rel=1e-12)
    assert r.bounds[0] == pytest.approx(want, rel=RTOL) and r.bounds[1] == pytest.approx(want, rel=RTOL)
    # |C| ≤ 1 entrywise and rows/columns of C⊙C sum to ≤ 1 (orthonormal eigenbases)
    c2 = r.overlap**2
    assert c2.max() <= 1 + 1e-9 and c2.sum(axis=1).max() <= 1 + 1e-9 and c2.sum(axis=0).max() <= 1 + 1e-9
    if n <= max(dx, dy):
        assert "x_rank_deficient" in r.flags or "y_rank_deficient" in r.flags


def test_uncentred_spectral_form_is_kernel_alignment(data):
    x, y = data
    r = spectral_alignment(x, y, center=False, **SYNC)
    assert r.value == pytest.approx(ref.kernel_alignment(x, y), rel=RTOL)
    assert r.value == pytest.approx(bigalign.kernel_alignment(x, y, **SYNC).value, rel=RTOL)


def test_spectra_and_overlap_match_n_by_n_eigendecomposition(data):
    x, y = data
    r = spectral_alignment(x, y, **SYNC)
    eta, u = n_by_n_eigs(x)
    mu, v = n_by_n_eigs(y)
    np.testing.assert_allclose(r.eta, eta[: r.rank_x], rtol=1e-9)
    np.testing.assert_allclose(r.mu, mu[: r.rank_y], rtol=1e-9)
    assert r.eta_hat == pytest.approx(r.eta / np.linalg.norm(eta), rel=1e-9)
    C = u[:, : r.rank_x].T @ v[:, : r.rank_y]
    sep = lambda lam: np.all(-np.diff(lam) / lam[:-1] > 1e-3)  # noqa: E731
    assert sep(r.eta) and sep(r.mu)  # well-separated eigenvalues: eigenvectors determined up to sign
    np.testing.assert_allclose(np.abs(r.overlap), np.abs(C), atol=1e-8)
    # the paper's formula, literally: Σ η̂ᵢ μ̂ⱼ Cᵢⱼ² over the n×n eigenpairs
    paper = np.sum(np.outer(eta / np.linalg.norm(eta), mu / np.linalg.norm(mu))[: r.rank_x, : r.rank_y] * C**2)
    assert r.value == pytest.approx(paper, rel=1e-9)


def test_canonical_correlations_mi_coco_hsic_against_direct_computation(data):
    x, y = data
    r = spectral_alignment(x, y, **SYNC)
    rho = cca_whitening(x, y)[: min(x.shape[1], y.shape[1])]
    np.testing.assert_allclose(r.canonical_correlations[: rho.size], rho, rtol=1e-9, atol=1e-12)
    assert np.all(r.canonical_correlations[rho.size :] < 1e-8)  # the rest are zero
    # Gaussian MI two ways: from ρ, and from determinants ½ log(|Σxx||Σyy| / |Σ|)
    assert r.gaussian_mi == pytest.approx(-0.5 * np.sum(np.log(1 - rho**2)), rel=RTOL)
    joint = cov(np.hstack([x, y]))
    logdet = lambda s: np.linalg.slogdet(s)[1]  # noqa: E731
    assert r.gaussian_mi == pytest.approx(0.5 * (logdet(cov(x)) + logdet(cov(y)) - logdet(joint)), rel=1e-9)
    assert r.coco == pytest.approx(np.linalg.norm(cross(x, y), 2), rel=RTOL)
    assert r.hsic == pytest.approx(ref.hsic(x, y, "biased"), rel=RTOL)
    # canonical correlations do not depend on center=
    r2 = spectral_alignment(x, y, center=False, **SYNC)
    np.testing.assert_allclose(r2.canonical_correlations, r.canonical_correlations, rtol=1e-9, atol=1e-12)


def test_ridge_canonical_correlations_and_the_d_greater_than_n_case():
    x, y = pair(np.random.default_rng(12), 40, 30, 25)
    r = spectral_alignment(x, y, **SYNC)  # 30 + 25 > n − 1: some ρ are exactly 1
    assert r.gaussian_mi is None and "canonical_correlation_one" in r.flags
    assert r.gaussian_wasserstein is not None and math.isfinite(r.gaussian_wasserstein)
    rr = spectral_alignment(x, y, ridge=0.1, **SYNC)
    np.testing.assert_allclose(rr.canonical_correlations[:25], cca_whitening(x, y, 0.1), rtol=1e-9)
    assert rr.gaussian_mi is not None and rr.canonical_correlations[0] < 1
    assert "canonical_correlation_one" not in rr.flags


def test_gaussian_wasserstein_is_the_corrected_formula_against_its_definition():
    """W₂²(N(0, Σ_w), N(0, I)) with Σ_w = [[I, R], [Rᵀ, I]] the whitened joint,
    R = Σxx^-1/2 Σxy Σyy^-1/2: by definition tr Σ_w + tr I − 2 tr (Σ_w^1/2) (Gelbrich)."""
    rng = np.random.default_rng(13)
    n, dx, dy = 5000, 4, 3
    z = rng.normal(size=(n, 3))
    x = np.hstack([z, rng.normal(size=(n, 1))]) @ rng.normal(size=(4, 4))
    y = (z * [0.9, 0.5, 0.1]) + rng.normal(size=(n, dy)) * [0.4, 0.8, 1.0]
    r = spectral_alignment(x, y, **SYNC)
    R = inv_sqrt(cov(x)) @ cross(x, y) @ inv_sqrt(cov(y))
    sw = np.block([[np.eye(dx), R], [R.T, np.eye(dy)]])
    w2 = 2 * (dx + dy) - 2 * np.trace(scipy.linalg.sqrtm(sw).real)
    assert r.gaussian_wasserstein == pytest.approx(w2, rel=1e-9)
    rho = r.canonical_correlations
    printed = float(2 * np.sum(1 - np.sqrt(1 - rho**2)))
    assert printed > 1.7 * w2  # the formula as printed is about twice too large (docs/formulas.md)


@pytest.mark.parametrize("center", [True, False])
@pytest.mark.parametrize("shape", [(300, 15, 10), (50, 60, 20)], ids=["n>d", "n<d"])
def test_truncated_bounds_contain_the_full_value(center, shape):
    n, dx, dy = shape
    x, y = pair(np.random.default_rng(dx * dy), n, dx, dy, noise=1.5)
    full = spectral_alignment(x, y, center=center, **SYNC).value
    slack = 1e-12 * full
    for rank in (1, 2, 4, 8, 16):
        ex = spectral_alignment(x, y, rank=rank, center=center, **SYNC)
        assert ex.bounds[0] - slack <= full <= ex.bounds[1] + slack, (rank, ex.bounds, full)
        assert ex.value <= ex.bounds[0] + slack  # the leading terms are part of lo's known blocks
        assert ex.full_value == pytest.approx(full, rel=RTOL)
        for q in (0, 2):
            rd = spectral_alignment(x, y, rank=rank, center=center, method="randomized", n_power_iter=q, n_oversamples=3, **SYNC)
            assert rd.bounds[0] - slack <= full <= rd.bounds[1] + slack, (rank, q, rd.bounds, full)
            assert rd.full_value is None and rd.n_passes == q + 2
            if center:
                lo, hi = rd.coco_bounds
                coco = np.linalg.norm(cross(x, y), 2)
                assert lo * (1 - 1e-12) <= coco <= hi * (1 + 1e-12)


def test_randomized_spectral_alignment_at_full_sketch_is_exact(data):
    """ℓ = d: the sketch spans everything, so the randomized road gives the exact numbers."""
    x, y = data
    ex = spectral_alignment(x, y, rank=5, **SYNC)
    rd = spectral_alignment(x, y, rank=5, method="randomized", n_oversamples=20, **SYNC)
    assert rd.value == pytest.approx(ex.value, rel=1e-9)
    assert rd.bounds[0] == pytest.approx(ex.full_value, rel=1e-9) and rd.bounds[1] == pytest.approx(ex.full_value, rel=1e-9)
    np.testing.assert_allclose(np.abs(rd.overlap), np.abs(ex.overlap), atol=1e-7)


def test_svcca_on_the_randomized_road(data):
    """Randomized road: canonical correlations of the projections on the top-r principal components."""
    x, y = data
    r = 4
    rd = spectral_alignment(x, y, rank=r, method="randomized", n_power_iter=6, **SYNC)
    px = x @ spectrum(x, rank=r, **SYNC).components.T
    py = y @ spectrum(y, rank=r, **SYNC).components.T
    np.testing.assert_allclose(rd.canonical_correlations, cca_whitening(px, py), rtol=1e-6)
    assert "canonical_correlations_in_principal_subspaces" in rd.flags


# --------------------------------------------------------------------------- #
# task alignment and KARE
# --------------------------------------------------------------------------- #


def onehot(labels):
    classes = np.unique(labels)
    return (labels[:, None] == classes[None, :]).astype(float)


@pytest.fixture(scope="module")
def task():
    rng = np.random.default_rng(17)
    x = decaying(rng, 300, 8, 0.8, offset=1.0)
    score = x @ rng.normal(size=8)
    labels = np.digitize(score, np.quantile(score, [0.3, 0.7]))
    target = np.sin(score) + 0.3 * rng.normal(size=300)
    return x, labels, target


@pytest.mark.slow
@pytest.mark.parametrize("center", [True, False])
def test_task_alignment_against_n_by_n(center, task):
    x, labels, _ = task
    t = task_alignment(x, labels, center=center, **SYNC)
    Y = onehot(labels)
    if center:
        assert t.value == pytest.approx(ref.cka(x, Y, "biased"), rel=RTOL)
    else:
        assert t.value == pytest.approx(ref.kernel_alignment(x, Y), rel=RTOL)
    eta, u = n_by_n_eigs(x, center)
    k = t.rank
    Yc = Y - Y.mean(axis=0) if center else Y
    power = np.sum((u[:, :k].T @ Yc) ** 2, axis=1) / x.shape[0]
    np.testing.assert_allclose(t.power, power, rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(t.cumulative_power, np.cumsum(power) / power.sum(), rtol=1e-9)
    assert t.cumulative_power[-1] == pytest.approx(1.0, rel=1e-12)
    # power in span = R² of least squares of Y on x (with an intercept when centred)
    design = np.hstack([x, np.ones((x.shape[0], 1))]) if center else x
    fit = Y - design @ np.linalg.lstsq(design, Y, rcond=None)[0]
    assert t.power_in_span == pytest.approx(1 - np.sum(fit**2) / np.sum(Yc**2), rel=1e-9)
    assert t.classes == (0, 1, 2) and t.target_type == "labels" and t.n_outputs == 3


def test_task_alignment_labels_types_and_regression(task):
    x, labels, target = task
    names = np.array(["cat", "dog", "eel"])[labels]
    a = task_alignment(x, labels, **SYNC)
    b = task_alignment(x, names, **SYNC)
    c = task_alignment(x, labels.astype(float), target_type="labels", **SYNC)
    assert a.value == pytest.approx(b.value, rel=1e-14) == pytest.approx(c.value, rel=1e-14)
    assert b.classes == ("cat", "dog", "eel")
    r = task_alignment(x, target, **SYNC)
    assert r.target_type == "regression" and r.n_outputs == 1
    assert r.value == pytest.approx(ref.cka(x, target[:, None], "biased"), rel=RTOL)


def test_task_alignment_rbf_is_linear_on_the_nystroem_features(task):
    x, labels, _ = task
    t = task_alignment(x, labels, kernel="rbf", n_features=50, **SYNC)
    fmap, _ = sp._nystroem(as_representation(x), "median", 50, 0, "t")
    phi = fmap(ref.as64(x))
    lin = task_alignment(phi, labels, **SYNC)
    assert t.value == pytest.approx(lin.value, rel=1e-9)
    np.testing.assert_allclose(t.cumulative_power, lin.cumulative_power, rtol=1e-8)


def total_variance(phi, center):
    """tr(K/n) for K = ΦΦᵀ (centred: HKH): the unit of the relative ridge, λ = ridge · tr(K/n)."""
    phi = ref.as64(phi)
    phi = phi - phi.mean(axis=0) if center else phi
    return float(np.sum(phi * phi)) / phi.shape[0]


def kare_n_by_n(phi, y, lam, center):
    """The paper: KARE(λ) = [(1/n) yᵀ(K/n + λI)⁻²y] / [(1/n) tr (K/n + λI)⁻¹]², K = ΦΦᵀ as given."""
    phi, y = ref.as64(phi), np.asarray(y, dtype=float).reshape(len(phi), -1)
    n = phi.shape[0]
    k = ref.centred_gram(phi) if center else ref.gram(phi)
    if center:
        y = y - y.mean(axis=0)
    inv = np.linalg.inv(k / n + lam * np.eye(n))
    num = np.trace(y.T @ inv @ inv @ y) / n
    return num / (np.trace(inv) / n) ** 2


@pytest.mark.parametrize("center", [False, True])
def test_kare_against_n_by_n_formula(center, task):
    x, labels, target = task
    ridges = [1e-4, 1e-2, 0.3, 3.0]
    tk = total_variance(x, center)  # the relative ridge's unit: λ = ridge · tr(K/n)
    r = kare(x, target, ridge=[lam / tk for lam in ridges], center=center, **SYNC)
    want = [kare_n_by_n(x, target, lam, center) for lam in ridges]
    np.testing.assert_allclose(r.risk, want, rtol=1e-9)
    assert r.value == r.risk[0] and r.best_ridge in r.ridge
    np.testing.assert_allclose(r.parameters["ridge_absolute"], ridges, rtol=1e-14)
    rl = kare(x, labels, ridge=0.05 / tk, center=center, **SYNC)  # one-hot: summed over outputs
    assert rl.value == pytest.approx(kare_n_by_n(x, onehot(labels), 0.05, center), rel=1e-9)


def test_kare_when_d_exceeds_n_and_for_rbf_features():
    rng = np.random.default_rng(23)
    x = rng.normal(size=(40, 70))
    y = x[:, 0] + 0.1 * rng.normal(size=40)
    r = kare(x, y, ridge=[0.01 / total_variance(x, False), 1.0 / total_variance(x, False)], **SYNC)
    assert "target_in_feature_span" in r.flags  # D ≥ n: y is in the span of the features
    np.testing.assert_allclose(r.risk, [kare_n_by_n(x, y, lam, False) for lam in (0.01, 1.0)], rtol=1e-8)
    x2 = rng.normal(size=(200, 3))
    y2 = np.sin(x2[:, 0]) + 0.1 * rng.normal(size=200)
    fmap, _ = sp._nystroem(as_representation(x2), "median", 40, 0, "t")
    rb = kare(x2, y2, ridge=1e-3 / total_variance(fmap(x2), False), kernel="rbf", n_features=40, **SYNC)
    assert rb.value == pytest.approx(kare_n_by_n(fmap(x2), y2, 1e-3, False), rel=1e-9)


# --------------------------------------------------------------------------- #
# invariance: block sizes, schedulers, a real 2-process cluster
# --------------------------------------------------------------------------- #


N_INV = 503  # prime: ragged last blocks


@pytest.fixture(scope="module")
def inv_data():
    x, y = pair(np.random.default_rng(31), N_INV, 10, 7)
    labels = (x[:, 0] > np.median(x[:, 0])).astype(int) + (y[:, 0] > 0)
    return x.astype(np.float32), y, labels


def _exact_views(x, y, labels, **kw):
    s = spectrum(x, **kw)
    a = spectral_alignment(x, y, rank=4, **kw)
    t = task_alignment(x, labels, **kw)
    k = kare(x, y[:, 0], ridge=[0.01, 1.0], **kw)
    return np.concatenate([s.eigenvalues, [a.value, *a.bounds, a.gaussian_mi, a.coco], t.cumulative_power, [t.value], k.risk])


def _randomized_views(x, y, **kw):
    s = spectrum(x, rank=3, method="randomized", **kw)
    a = spectral_alignment(x, y, rank=3, method="randomized", n_oversamples=2, **kw)
    return np.concatenate([s.eigenvalues, s.residuals, np.abs(s.components).ravel(), [a.value, *a.bounds], a.canonical_correlations, np.abs(a.overlap).ravel()])


def test_block_size_invariance(inv_data):
    x, y, labels = inv_data
    base = _exact_views(x, y, labels, block_size=N_INV, scheduler="sync")
    rbase = _randomized_views(x, y, block_size=N_INV, scheduler="sync")
    for bs in (1, N_INV // 10, N_INV // 4, N_INV // 2):
        got = _exact_views(x, y, labels, block_size=bs, scheduler="sync")
        np.testing.assert_allclose(got, base, rtol=1e-12, atol=0)
        # randomized: the sketch is a fixed function of the data and Ω; blockings differ by rounding
        # of A·Ω (amplified at most by the Ritz-value gaps, measured ≤ 1e-13)
        np.testing.assert_allclose(_randomized_views(x, y, block_size=bs, scheduler="sync"), rbase, rtol=1e-10, atol=1e-12)


def test_store_layers_and_labels_stored_with_the_activations(tmp_path, inv_data):
    x, y, labels = inv_data
    with bigalign.ActivationWriter(tmp_path / "a.zarr", chunk_rows=100, compressors=None) as w:
        w.append({"h": x, "labels": labels.reshape(-1, 1)}, sample_ids=np.arange(N_INV))
    store = bigalign.open_activations(tmp_path / "a.zarr")
    s = spectrum(store["h"], rank=3, method="randomized", **SYNC)
    np.testing.assert_allclose(s.eigenvalues, spectrum(x, rank=3, method="randomized", **SYNC).eigenvalues, rtol=1e-12)
    t = task_alignment(store["h"], store["labels"], **SYNC)
    assert t.value == pytest.approx(task_alignment(x, labels, **SYNC).value, rel=1e-12)


# --------------------------------------------------------------------------- #
# errors, degenerate inputs, results
# --------------------------------------------------------------------------- #


def test_clear_errors(data):
    x, y = data
    with pytest.raises(InvalidInputError, match="'rank' parameter of spectrum must be an integer >= 1"):
        spectrum(x, rank=0)
    with pytest.raises(InvalidInputError, match="rank must be at most the number of features"):
        spectrum(x, rank=100)
    with pytest.raises(InvalidInputError, match="method='randomized' needs rank"):
        spectrum(x, method="randomized")
    with pytest.raises(InvalidInputError, match="'kernel' parameter of spectrum must be one of"):
        spectrum(x, kernel="laplacian")
    with pytest.raises(InvalidInputError, match="'center' parameter"):
        spectral_alignment(x, y, center="yes")
    with pytest.raises(InvalidInputError, match="same number of samples"):
        spectral_alignment(x, y[:-1])
    with pytest.raises(InvalidInputError, match="'ridge' parameter of kare must be a positive number"):
        kare(x, y[:, 0], ridge=0.0)
    with pytest.raises(InvalidInputError, match="same number of samples"):
        task_alignment(x, y[:-3, 0])
    bad = x.copy()
    bad[17, 2] = np.nan
    with pytest.raises(NonFiniteError, match="between rows 17 and 17"):
        spectrum(bad, rank=2, method="randomized", **SYNC)
    with pytest.raises(NonFiniteError, match="rows 17"):
        spectral_alignment(bad, y, **SYNC)


def test_degenerate_inputs_are_reported(data):
    x, y = data
    const = np.ones_like(x) * 3.0
    with pytest.raises(DegenerateInputError, match="x is constant") as e:
        spectrum(const, **SYNC)
    assert e.value.reason == "x_constant"
    with pytest.raises(DegenerateInputError, match="y is constant"):
        spectral_alignment(x, const, **SYNC)
    with pytest.raises(DegenerateInputError, match="single class") as e:
        task_alignment(x, np.zeros(x.shape[0], dtype=int), **SYNC)
    assert e.value.reason == "targets_constant"
    with pytest.raises(DegenerateInputError, match="targets are constant"):
        kare(x, np.full(x.shape[0], 2.0), ridge=1.0, center=True, **SYNC)
    # rank-deficient input: reported, finite, no NaN anywhere
    x2 = np.hstack([x, x[:, :3] * 2.0])
    s = spectrum(x2, **SYNC)
    assert "numerically_rank_deficient" in s.flags and np.all(np.isfinite(s.eigenvalues))
    r = spectral_alignment(x2, y, **SYNC)
    assert "x_rank_deficient" in r.flags and np.all(np.isfinite(r.overlap))
    assert r.value == pytest.approx(ref.cka(x2, y, "biased"), rel=RTOL)


def test_results_serialise_and_plot(data, task, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x, y = data
    xt, labels, target = task
    results = [
        spectrum(x, **SYNC),
        spectrum(x, rank=3, method="randomized", **SYNC),
        spectral_alignment(x, y, **SYNC),
        spectral_alignment(x, y, rank=3, method="randomized", **SYNC),
        spectral_alignment(*pair(np.random.default_rng(1), 30, 20, 20), **SYNC),  # MI undefined (None)
        task_alignment(xt, labels, **SYNC),
        kare(xt, target, ridge=np.logspace(-3, 1, 5), **SYNC),
    ]
    for res in results:
        d = res.to_dict()
        json.dumps(d, allow_nan=False)  # JSON-ready, never NaN
        ax = res.plot()
        assert ax is not None
        plt.close("all")
        with pytest.raises(Exception):
            res.value = 0.0 if hasattr(res, "value") else None  # frozen
        repr(res)
    assert "overlap" in results[2].to_dict(include_matrices=True)
    assert "components" in results[0].to_dict(include_components=True)


def test_docstring_examples(monkeypatch):
    """The examples say ``bigalign.spectrum`` etc.; until the package re-exports them, provide them."""
    import doctest

    for name in sp.__all__:
        if not hasattr(bigalign, name):
            monkeypatch.setattr(bigalign, name, getattr(sp, name), raising=False)
    from bigalign.metrics import _spectral_alignment, _spectrum, _task_alignment

    attempted = 0
    for module in (sp, _spectral_common, _spectrum, _spectral_alignment, _task_alignment):  # the examples sit beside their functions
        out = doctest.testmod(module)
        assert out.failed == 0
        attempted += out.attempted
    assert attempted >= 5
