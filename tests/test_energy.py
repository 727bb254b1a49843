"""dcov_test, partial_dcor and energy_distance against the dcor package."""

from __future__ import annotations

import numpy as np
import pytest

import bigalign
from bigalign.errors import DegenerateInputError, InvalidInputError


@pytest.fixture(scope="module")
def dcor_pkg():
    return pytest.importorskip("dcor")  # compiles numba on first import: once per module


def _naive_dcov2_v(x: np.ndarray, y: np.ndarray) -> float:
    """dCov²ₙ from the double-centred distance matrices (the definition)."""
    def centred(z):
        a = np.sqrt(((z[:, None, :] - z[None, :, :]) ** 2).sum(-1))
        return a - a.mean(0) - a.mean(1)[:, None] + a.mean()

    return float((centred(x) * centred(y)).mean())


def _dist(a, b):
    return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))


def _u_centred(z):
    """Székely & Rizzo's U-centring of the distance matrix (zero diagonal)."""
    a = _dist(z, z)
    n = a.shape[0]
    u = a - a.sum(0)[None, :] / (n - 2) - a.sum(1)[:, None] / (n - 2) + a.sum() / ((n - 1) * (n - 2))
    np.fill_diagonal(u, 0.0)
    return u


def _naive_pdcor(x, y, z):
    """(R_xy − R_xz R_yz)/√((1 − R_xz²)(1 − R_yz²)) with R = ⟨Ã, B̃⟩/√(⟨Ã, Ã⟩⟨B̃, B̃⟩), the U-centred inner product."""
    a, b, c = _u_centred(x), _u_centred(y), _u_centred(z)
    ip = lambda p, q: float((p * q).sum())  # noqa: E731  (the 1/(n(n−3)) factor cancels)
    r = lambda p, q: ip(p, q) / np.sqrt(ip(p, p) * ip(q, q))  # noqa: E731
    rxy, rxz, ryz = r(a, b), r(a, c), r(b, c)
    return (rxy - rxz * ryz) / np.sqrt((1 - rxz**2) * (1 - ryz**2))


def _naive_energy(x, y, unbiased):
    nx, ny = len(x), len(y)
    dxx, dyy = _dist(x, x).sum(), _dist(y, y).sum()
    if unbiased:
        return 2 * _dist(x, y).mean() - dxx / (nx * (nx - 1)) - dyy / (ny * (ny - 1))
    return 2 * _dist(x, y).mean() - dxx / nx**2 - dyy / ny**2


def test_naive_references(rng):
    n = 60
    z = rng.normal(size=(n, 2))
    x, y = z + rng.normal(size=(n, 2)), z**2 + rng.normal(size=(n, 2))
    assert bigalign.partial_dcor(x, y, z).value == pytest.approx(_naive_pdcor(x, y, z), rel=1e-10)
    w = rng.normal(size=(37, 2)) + 0.5
    for unbiased in (False, True):
        est = "unbiased" if unbiased else "biased"
        got = bigalign.energy_distance(x, w, estimator=est, block_size=16).value
        assert got == pytest.approx(_naive_energy(x, w, unbiased), rel=1e-10)
    assert bigalign.dcov_test(x, y, n_permutations=5).value == pytest.approx(n * _naive_dcov2_v(x, y), rel=1e-10)


@pytest.mark.slow
def test_dcov_test_statistic_and_pvalue(rng, dcor_pkg):
    n = 40
    x = rng.normal(size=(n, 3))
    y = x[:, :2] ** 2 + rng.normal(size=(n, 2))
    r = bigalign.dcov_test(x, y, n_permutations=200, seed=5, block_size=11)
    ref = dcor_pkg.independence.distance_covariance_test(x, y, num_resamples=0)
    assert r.value == pytest.approx(ref.statistic, rel=1e-9)
    assert r.value == pytest.approx(n * _naive_dcov2_v(x, y), rel=1e-9)
    # the same permutations as dcor (it permutes x by RandomState(seed): T(π on x) = T(π⁻¹ on y))
    from bigalign.metrics.permutation import dcor_statistic

    B = 200
    rs = np.random.RandomState(7)
    perms = np.array([rs.permutation(n) for _ in range(B)])
    inv = np.argsort(perms, axis=1)
    stat = dcor_statistic(x.astype(float), y.astype(float), "biased", 1024, test=True)
    null = stat(inv)
    p_ours = (np.sum(null > r.value) + 1) / (B + 1)
    p_ref = dcor_pkg.independence.distance_covariance_test(x, y, num_resamples=B, random_state=7).pvalue
    assert p_ours == pytest.approx(p_ref, abs=1e-15)


def test_dcov_test_options(rng):
    x = rng.normal(size=(20, 2))
    with pytest.raises(InvalidInputError):
        bigalign.dcov_test(x, x, null="gamma")
    r = bigalign.dcov_test(x, rng.normal(size=(20, 2)), n_permutations=50)
    assert 0 < r.pvalue <= 1 and r.n_permutations == 50 and r.parameters["statistic"] == "n * dCov²_V"


@pytest.mark.slow
@pytest.mark.parametrize("method", ["exact", "block"])
def test_partial_dcor(rng, dcor_pkg, method):
    n = 300
    z = rng.normal(size=(n, 2))
    x = z + 0.5 * rng.normal(size=(n, 2))
    y = np.c_[z[:, :1] ** 2, z[:, 1:]] + 0.5 * rng.normal(size=(n, 2))
    ref = dcor_pkg.partial_distance_correlation(x, y, z)
    if method == "exact":
        got = bigalign.partial_dcor(x, y, z, method="exact")
        assert got.value == pytest.approx(ref, rel=1e-9, abs=1e-12)
        assert got.terms["r_xy"] == pytest.approx(dcor_pkg.u_distance_correlation_sqr(x, y), rel=1e-9)
    else:
        # blocks of 100 rows: a consistent estimate; its error is the block U-statistics' sampling noise
        # (≈ 0.05 here), so only a loose agreement is asserted
        got = bigalign.partial_dcor(x, y, z, method="block", block_rows=100)
        assert abs(got.value - ref) < 0.2
        assert got.parameters["n_blocks"] == 3


def test_partial_dcor_degenerate(rng):
    z = rng.normal(size=(50, 2))
    with pytest.raises(DegenerateInputError):
        bigalign.partial_dcor(2 * z + 1, rng.normal(size=(50, 2)), z)
    with pytest.raises(InvalidInputError):
        bigalign.partial_dcor(z, z, z, block_rows=10)


@pytest.mark.slow
@pytest.mark.parametrize("nx,ny,block", [(30, 30, None), (25, 47, 16), (60, 9, 7)])
def test_energy_distance(rng, dcor_pkg, nx, ny, block):
    x = rng.normal(size=(nx, 3))
    y = rng.normal(size=(ny, 3)) * 1.5 + 0.4
    got = bigalign.energy_distance(x, y, block_size=block)
    assert got.value == pytest.approx(dcor_pkg.energy_distance(x, y), rel=1e-9)
    u = bigalign.energy_distance(x, y, estimator="unbiased", block_size=block)
    ref_u = dcor_pkg.energy_distance(x, y, estimation_stat="u_statistic")
    assert u.value == pytest.approx(ref_u, rel=1e-9)


def test_energy_distance_properties(rng):
    x = rng.normal(size=(40, 4))
    assert bigalign.energy_distance(x, x).value == pytest.approx(0.0, abs=1e-12)
    y = rng.normal(size=(30, 4)) + 1
    q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    e = bigalign.energy_distance(x, y).value
    assert bigalign.energy_distance(3 * x @ q + 2, 3 * y @ q + 2).value == pytest.approx(3 * e, rel=1e-10)
    with pytest.raises(InvalidInputError):
        bigalign.energy_distance(x, rng.normal(size=(10, 3)))


def test_energy_distance_block_road(rng):
    x = rng.normal(size=(3000, 3))
    y = rng.normal(size=(2000, 3)) * 1.2 + 0.2
    exact = bigalign.energy_distance(x, y, estimator="unbiased").value
    blk = bigalign.energy_distance(x, y, method="block", block_rows=200, seed=1)
    assert blk.method == "block" and blk.parameters["n_blocks"] == 10
    # the block average is unbiased for the population value, as is the full U-statistic; their difference
    # is within a few block standard errors (4 se: a false alarm below 1e-4)
    assert abs(blk.value - exact) < 4 * blk.stderr
    with pytest.raises(InvalidInputError):
        bigalign.energy_distance(x, y, method="block", block_rows=1500)
    with pytest.raises(InvalidInputError):
        bigalign.energy_distance(x, y, block_rows=100)


def test_energy_distance_streams_stores(rng, tmp_path):
    zarr = pytest.importorskip("zarr")
    da = pytest.importorskip("dask.array")
    x = rng.normal(size=(70, 3))
    y = rng.normal(size=(45, 3)) + 0.3
    zx = zarr.open(str(tmp_path / "x.zarr"), mode="w", shape=x.shape, chunks=(16, 3), dtype="f8")
    zx[:] = x
    got = bigalign.energy_distance(zx, da.from_array(y, chunks=10), block_size=32)
    assert got.value == pytest.approx(_naive_energy(x, y, False), rel=1e-10)
