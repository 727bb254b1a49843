"""ci= on dCor's random-projection road and energy distance's block road: exact leave-group-out values.

dCor's projection road leaves out row group g together with direction group g (the K random
directions cut into 20 contiguous groups), so the naive reference recomputes the projection
estimate — the ``dcor`` package's univariate dCov² of every kept direction, on the kept rows, with
the same seeded directions — for every g.  Energy distance's block road leaves out groups of its
random blocks; the reference recomputes every block's U-statistic energy distance with the
``dcor`` package.
"""

from __future__ import annotations

import math

import dcor as dcor_pkg
import numpy as np
import pytest

import bigalign
from bigalign.errors import InvalidInputError
from bigalign.intervals import DEFAULT_CI_GROUPS, jackknife_interval, row_groups
import importlib

dcor_mod = importlib.import_module("bigalign.metrics.dcor")
energy_mod = importlib.import_module("bigalign.metrics.energy")

TOL = 1e-10


def _directions(seed: int, dx: int, dy: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The directions the projection road draws (x: U then U', y: V then V')."""
    rng = np.random.default_rng([seed, dcor_mod._SEED_PROJ])

    def draw(d: int) -> np.ndarray:
        u = rng.standard_normal((d, k))
        return u / np.linalg.norm(u, axis=0, keepdims=True)

    wx = np.concatenate([draw(dx), draw(dx)], axis=1)
    wy = np.concatenate([draw(dy), draw(dy)], axis=1)
    return wx, wy


def _naive_projection(x, y, wx, wy, k, dirs, estimator):
    """(dCov², dVar²(x), dVar²(y)) of the projection road on these rows over the directions ``dirs``."""
    f = dcor_pkg.u_distance_covariance_sqr if estimator == "unbiased" else dcor_pkg.distance_covariance_sqr
    cx, cy = dcor_mod._c(x.shape[1]), dcor_mod._c(y.shape[1])
    px, py = x @ wx, y @ wy
    t = np.array([[f(px[:, j], py[:, j]) * cx * cy, f(px[:, j], px[:, k + j]) * cx * cx, f(py[:, j], py[:, k + j]) * cy * cy]
                  for j in dirs])  # fmt: skip
    return t.mean(axis=0)


@pytest.fixture(scope="module")
def pair():
    rng = np.random.default_rng(21)
    n = 83
    x = rng.normal(size=(n, 4))
    y = np.tanh(x[:, :3] @ rng.normal(size=(3, 3))) + 0.5 * rng.normal(size=(n, 3))
    return x, y


@pytest.mark.parametrize("estimator", ["unbiased", "biased"])
def test_projection_interval_leaves_out_rows_and_directions(pair, estimator):
    x, y = pair
    n, k, seed = x.shape[0], 45, 3
    wx, wy = _directions(seed, x.shape[1], y.shape[1], k)
    rb, db = row_groups(n, DEFAULT_CI_GROUPS), row_groups(k, DEFAULT_CI_GROUPS)
    full = _naive_projection(x, y, wx, wy, k, range(k), estimator)
    loo = []
    for g in range(DEFAULT_CI_GROUPS):
        keep = np.r_[0 : rb[g], rb[g + 1] : n]
        dirs = [j for j in range(k) if not db[g] <= j < db[g + 1]]
        loo.append(_naive_projection(x[keep], y[keep], wx, wy, k, dirs, estimator))
    loo = np.array(loo)
    biased = estimator == "biased"

    r = bigalign.dcor(x, y, method="projection", n_projections=k, seed=seed, estimator=estimator, ci=0.9, block_size=20)
    f = lambda t: t[0] / math.sqrt(t[1] * t[2])  # noqa: E731
    want = jackknife_interval(f(full), np.array([f(t) for t in loo]), 0.9, scale="logit", bias_correct=biased)
    assert r.value == pytest.approx(f(full), rel=TOL)
    assert r.ci == pytest.approx(want.bounds, rel=TOL) and r.ci_level == 0.9
    assert r.parameters["ci_se"] == pytest.approx(want.se, rel=1e-9) and r.parameters["ci_scale"] == want.scale
    assert "directions" in r.parameters["ci_directions"] and ("ci_center" in r.parameters) == biased
    assert r.stderr is not None  # the approximation's own error stays beside it

    c = bigalign.dcov(x, y, method="projection", n_projections=k, seed=seed, estimator=estimator, ci=0.95)
    want = jackknife_interval(full[0], loo[:, 0], 0.95, bias_correct=biased)
    assert c.value == pytest.approx(full[0], rel=TOL) and c.ci == pytest.approx(want.bounds, rel=TOL)


def test_univariate_road_interval_leaves_out_rows(pair):
    x, _ = pair
    u, v = x[:, :1], x[:, 1:2] + 0.5 * x[:, :1] ** 2
    n = u.shape[0]
    rb = row_groups(n, DEFAULT_CI_GROUPS)
    f = lambda a, b: dcor_pkg.u_distance_correlation_sqr(a, b)  # noqa: E731
    loo = [f(u[np.r_[0 : rb[g], rb[g + 1] : n]], v[np.r_[0 : rb[g], rb[g + 1] : n]]) for g in range(DEFAULT_CI_GROUPS)]
    r = bigalign.dcor(u, v, ci=0.95)
    assert r.method == "univariate-exact"
    want = jackknife_interval(f(u, v), np.array(loo), 0.95, scale="logit")
    assert r.value == pytest.approx(f(u, v), rel=1e-9) and r.ci == pytest.approx(want.bounds, rel=1e-9)


def test_projection_interval_needs_forty_directions(pair):
    x, y = pair
    with pytest.raises(InvalidInputError, match="n_projections >= 40"):
        bigalign.dcor(x, y, method="projection", n_projections=10, ci=0.95)


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_energy_block_interval_is_the_jackknife_over_groups_of_blocks(estimator):
    rng = np.random.default_rng(8)
    nx, ny, rows, seed = 420, 370, 8, 5
    x = rng.normal(size=(nx, 3))
    y = 0.7 * rng.normal(size=(ny, 3)) + 0.3
    r = bigalign.energy_distance(x, y, method="block", block_rows=rows, seed=seed, estimator=estimator, ci=0.95)
    # the seeded random blocks of the road, each block's U-statistic energy distance from the dcor package
    m = min(nx, ny) // rows
    prng = np.random.default_rng([seed, energy_mod._SEED_ENERGY])
    px, py = prng.permutation(nx), prng.permutation(ny)
    bx, by = (np.arange(m + 1) * nx) // m, (np.arange(m + 1) * ny) // m
    per_block = np.array([_u_energy(x[np.sort(px[bx[b] : bx[b + 1]])], y[np.sort(py[by[b] : by[b + 1]])]) for b in range(m)])
    gb = row_groups(m, DEFAULT_CI_GROUPS)
    loo = [per_block[np.r_[0 : gb[g], gb[g + 1] : m]].mean() for g in range(DEFAULT_CI_GROUPS)]
    want = jackknife_interval(float(per_block.mean()), np.array(loo), 0.95)
    # the block road forms distances by the GEMM identity (|a|² + |b|² − 2a·b, then √): ~1e-8 relative per
    # distance against the explicit differences here, so 1e-7 (the leave-out means are plain means of the blocks)
    assert r.value == pytest.approx(per_block.mean(), rel=1e-7)
    assert r.ci == pytest.approx(want.bounds, rel=1e-7) and r.parameters["ci_scale"] == "identity"
    assert r.parameters["ci_se"] == pytest.approx(want.se, rel=1e-6)
    assert "groups of the random blocks" in r.parameters["ci_blocks"]
    with pytest.raises(InvalidInputError, match="at least 40 blocks"):
        bigalign.energy_distance(x, y, method="block", block_rows=16, ci=0.95)


def _u_energy(a: np.ndarray, b: np.ndarray) -> float:
    """The U-statistic energy distance (within-sample means over distinct pairs), from the explicit distances."""
    dab = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    daa = np.sqrt(((a[:, None, :] - a[None, :, :]) ** 2).sum(-1))
    dbb = np.sqrt(((b[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    na, nb = len(a), len(b)
    return float(2 * dab.mean() - daa.sum() / (na * (na - 1)) - dbb.sum() / (nb * (nb - 1)))


@pytest.mark.parametrize("metric", ["mutual_knn", "cknna", "lcs_knn"])
def test_knn_sweep_interval_for_every_k_equals_the_measures_own(pair, metric):
    x, y = pair
    ks = [2, 4, 7]
    sweep = bigalign.knn_sweep(x, y, metric=metric, k=ks, ci=0.9)
    own = getattr(bigalign, metric)
    for k in ks:
        r = own(x, y, k=k, ci=0.9)
        assert sweep[k].value == r.value and sweep[k].ci == pytest.approx(r.ci, rel=1e-12) and sweep[k].ci_level == 0.9
    assert bigalign.knn_sweep(x, y, metric=metric, k=ks)[4].ci is None
    s = bigalign.knn_sweep(x, y, k=ks, n_queries=50, seed=1, ci=0.9)
    assert s[7].ci == pytest.approx(bigalign.mutual_knn(x, y, k=7, n_queries=50, seed=1, ci=0.9).ci, rel=1e-12)
