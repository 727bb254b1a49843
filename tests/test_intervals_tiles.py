"""ci= on the exact O(n²) tile roads: the streamed leave-one-group-out statistics are exact.

Each test recomputes the metric naively (float64 matrices, literal formulas or the
``dcor`` package) on the rows minus each of the 20 contiguous row groups and
demands that the streamed interval is the jackknife interval of those naive
values, to ~1e-10 (the endpoints are smooth functions of the leave-out values).
"""

from __future__ import annotations

import math

import dcor as dcor_pkg
import numpy as np
import pytest
from scipy.spatial.distance import pdist

import bigalign
from bigalign.errors import DegenerateInputError, InvalidInputError
from bigalign.intervals import CENTER_UNBIASED, DEFAULT_CI_GROUPS, jackknife_interval, row_groups
from bigalign.metrics._kernel_nonlinear import METRIC_FNS, nonlinear_terms
from bigalign.options import EngineOptions

import kernel_refs as kr

N = 90  # > 2·20 rows: groups of 4-5 rows, and several tiles with block_size=17
TOL = 1e-10


@pytest.fixture(scope="module")
def pair():
    rng = np.random.default_rng(11)
    x = rng.normal(size=(N, 4)) + 2.0
    y = np.tanh(x[:, :3] @ rng.normal(size=(3, 3))) + 0.4 * rng.normal(size=(N, 3))
    z = x[:, 1:3] + 0.5 * rng.normal(size=(N, 2))
    return x, y, z


def _leave_outs(n: int) -> list[np.ndarray]:
    b = row_groups(n, DEFAULT_CI_GROUPS)
    return [np.r_[0 : b[g], b[g + 1] : n] for g in range(DEFAULT_CI_GROUPS)]


def _assert_interval(r, value: float, loo: list[float], scale: str, level: float = 0.95, unbiased: tuple | None = None) -> None:
    """r is ``value`` with the jackknife interval of ``loo``; a biased estimate (``unbiased`` = the naive unbiased
    estimate and its leave-out values) with the interval of its unbiased form (intervals.estimator_interval)."""
    centre, centre_loo = (value, loo) if unbiased is None else unbiased
    want = jackknife_interval(centre, np.array(centre_loo), level, scale=scale)  # type: ignore[arg-type]
    assert r.value == pytest.approx(value, rel=TOL, abs=1e-13)
    assert r.parameters["ci_se"] == pytest.approx(want.se, rel=1e-9)
    assert r.ci == pytest.approx(want.bounds, rel=TOL, abs=1e-13)
    assert r.ci_level == level
    assert r.parameters["ci_scale"] == want.scale and r.parameters["ci_groups"] == DEFAULT_CI_GROUPS
    assert "sampling of rows" in r.parameters["ci_about"]
    if unbiased is None:
        assert "ci_center" not in r.parameters and "value_outside_ci" not in r.flags
    else:
        assert r.parameters["ci_center"] == CENTER_UNBIASED
        assert r.parameters["ci_center_value"] == pytest.approx(centre, rel=TOL, abs=1e-13)
        assert ("value_outside_ci" in r.flags) == (not r.ci[0] <= r.value <= r.ci[1])


def _naive_kernel(metric: str, x, y, kernel: str, sx: float, sy: float, est: str) -> float:
    K, L = kr.kernel_matrix(x, kernel, sx), kr.kernel_matrix(y, kernel, sy)
    if metric == "hsic":
        return kr.hsic(K, L, est)
    if metric == "cka":
        return kr.cka(K, L, est)
    if est == "unbiased":  # KA's unbiased form: the ratio of the pair means over i ≠ j
        off = ~np.eye(len(K), dtype=bool)
        return float(np.sum((K * L)[off]) / math.sqrt(np.sum((K * K)[off]) * np.sum((L * L)[off])))
    return kr.kernel_alignment(K, L)


@pytest.mark.parametrize("kernel", ["rbf", "laplacian"])
@pytest.mark.parametrize("metric,estimator", [("cka", "unbiased"), ("cka", "biased"), ("hsic", "unbiased"), ("hsic", "biased"), ("kernel_alignment", "biased")])
def test_kernel_leave_outs_are_exact(pair, kernel, metric, estimator):
    x, y, _ = pair
    kw = dict(kernel=kernel, method="exact", ci=0.95, block_size=17)
    if metric != "kernel_alignment":
        kw["estimator"] = estimator
    r = getattr(bigalign, metric)(x, y, **kw)
    sx, sy = r.parameters["bandwidth_x"], r.parameters["bandwidth_y"]  # fixed at the full-sample choice
    value = _naive_kernel(metric, x, y, kernel, sx, sy, estimator)
    loo = [_naive_kernel(metric, x[k], y[k], kernel, sx, sy, estimator) for k in _leave_outs(N)]
    unbiased = None
    if estimator == "biased":  # V-statistics (KA is one): the interval of the unbiased form on the same rows
        unbiased = (_naive_kernel(metric, x, y, kernel, sx, sy, "unbiased"),
                    [_naive_kernel(metric, x[k], y[k], kernel, sx, sy, "unbiased") for k in _leave_outs(N)])  # fmt: skip
    centre = value if unbiased is None else unbiased[0]
    _assert_interval(r, value, loo, "identity" if metric == "hsic" or centre <= 0 else "logit", unbiased=unbiased)
    assert r.parameters["ci_bandwidth"].startswith("fixed at the full-sample choice")


def test_kernel_streamed_leave_out_terms_equal_naive_terms(pair):
    """The leave-one-group-out terms themselves (not only the interval made from them)."""
    x, y, _ = pair
    job = nonlinear_terms(
        x, y, kernel="rbf", bandwidth=1.3, method="exact", n_features=None, seed=0, estimator="unbiased",
        options=EngineOptions(block_size=23), ci_level=0.9,
    )  # fmt: skip
    assert job.loo is not None and len(job.loo) == DEFAULT_CI_GROUPS
    for k, t in zip(_leave_outs(N), job.loo):
        K, L = kr.kernel_matrix(x[k], "rbf", 1.3), kr.kernel_matrix(y[k], "rbf", 1.3)
        assert t.n == k.size
        assert t.hxy == pytest.approx(kr.hsic_u(K, L), rel=TOL)
        assert t.hxx == pytest.approx(kr.hsic_u(K, K), rel=TOL)
        assert t.kl == pytest.approx(float(np.sum(K * L)), rel=TOL)
        assert METRIC_FNS["cka"](t) == pytest.approx(kr.cka(K, L, "unbiased"), rel=TOL)


def _dcor_naive(x, y, estimator: str, what: str) -> float:
    if what == "dcov":
        f = dcor_pkg.u_distance_covariance_sqr if estimator == "unbiased" else dcor_pkg.distance_covariance_sqr
    else:
        f = dcor_pkg.u_distance_correlation_sqr if estimator == "unbiased" else dcor_pkg.distance_correlation_sqr
    return float(f(x, y))


@pytest.mark.parametrize("what", ["dcor", "dcov"])
@pytest.mark.parametrize("estimator", ["unbiased", "biased"])
def test_dcor_leave_outs_are_exact(pair, what, estimator):
    x, y, _ = pair
    r = getattr(bigalign, what)(x, y, method="exact", estimator=estimator, ci=0.9, block_size=17)
    value = _dcor_naive(x, y, estimator, what)
    loo = [_dcor_naive(x[k], y[k], estimator, what) for k in _leave_outs(N)]
    unbiased = None
    if estimator == "biased":  # the V-statistic's interval is the U-statistic's on the same rows
        unbiased = (_dcor_naive(x, y, "unbiased", what), [_dcor_naive(x[k], y[k], "unbiased", what) for k in _leave_outs(N)])
    _assert_interval(r, value, loo, "identity" if what == "dcov" or value <= 0 else "logit", level=0.9, unbiased=unbiased)


def test_rsa_leave_outs_are_exact(pair):
    x, y, _ = pair
    r = bigalign.rsa(x, y, method="exact", ci=0.95, block_size=17)
    value = float(np.corrcoef(pdist(x), pdist(y))[0, 1])
    loo = [float(np.corrcoef(pdist(x[k]), pdist(y[k]))[0, 1]) for k in _leave_outs(N)]
    _assert_interval(r, value, loo, "fisher")


def test_partial_dcor_leave_outs_are_exact(pair):
    x, y, z = pair
    r = bigalign.partial_dcor(x, y, z, method="exact", ci=0.95)
    value = float(dcor_pkg.partial_distance_correlation(x, y, z))
    loo = [float(dcor_pkg.partial_distance_correlation(x[k], y[k], z[k])) for k in _leave_outs(N)]
    _assert_interval(r, value, loo, "fisher")


def _energy_naive(a, b, estimator: str) -> float:
    from scipy.spatial.distance import cdist

    if estimator == "biased":
        return float(dcor_pkg.energy_distance(a, b))
    na, nb = len(a), len(b)
    return float(2 * cdist(a, b).mean() - cdist(a, a).sum() / (na * (na - 1)) - cdist(b, b).sum() / (nb * (nb - 1)))


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_energy_distance_leave_outs_are_exact(pair, estimator):
    x, _, _ = pair
    a, b = x[:70], x[20:] * 1.1 + 0.2  # samples of different sizes
    r = bigalign.energy_distance(a, b, estimator=estimator, method="exact", ci=0.95, block_size=19)
    value = _energy_naive(a, b, estimator)
    pairs = list(zip(_leave_outs(len(a)), _leave_outs(len(b))))
    loo = [_energy_naive(a[ka], b[kb], estimator) for ka, kb in pairs]
    unbiased = None
    if estimator == "biased":  # the V-statistic's interval is the U-statistic's on the same rows
        unbiased = (_energy_naive(a, b, "unbiased"), [_energy_naive(a[ka], b[kb], "unbiased") for ka, kb in pairs])
    _assert_interval(r, value, loo, "identity", unbiased=unbiased)


def test_interval_does_not_change_the_estimate(pair):
    x, y, _ = pair
    for f, kw in ((bigalign.cka, dict(kernel="rbf", method="exact")), (bigalign.dcor, dict(method="exact")), (bigalign.rsa, dict(method="exact"))):
        plain, with_ci = f(x, y, **kw), f(x, y, ci=0.95, **kw)
        assert with_ci.value == pytest.approx(plain.value, rel=1e-12)
        assert plain.ci is None and with_ci.ci[0] < with_ci.value < with_ci.ci[1]


# ---------------------------------------------------------------------------
# roads and options without an interval: a clear error, never a silent None
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda x, y, z: bigalign.cka(x, y, kernel="rbf", method="block", block_rows=16, ci=0.95),  # 5 blocks < 40
        lambda x, y, z: bigalign.kernel_alignment(x, y, kernel="laplacian", method="block", block_rows=16, ci=0.95),
        lambda x, y, z: bigalign.dcor(x, y, method="block", block_rows=16, ci=0.95),  # 5 blocks < 40
        lambda x, y, z: bigalign.partial_dcor(x, y, z, method="block", block_rows=16, ci=0.95),
        lambda x, y, z: bigalign.energy_distance(x, x + 0.5, method="block", block_rows=16, ci=0.95),
    ],
)
def test_approximate_roads_refuse_ci_naming_exact(pair, call):
    x, y, z = pair
    with pytest.raises(InvalidInputError, match="method='exact'"):
        call(x, y, z)


@pytest.mark.parametrize("kw", [dict(compare="spearman"), dict(compare="kendall"), dict(distance="cosine"), dict(method="sampled")])
def test_every_rsa_form_has_an_interval(pair, kw):
    """Rank comparisons, non-Euclidean distances and sampled pairs carry a row interval too
    (their exactness: tests/test_ci_mmd_rsa.py)."""
    x, y, _ = pair
    r = bigalign.rsa(x, y, ci=0.95, **kw)
    assert r.ci[0] <= r.value <= r.ci[1] and r.parameters["ci_about"].startswith("sampling of rows")


def test_ci_validation(pair):
    x, y, _ = pair
    for bad in (1.0, 0, "0.95", True):
        with pytest.raises(InvalidInputError, match="'ci' parameter"):
            bigalign.cka(x, y, kernel="rbf", method="exact", ci=bad)
        with pytest.raises(InvalidInputError, match="'ci' parameter"):
            bigalign.dcor(x, y, ci=bad)
    with pytest.raises(InvalidInputError, match="at least 40 rows"):
        bigalign.cka(x[:30], y[:30], kernel="rbf", method="exact", ci=0.95)
    with pytest.raises(InvalidInputError, match="at least 40 rows"):
        bigalign.rsa(x[:30], y[:30], ci=0.95)


def test_undefined_leave_out_is_an_error_not_nan():
    """A leave-out estimate that is undefined (a constant y once a group is left out) raises."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(60, 2))
    y = np.zeros((60, 1))
    y[:3] = 1.0  # only group 0 varies: leaving it out makes y constant
    with pytest.raises(DegenerateInputError, match="row group 0"):
        bigalign.dcor(x, y, method="exact", ci=0.95)
    with pytest.raises(DegenerateInputError, match="row group 0"):
        bigalign.cka(x, y, kernel="rbf", bandwidth=1.0, method="exact", estimator="biased", ci=0.95)


def test_auto_road_carries_the_interval_when_exact(pair):
    x, y, _ = pair
    r = bigalign.cka(x, y, kernel="rbf", ci=0.95)  # auto: exact tiles at this n
    assert r.method == "exact-tiles" and r.ci is not None
    assert math.isfinite(r.parameters["ci_se"])


def test_biased_estimates_have_the_unbiased_estimators_interval(pair):
    """One rule on every road: a V-statistic's interval is the interval of the unbiased estimator on the same rows
    (the same population value) — identical to what estimator='unbiased' returns — while its value stays its own."""
    x, y, _ = pair
    big = np.random.default_rng(1).normal(size=(400, 3))
    by = big[:, :2] + 0.5 * big[:, 1:]
    calls = [
        (bigalign.dcor, (x, y), dict(method="exact")),
        (bigalign.dcov, (x, y), dict(method="exact")),
        (bigalign.cka, (x, y), dict(kernel="rbf", method="exact")),
        (bigalign.hsic, (x, y), dict(kernel="laplacian", method="exact")),
        (bigalign.cka, (big, by), dict(kernel="rbf", method="block", block_rows=8, seed=3)),
        (bigalign.cka, (big, by), dict(kernel="rbf", method="rff", n_features=96)),
        (bigalign.cka, (x, y), dict()),
        (bigalign.hsic, (x, y), dict()),
        (bigalign.energy_distance, (x[:60], y[:60, :1] @ np.ones((1, 4))), dict(method="exact")),
    ]
    for f, args, kw in calls:
        b = f(*args, estimator="biased", ci=0.95, **kw)
        u = f(*args, estimator="unbiased", ci=0.95, **kw)
        assert b.ci == pytest.approx(u.ci, rel=1e-12, abs=1e-15), (f.__name__, kw)
        assert b.parameters["ci_center"] == CENTER_UNBIASED and b.parameters["ci_center_value"] == pytest.approx(u.value, rel=1e-12)
        # the value is the biased estimate (rff: its grouped feature moments merge in another order, ~1e-9 apart)
        assert b.value == pytest.approx(f(*args, estimator="biased", **kw).value, rel=1e-8)
        assert "ci_center" not in u.parameters and "ci_bias" not in b.parameters
    # the dCor block road averages U-statistics with either estimator: its own interval, no centre to change
    assert "ci_center" not in bigalign.dcor(big, by, method="block", block_rows=8, estimator="biased", ci=0.95).parameters


def test_biased_value_outside_its_interval_is_flagged():
    """At small n a V-statistic's O(1/n) bias can exceed the half-width of its (unbiased form's) interval."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(60, 6))
    y = 0.3 * x + rng.normal(size=(60, 6))
    r = bigalign.dcor(x, y, method="exact", estimator="biased", ci=0.5)
    assert r.value > r.ci[1] and "value_outside_ci" in r.flags
    assert "value_outside_ci" not in bigalign.dcor(x, y, method="exact", ci=0.5).flags


def test_dcor_block_road_interval_is_the_jackknife_over_groups_of_blocks():
    """ci on dcor's block road: the estimate without each of 20 contiguous groups of its random blocks,
    against per-block U-statistics of the dcor package on the same blocks."""
    from bigalign.metrics._blocks import partition

    rng = np.random.default_rng(5)
    n, B = 400, 8
    x = rng.normal(size=(n, 3))
    y = x @ rng.normal(size=(3, 2)) + rng.normal(size=(n, 2))
    r = bigalign.dcor(x, y, method="block", block_rows=B, seed=4, ci=0.95)
    perm, bounds = partition(n, B, 4)
    rep = np.array([
        [float(f(x[perm[a:b]], w[perm[a:b]])) for f, w in ((dcor_pkg.u_distance_covariance_sqr, y),)]
        + [float(dcor_pkg.u_distance_covariance_sqr(x[perm[a:b]], x[perm[a:b]])), float(dcor_pkg.u_distance_covariance_sqr(y[perm[a:b]], y[perm[a:b]]))]
        for a, b in zip(bounds[:-1], bounds[1:])
    ])  # fmt: skip
    f = lambda t: t[0] / math.sqrt(t[1] * t[2])  # noqa: E731
    gb = row_groups(rep.shape[0], DEFAULT_CI_GROUPS)
    loo = [f(rep[np.r_[0 : gb[g], gb[g + 1] : rep.shape[0]]].mean(axis=0)) for g in range(DEFAULT_CI_GROUPS)]
    _assert_interval(r, f(rep.mean(axis=0)), loo, "logit")
    assert "groups of the random blocks" in r.parameters["ci_blocks"] and "ci_bias" not in r.parameters
    with pytest.raises(InvalidInputError, match="at least 40 blocks"):
        bigalign.dcor(x, y, method="block", block_rows=16, ci=0.95)


def test_kernel_block_road_interval_is_the_jackknife_over_groups_of_blocks():
    """Unbiased HSIC on the block road is the mean of the blocks' unbiased HSIC, so its leave-out values are
    means over the kept blocks of naive per-block HSICs (kernel_refs) on the same seeded blocks."""
    from bigalign.metrics._blocks import partition

    rng = np.random.default_rng(6)
    n, B = 400, 8
    x = rng.normal(size=(n, 3))
    y = np.tanh(x @ rng.normal(size=(3, 2))) + 0.5 * rng.normal(size=(n, 2))
    r = bigalign.hsic(x, y, kernel="rbf", bandwidth=1.5, method="block", block_rows=B, seed=2, ci=0.95)
    perm, bounds = partition(n, B, 2)
    per_block = np.array([
        kr.hsic_u(kr.kernel_matrix(x[perm[a:b]], "rbf", 1.5), kr.kernel_matrix(y[perm[a:b]], "rbf", 1.5))
        for a, b in zip(bounds[:-1], bounds[1:])
    ])  # fmt: skip
    gb = row_groups(per_block.size, DEFAULT_CI_GROUPS)
    loo = [per_block[np.r_[0 : gb[g], gb[g + 1] : per_block.size]].mean() for g in range(DEFAULT_CI_GROUPS)]
    _assert_interval(r, float(per_block.mean()), loo, "identity")
    assert "groups of the random blocks" in r.parameters["ci_blocks"]
    c = bigalign.cka(x, y, kernel="rbf", method="block", block_rows=B, ci=0.95)
    assert c.ci[0] < c.value < c.ci[1] and c.parameters["ci_scale"] == "logit"
