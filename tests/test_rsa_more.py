"""RSA's Kendall τ_a comparison and correlation distance against naive references."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.spatial.distance import pdist

import bigalign
from bigalign.errors import InvalidInputError


def _tau_a_naive(u: np.ndarray, v: np.ndarray) -> float:
    """Σ_{a<b} sign(u_a − u_b)·sign(v_a − v_b) / (N(N−1)/2), the definition."""
    N = u.size
    s = 0.0
    for a, b in itertools.combinations(range(N), 2):
        s += np.sign(u[a] - u[b]) * np.sign(v[a] - v[b])
    return s / (N * (N - 1) / 2)


def _corr_distances(x: np.ndarray) -> np.ndarray:
    """1 − Pearson r between every pair of rows (patterns over features), condensed order."""
    n = x.shape[0]
    out = []
    for i in range(n):
        for j in range(i + 1, n):
            out.append(1.0 - np.corrcoef(x[i], x[j])[0, 1])
    return np.array(out)


def test_kendall_tau_a_matches_definition(rng):
    x = rng.normal(size=(18, 4))
    y = x[:, :2] @ rng.normal(size=(2, 3)) + rng.normal(size=(18, 3))
    got = bigalign.rsa(x, y, compare="kendall")
    assert got.method == "exact-in-memory" and got.estimator == "kendall"
    assert got.value == pytest.approx(_tau_a_naive(pdist(x), pdist(y)), rel=1e-12, abs=1e-14)


def test_kendall_tau_a_with_ties(rng):
    # integer-valued rows: many tied distances, where τ_a differs from scipy's τ_b
    x = rng.integers(0, 3, size=(15, 2)).astype(float)
    y = rng.integers(0, 3, size=(15, 2)).astype(float)
    ref = _tau_a_naive(pdist(x, "cityblock"), pdist(y, "cityblock"))
    from bigalign.metrics.rsa import tau_a

    assert tau_a(pdist(x, "cityblock"), pdist(y, "cityblock")) == pytest.approx(ref, rel=1e-12, abs=1e-14)
    got = bigalign.rsa(x, y, compare="kendall", distance="sqeuclidean")
    assert got.value == pytest.approx(_tau_a_naive(pdist(x, "sqeuclidean"), pdist(y, "sqeuclidean")), rel=1e-12, abs=1e-14)


def test_kendall_sampled_has_interval(rng):
    x = rng.normal(size=(80, 3))
    y = x + rng.normal(size=(80, 3))
    r = bigalign.rsa(x, y, compare="kendall", method="sampled", n_pairs=2000, seed=1)
    exact = bigalign.rsa(x, y, compare="kendall").value
    assert r.ci[0] < r.value < r.ci[1]
    assert abs(r.value - exact) < 5 * r.stderr  # the jackknife se bounds the sampling error (5 sd: ~1e-6 false alarm)


@pytest.mark.parametrize("compare", ["pearson", "spearman", "kendall"])
def test_correlation_distance(rng, compare):
    x = rng.normal(size=(25, 6)) + rng.normal(size=(25, 1)) * 3  # row offsets: correlation ignores them
    y = x[:, :4] + 0.5 * rng.normal(size=(25, 4))
    dx, dy = _corr_distances(x), _corr_distances(y)
    from scipy.stats import pearsonr, spearmanr

    ref = {"pearson": lambda: pearsonr(dx, dy)[0], "spearman": lambda: spearmanr(dx, dy)[0], "kendall": lambda: _tau_a_naive(dx, dy)}[compare]()
    got = bigalign.rsa(x, y, distance="correlation", compare=compare, block_size=7)
    assert got.value == pytest.approx(ref, rel=1e-10)
    # scipy's own correlation distance agrees
    assert np.allclose(pdist(x, "correlation"), dx, atol=1e-12)


def test_correlation_distance_sampled_and_invariance(rng):
    x = rng.normal(size=(60, 5))
    y = x + rng.normal(size=(60, 5))
    exact = bigalign.rsa(x, y, distance="correlation").value
    # per-row affine maps (a·xᵢ + b, a > 0) leave the correlation distance unchanged
    a = rng.uniform(0.5, 2, size=(60, 1))
    b = rng.normal(size=(60, 1))
    assert bigalign.rsa(a * x + b, y, distance="correlation").value == pytest.approx(exact, rel=1e-10)
    s = bigalign.rsa(x, y, distance="correlation", method="sampled", n_pairs=5000)
    assert abs(s.value - exact) < 5 * s.stderr


def test_correlation_distance_constant_row(rng):
    x = rng.normal(size=(10, 3))
    x[4] = 2.0
    with pytest.raises(InvalidInputError, match="row 4"):
        bigalign.rsa(x, rng.normal(size=(10, 3)), distance="correlation")
