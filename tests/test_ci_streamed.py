"""ci= of the streamed moment and neighbour measures: the leave-one-group-out values are exact.

The interval of every measure here is the block jackknife of bigalign.intervals over 20
contiguous row groups, made from per-group states streamed in the same pass.  Its exactness
test: the interval equals the one built from a naive recomputation of the measure on the rows
minus each group (references written from the formulas, nothing streamed), to ~1e-10.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import bigalign
from bigalign.errors import InvalidInputError
from bigalign.options import EngineOptions
from bigalign.intervals import CENTER_JACKKNIFE, CENTER_UNBIASED, CI_ABOUT, CI_ABOUT_GRAPH, jackknife_interval, row_groups

from references import cka as ref_cka
from references import hsic as ref_hsic
from references import kernel_alignment as ref_ka
from test_cca import _pwcca_ref, _svcca_ref
from test_neighbors import dense_knn, ref_cknna, ref_cycle_scores, ref_levenshtein, ref_lcs, ref_pair_scores
from test_procrustes import _reference as ref_procrustes

RTOL = 1e-10
N = 83  # not a multiple of 20: groups of 4 and 5 rows


@pytest.fixture(scope="module")
def pair():
    rng = np.random.default_rng(17)
    x = rng.normal(size=(N, 6)) + 2.0
    y = x[:, :4] @ rng.normal(size=(4, 5)) + 0.8 * rng.normal(size=(N, 5))
    return x, y


def _naive_interval(x, y, f, level=0.95, scale="identity", bias_correct=False, unbiased=None):
    """The interval from f on all rows and on the rows minus each of the 20 contiguous groups; for a biased
    estimate with an unbiased form ``unbiased`` (a function like f), the interval of that form on the same rows
    (intervals.estimator_interval), and without one (``bias_correct``) centred at the jackknife's
    bias-corrected estimate."""
    b = row_groups(x.shape[0])
    g_of = unbiased or f
    loo = [g_of(np.delete(x, np.s_[b[g] : b[g + 1]], axis=0), np.delete(y, np.s_[b[g] : b[g + 1]], axis=0)) for g in range(20)]
    return f(x, y), jackknife_interval(g_of(x, y), loo, level, scale=scale, bias_correct=bias_correct and unbiased is None)


def _check(res, value, iv):
    assert res.value == pytest.approx(value, rel=RTOL, abs=1e-12)
    assert res.ci == pytest.approx(iv.bounds, rel=RTOL, abs=1e-12)
    assert res.ci_level == iv.level
    assert res.parameters["ci_se"] == pytest.approx(iv.se, rel=1e-8)
    assert res.parameters["ci_scale"] == iv.scale
    assert res.parameters["ci_groups"] == 20 and res.parameters["ci_about"] == CI_ABOUT
    lo, hi = res.ci
    assert lo < (res.parameters["ci_center_value"] if "ci_center" in res.parameters else res.value) < hi


@pytest.mark.parametrize("estimator", ["unbiased", "biased"])
def test_cka_hsic_intervals_equal_naive_leave_one_group_out(pair, estimator):
    x, y = pair
    res = bigalign.cka(x, y, estimator=estimator, ci=0.9, block_size=13)
    # a biased estimate's interval: the unbiased estimator's on the same rows
    u_cka = (lambda a, b: ref_cka(a, b, "unbiased")) if estimator == "biased" else None
    _check(res, *_naive_interval(x, y, lambda a, b: ref_cka(a, b, estimator), 0.9, "logit", unbiased=u_cka))
    assert res.parameters.get("ci_center") == (CENTER_UNBIASED if estimator == "biased" else None)
    res = bigalign.hsic(x, y, estimator=estimator, ci=0.95, block_size=13)
    u_hsic = (lambda a, b: ref_hsic(a, b, "unbiased")) if estimator == "biased" else None
    _check(res, *_naive_interval(x, y, lambda a, b: ref_hsic(a, b, estimator), 0.95, "identity", unbiased=u_hsic))


def test_kernel_alignment_interval_equals_naive(pair):
    x, y = pair
    _check(bigalign.kernel_alignment(x, y, ci=0.95, block_size=30), *_naive_interval(x, y, ref_ka, 0.95, "logit", True))


@pytest.mark.parametrize("angular,normalize", [(False, False), (False, True), (True, False)])
def test_procrustes_interval_equals_naive(pair, angular, normalize):
    x, y = pair
    res = bigalign.procrustes(x, y, angular=angular, normalize=normalize, ci=0.95, block_size=11)
    # a plug-in estimate without an unbiased form: centred at the jackknife's bias-corrected estimate
    _check(res, *_naive_interval(x, y, lambda a, b: ref_procrustes(a, b, angular, normalize), bias_correct=True))
    assert res.parameters["ci_center"] == CENTER_JACKKNIFE


def test_svcca_pwcca_intervals_equal_naive(pair):
    x, y = pair
    _check(bigalign.svcca(x, y, n_components=3, ci=0.95, block_size=17),
           *_naive_interval(x, y, lambda a, b: _svcca_ref(a, b, 3), 0.95, "logit"))  # fmt: skip
    _check(bigalign.pwcca(x, y, ci=0.95, block_size=17), *_naive_interval(x, y, _pwcca_ref, 0.95, "logit"))


def _dense_masks(x, y, k):
    """Dense n×n: K, L (cosine similarities), the kNN masks MK, ML (row i: its k neighbours)."""
    a, K = dense_knn(x, k)
    b, L = dense_knn(y, k)
    n = len(a)
    MK, ML = np.zeros((n, n)), np.zeros((n, n))
    MK[np.arange(n)[:, None], a] = 1.0
    ML[np.arange(n)[:, None], b] = 1.0
    return K, L, MK, ML


def _dense_row_hsic(Kt, Lt):
    """Song's unbiased HSIC of dense K̃, L̃ (zero diagonal) and its linearisation split by first index:
    φ_a = (Σ_j K̃_aj L̃_ja + (ΣL̃·Σ_j K̃_aj + ΣK̃·Σ_j L̃_aj)/((n−1)(n−2)) − 2·Σ_m K̃_am·Σ_j L̃_mj/(n−2))/(n(n−3))."""
    n = len(Kt)
    one = np.ones(n)
    h = (np.trace(Kt @ Lt) + Kt.sum() * Lt.sum() / ((n - 1) * (n - 2)) - 2 * one @ Kt @ Lt @ one / (n - 2)) / (n * (n - 3))
    phi = (np.diag(Kt @ Lt) + (Lt.sum() * Kt.sum(1) + Kt.sum() * Lt.sum(1)) / ((n - 1) * (n - 2))
           - 2 * Kt @ (Lt @ one) / (n - 2)) / (n * (n - 3))  # fmt: skip
    return h, phi


def _naive_graph_interval(x, y, k, level, metric):
    """The dependency-graph interval written with dense n×n matrices: per-query scores q (CKNNA: n·T·(φ_xy/h_xy −
    ½φ_xx/h_xx − ½φ_yy/h_yy)), D = I ∨ MK ∨ MKᵀ ∨ ML ∨ MLᵀ ∨ (same contiguous row group), V = eᵀDe/n² with
    e = q − mean q, and T ± t_ν·√V on the logit scale, ν = 19·(V/V_g)², V_g = Σ_g (group sum of e)²/n²."""
    from scipy.stats import t as student_t

    K, L, MK, ML = _dense_masks(x, y, k)
    n = len(K)
    if metric == "cknna":
        hxy, fxy = _dense_row_hsic(MK * ML * K, MK * ML * L)
        hxx, fxx = _dense_row_hsic(MK * K, MK * K)
        hyy, fyy = _dense_row_hsic(ML * L, ML * L)
        T = hxy / math.sqrt(hxx * hyy)
        q = n * T * (fxy / hxy - fxx / (2 * hxx) - fyy / (2 * hyy))
    else:
        q = {
            "mutual_knn": lambda: (MK * ML).sum(1) / k,
            "cycle_knn": lambda: ref_cycle_scores(x, y, k),
            "lcs_knn": lambda: ref_pair_scores(x, y, k, ref_lcs) / k,
            "edit_distance_knn": lambda: 1.0 - ref_pair_scores(x, y, k, ref_levenshtein) / k,
        }[metric]()
        T = q.mean()
    b = row_groups(n)
    g = np.searchsorted(b, np.arange(n), side="right") - 1
    D = ((np.eye(n) + MK + MK.T + ML + ML.T + (g[:, None] == g[None, :])) > 0).astype(float)
    e = q - q.mean()
    se = math.sqrt(e @ D @ e) / n
    S = np.array([e[g == h].sum() for h in range(20)])
    nu = 19 * (se**2 / (S @ S / n**2)) ** 2
    z, sz, c = student_t.ppf(0.5 + level / 2, nu), se / (T * (1 - T)), math.log(T / (1 - T))
    return T, (1 / (1 + math.exp(-(c - z * sz))), 1 / (1 + math.exp(-(c + z * sz)))), se, nu


@pytest.mark.parametrize("metric", ["mutual_knn", "cycle_knn", "lcs_knn", "edit_distance_knn", "cknna"])
def test_knn_interval_equals_the_naive_dependency_graph_construction(pair, metric):
    x, y = pair
    k = 5
    res = getattr(bigalign, metric)(x, y, k=k, ci=0.9, block_size=20)
    value, bounds, se, nu = _naive_graph_interval(x, y, k, 0.9, metric)
    assert res.value == pytest.approx(value, rel=RTOL)
    assert res.ci == pytest.approx(bounds, rel=RTOL) and res.ci_level == 0.9
    assert res.parameters["ci_se"] == pytest.approx(se, rel=RTOL) and res.parameters["ci_df"] == pytest.approx(nu, rel=RTOL)
    assert res.parameters["ci_scale"] == "logit" and "dependency graph" in res.parameters["ci_variance"]
    assert res.parameters["ci_about"] == CI_ABOUT_GRAPH and "ci_neighbours" not in res.parameters
    assert res.parameters["ci_groups"] == 20
    assert res.ci[0] < res.value < res.ci[1]


def test_knn_leave_group_out_equals_naive(pair):
    # the recomputed group jackknife (sampled road, and the fallback of the exact road): each group left out as
    # queries and as candidates is the measure of the remaining rows, searched afresh
    from bigalign.engine import prepare
    from bigalign.metrics import neighbors as nb

    x, y = pair
    k = 5
    (lx, ly), _ = nb.search(prepare([x, y], ["x", "y"]), 2 * k, EngineOptions())

    def ours(metric):
        kx, ky = nb.NeighbourLists(lx.vals[:, :k], lx.idx[:, :k]), nb.NeighbourLists(ly.vals[:, :k], ly.idx[:, :k])
        v = nb._cknna_result(kx, ky, k, N, {}).value if metric == "cknna" else float(nb.per_query_scores(metric, kx, ky, k)[0].mean())
        return v, jackknife_interval(v, nb.leave_group_out(metric, lx, ly, k, N, None), 0.95, scale="logit")

    refs = {
        "cycle_knn": lambda a, b: ref_cycle_scores(a, b, k).mean(),
        "lcs_knn": lambda a, b: ref_pair_scores(a, b, k, ref_lcs).mean() / k,
        "edit_distance_knn": lambda a, b: 1.0 - ref_pair_scores(a, b, k, ref_levenshtein).mean() / k,
        "cknna": lambda a, b: ref_cknna(a, b, k),
    }
    for metric, f in refs.items():
        v, iv = ours(metric)
        value, ref = _naive_interval(x, y, f, 0.95, "logit")
        assert v == pytest.approx(value, rel=RTOL) and iv.bounds == pytest.approx(ref.bounds, rel=RTOL)


def test_knn_deeper_search_when_a_group_holds_the_neighbours(monkeypatch):
    # rows in tight clusters of 10 consecutive rows (two row groups of 5): with k = 4 a query's 8-deep list
    # holds only its cluster, 5 of them in the neighbouring group, so dropping that group leaves 3 < k and a
    # deeper search follows (sampled road: its interval is the recomputed group jackknife)
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(10, 6)) * 10
    x = np.repeat(centres, 10, axis=0) + 0.01 * rng.normal(size=(100, 6))
    y = x @ rng.normal(size=(6, 6)) + 0.01 * rng.normal(size=(100, 6))
    k, m = 4, 80

    from bigalign.metrics import neighbors

    depths = []
    real = neighbors.search_depth
    monkeypatch.setattr(neighbors, "search_depth", lambda *a: depths.append(real(*a)) or depths[-1])
    res = bigalign.lcs_knn(x, y, k=k, n_queries=m, seed=1, ci=0.95)
    assert depths[0] == 8 and len(depths) > 1
    q = neighbors.sample_queries(100, m, 1)
    b = row_groups(100)
    loo = []
    for g in range(20):
        keep = np.setdiff1d(np.arange(100), np.arange(b[g], b[g + 1]))
        ia, _ = dense_knn(x[keep], k)
        ib, _ = dense_knn(y[keep], k)
        qs = np.flatnonzero(np.isin(keep, q))
        loo.append(np.mean([ref_lcs(list(ia[r]), list(ib[r])) / k for r in qs]))
    assert res.ci == pytest.approx(jackknife_interval(res.value, loo, 0.95, scale="logit").bounds, rel=RTOL)


def test_knn_sampled_queries_interval(pair):
    x, y = pair
    k, m = 5, 60
    res = bigalign.mutual_knn(x, y, k=k, n_queries=m, seed=2, ci=0.9)
    q = bigalign.metrics.neighbors.sample_queries(N, m, 2)
    b = row_groups(N)
    loo = []
    for g in range(20):
        keep = np.setdiff1d(np.arange(N), np.arange(b[g], b[g + 1]))
        ia, _ = dense_knn(x[keep], k)
        ib, _ = dense_knn(y[keep], k)
        qs = np.flatnonzero(np.isin(keep, q))  # the sampled queries among the remaining rows
        loo.append(np.mean([len(set(ia[r]) & set(ib[r])) / k for r in qs]))
    assert res.ci == pytest.approx(jackknife_interval(res.value, loo, 0.9, scale="logit").bounds, rel=RTOL)
    assert res.stderr is not None and "ci" not in res.parameters  # the default normal interval is replaced


def test_rff_interval_is_about_rows_and_leaves_the_stderr(pair):
    x, y = pair
    plain = bigalign.cka(x, y, kernel="rbf", method="rff", n_features=96, bandwidth=3.0)
    res = bigalign.cka(x, y, kernel="rbf", method="rff", n_features=96, bandwidth=3.0, ci=0.95)
    # float32 feature products, the group split changes their blocking: ~1e-7 relative (tests/test_invariance.py)
    assert res.value == pytest.approx(plain.value, rel=1e-6)
    assert res.stderr == pytest.approx(plain.stderr, rel=1e-5)
    assert res.ci[0] < res.value < res.ci[1] and res.parameters["ci_scale"] == "logit"
    assert res.parameters["ci_se"] > 0
    # the feature draw's error (sd = stderr), which the row jackknife with the map held fixed cannot see, is added
    # in quadrature: the interval is about the exact measure's population value
    assert res.parameters["ci_approximation_se"] == res.stderr
    ny = bigalign.hsic(x, y, kernel="rbf", method="nystroem", n_features=16, bandwidth=3.0, ci=0.95)
    assert ny.ci[0] < ny.value < ny.ci[1] and ny.parameters["ci_scale"] == "identity"
    assert "ci_approximation_se" not in ny.parameters  # Nyström's error bar is a bound, not a noise sd


def test_no_ci_changes_nothing(pair):
    x, y = pair
    for f in (bigalign.cka, bigalign.procrustes, bigalign.svcca, bigalign.mutual_knn):
        r = f(x, y)
        assert r.ci is None and r.ci_level is None and not any(k.startswith("ci_") for k in r.parameters)
        assert f(x, y, ci=0.95).value == pytest.approx(r.value, rel=1e-12)


@pytest.mark.parametrize("bad", [1.5, 0, True, "0.95", float("nan")])
def test_bad_ci_is_an_invalid_input(pair, bad):
    x, y = pair
    for f in (bigalign.cka, bigalign.hsic, bigalign.kernel_alignment, bigalign.procrustes, bigalign.svcca,
              bigalign.pwcca, bigalign.mutual_knn, bigalign.lcs_knn):  # fmt: skip
        with pytest.raises(InvalidInputError, match="'ci' parameter"):
            f(x, y, ci=bad)


def test_ci_needs_40_rows_and_a_road_that_gives_one(pair):
    x, y = pair
    with pytest.raises(InvalidInputError, match="at least 40 rows"):
        bigalign.cka(x[:39], y[:39], ci=0.95)
    with pytest.raises(InvalidInputError, match="at least 40 rows"):
        bigalign.mutual_knn(x[:30], y[:30], k=3, ci=0.95)
    with pytest.raises(InvalidInputError, match="randomized road"):
        bigalign.svcca(x, y, n_components=2, method="randomized", ci=0.95)


def test_interval_does_not_depend_on_the_blocks(pair):
    x, y = pair
    ref = bigalign.cka(x, y, ci=0.95, scheduler="sync", block_size=7)
    for bs in (1, 4, 20, 83):
        got = bigalign.cka(x, y, ci=0.95, scheduler="sync", block_size=bs)
        assert got.ci == pytest.approx(ref.ci, rel=1e-12)
    assert bigalign.cka(x, y, ci=0.95, scheduler="threads", num_workers=2, block_size=9).ci == pytest.approx(ref.ci, rel=1e-12)


@pytest.mark.slow
def test_interval_covers_a_known_cka():
    # 60 repetitions at n = 400: the 95% interval covers the closed-form population CKA in
    # 0.95 ± 0.028 (binomial sd); 0.85 is 3.6 sd below (benchmarks/ci_coverage_moments.py has the full table)
    rng = np.random.default_rng(5)
    B = rng.normal(size=(4, 4))
    Syy = B.T @ B + np.eye(4)
    pop = np.trace(B @ B.T) / math.sqrt(4 * np.trace(Syy @ Syy))
    hits = 0
    for _ in range(60):
        x = rng.normal(size=(400, 4))
        r = bigalign.cka(x, x @ B + rng.normal(size=(400, 4)), ci=0.95, scheduler="sync")
        hits += r.ci[0] <= pop <= r.ci[1]
    assert hits >= 51


def test_compare_layers_linear_cells_carry_the_functions_intervals():
    rng = np.random.default_rng(8)
    x = rng.normal(size=(60, 4))
    st = {"a": x, "b": x @ rng.normal(size=(4, 3)) + rng.normal(size=(60, 3))}
    M = bigalign.compare_layers(st, metric="cka", ci=0.9)
    for la in st:
        for lb in st:
            assert M[la, lb].ci == pytest.approx(bigalign.cka(st[la], st[lb], ci=0.9).ci, rel=1e-9)
    assert "row group" in M.plan["ci"]


def test_compare_layers_biased_cells_follow_the_functions_rule():
    """A biased cell's interval is what the metric's own function gives under the one rule: the unbiased
    estimator's interval (CKA, HSIC, distance alignment) or the estimate-centred one (PWCCA)."""
    rng = np.random.default_rng(12)
    x = rng.normal(size=(70, 4))
    st = {"a": x, "b": x @ rng.normal(size=(4, 3)) + rng.normal(size=(70, 3))}
    for metric, f, kw in ((("cka", bigalign.cka, dict(estimator="biased")), ("hsic", bigalign.hsic, dict(estimator="biased")),
                           ("distance_alignment", bigalign.distance_alignment, {}), ("pwcca", bigalign.pwcca, {}))):  # fmt: skip
        M = bigalign.compare_layers(st, metric=metric, ci=0.9, **kw)
        want = f(st["a"], st["b"], ci=0.9, **kw)
        assert M["a", "b"].ci == pytest.approx(want.ci, rel=1e-9), metric
        assert M["a", "b"].parameters.get("ci_center") == want.parameters.get("ci_center"), metric
        assert want.parameters.get("ci_center") == (None if metric == "pwcca" else CENTER_UNBIASED)


@pytest.mark.slow
def test_compare_layers_cells_carry_the_functions_intervals():
    rng = np.random.default_rng(8)
    n = 120
    x = rng.normal(size=(n, 5))
    st = {"a": x, "b": x @ rng.normal(size=(5, 4)) + rng.normal(size=(n, 4)), "c": np.tanh(x[:, :3]) + 0.5 * rng.normal(size=(n, 3))}
    for metric, f in (("cka", bigalign.cka), ("procrustes", bigalign.procrustes), ("svcca", bigalign.svcca),
                      ("mutual_knn", bigalign.mutual_knn), ("cycle_knn", bigalign.cycle_knn), ("cknna", bigalign.cknna)):  # fmt: skip
        M = bigalign.compare_layers(st, metric=metric, ci=0.9, state_memory=2**20)
        for la in st:
            for lb in st:
                want = f(st[la], st[lb], ci=0.9)
                assert M[la, lb].ci == pytest.approx(want.ci, rel=1e-9), (metric, la, lb)
                assert M[la, lb].parameters["ci_scale"] == want.parameters["ci_scale"]
    M = bigalign.compare_layers(st, metric="hsic", kernel="rbf", method="orf", n_features=96, bandwidth=2.0, ci=0.95)
    want = bigalign.hsic(st["a"], st["b"], kernel="rbf", method="orf", n_features=96, bandwidth=2.0, ci=0.95)
    # float32 feature products: the pass of three layers blocks its rows differently (~1e-7 relative)
    assert M["a", "b"].ci == pytest.approx(want.ci, rel=1e-5)  # layers 0 and 1: the maps of x and y


def test_compare_layers_exact_kernel_tiles_carry_the_pair_intervals():
    rng = np.random.default_rng(10)
    x = rng.normal(size=(80, 3))
    st = {"a": x, "b": np.tanh(x @ rng.normal(size=(3, 4))) + 0.3 * rng.normal(size=(80, 4))}
    M = bigalign.compare_layers(st, metric="cka", kernel="rbf", method="exact", bandwidth=1.5, ci=0.9)
    want = bigalign.cka(st["a"], st["b"], kernel="rbf", method="exact", bandwidth=1.5, ci=0.9)
    assert M["a", "b"].ci == pytest.approx(want.ci, rel=1e-10)
    assert M["b", "a"].ci == pytest.approx(want.ci, rel=1e-10)


def test_compare_layers_mmd_cells_carry_the_two_sample_interval():
    rng = np.random.default_rng(4)
    st = {"a": rng.normal(size=(60, 3)), "b": rng.normal(size=(60, 3)) + 0.4}
    M = bigalign.compare_layers(st, metric="mmd", kernel="linear", ci=0.9)
    want = bigalign.mmd(st["a"], st["b"], kernel="linear", ci=0.9)
    assert M["a", "b"].ci == pytest.approx(want.ci, rel=1e-10)


def test_compare_layers_refuses_roads_without_an_interval():
    rng = np.random.default_rng(9)
    st = {"a": rng.normal(size=(60, 3)), "b": rng.normal(size=(60, 4))}
    with pytest.raises(InvalidInputError, match="projected road"):
        bigalign.compare_layers(st, ci=0.95, metric="cka", method="sketch")
    with pytest.raises(InvalidInputError, match="'ci' parameter of compare_layers"):
        bigalign.compare_layers(st, ci=True)


@pytest.mark.parametrize("groups", [None, ([0, 2, 5, 6], [0, 1, 4])])
def test_unmerge_inverts_merge(groups):
    # the total minus a part equals the moments streamed over the rest alone (every sum, also with column groups)
    from bigalign.moments import MomentStatistic, merge, unmerge

    rng = np.random.default_rng(4)
    x = rng.normal(size=(90, 6)) * 3 + 50.0
    y = rng.normal(size=(90, 4)) - 7.0
    stat = MomentStatistic(names=("x", "y"), pairs=((0, 1),), groups=groups or ())
    part = stat.partial([x[30:45], y[30:45]], 30)
    rest = merge(stat.partial([x[:30], y[:30]], 0), stat.partial([x[45:], y[45:]], 45))
    got = unmerge(merge(rest, part), part)
    for a, b in zip(got.sides, rest.sides):
        for f in ("mean", "M", "T", "A"):
            np.testing.assert_allclose(getattr(a, f), getattr(b, f), rtol=1e-9, atol=1e-9 * np.abs(getattr(b, f)).max())
    for f in ("M", "T", "A", "B"):
        want = getattr(rest.crosses[(0, 1)], f)
        np.testing.assert_allclose(getattr(got.crosses[(0, 1)], f), want, rtol=1e-9, atol=1e-9 * np.abs(want).max())


def test_distance_alignment_interval_equals_naive(pair):
    from references import distance_alignment as ref_da

    x, y = pair
    res = bigalign.distance_alignment(x, y, ci=0.95, block_size=17)
    # its unbiased form: the mean over the pairs i ≠ j (the diagonal terms are 0), n/(n − 1)·D
    _check(res, *_naive_interval(x, y, ref_da, 0.95, "identity", unbiased=lambda a, b: ref_da(a, b) * len(a) / (len(a) - 1)))
    assert res.parameters["ci_center"] == CENTER_UNBIASED
    M = bigalign.compare_layers({"x": x, "y": y}, metric="distance_alignment", ci=0.95)
    assert M["x", "y"].ci == pytest.approx(res.ci, rel=1e-9)


@pytest.mark.parametrize("func", ["coco", "kcc", "kmi"])
def test_independence_measures_intervals_equal_naive(pair, func):
    # the naive Gram-matrix formulas of tests/test_independence.py (linear kernel, ridge 1e-2)
    from test_independence import naive

    x, y = pair
    f = lambda a, b: naive(a @ a.T, b @ b.T, 0.0 if func == "coco" else 1e-2)[func]  # noqa: E731
    res = getattr(bigalign, func)(x, y, ci=0.95, block_size=19)
    value, iv = _naive_interval(x, y, f, 0.95, "logit" if func == "kcc" else "identity", True)
    # the naive eigen-solvers (non-symmetric eigvals, slogdet) agree with the streamed d×d algebra to ~1e-11
    assert res.value == pytest.approx(value, rel=1e-9)
    assert res.ci == pytest.approx(iv.bounds, rel=1e-8)
    assert res.parameters["ci_scale"] == iv.scale and res.parameters["ci_center"] == CENTER_JACKKNIFE
    M = bigalign.compare_layers({"x": x, "y": y}, metric=func, ci=0.95)
    assert M["x", "y"].ci == pytest.approx(res.ci, rel=1e-9)
    # rbf/laplacian intervals: tests/test_ci_spectral.py


def test_knn_graph_variance_not_positive_falls_back_to_the_recomputed_jackknife(pair):
    # x against itself: every query's overlap is k, the per-query scores are all 1, V = 0
    x, _ = pair
    res = bigalign.mutual_knn(x, x, k=5, ci=0.95)
    assert res.value == 1.0 and "not positive" in res.parameters["ci_variance"]
    assert "recomputed" in res.parameters["ci_neighbours"] and res.parameters["ci_about"] == CI_ABOUT
    assert res.ci == pytest.approx((1.0, 1.0))
