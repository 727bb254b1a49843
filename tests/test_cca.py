"""SVCCA and PWCCA against direct numpy implementations of the published recipes."""

from __future__ import annotations

import numpy as np
import pytest

import bigalign
from bigalign.errors import DegenerateInputError, InvalidInputError
from bigalign.options import EngineOptions


def _cca(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Canonical correlations by QR (Björck & Golub): (ρ, orthonormal basis of a, left singular vectors)."""
    qa, _ = np.linalg.qr(a - a.mean(0))
    qb, _ = np.linalg.qr(b - b.mean(0))
    u, s, _ = np.linalg.svd(qa.T @ qb)
    return s, qa, u


def _svcca_ref(x: np.ndarray, y: np.ndarray, keep: float | int) -> float:
    """Raghu et al. 2017: SVD of the centred data, keep the top directions, CCA, mean ρ."""

    def reduce(a: np.ndarray) -> np.ndarray:
        ac = a - a.mean(0)
        u, s, _ = np.linalg.svd(ac, full_matrices=False)
        if isinstance(keep, int):
            k = keep
        else:
            var = s**2 / np.sum(s**2)
            k = int(np.searchsorted(np.cumsum(var), keep) + 1)
        return u[:, :k] * s[:k]

    rho, _, _ = _cca(reduce(x), reduce(y))
    return float(rho.mean())


def _pwcca_ref(x: np.ndarray, y: np.ndarray) -> float:
    """Morcos et al. 2018: αᵢ = Σⱼ |⟨hᵢ, xⱼ⟩| over the canonical variates hᵢ of x; Σαρ/Σα."""
    rho, qx, u = _cca(x, y)
    r = rho.size
    h = qx @ u[:, :r]  # unit-norm canonical variates of x (n × r)
    xc = x - x.mean(0)
    alpha = np.abs(h.T @ xc).sum(axis=1)
    return float(np.sum(alpha * rho) / alpha.sum())


def _data(rng, n=400, dx=12, dy=9):
    z = rng.normal(size=(n, 4))
    x = z @ rng.normal(size=(4, dx)) + 0.7 * rng.normal(size=(n, dx)) * rng.uniform(0.2, 2, size=dx) + 3.0
    y = z @ rng.normal(size=(4, dy)) + rng.normal(size=(n, dy))
    return x, y


@pytest.mark.parametrize("keep", [0.99, 0.9, 5])
def test_svcca_matches_recipe(rng, keep):
    x, y = _data(rng)
    kw = {"n_components": keep} if isinstance(keep, int) else {"variance_fraction": keep}
    got = bigalign.svcca(x, y, block_size=97, **kw)
    assert got.value == pytest.approx(_svcca_ref(x, y, keep), rel=1e-9)
    assert got.metric == "svcca" and got.method == "exact-streaming"


def test_svcca_default_is_99_percent(rng):
    x, y = _data(rng)
    assert bigalign.svcca(x, y).value == pytest.approx(_svcca_ref(x, y, 0.99), rel=1e-9)
    assert bigalign.svcca(x, y).parameters["variance_fraction"] == 0.99


def test_svcca_randomized_close_to_exact(rng):
    # a low-rank signal plus small noise: the leading 4-dimensional principal subspaces are well separated
    # (eigengap ≫ noise), so 2 power iterations recover them to ~1e-6; 1e-4 leaves room for rounding and seeds
    n = 600
    z = rng.normal(size=(n, 4)) * np.array([5.0, 4.0, 3.0, 2.0])
    x = z @ np.linalg.qr(rng.normal(size=(40, 4)))[0].T + 0.01 * rng.normal(size=(n, 40))
    y = z @ np.linalg.qr(rng.normal(size=(30, 4)))[0].T + 0.01 * rng.normal(size=(n, 30))
    ex = bigalign.svcca(x, y, n_components=4, method="exact").value
    rd = bigalign.svcca(x, y, n_components=4, method="randomized", seed=3)
    assert rd.method == "randomized"
    assert rd.value == pytest.approx(ex, abs=1e-4)


def test_pwcca_matches_recipe(rng):
    x, y = _data(rng)
    got = bigalign.pwcca(x, y, block_size=61)
    assert got.value == pytest.approx(_pwcca_ref(x, y), rel=1e-9)
    gy = bigalign.pwcca(x, y, weights="y")
    assert gy.value == pytest.approx(_pwcca_ref(y, x), rel=1e-9)
    rho, _, _ = _cca(x, y)
    assert got.terms["rho_mean"] == pytest.approx(rho.mean(), rel=1e-9)


def test_invariances(rng):
    x, y = _data(rng)
    a = rng.normal(size=(9, 9))
    q, _ = np.linalg.qr(rng.normal(size=(12, 12)))
    base = bigalign.pwcca(x, y).value
    perm = rng.permutation(12) # the L1 weights are invariant to permuting and flipping x's features, not to rotations
    signs = rng.choice([-1.0, 1.0], size=12)
    assert bigalign.pwcca(3 * x[:, perm] * signs + 1, y @ a).value == pytest.approx(base, rel=1e-8)
    assert abs(bigalign.pwcca(x @ q, y).value - base) > 1e-6
    s = bigalign.svcca(x, y).value
    assert bigalign.svcca(2 * x @ q, 5 * y - 1).value == pytest.approx(s, rel=1e-8)


def test_rank_deficient_and_errors(rng):
    x, y = _data(rng, n=50, dx=60, dy=5)
    r = bigalign.pwcca(x, y)
    assert "x_rank_deficient" in r.flags and "canonical_correlation_one" in r.flags
    with pytest.raises(DegenerateInputError):
        bigalign.svcca(np.ones((30, 3)), rng.normal(size=(30, 2)))
    with pytest.raises(InvalidInputError):
        bigalign.svcca(x, y, n_components=3, variance_fraction=0.9)
    with pytest.raises(InvalidInputError):
        bigalign.svcca(x, y, seed=1)  # randomized-only option on the exact road
    with pytest.raises(InvalidInputError):
        bigalign.svcca(x, y, method="randomized")  # needs n_components
    with pytest.raises(InvalidInputError):
        bigalign.pwcca(x, y, weights="z")


def test_from_moments_hooks(rng):
    """The (m, i, j, estimator, parameters) hooks compare_layers uses give the façades' values."""
    from bigalign.metrics._common import linear_moments
    from bigalign.metrics.cca import pwcca_from_moments, svcca_from_moments
    from bigalign.metrics.procrustes import procrustes_angular_from_moments, procrustes_distance_from_moments

    x, y = _data(rng)
    m, _ = linear_moments(x, y, EngineOptions())
    assert svcca_from_moments(m, 0, 1, "biased", {}).value == pytest.approx(bigalign.svcca(x, y).value, rel=1e-12)
    assert pwcca_from_moments(m, 0, 1, "biased", {}).value == pytest.approx(bigalign.pwcca(x, y).value, rel=1e-12)
    assert pwcca_from_moments(m, 1, 0, "biased", {}).value == pytest.approx(bigalign.pwcca(y, x).value, rel=1e-12)
    assert procrustes_distance_from_moments(m, 0, 1, "biased", {}).value == pytest.approx(bigalign.procrustes(x, y).value, rel=1e-12)
    assert procrustes_angular_from_moments(m, 1, 0, "biased", {}).value == pytest.approx(
        bigalign.procrustes(x, y, angular=True).value, rel=1e-12
    )
