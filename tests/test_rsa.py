"""RSA: naive references, invariance across blocks and schedulers, the sampled estimator's interval.

Tolerance policy
----------------
* exact paths vs the naive O(n²) float64 reference: 1e-10 relative (measured ≤ 1e-13;
  the streamed cosine path differences Gram sums, ≈ 1e-13 on offset data).
* block sizes / schedulers: 1e-12 (tile moments merged exactly with Chan's update;
  the streamed paths merge sums; measured ≤ 1e-15).
* sampled pairs: coverage of the 95% interval, a binomial bound (comment in the test).
"""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest

from bigalign._numba.dcov import DISTANCE_CODES, finish_distances, finish_distances_numpy, pair_moments, pair_moments_numpy
from bigalign._numba.tiles import sqdist
from bigalign.errors import DegenerateInputError, InvalidInputError, NonFiniteError
from bigalign.metrics.rsa import PairMoments, rsa, sample_pairs

REL = 1e-10
RTOL = 1e-12


# ---------------------------------------------------------------------------
# naive references (nothing from bigalign)
# ---------------------------------------------------------------------------


def ref_distances(x: np.ndarray, distance: str) -> np.ndarray:
    """The upper triangle (i < j, row by row) of the distance matrix, from explicit differences."""
    x = np.asarray(x, dtype=np.float64)
    if distance == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    out = []
    for i in range(len(x)):
        diff = x[i + 1 :] - x[i]
        d2 = np.einsum("jk,jk->j", diff, diff)
        out.append({"euclidean": np.sqrt(d2), "sqeuclidean": d2, "cosine": 1.0 - x[i + 1 :] @ x[i]}[distance])
    return np.concatenate(out)


def pearson(u: np.ndarray, v: np.ndarray) -> float:
    u, v = u - u.mean(), v - v.mean()
    return float(u @ v / math.sqrt((u @ u) * (v @ v)))


def mid_ranks(v: np.ndarray) -> np.ndarray:
    """Ranks 1..N, tied values sharing the mean of their ranks."""
    order = np.argsort(v, kind="stable")
    s = v[order]
    ranks = np.empty(len(v))
    i = 0
    while i < len(v):
        j = i
        while j + 1 < len(v) and s[j + 1] == s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def ref_rsa(x, y, distance, compare):
    dx, dy = ref_distances(x, distance), ref_distances(y, distance)
    if compare == "spearman":
        dx, dy = mid_ranks(dx), mid_ranks(dy)
    return pearson(dx, dy)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(130, 6)) + 40.0  # a large offset: GEMM distances must stay exact
    y = np.tanh((x - 40.0) @ rng.normal(size=(6, 4))) + 0.4 * rng.normal(size=(130, 4)) - 9.0
    return x, y


# ---------------------------------------------------------------------------
# kernels against numpy twins
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("distance", ["euclidean", "sqeuclidean", "cosine"])
def test_finish_distances_matches_numpy_twin(distance, rng):
    a, b = rng.normal(size=(20, 5)) + 3, rng.normal(size=(15, 5)) + 3
    b[4] = a[2] + 1e-10  # near-duplicate: refined
    if distance == "cosine":
        a, b = a / np.linalg.norm(a, axis=1, keepdims=True), b / np.linalg.norm(b, axis=1, keepdims=True)
    na, nb = np.einsum("ij,ij->i", a, a), np.einsum("ij,ij->i", b, b)
    d = sqdist(a, b, na, nb)
    code = DISTANCE_CODES[distance]
    finish_distances(d, a, b, na, nb, code)
    np.testing.assert_allclose(d, finish_distances_numpy(a, b, code), rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("upper", [True, False])
def test_pair_moments_matches_numpy_twin_and_merges_exactly(upper, rng):
    dx, dy = rng.normal(size=(30, 30)) + 100, rng.normal(size=(30, 30))
    np.testing.assert_allclose(pair_moments(dx, dy, upper), pair_moments_numpy(dx, dy, upper), rtol=1e-12)
    # Chan's merge of two halves equals the one-shot moments
    a = PairMoments(*pair_moments(dx[:, :11], dy[:, :11], False))
    b = PairMoments(*pair_moments(dx[:, 11:], dy[:, 11:], False))
    whole = pair_moments(dx, dy, False)
    np.testing.assert_allclose(
        [getattr(a.merge(b), f) for f in ("count", "mx", "my", "m2x", "m2y", "cxy")], whole, rtol=1e-12
    )


# ---------------------------------------------------------------------------
# exact paths against the reference
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("distance", ["euclidean", "sqeuclidean", "cosine"])
@pytest.mark.parametrize("compare", ["pearson", "spearman"])
def test_exact_equals_reference(distance, compare, data):
    x, y = data
    r = rsa(x, y, distance=distance, compare=compare, block_size=37, scheduler="sync")
    want = ref_rsa(x, y, distance, compare)
    assert r.value == pytest.approx(want, rel=REL)
    expected_method = "exact-in-memory" if compare == "spearman" else ("exact-tiles" if distance == "euclidean" else "exact-streaming")
    assert r.method == expected_method and r.stderr is None
    assert r.terms["n_pairs"] == 130 * 129 / 2


def test_reference_agrees_with_scipy(data):
    """The hand-written reference is itself checked against scipy (pdist, spearmanr)."""
    from scipy.spatial.distance import pdist
    from scipy.stats import spearmanr

    x, y = data
    np.testing.assert_allclose(ref_distances(x, "euclidean"), pdist(x), rtol=1e-12)
    np.testing.assert_allclose(ref_distances(x, "cosine"), pdist(x, "cosine"), rtol=1e-9, atol=1e-15)
    assert ref_rsa(x, y, "euclidean", "spearman") == pytest.approx(spearmanr(pdist(x), pdist(y)).statistic, rel=1e-12)


def test_spearman_with_ties():
    """Integer points: many exactly tied distances (exact in float64 by any route), ranked by mid-ranks;
    exact and sampled paths must see the same ties.  (Cosine distances of different pairs that are
    equal in exact arithmetic can round differently by any route, so ties are tested where they are exact.)"""
    rng = np.random.default_rng(2)
    x = rng.integers(0, 3, size=(40, 2)).astype(float) + 1000.0  # an offset: refined, still exact
    y = x + rng.integers(0, 2, size=(40, 2))
    for distance in ("euclidean", "sqeuclidean"):
        want = ref_rsa(x, y, distance, "spearman")
        assert rsa(x, y, distance=distance, compare="spearman").value == pytest.approx(want, rel=REL)
    assert len(np.unique(ref_distances(x, "euclidean"))) < 10  # the data really are tied


def test_rsa_of_a_rotation_is_one(rng):
    x = rng.normal(size=(60, 5))
    q, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    for distance in ("euclidean", "sqeuclidean", "cosine"):
        assert rsa(x, 3 * x @ q, distance=distance).value == pytest.approx(1.0, abs=1e-12)


# ---------------------------------------------------------------------------
# invariance
# ---------------------------------------------------------------------------

N_INV = 101


@pytest.fixture(scope="module")
def inv_data():
    rng = np.random.default_rng(8)
    x = rng.normal(size=(N_INV, 5)) + 1.0
    return x, np.abs(x @ rng.normal(size=(5, 3))) + 0.3 * rng.normal(size=(N_INV, 3))


@pytest.mark.parametrize("distance", ["euclidean", "sqeuclidean", "cosine"])
def test_block_size_invariance(distance, inv_data):
    x, y = inv_data
    base = rsa(x, y, distance=distance, block_size=N_INV, scheduler="sync").value
    for bs in (1, N_INV // 10, N_INV // 4, N_INV // 2):
        assert rsa(x, y, distance=distance, block_size=bs, scheduler="sync").value == pytest.approx(base, rel=RTOL)


def _paths(x, y, **kw):
    return {
        "tiles": rsa(x, y, block_size=25, **kw),
        "sqeuclidean": rsa(x, y, distance="sqeuclidean", block_size=25, **kw),
        "cosine": rsa(x, y, distance="cosine", block_size=25, **kw),
    }


def test_schedulers_agree(inv_data):
    x, y = inv_data
    sync, threads = _paths(x, y, scheduler="sync"), _paths(x, y, scheduler="threads", num_workers=3)
    for key, r in sync.items():
        assert threads[key].value == pytest.approx(r.value, rel=RTOL), key


# ---------------------------------------------------------------------------
# sampled pairs
# ---------------------------------------------------------------------------


def test_pair_sampling_is_uniform():
    """Each of the N = 10 pairs of n = 5 should get m/N draws: χ² with 9 df, 99.9% quantile 27.9."""
    i, j = sample_pairs(5, 20_000, 0)
    assert np.all(i < j)
    counts = np.bincount(i * 5 + j, minlength=25)[[a * 5 + b for a in range(5) for b in range(a + 1, 5)]]
    expected = 20_000 / 10
    assert ((counts - expected) ** 2 / expected).sum() < 27.9


@pytest.mark.parametrize("compare", ["spearman", "pearson"])
def test_sampled_interval_covers_at_nominal_rate(compare):
    """R = 150 seeded sampled estimates (1,000 pairs each) of the full RSA over n = 150 samples: the
    95% interval must cover the exact value in [0.89, 0.99] of the runs.  Binomial sd of the coverage
    at 0.95 is 0.018, so the band is ≥ 2.2 sd below and 2.2 sd above nominal (a false alarm < 3%
    per test; the jackknife's t interval is slightly conservative, measured ≈ 0.95–0.97)."""
    rng = np.random.default_rng(13)
    x = rng.normal(size=(150, 6))
    y = np.tanh(x @ rng.normal(size=(6, 4))) + 0.6 * rng.normal(size=(150, 4))
    exact = rsa(x, y, compare=compare, method="exact").value
    hits, zs = 0, []
    for s in range(150):
        r = rsa(x, y, compare=compare, method="sampled", n_pairs=1000, seed=s)
        lo, hi = r.ci
        hits += lo <= exact <= hi
        zs.append((r.value - exact) / r.stderr)
    assert 0.89 * 150 <= hits <= 0.99 * 150
    assert abs(np.mean(zs)) < 0.35  # no bias beyond 4.3 standard errors of the mean z (sd 1/√150 = 0.082)


def test_sampled_result_says_so(inv_data):
    x, y = inv_data
    r = rsa(x, y, compare="spearman", method="sampled", n_pairs=500, seed=1)
    assert r.method == "sampled-pairs" and r.stderr > 0 and r.ci[0] < r.value < r.ci[1] and r.ci_level == 0.95
    assert r.parameters["n_pairs"] == 500 and r.parameters["seed"] == 1
    import json

    d = json.loads(json.dumps(r.to_dict()))
    assert d["ci"] == list(r.ci)
    assert rsa(x, y, compare="spearman", method="sampled", n_pairs=500, seed=1).value == r.value


def test_auto_switches_to_sampling_beyond_the_documented_size(monkeypatch, inv_data):
    mod = importlib.import_module("bigalign.metrics.rsa")  # the module (bigalign.metrics.rsa may be the function)

    x, y = inv_data
    assert rsa(x, y, compare="spearman").method == "exact-in-memory"
    monkeypatch.setattr(mod, "SPEARMAN_EXACT_MAX_N", 100)
    monkeypatch.setattr(mod, "EXACT_MAX_N", 100)
    r = rsa(x, y, compare="spearman", n_pairs=2000)
    assert r.method == "sampled-pairs" and "spearman with n = 101 > 100" in r.parameters["method_reason"]
    assert rsa(x, y, n_pairs=2000).method == "sampled-pairs"  # euclidean pearson beyond the tile threshold
    assert rsa(x, y, distance="cosine").method == "exact-streaming"  # streamed at any n
    with pytest.raises(InvalidInputError, match="offered up to n = 100"):
        rsa(x, y, compare="spearman", method="exact")


# ---------------------------------------------------------------------------
# degenerate and bad input
# ---------------------------------------------------------------------------


def test_degenerate_and_bad_input(rng):
    x = rng.normal(size=(30, 3))
    with pytest.raises(DegenerateInputError, match="distances of y are equal") as e:
        rsa(x, np.ones((30, 2)))
    assert e.value.reason == "y_constant_distances"
    with pytest.raises(DegenerateInputError):
        rsa(x, np.eye(30), compare="spearman")  # equidistant rows
    with pytest.raises(DegenerateInputError):
        rsa(np.ones((30, 2)), x, distance="sqeuclidean")
    z = x.copy()
    z[4] = 0.0
    with pytest.raises(InvalidInputError, match="row 4"):
        rsa(z, x, distance="cosine")
    with pytest.raises(InvalidInputError, match="at least 3 samples"):
        rsa(x[:2], x[:2])
    with pytest.raises(InvalidInputError, match="'distance' parameter of rsa"):
        rsa(x, x, distance="manhattan")
    with pytest.raises(InvalidInputError, match="'compare' parameter"):
        rsa(x, x, compare="kendall_b")
    with pytest.raises(InvalidInputError, match="n_pairs applies to method='sampled'"):
        rsa(x, x, n_pairs=1000)
    with pytest.raises(InvalidInputError, match="n_pairs"):
        rsa(x, x, method="sampled", n_pairs=10)
    bad = x.copy()
    bad[7, 0] = np.inf
    for kw in ({}, {"distance": "cosine"}, {"compare": "spearman"}, {"method": "sampled", "n_pairs": 5000}):
        with pytest.raises(NonFiniteError, match=r"\b7\b"):  # the real row, also among sampled pairs
            rsa(bad, x, **kw)


# ---------------------------------------------------------------------------
# input kinds and docstring examples
# ---------------------------------------------------------------------------


def test_dask_and_zarr_inputs_give_the_numpy_answer(tmp_path, inv_data):
    da = pytest.importorskip("dask.array")
    import zarr

    x, y = inv_data
    zx = zarr.create_array(store=str(tmp_path / "x.zarr"), shape=x.shape, chunks=(17, x.shape[1]), dtype="f8")
    zx[:] = x
    dy = da.from_array(y, chunks=((7, 40, 54), (3,)))
    for kw in ({}, {"distance": "cosine"}, {"compare": "spearman"}, {"method": "sampled", "n_pairs": 500}):
        assert rsa(zx, dy, block_size=30, **kw).value == pytest.approx(rsa(x, y, block_size=30, **kw).value, rel=RTOL), kw


def test_docstring_examples(monkeypatch):
    import doctest

    import bigalign
    mod = importlib.import_module("bigalign.metrics.rsa")  # the module (bigalign.metrics.rsa may be the function)

    if not hasattr(bigalign, "rsa"):  # until bigalign/__init__.py exports it
        monkeypatch.setattr(bigalign, "rsa", mod.rsa, raising=False)
    result = doctest.testmod(mod)
    assert result.attempted > 0 and result.failed == 0
