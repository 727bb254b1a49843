"""The shared block-jackknife interval (bigalign.intervals)."""

import math

import numpy as np
import pytest

from bigalign.errors import InvalidInputError
from bigalign.intervals import check_ci, group_of_rows, jackknife_interval, jackknife_se, row_groups


def test_check_ci_levels():
    assert check_ci("cka", None) is None
    assert check_ci("cka", 0.9) == 0.9
    for bad in (0, 1, 1.5, -0.1, True, "0.95", float("nan")):
        with pytest.raises(InvalidInputError, match="'ci' parameter of cka"):
            check_ci("cka", bad)


def test_row_groups_cover_rows_contiguously():
    b = row_groups(103, 20)
    assert b[0] == 0 and b[-1] == 103 and len(b) == 21
    sizes = np.diff(b)
    assert sizes.max() - sizes.min() <= 1
    with pytest.raises(InvalidInputError, match="at least 40 rows"):
        row_groups(39, 20)
    pieces = group_of_rows(b, 3, 30)
    assert pieces[0][1] == 3 and pieces[-1][2] == 30
    assert sum(hi - lo for _, lo, hi in pieces) == 27
    assert all(b[g] <= lo < hi <= b[g + 1] for g, lo, hi in pieces)


def test_jackknife_of_a_mean_is_the_standard_error():
    # for the mean, the delete-a-group jackknife with equal groups reproduces sd/sqrt(n)
    # of the group means exactly: se^2 = var(group means)/G
    rng = np.random.default_rng(0)
    x = rng.normal(size=400)
    b = row_groups(400, 20)
    loo = np.array([np.delete(x, np.s_[b[g]:b[g + 1]]).mean() for g in range(20)])
    gm = np.array([x[b[g]:b[g + 1]].mean() for g in range(20)])
    assert jackknife_se(loo) == pytest.approx(gm.std(ddof=1) / math.sqrt(20), rel=1e-12)


def test_interval_coverage_of_a_mean():
    # 400 repetitions of a 95% interval for a normal mean: coverage 0.95 with binomial
    # sd 0.011, so [0.92, 0.98] is a 2.7-sd band around the nominal level
    rng = np.random.default_rng(1)
    hits = 0
    for _ in range(400):
        x = rng.normal(loc=0.3, size=200)
        b = row_groups(200, 20)
        loo = [np.delete(x, np.s_[b[g]:b[g + 1]]).mean() for g in range(20)]
        iv = jackknife_interval(float(x.mean()), loo, 0.95)
        hits += iv.low <= 0.3 <= iv.high
    assert 0.92 <= hits / 400 <= 0.98


def test_bounded_scale_stays_inside_and_falls_back():
    iv = jackknife_interval(0.98, np.linspace(0.95, 0.995, 20), 0.95, scale="logit")
    assert iv.scale == "logit" and 0 < iv.low < 0.98 < iv.high < 1
    iv = jackknife_interval(0.5, np.r_[np.full(19, 0.5), 1.0], 0.95, scale="logit")
    assert iv.scale == "identity"
    iv = jackknife_interval(-0.2, np.linspace(-0.3, -0.1, 20), 0.9, scale="fisher")
    assert iv.scale == "fisher" and -1 < iv.low < -0.2 < iv.high < 1


def test_bias_corrected_centre_removes_a_plug_in_bias():
    # x̄² estimates μ² with bias σ²/n; the jackknife-corrected centre removes it (for equal
    # groups it is x̄² minus the group-means variance over G, unbiased for μ²).  Over 2000
    # repetitions the mean of the corrected centre is within 4 Monte-Carlo sd of μ² = 0.04
    # while the plug-in's bias 1/40 = 0.025 is ~20 sd away.
    rng = np.random.default_rng(2)
    n, G, mu = 40, 20, 0.2
    b = row_groups(n, G)
    plain, corrected = [], []
    for _ in range(2000):
        x = rng.normal(loc=mu, size=n)
        loo = [np.delete(x, np.s_[b[g]:b[g + 1]]).mean() ** 2 for g in range(G)]
        iv = jackknife_interval(float(x.mean() ** 2), loo, 0.95, bias_correct=True)
        assert iv.bias_corrected and iv.low < iv.center < iv.high
        plain.append(x.mean() ** 2)
        corrected.append(iv.center)
    corrected = np.array(corrected)
    mc_sd = corrected.std() / np.sqrt(corrected.size)
    assert abs(corrected.mean() - mu**2) < 4 * mc_sd
    assert np.mean(plain) - mu**2 > 10 * mc_sd


def test_estimator_interval_rule():
    """One rule: an unbiased estimate's interval is around it; a biased one with an unbiased form gets that form's
    interval (the point value kept, flagged where outside); a biased one without, the bias-corrected centre."""
    from bigalign.intervals import CENTER_JACKKNIFE, CENTER_UNBIASED, estimator_interval, with_interval
    from bigalign.result import Result

    loo = np.linspace(0.40, 0.44, 20)
    plain = estimator_interval(0.42, loo, 0.95, scale="logit")
    assert plain == jackknife_interval(0.42, loo, 0.95, scale="logit") and plain.center_kind is None
    loo_u = loo - 0.05
    iv = estimator_interval(0.42, None, 0.95, scale="logit", estimator="biased", unbiased=(0.37, loo_u))
    want = jackknife_interval(0.37, loo_u, 0.95, scale="logit")
    assert iv.bounds == want.bounds and iv.center == 0.37 and iv.center_kind == CENTER_UNBIASED
    fallback = estimator_interval(0.42, loo, 0.95, estimator="biased")
    assert fallback.bounds == jackknife_interval(0.42, loo, 0.95, bias_correct=True).bounds
    assert fallback.center_kind == CENTER_JACKKNIFE
    r = Result(metric="m", value=0.42, estimator="biased", method="exact", n_samples=100)
    out = with_interval(r, iv)
    assert out.ci == iv.bounds and out.parameters["ci_center"] == CENTER_UNBIASED and out.parameters["ci_center_value"] == 0.37
    assert ("value_outside_ci" in out.flags) == (not iv.low <= 0.42 <= iv.high)
    assert "value_outside_ci" not in with_interval(r, plain).flags


def test_extra_se_is_added_in_quadrature():
    """A random-feature road's stderr (an error the row jackknife cannot see) widens the interval in quadrature,
    on a transformed scale through the derivative at the centre."""
    from scipy.stats import t as student_t

    from bigalign.intervals import jackknife_se

    loo = np.linspace(0.40, 0.44, 20)
    q = student_t.ppf(0.975, 19)
    iv = jackknife_interval(0.42, loo, 0.95, extra_se=0.01)
    assert iv.high - iv.low == pytest.approx(2 * q * np.hypot(jackknife_se(loo), 0.01), rel=1e-12)
    assert iv.se == jackknife_se(loo) and iv.parameters()["ci_approximation_se"] == 0.01
    iv = jackknife_interval(0.42, loo, 0.95, scale="logit", extra_se=0.01)
    z = np.log(loo / (1 - loo))
    c = iv.center
    want = 2 * q * np.hypot(jackknife_se(z), 0.01 / (c * (1 - c)))
    assert np.log(iv.high / (1 - iv.high)) - np.log(iv.low / (1 - iv.low)) == pytest.approx(want, rel=1e-10)
    assert "ci_approximation_se" not in jackknife_interval(0.42, loo, 0.95).parameters()


def test_dependency_interval_special_cases():
    from bigalign.intervals import CI_ABOUT_GRAPH, dependency_interval

    rng = np.random.default_rng(0)
    n = 40
    q = rng.uniform(0.2, 0.6, size=n)
    e = q - q.mean()
    none = np.zeros(0, dtype=np.int64)
    iv, df = dependency_interval(float(q.mean()), q, none, none, 0.95)  # no edges: the iid variance of a mean
    assert iv.se == pytest.approx(math.sqrt(e @ e) / n, rel=1e-12) and iv.parameters()["ci_about"] == CI_ABOUT_GRAPH
    assert df == math.inf
    # one edge a → b counts the pair once per direction, however often and in whichever direction it is listed
    one, _ = dependency_interval(float(q.mean()), q, np.array([3, 5, 3]), np.array([5, 3, 3]), 0.95)
    assert one.se == pytest.approx(math.sqrt(e @ e + 2 * e[3] * e[5]) / n, rel=1e-12)
    # groups: the group sums replace the diagonal, edges within a group add nothing more
    b = np.array([0, 10, 20, 30, 40])
    g, df = dependency_interval(float(q.mean()), q, np.array([0, 15]), np.array([1, 25]), 0.95, bounds=b)
    sums = np.add.reduceat(e, b[:-1])
    V = sums @ sums + 2 * e[15] * e[25]
    assert g.se == pytest.approx(math.sqrt(V) / n, rel=1e-12) and g.groups == 4
    assert df == pytest.approx(3 * (V / (sums @ sums)) ** 2, rel=1e-12)  # Satterthwaite: the group sums are the noisy part
    # every pair adjacent: the centred scores sum to zero, so no positive variance
    full = np.array([(i, j) for i in range(n) for j in range(n) if i < j]).T
    assert dependency_interval(float(q.mean()), q, full[0], full[1], 0.95) is None
