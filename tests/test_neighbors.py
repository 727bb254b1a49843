"""Mutual kNN and CKNNA: dense references, the tie rule, invariance, chance level, sampled intervals.

Tolerance policy
----------------
* mutual_knn exact: neighbour lists are integers, so the value must *equal* the dense
  reference's (same similarities up to rounding, continuous data or exactly tied data).
* cknna exact vs the literal dense port of platonic-rep: 1e-10 relative (the masked
  HSIC terms are sums of O(n·k) products; measured ≤ 1e-13).
* block sizes / schedulers: identical lists, so identical values (mutual_knn) and 1e-12 (cknna).
* chance level and sampled intervals: statistical bounds, reasons in comments.
"""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest

import bigalign
from bigalign._numba.topk import (
    cknna_sums,
    cknna_sums_numpy,
    edit_distances,
    empty_lists,
    lcs_lengths,
    merge_topk,
    merge_topk_numpy,
    overlap_counts,
    overlap_counts_numpy,
    topk_tile,
    topk_tile_numpy,
)
from bigalign.errors import DegenerateInputError, InvalidInputError, NonFiniteError
from bigalign.metrics.neighbors import IntervalResult, KnnSweep, cknna, knn_sweep, mutual_knn

RTOL = 1e-12


# ---------------------------------------------------------------------------
# dense references (nothing from bigalign): platonic-rep's algorithms in numpy,
# with the stated tie rule instead of a −1e8 diagonal and an unspecified torch.topk order
# ---------------------------------------------------------------------------


def unit(x):
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def dense_knn(x, k):
    """n×k neighbour indices: full sort of each row of the n×n similarity matrix by (−sim, index), self removed."""
    S = unit(x) @ unit(x).T
    n = len(S)
    out = np.empty((n, k), dtype=np.int64)
    for i in range(n):
        cand = np.delete(np.arange(n), i)
        out[i] = cand[np.lexsort((cand, -S[i, cand]))[:k]]
    return out, S


def ref_mutual_knn(x, y, k):
    """platonic-rep's mutual_knn: masks of the two kNN sets, mean of |∩|/k."""
    a, _ = dense_knn(x, k)
    b, _ = dense_knn(y, k)
    n = len(a)
    ma, mb = np.zeros((n, n)), np.zeros((n, n))
    rows = np.arange(n)[:, None]
    ma[rows, a] = 1.0
    mb[rows, b] = 1.0
    return float(((ma * mb).sum(1) / k).mean())


def hsic_unbiased_literal(K, L):
    """platonic-rep's hsic_unbiased, literally (K, L need not be symmetric)."""
    m = K.shape[0]
    Kt, Lt = K.copy(), L.copy()
    np.fill_diagonal(Kt, 0.0)
    np.fill_diagonal(Lt, 0.0)
    return ((Kt * Lt.T).sum() + Kt.sum() * Lt.sum() / ((m - 1) * (m - 2)) - 2 * (Kt @ Lt).sum() / (m - 2)) / (m * (m - 3))


def ref_cknna(x, y, k):
    """platonic-rep's cknna(unbiased=True) on L2-normalised rows, without its +1e-6."""
    a, K = dense_knn(x, k)
    b, L = dense_knn(y, k)
    n = len(a)
    rows = np.arange(n)[:, None]
    mk, ml = np.zeros((n, n)), np.zeros((n, n))
    mk[rows, a] = 1.0
    ml[rows, b] = 1.0

    def sim(K, L, mask):
        return hsic_unbiased_literal(mask * K, mask * L)

    return sim(K, L, mk * ml) / math.sqrt(sim(K, K, mk) * sim(L, L, ml))


def correlated(rng, n, dx=12, dy=8, noise=0.8):
    x = rng.normal(size=(n, dx))
    return x, x @ rng.normal(size=(dx, dy)) + noise * rng.normal(size=(n, dy))


@pytest.fixture(scope="module")
def data():
    return correlated(np.random.default_rng(4), 230)


@pytest.fixture(scope="module")
def tied():
    """Rows in {±1/2}⁴: unit rows whose similarities are exact in float64 by any summation order,
    and many exactly tied (and duplicated) samples — the tie rule decides."""
    rng = np.random.default_rng(9)
    return rng.choice([-0.5, 0.5], size=(90, 4)), rng.choice([-0.5, 0.5], size=(90, 4))


# ---------------------------------------------------------------------------
# kernels against numpy twins
# ---------------------------------------------------------------------------


def test_topk_tile_modes_match_numpy_twin(tied, rng):
    for x in (tied[0], rng.normal(size=(90, 5))):
        xs = unit(x)
        S = xs @ xs.T
        g = np.arange(90, dtype=np.int64)
        want_v, want_i = topk_tile_numpy(S, g, g, 7)
        for step in (1, 13, 90):  # tiles I <= J: mode 2 on the diagonal, mode 1 elsewhere
            v, i = empty_lists(90, 7)
            for a in range(0, 90, step):
                for b in range(a, 90, step):
                    sa, sb = slice(a, a + step), slice(b, b + step)
                    tile = np.ascontiguousarray(S[sa, sb])
                    if a == b:
                        topk_tile(tile, g[sa], g[sb], 2, v[sa], i[sa], v[sa], i[sa])
                    else:
                        topk_tile(tile, g[sa], g[sb], 1, v[sa], i[sa], v[sb], i[sb])
            np.testing.assert_array_equal(i, want_i)
            np.testing.assert_array_equal(v, want_v)
        q = g[::7]  # mode 0: sampled queries, self excluded by index
        v, i = empty_lists(len(q), 7)
        topk_tile(np.ascontiguousarray(S[q]), q, g, 0, v, i, v, i)
        np.testing.assert_array_equal(i, topk_tile_numpy(S[q], q, g, 7)[1])


def test_merge_and_overlap_and_cknna_kernels_match_numpy_twins(rng):
    x = unit(rng.normal(size=(60, 4)))
    y = unit(x[:, :3] + 0.5 * rng.normal(size=(60, 3)))
    g = np.arange(60, dtype=np.int64)
    S, T = x @ x.T, y @ y.T
    a = topk_tile_numpy(S[:, :25], g, g[:25], 9)
    b = topk_tile_numpy(S[:, 25:], g, g[25:], 9)
    for got, want in zip(merge_topk(*a, *b), merge_topk_numpy(*a, *b)):
        np.testing.assert_array_equal(got, want)
    vx, ix = topk_tile_numpy(S, g, g, 9)
    vy, iy = topk_tile_numpy(T, g, g, 9)
    ks = np.array([1, 4, 9], dtype=np.int64)
    np.testing.assert_array_equal(overlap_counts(ix, iy, ks), overlap_counts_numpy(ix, iy, ks))
    for k in (2, 9):
        np.testing.assert_allclose(cknna_sums(ix, vx, iy, vy, k), cknna_sums_numpy(ix, vx, iy, vy, k), rtol=1e-12)


# ---------------------------------------------------------------------------
# exact paths against the dense references
# ---------------------------------------------------------------------------


def test_mutual_knn_equals_dense_reference(data):
    x, y = data
    rs = knn_sweep(x, y, k=[1, 3, 10, 25], block_size=64, scheduler="sync")
    for r, k in zip(rs, (1, 3, 10, 25)):
        assert r.value == ref_mutual_knn(x, y, k)
        assert r.parameters["k"] == k and r.method == "exact-blocked-topk" and r.stderr is None
        assert r.terms["chance"] == k / 229
    assert mutual_knn(x, y, k=10, block_size=64, scheduler="sync") == rs[10]  # a sweep equals single calls, field by field
    assert isinstance(rs, KnnSweep) and rs.ks == (1, 3, 10, 25) and rs.values.tolist() == [r.value for r in rs]


def test_tie_rule(tied):
    """Exact ties (and duplicated rows) ordered by index, whatever the tiling."""
    x, y = tied
    for k in (1, 5, 20):
        want = ref_mutual_knn(x, y, k)
        for bs in (1, 7, 90):
            assert mutual_knn(x, y, k=k, block_size=bs, scheduler="sync").value == want
    assert cknna(x, y, k=20, block_size=7).value == pytest.approx(ref_cknna(x, y, 20), rel=1e-10)


def test_cknna_equals_dense_reference(data):
    x, y = data
    for r, k in zip(knn_sweep(x, y, metric="cknna", k=[2, 10, 40], block_size=50), (2, 10, 40)):
        assert r.value == pytest.approx(ref_cknna(x, y, k), rel=1e-10)
        assert r.estimator == "unbiased" and r.hsic_xy is not None
    assert cknna(x, 3 * x, k=10).value == pytest.approx(1.0, abs=1e-12)


def test_scale_invariance_and_self_alignment(data):
    x, _ = data
    assert mutual_knn(x, 5.0 * x, k=7).value == 1.0


# ---------------------------------------------------------------------------
# invariance
# ---------------------------------------------------------------------------

N_INV = 97


@pytest.fixture(scope="module")
def inv_data():
    return correlated(np.random.default_rng(21), N_INV, 6, 5, noise=1.0)


def test_block_size_invariance(inv_data):
    x, y = inv_data
    base = knn_sweep(x, y, k=[3, 8], block_size=N_INV, scheduler="sync")
    cbase = cknna(x, y, k=8, block_size=N_INV, scheduler="sync").value
    for bs in (1, N_INV // 10, N_INV // 4, N_INV // 2):
        assert [r.value for r in knn_sweep(x, y, k=[3, 8], block_size=bs, scheduler="sync")] == [r.value for r in base]
        assert cknna(x, y, k=8, block_size=bs, scheduler="sync").value == pytest.approx(cbase, rel=RTOL)
        s = mutual_knn(x, y, k=8, n_queries=40, block_size=bs, scheduler="sync")
        assert s.value == mutual_knn(x, y, k=8, n_queries=40, block_size=N_INV, scheduler="sync").value


def test_sampled_search_in_sub_tiles(monkeypatch, data):
    """The sampled search splits a candidate block into similarity tiles of ≤ SIM_TILE_BYTES; the
    lists (hence the value) do not depend on it."""
    mod = importlib.import_module("bigalign.metrics._knn_search")  # the module whose QueryStatistic reads it

    x, y = data
    want = knn_sweep(x, y, k=[2, 9], n_queries=60, seed=2, scheduler="sync")
    monkeypatch.setattr(mod, "SIM_TILE_BYTES", 1)  # 64 candidates per tile: 4 tiles per block
    got = knn_sweep(x, y, k=[2, 9], n_queries=60, seed=2, scheduler="sync")
    assert [r.value for r in got] == [r.value for r in want]


def _paths(x, y, **kw):
    return {
        "exact": mutual_knn(x, y, k=5, block_size=20, **kw).value,
        "sampled": mutual_knn(x, y, k=5, n_queries=30, block_size=20, **kw).value,
        "cknna": cknna(x, y, k=5, block_size=20, **kw).value,
    }


def test_schedulers_agree(inv_data):
    x, y = inv_data
    sync, threads = _paths(x, y, scheduler="sync"), _paths(x, y, scheduler="threads", num_workers=3)
    for key, v in sync.items():
        assert threads[key] == pytest.approx(v, rel=RTOL), key


# ---------------------------------------------------------------------------
# statistics: chance level, sampled queries
# ---------------------------------------------------------------------------


def test_independent_representations_give_chance(rng):
    """Independent x, y: N_y(i) is a uniform k-subset of the other n − 1 samples given N_x(i), so
    |N_x(i) ∩ N_y(i)| is hypergeometric with mean k²/(n−1) — the score's mean is k/(n−1).
    Its variance per query is k·p(1−p)(N−k)/(N−1) with p = k/N, N = n − 1; the n queries are
    nearly independent, so the mean has sd ≈ √(var/n)/k.  Allow 5 sd (false alarm ≈ 6e-7; the
    weak dependence between queries is covered by the margin)."""
    n, k = 1500, 10
    x, y = rng.normal(size=(n, 16)), rng.normal(size=(n, 16))
    r = mutual_knn(x, y, k=k)
    N, p = n - 1, k / (n - 1)
    sd = math.sqrt(k * p * (1 - p) * (N - k) / (N - 1) / n) / k
    assert abs(r.value - k / (n - 1)) <= 5 * sd
    assert r.terms["chance"] == pytest.approx(k / (n - 1))


def test_sampled_queries_interval_covers_at_nominal_rate():
    """R = 200 seeded samples of m = 80 queries from n = 800: the 95% normal interval (with the
    finite-population correction) must cover the exact full value in [0.90, 0.99] of the runs
    (binomial sd 0.0154 at 0.95: the band is > 3 sd below and 2.6 sd above nominal).  The sampled
    estimates must also be unbiased: mean z within 4.5/√R of 0."""
    rng = np.random.default_rng(31)
    x, y = correlated(rng, 800, 10, 6, noise=1.2)
    exact = mutual_knn(x, y, k=10).value
    assert 0.1 < exact < 0.9  # a value where the normal interval is meaningful
    hits, zs = 0, []
    for s in range(200):
        r = mutual_knn(x, y, k=10, n_queries=80, seed=s, scheduler="sync")
        hits += r.ci[0] <= exact <= r.ci[1]
        zs.append((r.value - exact) / r.stderr)
    assert 0.90 * 200 <= hits <= 0.99 * 200
    assert abs(np.mean(zs)) < 4.5 / math.sqrt(200)


def test_sampled_result_fields(data):
    x, y = data
    r = knn_sweep(x, y, k=[5, 10], n_queries=50, seed=3).results
    assert all(isinstance(v, IntervalResult) for v in r)
    assert r[1].method == "sampled-queries" and r[1].parameters["n_queries"] == 50 and r[1].ci_level == 0.95
    lo, hi = r[1].ci
    assert lo < r[1].value < hi and hi - lo == pytest.approx(2 * 1.959963984540054 * r[1].stderr)
    full = mutual_knn(x, y, k=10, n_queries=len(x))  # every query: the exact value, no sampling error
    assert full.value == mutual_knn(x, y, k=10).value and full.stderr == 0.0
    import json

    assert json.loads(json.dumps(r[0].to_dict()))["ci"] == list(r[0].ci)


# ---------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------


def test_bad_input(data, rng):
    x, y = data
    with pytest.raises(InvalidInputError, match="k = 230 needs at least"):
        mutual_knn(x, y, k=230)
    with pytest.raises(InvalidInputError, match="integers >= 1"):
        knn_sweep(x, y, k=[3, 0])
    with pytest.raises(InvalidInputError, match="non-empty list"):
        knn_sweep(x, y, k=[])
    with pytest.raises(InvalidInputError, match="knn_sweep"):
        mutual_knn(x, y, k=[3, 5])  # one k, one Result: a list is pointed to knn_sweep
    with pytest.raises(InvalidInputError, match="integers >= 2"):
        cknna(x, y, k=1)
    with pytest.raises(InvalidInputError, match="n_queries"):
        mutual_knn(x, y, n_queries=1)
    with pytest.raises(InvalidInputError, match="n_queries"):
        mutual_knn(x, y, n_queries=231)
    with pytest.raises(InvalidInputError, match="at least 4 samples"):
        cknna(x[:3], y[:3], k=2)
    z = x.copy()
    z[17] = 0.0
    with pytest.raises(InvalidInputError, match="first at row 17"):
        mutual_knn(z, y, k=3, block_size=10)
    for m in (230, 50):  # row 17 among the sampled queries, or found among the candidates
        with pytest.raises(InvalidInputError, match="first at row 17"):
            mutual_knn(z, y, k=3, n_queries=m)
    bad = x.copy()
    bad[5, 2] = np.nan
    with pytest.raises(NonFiniteError):
        mutual_knn(bad, y)
    with pytest.raises(InvalidInputError, match="same number of samples"):
        mutual_knn(x, y[:-1])


def test_constant_kernel_makes_cknna_undefined():
    """Identical rows and k = n − 1: the masked kernel is the constant 11ᵀ − I, whose unbiased
    HSIC is exactly 0, so CKNNA is 0/0 (platonic-rep would return 0 through its +1e-6)."""
    x = np.ones((30, 3))
    y = np.random.default_rng(0).normal(size=(30, 3))
    with pytest.raises(DegenerateInputError, match="CKNNA is undefined") as e:
        cknna(x, y, k=29)
    assert e.value.reason == "nonpositive_self_hsic"


# ---------------------------------------------------------------------------
# input kinds and docstring examples
# ---------------------------------------------------------------------------


def test_dask_and_zarr_inputs_give_the_numpy_answer(tmp_path, inv_data):
    da = pytest.importorskip("dask.array")
    import zarr

    x, y = inv_data
    zx = zarr.create_array(store=str(tmp_path / "x.zarr"), shape=x.shape, chunks=(17, x.shape[1]), dtype="f8")
    zx[:] = x
    dy = da.from_array(y, chunks=((7, 40, 50), (5,)))
    assert mutual_knn(zx, dy, k=4, block_size=30).value == mutual_knn(x, y, k=4, block_size=30).value
    assert mutual_knn(zx, dy, k=4, n_queries=25, block_size=30).value == mutual_knn(x, y, k=4, n_queries=25).value
    assert cknna(zx, dy, k=4, block_size=30).value == pytest.approx(cknna(x, y, k=4).value, rel=RTOL)


def test_docstring_examples(monkeypatch):
    import doctest

    import bigalign
    mod = importlib.import_module("bigalign.metrics.neighbors")  # the module (bigalign.metrics.neighbors may be the function)

    for name in ("mutual_knn", "cknna"):  # until bigalign/__init__.py exports them
        if not hasattr(bigalign, name):
            monkeypatch.setattr(bigalign, name, getattr(mod, name), raising=False)
    result = doctest.testmod(mod)
    assert result.attempted > 0 and result.failed == 0


# ---------------------------------------------------------------------------
# platonic-rep's order-aware variants: cycle_knn, lcs_knn, edit_distance_knn
# ---------------------------------------------------------------------------


def ref_cycle_scores(x, y, k):
    """platonic-rep's cycle_knn per query: compute_knn_accuracy(knn_A[knn_B]) with A = x, B = y."""
    a, _ = dense_knn(x, k)
    b, _ = dense_knn(y, k)
    n = len(a)
    return (a[b] == np.arange(n)[:, None, None]).reshape(n, -1).max(axis=1).astype(float)


def ref_lcs(s, t):
    """platonic-rep's lcs_length (classic dynamic programme), literally."""
    m, n = len(s), len(t)
    dp = [[0] * (n + 1) for _ in range(m + 1)]
    for i in range(1, m + 1):
        for j in range(1, n + 1):
            dp[i][j] = dp[i - 1][j - 1] + 1 if s[i - 1] == t[j - 1] else max(dp[i - 1][j], dp[i][j - 1])
    return dp[m][n]


def ref_levenshtein(s, t):
    """Textbook Levenshtein distance (unit insertion, deletion, substitution), as torchaudio's edit_distance."""
    D = np.zeros((len(s) + 1, len(t) + 1), dtype=int)
    D[:, 0], D[0, :] = np.arange(len(s) + 1), np.arange(len(t) + 1)
    for i in range(1, len(s) + 1):
        for j in range(1, len(t) + 1):
            D[i, j] = min(D[i - 1, j] + 1, D[i, j - 1] + 1, D[i - 1, j - 1] + (s[i - 1] != t[j - 1]))
    return int(D[-1, -1])


def ref_pair_scores(x, y, k, fn):
    a, _ = dense_knn(x, k)
    b, _ = dense_knn(y, k)
    return np.array([fn(list(a[r]), list(b[r])) for r in range(len(a))], dtype=float)


def test_order_kernels_match_literal_definitions(rng):
    for _ in range(30):
        k = int(rng.integers(1, 9))
        a = rng.choice(12, size=(6, k), replace=True).astype(np.int64)
        b = rng.choice(12, size=(6, k), replace=True).astype(np.int64)
        assert lcs_lengths(a, b, k).tolist() == [ref_lcs(list(a[r]), list(b[r])) for r in range(6)]
        assert edit_distances(a, b, k).tolist() == [ref_levenshtein(list(a[r]), list(b[r])) for r in range(6)]


@pytest.mark.parametrize("which", ["data", "tied"])
def test_variants_equal_platonic_rep_definitions(which, data, tied):
    """Exact roads: integer scores from identical lists, so values equal the references (up to the
    order of the float mean: 1e-15)."""
    x, y = data if which == "data" else tied
    for k in (1, 4, 11):
        cyc = ref_cycle_scores(x, y, k).mean()
        lcs = ref_pair_scores(x, y, k, ref_lcs).mean()
        ed = ref_pair_scores(x, y, k, ref_levenshtein).mean()
        for bs in (17, 1000):
            r = bigalign.cycle_knn(x, y, k=k, block_size=bs, scheduler="sync")
            assert r.value == pytest.approx(cyc, rel=1e-15, abs=1e-15) and r.method == "exact-blocked-topk"
            r = bigalign.lcs_knn(x, y, k=k, block_size=bs, scheduler="sync")
            assert r.terms["mean_lcs"] == pytest.approx(lcs, rel=1e-15) and r.value == pytest.approx(lcs / k, rel=1e-15)
            r = bigalign.edit_distance_knn(x, y, k=k, block_size=bs, scheduler="sync")
            assert r.value == pytest.approx(1 - ed / k, rel=1e-15, abs=1e-15)
            assert r.terms["mean_edit_distance"] == pytest.approx(ed, rel=1e-15, abs=1e-15)
    # cycle is not symmetric; its reference from the other side says so too
    assert bigalign.cycle_knn(y, x, k=4).value == pytest.approx(ref_cycle_scores(y, x, 4).mean(), rel=1e-15)
    assert bigalign.lcs_knn(y, x, k=4).value == pytest.approx(bigalign.lcs_knn(x, y, k=4).value, rel=1e-15)


def test_variants_on_sampled_queries_are_the_reference_scores_of_the_queries(data):
    """Sampled road: exact neighbours among all n for the seeded queries, so the estimate is the mean
    of the references' per-query scores over exactly those queries (cycle_knn's second pass finds
    the x-lists of the queries' y-neighbours)."""
    from bigalign.metrics.neighbors import sample_queries

    x, y = data
    n, k, m = len(x), 6, 70
    q = sample_queries(n, m, 5)
    refs = {
        "cycle_knn": ref_cycle_scores(x, y, k),
        "lcs_knn": ref_pair_scores(x, y, k, ref_lcs) / k,
        "edit_distance_knn": 1 - ref_pair_scores(x, y, k, ref_levenshtein) / k,
    }
    for metric, per_query in refs.items():
        r = getattr(bigalign, metric)(x, y, k=k, n_queries=m, seed=5, block_size=40, scheduler="sync")
        assert isinstance(r, IntervalResult) and r.method == "sampled-queries" and r.parameters["n_queries"] == m
        assert r.value == pytest.approx(per_query[q].mean(), rel=1e-14, abs=1e-15), metric
        se = per_query[q].std(ddof=1) / math.sqrt(m) * math.sqrt(1 - m / n)
        assert r.stderr == pytest.approx(se, rel=1e-12) and r.ci[0] < r.value < r.ci[1]
        sweep = knn_sweep(x, y, metric=metric, k=[2, k], n_queries=m, seed=5, scheduler="sync")
        assert sweep[k] == getattr(bigalign, metric)(x, y, k=k, n_queries=m, seed=5, scheduler="sync")


@pytest.mark.slow
def test_cycle_knn_sampled_interval_covers():
    """R = 120 seeded samples of m = 60 queries (n = 600): the normal 95% interval of a mean of 0/1
    hits (with the finite-population correction) must cover the exact value in [0.88, 0.99] of runs
    (binomial sd 0.02 at 0.95 with R = 120: the band is 3.5 sd below and 2 sd above; the normal
    approximation to a mean of 60 Bernoulli draws near p ≈ 0.5 is adequate)."""
    rng = np.random.default_rng(8)
    x, y = correlated(rng, 600, 10, 6, noise=1.0)
    exact = bigalign.cycle_knn(x, y, k=5).value
    assert 0.2 < exact < 0.8
    hits = sum(r.ci[0] <= exact <= r.ci[1] for r in (bigalign.cycle_knn(x, y, k=5, n_queries=60, seed=s, scheduler="sync") for s in range(120)))
    assert 0.88 * 120 <= hits <= 0.99 * 120
