"""bigalign.hsic_test: exact null moments, every route against every other,
calibration under independence, power under dependence, inputs, errors.

Calibration intervals.  With R independent repetitions of a test of exact level
α, the number of rejections is Binomial(R, α): at R = 500, α = 0.05 its rate has
standard deviation √(0.05·0.95/500) ≈ 0.0097, so [0.03, 0.07] is ±2.05 sd.  A
calibrated test falls outside with probability ≈ 4 %, a test whose true level
is 0.025 or 0.075 (half or 1.5× the nominal) inside with probability < 1 %.
Every repetition is seeded, so each run of the suite is the same draw: the
assertion is deterministic and the measured rates are quoted in
``bigalign.metrics.hsic_test``' docstring.
"""

from __future__ import annotations

import dataclasses
import doctest
import itertools
import json
import math

import dask.array as da
import numpy as np
import pytest

import bigalign
import bigalign.stats as stats
import bigalign._numba.permute as permute
from bigalign import DegenerateInputError, InvalidInputError, NonFiniteError
import bigalign.metrics.hsic_test as hsic_test_module
from bigalign import TestResult, hsic_test

ALPHA = 0.05
CAL_REPS = 500


def independent(r: int, n: int = 100) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([r, 77])
    return rng.standard_normal((n, 2)), rng.standard_t(4, size=(n, 1))


def quadratic(r: int, n: int = 100, noise: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """y = x² + noise·ε: dependent, uncorrelated (invisible to the linear kernel)."""
    rng = np.random.default_rng([r, 78])
    x = rng.standard_normal((n, 1))
    return x, x**2 + noise * rng.standard_normal((n, 1))


def rejection_rate(data, reps: int, **kw) -> float:
    return float(np.mean([hsic_test(*data(r), seed=r, **kw).pvalue < ALPHA for r in range(reps)]))


def centred_gram(k: np.ndarray) -> np.ndarray:
    n = k.shape[0]
    h = np.eye(n) - 1.0 / n
    return h @ k @ h


def rbf(x: np.ndarray, sigma: float) -> np.ndarray:
    d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    return np.exp(-d2 / (2 * sigma**2))


# --------------------------------------------------------------------------- #
# the null moments and the statistic, against brute force
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("n", [5, 6, 7])
def test_gamma_moments_are_the_exact_permutation_moments(n):
    """Mean and variance of tr(K_c P L_c Pᵀ) over all n! permutations, enumerated."""
    rng = np.random.default_rng(n)
    x, y = rng.standard_normal((n, 2)), rng.standard_normal((n, 3)) ** 3
    a, b = centred_gram(rbf(x, 1.0)), centred_gram((y @ y.T + 1) ** 2)  # any symmetric kernels
    values = np.array([np.sum(a * b[np.ix_(p, p)]) for p in map(list, itertools.permutations(range(n)))])
    mean, var = stats._null_moments(n, stats._gram_stats(a, False), stats._gram_stats(b, False))
    assert mean == pytest.approx(values.mean(), rel=1e-12)
    assert var == pytest.approx(values.var(), rel=1e-10)


def test_gamma_moments_tend_to_gretton_et_al():
    """Gretton et al. (2008): mean (1/n)(1 + μxμy − μx − μy) is n/(n−1) × ours (exactly, k(x,x) = 1);
    their variance 2(n−4)(n−5)/(n)_4 · mean_{i≠j}(K_c)ᵢⱼ² · mean_{i≠j}(L_c)ᵢⱼ² (the permutation
    average of their mean_{i≠j}((K_c)ᵢⱼ(L_c)ᵢⱼ)²) agrees to O(1/n): measured 0.886 / 0.974 / 0.994 at
    n = 50 / 200 / 800."""
    rng = np.random.default_rng(3)
    n = 800
    x, y = rng.standard_normal((n, 2)), rng.standard_t(3, size=(n, 1))
    k, l = rbf(x, 1.0), rbf(y, 1.5)
    a, b = stats._gram_stats(centred_gram(k), False), stats._gram_stats(centred_gram(l), False)
    mean, var = stats._null_moments(n, a, b)
    mx, my = (k.sum() - n) / (n * (n - 1)), (l.sum() - n) / (n * (n - 1))
    gretton_mean = (1 + mx * my - mx - my) / n
    assert gretton_mean / (mean / n**2) == pytest.approx(n / (n - 1), rel=1e-10)
    ax, ay = (a.f - a.s) / (n * (n - 1)), (b.f - b.s) / (n * (n - 1))
    gretton_var = 2 * (n - 4) * (n - 5) / (n * (n - 1) * (n - 2) * (n - 3)) * ax * ay
    assert gretton_var / (var / n**4) == pytest.approx(1.0, abs=0.02)


def test_permutation_loop_matches_numpy_twin():
    rng = np.random.default_rng(0)
    for n in (1, 2, 5, 37):
        a = rng.standard_normal((n, n))
        b = rng.standard_normal((n, n))
        a, b = a + a.T, b + b.T
        perms = np.stack([rng.permutation(n) for _ in range(9)]).astype(np.int32)
        out = np.empty(9)
        permute.permuted_traces(a, b, perms, out)
        np.testing.assert_allclose(out, permute.permuted_traces_numpy(a, b, perms), rtol=1e-12, atol=1e-12 * n)


def test_feature_traces_equal_gram_traces():
    """t = ‖Φ_c‖², f = ‖Φ_cᵀΦ_c‖², s = Σ‖φ_c,i‖⁴ are tr K_c, ‖K_c‖², Σ(K_c)ᵢᵢ² of K_c = Φ_cΦ_cᵀ."""
    rng = np.random.default_rng(1)
    phi = rng.standard_normal((60, 7)) + 5.0
    stats._centre_features(phi)
    f, g = stats._feature_stats(phi, False), stats._gram_stats(phi @ phi.T, False)
    for attr in ("t", "f", "s"):
        assert getattr(f, attr) == pytest.approx(getattr(g, attr), rel=1e-12)


@pytest.mark.parametrize("kernel", ["rbf", "linear"])
def test_statistic_is_the_biased_hsic(kernel, rng):
    x, y = rng.standard_normal((40, 3)), rng.standard_normal((40, 2))
    r = hsic_test(x, y, kernel=kernel, null="gamma")
    ref = bigalign.hsic(x, y, kernel=kernel, estimator="biased", method="exact").value  # tr(KHLH)/(n−1)²
    assert r.value == pytest.approx(ref, rel=1e-10)
    if kernel == "rbf":
        s = r.parameters["bandwidth_x"], r.parameters["bandwidth_y"]
        brute = np.sum(centred_gram(rbf(x, s[0])) * centred_gram(rbf(y, s[1]))) / 39**2
        assert r.statistic == pytest.approx(brute, rel=1e-10)


# --------------------------------------------------------------------------- #
# every route against every other
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    "kw",
    [dict(kernel="linear"), dict(method="rff", n_features=16), dict(method="nystroem", n_features=12)],
    ids=["linear", "rff", "nystroem"],
)
def test_streamed_moments_equal_in_memory_routes(kw, monkeypatch, rng):
    """Gamma from streamed D×D moments = from in-memory features = from their Gram matrices."""
    x, y = rng.standard_normal((30, 4)) + 3.0, rng.standard_normal((30, 5))
    out = {}
    for mat, gram in ((False, False), (True, False), (True, True)):
        monkeypatch.setattr(hsic_test_module, "_materialise", lambda *a, m=mat: m)
        monkeypatch.setattr(hsic_test_module, "_use_gram", lambda *a, g=gram: g)
        out[mat, gram] = hsic_test(x, y, null="gamma", scheduler="sync", block_size=7, **kw)
    ref = out[True, True]
    for r in out.values():
        assert r.statistic == pytest.approx(ref.statistic, rel=1e-10)
        assert r.pvalue == pytest.approx(ref.pvalue, rel=1e-9)
        assert r.null["variance"] == pytest.approx(ref.null["variance"], rel=1e-9)
    assert {r.parameters["representation"] for r in out.values()} == {
        "streamed feature moments", "features in memory", "features in memory, kernel matrices"
    }  # fmt: skip


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_permutation_gram_loop_equals_feature_gemm(kernel, monkeypatch, rng):
    """The same permutations give the same p-value through K_c P L_c Pᵀ and ‖Φ_cᵀPΨ_c‖²."""
    x, y = quadratic(5, n=60, noise=3.0)
    kw = dict(kernel=kernel, null="permutation", n_permutations=300, seed=11)
    if kernel == "rbf":
        kw.update(method="rff", n_features=32)
    out = []
    for gram in (True, False):
        monkeypatch.setattr(hsic_test_module, "_use_gram", lambda *a, g=gram: g)
        out.append(hsic_test(x, y, **kw))
    assert out[0].parameters["representation"] != out[1].parameters["representation"]
    assert out[0].statistic == pytest.approx(out[1].statistic, rel=1e-10)
    assert out[0].null["n_at_least"] == out[1].null["n_at_least"]
    assert out[0].pvalue == out[1].pvalue
    assert out[0].null["mean"] == pytest.approx(out[1].null["mean"], rel=1e-10)


@pytest.mark.parametrize("kernel", ["rbf", "laplacian"])
def test_exact_kernel_tiles_equal_in_memory_gram(kernel, monkeypatch, rng):
    """Beyond EXACT_MAX_N the exact gamma test streams over tiles; it must equal the in-memory one."""
    x, y = quadratic(1, n=80, noise=3.0)
    x = np.hstack([x, rng.standard_normal((80, 2))])
    ref = hsic_test(x, y, kernel=kernel, method="exact", null="gamma")
    monkeypatch.setattr(hsic_test_module, "EXACT_MAX_N", 50)
    tiled = hsic_test(x, y, kernel=kernel, method="exact", null="gamma", block_size=16, scheduler="sync")
    assert (ref.parameters["representation"], tiled.parameters["representation"]) == ("kernel matrices", "kernel tiles")
    assert tiled.statistic == pytest.approx(ref.statistic, rel=1e-9)
    assert tiled.pvalue == pytest.approx(ref.pvalue, rel=1e-8)
    assert tiled.null["shape"] == pytest.approx(ref.null["shape"], rel=1e-8)


def test_nystroem_with_every_row_as_landmark_is_the_exact_kernel(rng):
    x, y = rng.standard_normal((50, 2)), rng.standard_normal((50, 2))
    ex = hsic_test(x, y, null="gamma")
    ny = hsic_test(x, y, null="gamma", method="nystroem", n_features=50)
    assert ny.statistic == pytest.approx(ex.statistic, rel=1e-8)
    assert ny.pvalue == pytest.approx(ex.pvalue, rel=1e-7)


def test_permutation_null_moments_match_the_exact_ones():
    """1,000 permuted values: their mean and variance within sampling error of the exact moments."""
    x, y = independent(0, n=60)
    p = hsic_test(x, y, null="permutation", n_permutations=1000)
    g = hsic_test(x, y, null="gamma")
    sd = math.sqrt(g.null["variance"])
    assert abs(p.null["mean"] - g.null["mean"]) < 4 * sd / math.sqrt(1000)
    assert p.null["variance"] == pytest.approx(g.null["variance"], rel=0.2)  # sd of a variance ≈ √(2/B)·(1 + kurtosis)


def test_ties_count_as_at_least(rng):
    """Binary x and y: T_π = T in exact arithmetic for every permutation with the same 2×2 table.
    Counted exactly with integers from the same permutations, they must all count as ≥."""
    n, B, seed = 40, 500, 3
    x = (rng.random((n, 1)) < 0.5).astype(float)
    y = (rng.random((n, 1)) < 0.4).astype(float)
    r = hsic_test(x, y, kernel="linear", null="permutation", n_permutations=B, seed=seed)
    # linear kernel, one column: n²·HSIC_b = (Σ xᵢyᵢ − Sx·Sy/n)², compared exactly as |n·a − Sx·Sy|
    xi, yi = x[:, 0].astype(int), y[:, 0].astype(int)
    sx, sy = int(xi.sum()), int(yi.sum())
    dev = abs(n * int(xi @ yi) - sx * sy)
    perm_rng = np.random.default_rng([seed, stats._PERMUTATION_TAG])
    count = sum(abs(n * int(xi @ yi[perm_rng.permutation(n)]) - sx * sy) >= dev for _ in range(B))
    assert r.null["n_at_least"] == count
    assert r.pvalue == (1 + count) / (1 + B)


# --------------------------------------------------------------------------- #
# calibration and power (acceptance)
# --------------------------------------------------------------------------- #

CALIBRATION = {
    "permutation-exact": dict(null="permutation", n_permutations=200),
    "gamma-exact": dict(null="gamma"),
    "permutation-rff": dict(null="permutation", n_permutations=200, method="rff", n_features=64),
    # 20 + 20 landmark features < n: the streamed-moments route, the one used at large n
    "gamma-nystroem-streamed": dict(null="gamma", method="nystroem", n_features=20, scheduler="sync"),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CALIBRATION))
def test_calibration_under_independence(name):
    """Rejection rate at α = 0.05 over 500 seeded independent samples (n = 100) in [0.03, 0.07].

    Measured: permutation-exact 0.058, gamma-exact 0.062, permutation-rff 0.050,
    gamma-nystroem-streamed 0.062 (over 2,000 further repetitions: 0.0505, 0.0535, -, 0.054).
    """
    rate = rejection_rate(independent, CAL_REPS, **CALIBRATION[name])
    assert 0.03 <= rate <= 0.07, f"{name}: rejection rate {rate:.3f} under independence"


@pytest.mark.parametrize("null", ["permutation", "gamma"])
def test_power_on_a_quadratic_dependence(null):
    """y = x² + 2ε at n = 100 (correlation 0), exact rbf, 100 seeded repetitions.  Measured:
    permutation 0.94, gamma 0.95 (and 1.00 for both at noise 0.5)."""
    power = rejection_rate(quadratic, 100, null=null, **({"n_permutations": 200} if null == "permutation" else {}))
    assert power > 0.8, f"power {power:.2f}"


def test_linear_kernel_has_little_power_where_rbf_has_much():
    """x and x² + 2ε are uncorrelated: the linear kernel (HSIC = ‖cov‖²) sees the dependence only
    through its heteroscedasticity (E[x²y²] ≠ E[x²]E[y²]), measured 0.15 against 0.96 for rbf."""
    linear = rejection_rate(quadratic, 100, kernel="linear", null="gamma")
    assert linear < 0.3


@pytest.mark.slow
def test_power_at_large_n_with_features():
    """n = 10,000 (> EXACT_MAX_N): auto → gamma on streamed Nyström features, y = x² + 8ε.
    Measured: 5 / 5 rejections, ≈ 1–2 s each; at n = 20,000 10 / 10 up to noise 16."""
    ps = []
    for r in range(5):
        res = hsic_test(*quadratic(r, n=10_000, noise=8.0), seed=r)
        assert (res.parameters["null"], res.method) == ("gamma", "nystroem")
        assert res.parameters["representation"] == "streamed feature moments"
        ps.append(res.pvalue)
    assert np.mean(np.array(ps) < ALPHA) > 0.8, ps


# --------------------------------------------------------------------------- #
# options, auto, determinism
# --------------------------------------------------------------------------- #


def test_auto_thresholds(monkeypatch):
    x, y = independent(0, n=60)
    r = hsic_test(x, y, n_permutations=50)
    assert (r.parameters["null"], r.method) == ("permutation", "exact")
    assert "60 <= 2000" in r.parameters["null_reason"]
    monkeypatch.setattr(hsic_test_module, "PERMUTATION_MAX_N", 50)
    monkeypatch.setattr(hsic_test_module, "EXACT_MAX_N", 50)
    r = hsic_test(x, y)
    assert (r.parameters["null"], r.method) == ("gamma", "nystroem")
    r = hsic_test(x, y, bandwidth=0.2)  # < 0.5 × median: Nyström is unreliable there
    assert r.method == "rff" and r.parameters["n_features"] == hsic_test_module.DEFAULT_N_FEATURES
    assert "Nystroem fails" in r.parameters["method_reason"]


@pytest.mark.parametrize(
    "kw",
    [
        dict(null="permutation", n_permutations=300),
        dict(null="permutation", n_permutations=300, method="rff", n_features=32),
        dict(null="gamma", method="nystroem", n_features=20, scheduler="threads", block_size=25),
        dict(null="permutation", n_permutations=300, kernel="linear"),
    ],
    ids=["perm-exact", "perm-rff", "gamma-streamed", "perm-linear"],
)
def test_same_seed_bit_identical_other_seed_differs(kw):
    x, y = quadratic(2, n=120, noise=6.0)
    a = hsic_test(x, y, seed=5, **kw)
    b = hsic_test(x, y, seed=5, **kw)
    assert a.to_dict() == b.to_dict()
    c = hsic_test(x, y, seed=6, **kw)
    if kw.get("null") == "permutation":
        assert c.null["mean"] != a.null["mean"]  # other permutations
    if kw.get("method") in ("rff", "nystroem"):
        assert c.statistic != a.statistic  # another feature map


def test_permutations_do_not_depend_on_the_batch_size(monkeypatch):
    x, y = quadratic(4, n=50, noise=4.0)
    a = hsic_test(x, y, n_permutations=257)
    monkeypatch.setattr(hsic_test_module, "_BATCH_BYTES", 4 * 50 * 3)  # 3 permutations per batch
    assert hsic_test(x, y, n_permutations=257).to_dict() == a.to_dict()


def test_result_object():
    x, y = quadratic(0, n=50, noise=0.5)
    r = hsic_test(x, y, n_permutations=99, alpha=0.02)
    assert isinstance(r, TestResult)
    assert r.reject and r.pvalue == 0.01 and r.alpha == 0.02  # the smallest p-value, 1/(B + 1)
    assert not dataclasses.replace(r, alpha=0.01).reject  # reject is p < alpha
    assert r.pvalue == (1 + r.null["n_at_least"]) / (1 + r.null["n_permutations"])
    d = json.loads(json.dumps(r.to_dict()))
    assert d["reject"] is True and d["parameters"]["null"] == "permutation" and d["method"] == "exact" and d["n_samples"] == 50
    assert d["value"] == float(r) == r.statistic
    assert d["parameters"]["bandwidth_x"] == r.parameters["bandwidth_x"]
    with pytest.raises(Exception):
        r.pvalue = 0.5  # type: ignore[misc]
    with pytest.raises(TypeError):
        r.null["n_permutations"] = 1  # type: ignore[index]
    assert "reject=True" in repr(r)
    g = hsic_test(x, y, null="gamma", alpha=0.5)
    assert g.null["shape"] == pytest.approx(g.null["mean"] ** 2 / g.null["variance"])
    assert not hsic_test(*independent(1, 50), null="gamma").reject


def test_docstring_examples():
    result = doctest.testmod(hsic_test_module)
    assert result.attempted > 0 and result.failed == 0


# --------------------------------------------------------------------------- #
# inputs
# --------------------------------------------------------------------------- #


def test_dask_zarr_and_store_layers_give_the_numpy_answer(tmp_path):
    zarr = pytest.importorskip("zarr")
    x, y = quadratic(3, n=90, noise=4.0)
    x = np.hstack([x, x**3]).astype(np.float32)
    with bigalign.ActivationWriter(tmp_path / "s.zarr", chunk_rows=32) as w:
        w.append({"a": x[:50], "b": y[:50]}, sample_ids=np.arange(50))
        w.append({"a": x[50:], "b": y[50:]}, sample_ids=np.arange(50, 90))
    store = bigalign.open_activations(tmp_path / "s.zarr")
    zx = zarr.create_array(store=str(tmp_path / "x.zarr"), shape=x.shape, chunks=(25, 2), dtype="f4")
    zx[:] = x
    for kw in (dict(n_permutations=200), dict(null="gamma", method="nystroem", n_features=16, scheduler="sync")):
        ref = hsic_test(x, y, **kw).to_dict()
        for xx, yy in ((da.from_array(x, chunks=(17, 2)), da.from_array(y, chunks=(40, 1))), (zx, y), (store["a"], store["b"])):
            got = hsic_test(xx, yy, **kw).to_dict()
            assert got["pvalue"] == ref["pvalue"]
            assert got["value"] == pytest.approx(ref["value"], rel=1e-12)


def test_pairing_is_checked(tmp_path):
    x, y = quadratic(0, n=30)
    for name, ids in (("a", np.arange(30)), ("b", np.arange(30)[::-1])):
        with bigalign.ActivationWriter(tmp_path / f"{name}.zarr") as w:
            w.append({"l": x if name == "a" else y}, sample_ids=ids)
    a, b = bigalign.open_activations(tmp_path / "a.zarr"), bigalign.open_activations(tmp_path / "b.zarr")
    with pytest.raises(bigalign.PairingError):
        hsic_test(a["l"], b["l"])


def test_constant_input_gives_p_one():
    x, y = quadratic(0, n=30)
    c = np.ones((30, 2))
    for kw in (dict(bandwidth=1.0), dict(bandwidth=1.0, null="gamma"), dict(kernel="linear"),
               dict(kernel="linear", null="gamma"), dict(bandwidth=1.0, method="rff", n_features=8, null="gamma")):  # fmt: skip
        r = hsic_test(x, c, **kw)
        assert r.statistic == 0.0 and r.pvalue == 1.0 and r.flags == ("y_constant",), kw


# --------------------------------------------------------------------------- #
# errors
# --------------------------------------------------------------------------- #


def test_too_few_samples():
    with pytest.raises(InvalidInputError, match=r"at least 5 paired samples.*got n = 4"):
        hsic_test(np.ones((4, 1)), np.ones((4, 1)))


def test_mismatched_n():
    with pytest.raises(InvalidInputError, match=r"(?s)40 rows.*37 rows"):
        hsic_test(np.zeros((40, 2)), np.zeros((37, 2)))


@pytest.mark.parametrize(
    "kw", [dict(n_permutations=10), dict(null="gamma", method="nystroem", n_features=8, scheduler="sync")],
    ids=["exact", "streamed"],
)
def test_non_finite_rows_are_named(kw):
    x, y = quadratic(0, n=2000)
    x[1234, 0] = np.nan
    with pytest.raises(NonFiniteError, match=r"x holds NaN.*1234 and 1234"):
        hsic_test(x, y, **kw)
    x, y = quadratic(0, n=30)
    y[7, 0] = np.inf
    with pytest.raises(NonFiniteError, match=r"y holds NaN or infinite.*rows 7 and 7"):
        hsic_test(x, y, **kw)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(kernel="poly"), "'kernel'.*'rbf'"),
        (dict(null="bootstrap"), "'null'.*'permutation'"),
        (dict(method="orf"), "'method'.*'nystroem'"),
        (dict(method="gamma"), "estimation road.*null='gamma'"),
        (dict(kernel="linear", bandwidth=2.0), "bandwidth=2.0 does not apply to the linear kernel"),
        (dict(null="gamma", n_permutations=10), "does not apply to null='gamma'"),
        (dict(method="exact", n_features=10), "n_features=10 does not apply"),
        (dict(n_permutations=0), "n_permutations.*positive integer.*got 0"),
        (dict(n_permutations=True), "n_permutations"),
        (dict(alpha=1.5), "'alpha'.*\\(0, 1\\).*1.5"),
        (dict(seed=-1), "seed.*non-negative"),
        (dict(seed=1.5), "seed"),
        (dict(bandwidth=-1.0), "bandwidth of x.*positive"),
        (dict(bandwidth="scott"), "'median', a positive number"),
        (dict(bandwidth=(1.0,)), "2 entries"),
        (dict(method="rff", n_features=33), "must be even; got 33"),
        (dict(n_features=1), "n_features.*>= 2"),
        (dict(kernel="linear", method="rff"), "linear kernel is exact"),
    ],
)
def test_bad_options(kw, match):
    x, y = quadratic(0, n=30)
    with pytest.raises(InvalidInputError, match=match):
        hsic_test(x, y, **kw)


def test_exact_permutation_beyond_the_memory_limit(monkeypatch):
    monkeypatch.setattr(hsic_test_module, "EXACT_MAX_N", 50)
    x, y = quadratic(0, n=60)
    with pytest.raises(InvalidInputError, match=r"(?s)up to n = 50.*got n = 60.*method='rff'.*null='gamma'"):
        hsic_test(x, y, method="exact", null="permutation")


def test_degenerate_inputs():
    x, y = quadratic(0, n=30)
    dup = np.zeros((30, 2))
    dup[:3] = 1.0  # more than half of the pairs identical: median distance 0
    with pytest.raises(DegenerateInputError, match="bandwidth 0"):
        hsic_test(dup, y)
    # a bandwidth far below the distances: K = I, every re-pairing gives the same statistic
    with pytest.raises(DegenerateInputError, match="same value under every") as ei:
        hsic_test(x, y, bandwidth=(1e-6, "median"), null="gamma")
    assert ei.value.reason == "degenerate_null"
    r = hsic_test(x, y, bandwidth=(1e-6, "median"), null="permutation", n_permutations=50)
    assert r.pvalue == 1.0  # every permuted statistic ties with the observed one


def test_memory_per_worker_is_honoured():
    """A budget below the two n×n kernel matrices moves the gamma test onto tiles (same answer) and
    makes the exact permutation test an error, never a silent overrun."""
    x, y = quadratic(3, n=400)
    held = hsic_test(x, y, null="gamma", method="exact")
    tiled = hsic_test(x, y, null="gamma", method="exact", memory_per_worker=2**20)
    assert (held.parameters["representation"], tiled.parameters["representation"]) == ("kernel matrices", "kernel tiles")
    assert tiled.value == pytest.approx(held.value, rel=1e-9) and tiled.pvalue == pytest.approx(held.pvalue, rel=1e-6)
    with pytest.raises(InvalidInputError, match="over the memory budget of 1 MiB"):
        hsic_test(x, y, null="permutation", method="exact", memory_per_worker=2**20)
    streamed = hsic_test(x, y, null="gamma", kernel="linear", memory_per_worker=2**14)
    assert streamed.parameters["representation"] == "streamed feature moments"
