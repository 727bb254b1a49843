"""Distance covariance / correlation: naive references, the HSIC identity, invariance,
the block and projection estimators' statistics, conformance with the ``dcor`` package.

Tolerance policy
----------------
* exact paths vs the naive O(n²) float64 references below: 1e-10 relative.  Both
  routes sum the same O(n²) products in float64; measured differences ≤ 2e-13.
* block sizes / schedulers: 1e-12 relative (only the order of the float64 sums of the
  tiles changes; measured ≤ 1e-15).  The block and projection estimators are
  computed per random block / direction identically under every runner: equal.
* ``dcor`` package: 1e-9, as the issue asks (measured ≤ 2e-13).
* randomised estimators: statistical bounds, each with its reason in a comment.
"""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest

from bigalign._numba.dcov import (
    accumulate_distance_tile,
    accumulate_distance_tile_numpy,
    univariate_terms,
    univariate_terms_numpy,
)
from bigalign._numba.tiles import sqdist
from bigalign.errors import DegenerateInputError, InvalidInputError, NonFiniteError
from bigalign.metrics.dcor import dcor, dcov

REL = 1e-10  # exact vs naive reference (see module docstring)
RTOL = 1e-12  # block sizes and schedulers


# ---------------------------------------------------------------------------
# naive references, written from the definitions (nothing from bigalign)
# ---------------------------------------------------------------------------


def distance_matrix(x: np.ndarray) -> np.ndarray:
    """aᵢⱼ = ‖xᵢ − xⱼ‖ from explicit differences, row by row."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    out = np.empty((len(x), len(x)))
    for i in range(len(x)):
        diff = x - x[i]
        out[i] = np.sqrt(np.einsum("jk,jk->j", diff, diff))
    return out


def double_centred(a: np.ndarray) -> np.ndarray:
    """Aᵢⱼ = aᵢⱼ − āᵢ. − ā.ⱼ + ā.. (Székely et al. 2007)."""
    return a - a.mean(axis=1, keepdims=True) - a.mean(axis=0, keepdims=True) + a.mean()


def u_centred(a: np.ndarray) -> np.ndarray:
    """Ãᵢⱼ = aᵢⱼ − aᵢ./(n−2) − a.ⱼ/(n−2) + a../((n−1)(n−2)) off the diagonal, 0 on it (Székely & Rizzo 2014)."""
    n = a.shape[0]
    out = a - a.sum(1, keepdims=True) / (n - 2) - a.sum(0, keepdims=True) / (n - 2) + a.sum() / ((n - 1) * (n - 2))
    np.fill_diagonal(out, 0.0)
    return out


def ref_dcov2(x, y, estimator: str) -> float:
    a, b = distance_matrix(x), distance_matrix(y)
    n = a.shape[0]
    if estimator == "biased":
        return float((double_centred(a) * double_centred(b)).sum()) / n**2
    return float((u_centred(a) * u_centred(b)).sum()) / (n * (n - 3))


def ref_dcor(x, y, estimator: str) -> float:
    """dCor² of either estimator (as dcor.distance_correlation_sqr / u_distance_correlation_sqr)."""
    return ref_dcov2(x, y, estimator) / math.sqrt(ref_dcov2(x, x, estimator) * ref_dcov2(y, y, estimator))


def ref_dcov(x, y, estimator: str) -> float:
    return ref_dcov2(x, y, estimator)  # dCov² of either estimator


def distance_kernel(x: np.ndarray, x0: np.ndarray) -> np.ndarray:
    """k(x, x') = ½(‖x − x₀‖ + ‖x' − x₀‖ − ‖x − x'‖) (Sejdinovic et al. 2013)."""
    d0 = np.sqrt(((x - x0) ** 2).sum(1))
    return 0.5 * (d0[:, None] + d0[None, :] - distance_matrix(x))


def hsic_unbiased(K: np.ndarray, L: np.ndarray) -> float:
    """Song et al. (2012), literally."""
    n = K.shape[0]
    Kt, Lt = K.copy(), L.copy()
    np.fill_diagonal(Kt, 0.0)
    np.fill_diagonal(Lt, 0.0)
    one = np.ones(n)
    return (float((Kt * Lt).sum()) + (one @ Kt @ one) * (one @ Lt @ one) / ((n - 1) * (n - 2)) - 2 / (n - 2) * (Kt @ one) @ (Lt @ one)) / (n * (n - 3))


def pair(rng, n, dx=5, dy=3, offset=0.0):
    x = rng.normal(size=(n, dx)) + offset
    y = np.tanh(x[:, :dy] - offset) + 0.5 * rng.normal(size=(n, dy)) - offset
    return x, y


@pytest.fixture(scope="module")
def data():
    return pair(np.random.default_rng(7), 151, offset=30.0)  # offset: the GEMM distances must stay exact


# ---------------------------------------------------------------------------
# Numba kernels against their numpy twins
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("diagonal", [True, False])
def test_distance_tile_kernel_matches_numpy_twin(diagonal, rng):
    xi, yi = rng.normal(size=(37, 4)) + 5, rng.normal(size=(37, 2))
    xj, yj = (xi, yi) if diagonal else (rng.normal(size=(23, 4)) + 5, rng.normal(size=(23, 2)))
    xj = xj.copy()
    if not diagonal:
        xj[3] = xi[5] + 1e-9  # a near-duplicate: refined from the differences
    nn = lambda a: np.einsum("ij,ij->i", a, a)  # noqa: E731
    sums = [np.zeros(len(xi)), np.zeros(len(xi)), np.zeros(len(xj)), np.zeros(len(xj))]
    got = accumulate_distance_tile(sqdist(xi, xj, nn(xi), nn(xj)), sqdist(yi, yj, nn(yi), nn(yj)), xi, xj, yi, yj, nn(xi), nn(xj), nn(yi), nn(yj), diagonal, *sums)
    want = accumulate_distance_tile_numpy(xi, xj, yi, yj, diagonal)
    np.testing.assert_allclose(got, want[:3], rtol=1e-12)
    for g, w in zip(sums, want[3:]):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)
    if not diagonal:
        assert sums[2][3] == pytest.approx(accumulate_distance_tile_numpy(xi, xj, yi, yj, False)[5][3], rel=1e-12)


@pytest.mark.parametrize("ties", [False, True])
def test_univariate_kernel_matches_numpy_twin(ties, rng):
    x = rng.normal(size=301)
    y = x**2 + rng.normal(size=301)
    if ties:  # many exact ties in both
        x, y = np.round(x * 2), np.round(y)
    x, y = x - x.mean(), y - y.mean()
    got, want = univariate_terms(x, y), univariate_terms_numpy(x, y)
    assert got[0] == pytest.approx(want[0], rel=1e-12)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got[2], want[2], rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------
# exact paths against the references
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_exact_tiles_equal_reference(estimator, data):
    x, y = data
    r = dcor(x, y, estimator=estimator, method="exact", block_size=40, scheduler="sync")
    assert r.method == "exact-tiles" and r.stderr is None
    assert r.value == pytest.approx(ref_dcor(x, y, estimator), rel=REL)
    assert r.terms["dcov2_xy"] == pytest.approx(ref_dcov2(x, y, estimator), rel=REL)
    assert r.terms["dvar2_x"] == pytest.approx(ref_dcov2(x, x, estimator), rel=REL)
    c = dcov(x, y, estimator=estimator, method="exact", scheduler="sync")
    assert c.value == pytest.approx(ref_dcov(x, y, estimator), rel=REL)


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_univariate_exact_equals_reference(estimator, rng):
    x = np.round(rng.normal(size=(200, 1)) * 3)  # ties
    y = x**2 + rng.normal(size=(200, 1))
    r = dcor(x, y, estimator=estimator)
    assert r.method == "univariate-exact" and r.stderr is None
    assert r.value == pytest.approx(ref_dcor(x, y, estimator), rel=REL)
    p = dcor(x, y, estimator=estimator, method="projection")  # 1-D: the projection is the identity
    assert p.method == "univariate-exact" and p.value == r.value
    t = dcor(x, y, estimator=estimator, method="exact", scheduler="sync")
    assert t.value == pytest.approx(r.value, rel=REL)


def test_dcov2_is_four_hsic_with_the_distance_kernel(data):
    """dCov²ᵤ = 4·HSICᵤ(k, l) and dCov²ₙ = 4·tr(KHLH)/n² with k the distance-induced kernel (any centre x₀)."""
    x, y = data
    n = len(x)
    K, L = distance_kernel(x, x[3]), distance_kernel(y, y[0] + 1.0)
    got_u = dcov(x, y, estimator="unbiased", method="exact", scheduler="sync").value
    assert got_u == pytest.approx(4 * hsic_unbiased(K, L), rel=1e-9)  # K is O(offset): the naive HSIC loses ~1 digit
    H = np.eye(n) - 1.0 / n
    got_b = dcov(x, y, estimator="biased", method="exact", scheduler="sync").value
    assert got_b == pytest.approx(4 * np.trace(K @ H @ L @ H) / n**2, rel=1e-9)


def test_dcor_of_similar_representations(rng):
    x = rng.normal(size=(80, 3))
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    for est in ("biased", "unbiased"):
        assert dcor(x, 2.5 * x @ q + 7, estimator=est).value == pytest.approx(1.0, abs=1e-12)


# ---------------------------------------------------------------------------
# invariance: block sizes and schedulers
# ---------------------------------------------------------------------------

N_INV = 103  # prime: ragged last blocks


@pytest.fixture(scope="module")
def inv_data():
    return pair(np.random.default_rng(3), N_INV, dx=6, dy=4, offset=2.0)


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_exact_block_size_invariance(estimator, inv_data):
    x, y = inv_data
    base = dcor(x, y, estimator=estimator, method="exact", block_size=N_INV, scheduler="sync")
    for bs in (1, N_INV // 10, N_INV // 4, N_INV // 2):
        r = dcor(x, y, estimator=estimator, method="exact", block_size=bs, scheduler="sync")
        assert r.value == pytest.approx(base.value, rel=RTOL)
        for k, v in r.terms.items():
            assert v == pytest.approx(base.terms[k], rel=RTOL)
        assert r.parameters["n_tiles"] == math.ceil(N_INV / bs) * (math.ceil(N_INV / bs) + 1) // 2


def _all_paths(x, y, **kw):
    return {
        "exact": dcor(x, y, method="exact", block_size=30, **kw),
        "exact-biased": dcov(x, y, estimator="biased", method="exact", block_size=30, **kw),
        "block": dcor(x, y, method="block", block_rows=12, memory_per_worker=12 * 8 * 40 * 12, **kw),
        "projection": dcor(x, y, method="projection", n_projections=8, **kw),
    }


def test_schedulers_agree(inv_data):
    x, y = inv_data
    sync = _all_paths(x, y, scheduler="sync")
    threads = _all_paths(x, y, scheduler="threads", num_workers=3)
    for key, r in sync.items():
        assert threads[key].value == pytest.approx(r.value, rel=RTOL), key
        assert threads[key].stderr == r.stderr  # the replicates are computed identically
    assert sync["block"].parameters["n_tasks"] > 1  # several tasks really ran


# ---------------------------------------------------------------------------
# block and projection estimators: statistics
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def medium():
    rng = np.random.default_rng(11)
    x = rng.normal(size=(1200, 8))
    y = np.tanh(x @ rng.normal(size=(8, 5)) / 2) + 0.7 * rng.normal(size=(1200, 5))
    return x, y, dcov(x, y, method="exact").value, dcor(x, y, method="exact").value


def test_block_is_unbiased_for_the_full_u_statistic(medium):
    """E[block U-statistic | data] = the full-sample U-statistic (a U-statistic of a uniformly random
    subset has the full one as its conditional mean).  Over R = 30 seeds, the mean of the block dCov²
    must lie within 4 standard errors of that mean (sd over seeds / √R): a false alarm has
    probability ≈ 6e-5."""
    x, y, exact, _ = medium
    vals = np.array([dcov(x, y, method="block", block_rows=40, seed=s, scheduler="sync").value for s in range(30)])
    assert abs(vals.mean() - exact) <= 4 * vals.std(ddof=1) / math.sqrt(len(vals))


def test_block_stderr_covers_exact(medium):
    """The jackknife SE over blocks estimates the block estimator's total variance around the population
    value, which exceeds its conditional variance around the exact full-sample value (by Var(exact)); so
    |block − exact| ≤ 1.96·SE must hold for at least ~95% of seeds.  With R = 40 seeds, requiring ≥ 34
    (85%) leaves a false-alarm probability below 1% even at exactly nominal coverage."""
    x, y, _, exact = medium
    hits = 0
    for s in range(40):
        r = dcor(x, y, method="block", block_rows=40, seed=s, scheduler="sync")
        assert r.method == "block" and r.stderr > 0 and r.parameters["n_blocks"] == 30
        hits += abs(r.value - exact) <= 1.96 * r.stderr
    assert hits >= 34


def test_projection_is_unbiased_and_its_stderr_honest(medium):
    """Random projections are unbiased for the full-sample dCov² (Huang & Huo): the mean of R = 12 seeded
    runs must be within 4 of its standard errors of the exact value; and the reported SE (jackknife over
    directions) must match the spread between seeds within a factor 2 (the sd of 12 draws is itself
    uncertain by ≈ ±21%, so a factor 2 is > 3 of its standard deviations)."""
    x, y, exact, _ = medium
    rs = [dcov(x, y, method="projection", n_projections=20, seed=s, scheduler="sync") for s in range(12)]
    vals = np.array([r.value for r in rs])
    se = np.array([r.stderr for r in rs])
    assert abs(vals.mean() - exact) <= 4 * math.sqrt(np.mean(se**2) / len(vals))
    assert 0.5 < vals.std(ddof=1) / np.sqrt(np.mean(se**2)) < 2.0
    assert rs[0].method == "projection" and "large in many dimensions" in rs[0].parameters["stderr"]


def test_seeds_reproduce(medium):
    x, y, _, _ = medium
    a = dcor(x, y, method="block", block_rows=100, seed=5)
    b = dcor(x, y, method="block", block_rows=100, seed=5)
    c = dcor(x, y, method="block", block_rows=100, seed=6)
    assert a.value == b.value and a.stderr == b.stderr and a.value != c.value


def test_auto_resolution(monkeypatch, rng):
    mod = importlib.import_module("bigalign.metrics.dcor")  # the module (bigalign.metrics.dcor may be the function)

    x, y = pair(rng, 60)
    assert dcor(x, y).method == "exact-tiles"
    assert "exact tiles" in dcor(x, y).parameters["method_reason"]
    monkeypatch.setattr(mod, "EXACT_MAX_N", 50)
    monkeypatch.setattr(mod, "DEFAULT_BLOCK", 20)
    r = dcor(x, y)
    assert r.method == "block" and r.stderr is not None and r.parameters["block_rows"] == 20
    assert dcor(x[:, :1], y[:, :1]).method == "univariate-exact"


def test_block_size_is_only_chunking_on_the_block_road(medium):
    """block_size groups the random blocks into tasks; block_rows alone sets the statistic."""
    x, y, _, _ = medium
    base = dcor(x, y, method="block", block_rows=100, seed=2, scheduler="sync")
    for bs in (100, 250, 1200):
        r = dcor(x, y, method="block", block_rows=100, block_size=bs, seed=2, scheduler="sync")
        assert r.value == pytest.approx(base.value, rel=RTOL) and r.stderr == pytest.approx(base.stderr, rel=RTOL)
        assert r.parameters["blocks_per_task"] == max(1, bs // 100) and r.parameters["block_rows"] == 100


def test_biased_negative_block_estimate_is_reported(rng):
    """Near independence a block estimate of dCor² (bias-corrected U-statistics) can be negative: with the
    biased estimator it is reported signed and flagged, like the unbiased one (no square root is taken)."""
    x, y = rng.normal(size=(400, 3)), rng.normal(size=(400, 3))
    for seed in range(40):
        u = dcor(x, y, method="block", block_rows=20, seed=seed, scheduler="sync")
        if u.value < 0:
            break
    else:
        pytest.skip("no negative block estimate among 40 seeds")
    b = dcor(x, y, estimator="biased", method="block", block_rows=20, seed=seed, scheduler="sync")
    assert b.value == pytest.approx(u.value, rel=1e-12) and b.value < 0
    assert "negative_unbiased_estimate" in b.flags and b.stderr is not None and b.stderr > 0
    c = dcov(x, y, estimator="biased", method="block", block_rows=20, seed=seed, scheduler="sync")
    assert c.value < 0 and "negative_unbiased_estimate" in c.flags


def test_biased_block_estimand_is_stated(medium):
    x, y, _, _ = medium
    r = dcor(x, y, estimator="biased", method="block", block_rows=100)
    assert "population dCor" in r.parameters["estimand"]
    # both estimators' block roads average the same bias-corrected block U-statistics: the same dCor²
    assert r.value == pytest.approx(dcor(x, y, method="block", block_rows=100).value, rel=1e-12)


# ---------------------------------------------------------------------------
# degenerate and bad input
# ---------------------------------------------------------------------------


def test_constant_input(rng):
    x = rng.normal(size=(30, 3))
    c = np.ones((30, 2))
    with pytest.raises(DegenerateInputError, match="y is constant") as e:
        dcor(x, c)
    assert e.value.reason == "y_constant"
    r = dcov(x, c)
    assert r.value == 0.0 and "y_constant" in r.flags


def test_equidistant_rows_make_unbiased_dcor_undefined(rng):
    """One-hot rows are all √2 apart: their U-centred distance matrix is 0, so dVar²ᵤ = 0 (up to rounding)."""
    x = np.eye(20)
    y = rng.normal(size=(20, 2))
    with pytest.raises(DegenerateInputError, match="equidistant"):
        dcor(x, y)
    assert dcor(x, y, estimator="biased").value >= 0  # the V-statistic is defined


def test_bad_input_messages(rng):
    x, y = pair(rng, 40)
    with pytest.raises(InvalidInputError, match="at least 4 samples"):
        dcor(x[:3], y[:3])
    with pytest.raises(InvalidInputError, match="'method' parameter of dcor"):
        dcor(x, y, method="fast")
    with pytest.raises(InvalidInputError, match="'estimator' parameter"):
        dcov(x, y, estimator="u")
    with pytest.raises(InvalidInputError, match="n_projections applies to method='projection'"):
        dcor(x, y, n_projections=10)
    with pytest.raises(InvalidInputError, match="at least 2 random blocks"):
        dcor(x, y, method="block", block_rows=30)
    with pytest.raises(InvalidInputError, match="'seed' parameter"):
        dcor(x, y, seed=-1)
    for method in ("auto", "exact", "projection"):  # the statistical block size belongs to the block road only
        with pytest.raises(InvalidInputError, match=r"block_rows is the random block size of method='block'.*Drop block_rows"):
            dcov(x, y, method=method, block_rows=10)
    with pytest.raises(InvalidInputError, match="at least 4 rows"):
        dcor(x, y, method="block", block_rows=3)
    with pytest.raises(InvalidInputError, match="same number of samples"):
        dcor(x, y[:-1])
    bad = x.copy()
    bad[17, 1] = np.nan
    with pytest.raises(NonFiniteError, match="between rows 17 and 17"):
        dcor(bad, y, method="exact")
    with pytest.raises(NonFiniteError, match=r"row\(s\) 17\b"):  # a random block names the real row
        dcor(bad, y, method="block", block_rows=10)


def test_result_is_json_ready(rng):
    import json

    x, y = pair(rng, 50)
    json.dumps(dcor(x, y, method="block", block_rows=10).to_dict())
    json.dumps(dcov(x, y).to_dict())


# ---------------------------------------------------------------------------
# conformance with the dcor package (test-only dependency; its first import compiles ~40 s)
# ---------------------------------------------------------------------------


@pytest.mark.slow
def test_conformance_with_dcor_package(rng):
    dcor_pkg = pytest.importorskip("dcor")
    for n, dx, dy in ((60, 4, 3), (200, 1, 1), (150, 12, 1)):
        x, y = pair(rng, n, dx, dy)
        for method in ("exact", "auto"):
            assert dcor(x, y, estimator="biased", method=method).value == pytest.approx(dcor_pkg.distance_correlation_sqr(x, y), rel=1e-9)
            assert dcor(x, y, estimator="unbiased", method=method).value == pytest.approx(dcor_pkg.u_distance_correlation_sqr(x, y), rel=1e-9)
            assert dcov(x, y, estimator="biased", method=method).value == pytest.approx(dcor_pkg.distance_covariance_sqr(x, y), rel=1e-9)
            assert dcov(x, y, estimator="unbiased", method=method).value == pytest.approx(dcor_pkg.u_distance_covariance_sqr(x, y), rel=1e-9)


# ---------------------------------------------------------------------------
# input kinds and docstring examples
# ---------------------------------------------------------------------------


def test_dask_and_zarr_inputs_give_the_numpy_answer(tmp_path, inv_data):
    """Every path reads the same rows from irregular dask chunks and a chunked zarr array
    (the block method gathers random rows with ``take``)."""
    da = pytest.importorskip("dask.array")
    import zarr

    x, y = inv_data
    zx = zarr.create_array(store=str(tmp_path / "x.zarr"), shape=x.shape, chunks=(17, x.shape[1]), dtype="f8")
    zx[:] = x
    dy = da.from_array(y, chunks=((7, 40, 56), (4,)))
    for kw in ({"method": "exact", "block_size": 30}, {"method": "block", "block_rows": 12}, {"method": "projection", "n_projections": 4}):
        want = dcor(x, y, scheduler="sync", **kw)
        got = dcor(zx, dy, scheduler="threads", **kw)
        assert got.value == pytest.approx(want.value, rel=RTOL), kw


def test_docstring_examples(monkeypatch):
    import doctest

    import bigalign
    mod = importlib.import_module("bigalign.metrics.dcor")  # the module (bigalign.metrics.dcor may be the function)

    for name in ("dcor", "dcov"):  # until bigalign/__init__.py exports them
        if not hasattr(bigalign, name):
            monkeypatch.setattr(bigalign, name, getattr(mod, name), raising=False)
    result = doctest.testmod(mod)
    assert result.attempted > 0 and result.failed == 0


def test_checkpoint_resumes_block_and_exact_passes(tmp_path, inv_data):
    """The block method's task token is a content identity (not a per-call id), so a rerun under the
    same checkpoint loads every part instead of recomputing it, and gives the identical value."""
    from bigalign.checkpoint import checkpoint

    x, y = inv_data
    for kw in ({"method": "block", "block_rows": 12}, {"method": "exact", "block_size": 40}):
        with checkpoint(tmp_path / kw["method"], keep=True) as first:
            a = dcor(x, y, scheduler="sync", **kw)
        with checkpoint(tmp_path / kw["method"]) as second:
            b = dcor(x, y, scheduler="sync", **kw)
        assert a.value == b.value
        assert first.computed > 0 and second.loaded == first.computed and second.computed == 0, kw
