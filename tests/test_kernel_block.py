"""The block road of the kernel metrics (``method="block"``) and the accuracy-per-second ``auto``.

What is checked, and against what
---------------------------------
* the per-block pair means (u₂, u₃, u₄) against brute-force loops over distinct
  index tuples, written from their definitions;
* one block holding every row is the exact full-sample value (the naive float64
  references of ``kernel_refs``) to 1e-10 relative, for HSIC (both estimators),
  CKA (both) and KA, rbf and laplacian;
* the estimate over many blocks lies within a statistical bound of the exact
  value, its error bar matches the spread over seeds, rows sorted by class do
  not bias it;
* the answer does not depend on the engine's ``block_size`` or scheduler;
* ``method="auto"``: exact tiles where they are cheap, the block road beyond,
  with the choice, reason, predicted and achieved stderr in the parameters, and
  no cliff between n = 20,000 and 20,001;
* option errors.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import bigalign
import kernel_refs as kr
from bigalign.errors import InvalidInputError
from bigalign.features import kernel_scale
from bigalign.metrics import _kernel_nonlinear as knl
from bigalign.metrics._kernel_block import _means, block_delta_factor, terms_from_means

FUNCS = {"cka": bigalign.cka, "hsic": bigalign.hsic, "kernel_alignment": bigalign.kernel_alignment}


def rel(got: float, want: float) -> float:
    return abs(got - want) / abs(want)


def pair(seed: int, n: int, dx: int, dy: int, noise: float = 0.3):
    return kr.nonlinear_pair(np.random.default_rng(seed), n, dx, dy, noise=noise)


def test_pair_means_match_brute_force():
    """u₂, u₃, u₄ of one sample from the fused sums equal the literal means over distinct tuples."""
    rng = np.random.default_rng(0)
    b = 9
    K = rng.random((b, b))
    K = K + K.T
    L = rng.random((b, b))
    L = L + L.T
    np.fill_diagonal(K, 0.0)
    np.fill_diagonal(L, 0.0)
    got = _means(b, float((K * L).sum()), float((K * K).sum()), float((L * L).sum()), K.sum(1), L.sum(1))
    idx = range(b)

    def brute(P, Q):
        u2 = np.mean([P[i, j] * Q[i, j] for i, j in itertools.permutations(idx, 2)])
        u3 = np.mean([P[i, j] * Q[i, q] for i, j, q in itertools.permutations(idx, 3)])
        u4 = np.mean([P[i, j] * Q[q, r] for i, j, q, r in itertools.permutations(idx, 4)])
        return [u2, u3, u4]

    mk = np.mean([K[i, j] for i, j in itertools.permutations(idx, 2)])
    ml = np.mean([L[i, j] for i, j in itertools.permutations(idx, 2)])
    want = brute(K, L) + brute(K, K) + brute(L, L) + [mk, ml]
    np.testing.assert_allclose(got, want, rtol=1e-12)  # sums of ≤ 3024 positive terms: rounding only


@pytest.mark.parametrize("estimator", ["unbiased", "biased"])
def test_terms_from_means_rebuild_the_exact_formulas(estimator):
    """The full-sample HSIC terms rebuilt from the u-vector equal the naive matrix formulas."""
    rng = np.random.default_rng(1)
    n = 11
    x, y = rng.normal(size=(n, 3)), rng.normal(size=(n, 2))
    K, L = kr.kernel_matrix(x, "rbf", 1.3), kr.kernel_matrix(y, "rbf", 0.9)
    Kt, Lt = K - np.eye(n), L - np.eye(n)
    u = _means(n, float((Kt * Lt).sum()), float((Kt * Kt).sum()), float((Lt * Lt).sum()), Kt.sum(1), Lt.sum(1))
    t = terms_from_means(n, np.array(u), estimator)
    ref = kr.cka_terms(K, L, estimator)
    assert rel(float(t["hxy"]), ref["hsic_xy"]) <= 1e-10  # cancellation of O(1) terms into O(1e-2): ~1e-13 measured
    assert rel(float(t["hxx"]), ref["hsic_xx"]) <= 1e-10
    assert rel(float(t["hyy"]), ref["hsic_yy"]) <= 1e-10
    assert rel(float(t["kl"]), float((K * L).sum())) <= 1e-13  # sums of positive terms


@pytest.mark.parametrize("kernel", ["rbf", "laplacian"])
def test_one_block_is_the_exact_value(kernel):
    """block_rows = n: one block holding every row; the rebuilt terms are the exact ones."""
    n = 60
    x, y = pair(3, n, 4, 3)
    for metric, f in FUNCS.items():
        for estimator in (["unbiased", "biased"] if metric != "kernel_alignment" else [None]):
            kw = {} if estimator is None else {"estimator": estimator}
            r = f(x, y, kernel=kernel, method="block", block_rows=n, **kw)
            sx, sy = r.parameters["bandwidth_x"], r.parameters["bandwidth_y"]
            K, L = kr.kernel_matrix(x, kernel, sx), kr.kernel_matrix(y, kernel, sy)
            if metric == "cka":
                want = kr.cka(K, L, estimator)
            elif metric == "hsic":
                want = kr.hsic(K, L, estimator)
            else:
                want = kr.kernel_alignment(K, L)
            # the exact road's contract (1e-10); measured ≤ 3e-12
            assert rel(r.value, want) <= 1e-10, (metric, estimator, r.value, want)
            assert r.method == "block" and r.parameters["n_blocks"] == 1
            # one block = the whole sample: the error bar is conservative (its finite-population factor
            # is 1 − (n−1)/(n−1) = 0), so it is exactly 0
            assert r.stderr == 0.0


@pytest.fixture(scope="module")
def mid():
    """The bandwidth is fixed (the seed also draws the median's subsample, so a seeded median would
    change the kernel from seed to seed)."""
    x, y = pair(7, 2400, 6, 5)
    exact = {m: f(x, y, kernel="rbf", bandwidth=BW, method="exact") for m, f in FUNCS.items()}
    return x, y, exact


BW = (3.2, 3.3)  # about the median distances of the pair below


def test_block_within_statistical_bound_of_exact(mid):
    """|block − exact| ≤ 4·stderr for each metric (for a Gaussian error, a 4-s.e. miss has probability
    6e-5; the seeds are fixed, so the test is deterministic) and the error bar is not vacuous."""
    x, y, exact = mid
    for metric, f in FUNCS.items():
        r = f(x, y, kernel="rbf", bandwidth=BW, method="block", block_rows=240, seed=3)
        assert r.parameters["n_blocks"] == 10 and r.parameters["block_rows"] == 240
        assert abs(r.value - exact[metric].value) <= 4 * r.stderr, (metric, r.value, exact[metric].value, r.stderr)
        assert r.stderr <= 0.05 * abs(exact[metric].value)  # the road is accurate, not just honest


@pytest.mark.slow
def test_block_stderr_matches_the_spread_over_seeds(mid):
    """Over 40 seeds: the exact value lies within 2 s.e. for ≥ 80% of seeds (nominal 95%; 80% leaves room
    for the binomial spread of 40 draws, P(≤ 32 of 40 | 0.95) ≈ 0.01) and mean(stderr)/rmse ∈ [0.5, 2]."""
    x, y, exact = mid
    errs, ses = [], []
    for s in range(40):
        r = bigalign.cka(x, y, kernel="rbf", bandwidth=BW, method="block", block_rows=120, seed=s)
        errs.append(r.value - exact["cka"].value)
        ses.append(r.stderr)
    errs, ses = np.array(errs), np.array(ses)
    rmse = float(np.sqrt(np.mean(errs**2)))
    assert np.mean(np.abs(errs) <= 2 * ses) >= 0.8
    assert 0.5 <= ses.mean() / rmse <= 2.0, (ses.mean(), rmse)


def test_sorted_rows_do_not_bias_the_blocks():
    """Rows sorted by a class label (each class a different dependence): contiguous blocks would each see
    one class; the seeded shuffle makes every block a uniform sample.  Bound as above (4 s.e.)."""
    rng = np.random.default_rng(11)
    n = 1800
    x = rng.normal(size=(n, 4))
    cls = np.repeat([0, 1, 2], n // 3)
    y = np.where(cls[:, None] == 0, x[:, :3], rng.normal(size=(n, 3))) + 0.2 * rng.normal(size=(n, 3))
    x[:, 0] += 3 * cls
    exact = bigalign.cka(x, y, kernel="rbf", method="exact")
    r = bigalign.cka(x, y, kernel="rbf", method="block", block_rows=180)
    assert abs(r.value - exact.value) <= 4 * r.stderr, (r.value, exact.value, r.stderr)


def test_block_independent_of_engine_block_size_and_scheduler():
    """Per-block results are keyed by block and summed in block order: bit-identical whatever the tasks."""
    x, y = pair(5, 600, 5, 4)
    base = bigalign.cka(x, y, kernel="rbf", method="block", block_rows=50, scheduler="sync")
    for block_size, scheduler, workers in ((50, "sync", None), (170, "threads", 2), (600, "threads", 1), (None, "threads", 2)):
        r = bigalign.cka(x, y, kernel="rbf", method="block", block_rows=50, block_size=block_size, scheduler=scheduler, num_workers=workers)
        assert r.value == base.value and r.stderr == base.stderr and dict(r.terms) == dict(base.terms)
        if block_size:
            assert r.parameters["n_tasks"] == -(-12 // max(1, block_size // 50))


def test_block_seed_changes_the_partition():
    x, y = pair(5, 600, 5, 4)
    a = bigalign.hsic(x, y, kernel="rbf", method="block", block_rows=50, seed=1)
    b = bigalign.hsic(x, y, kernel="rbf", method="block", block_rows=50, seed=1)
    c = bigalign.hsic(x, y, kernel="rbf", method="block", block_rows=50, seed=2)
    assert a.value == b.value and a.value != c.value


def test_block_flags_constant_kernel():
    x, y = pair(5, 200, 5, 4)
    with pytest.raises(bigalign.errors.DegenerateInputError):
        bigalign.cka(np.ones_like(x), y, kernel="rbf", bandwidth=1.0, method="block", block_rows=50)


# ---------------------------------------------------------------------------
# auto
# ---------------------------------------------------------------------------


def test_auto_exact_where_cheap():
    x, y = pair(8, 300, 3, 2)
    r = bigalign.cka(x, y, kernel="rbf")
    p = r.parameters
    assert r.method == "exact-tiles" and r.stderr is None
    assert p["method_reason"].startswith("exact tiles predicted to take")
    assert p["target_stderr"] == 1e-3 and p["predicted_stderr"] == 0.0 and p["achieved_stderr"] == 0.0
    assert r.value == bigalign.cka(x, y, kernel="rbf", method="exact").value


def test_auto_picks_block_and_records_the_choice(mid, monkeypatch):
    """With exact tiles made 'expensive' (the cheap threshold at 0 s and a slow pair cost), auto sizes the
    block road from its pilot: it records target, predicted and achieved stderr, and the achieved one is
    within 3× of the prediction (the pilot's constant is an estimate from 4 × 37 blocks of 64 rows)."""
    x, y, exact = mid
    monkeypatch.setattr(knl, "EXACT_CHEAP_S", 0.0)
    for metric, target in (("cka", 5e-3), ("hsic", 2e-4)):
        r = FUNCS[metric](x, y, kernel="rbf", bandwidth=BW, target_stderr=target)
        p = r.parameters
        assert r.method == "block", p["method_reason"]
        assert p["target_stderr"] == target and "block road with B =" in p["method_reason"]
        assert p["predicted_stderr"] <= target and p["achieved_stderr"] == r.stderr
        assert r.stderr <= 3 * p["predicted_stderr"]
        assert abs(r.value - exact[metric].value) <= 4 * r.stderr
    r = bigalign.cka(x, y, kernel="rbf", bandwidth=BW, target_stderr=0)
    assert r.method == "exact-tiles" and r.parameters["method_reason"] == "target_stderr = 0: exact tiles"


def test_choose_road_rules():
    pilot = lambda: 1.0  # noqa: E731
    assert knl.choose_road(100, 5, 5, 2, 1e-3, pilot)[0] == "exact"  # cheap
    road, B, reason, info = knl.choose_road(10**6, 512, 512, 2, 1e-3, pilot)
    assert road == "block" and B >= 64 and info["predicted_stderr"] <= 1e-3
    # a target the blocks cannot reach with >= 10 of them: exact
    assert knl.choose_road(30_000, 512, 512, 2, 1e-6, pilot)[0] == "exact"
    assert knl.choose_road(30_000, 512, 512, 2, 1e-3, lambda: float("nan"))[0] == "exact"


@pytest.mark.slow
def test_no_cliff_at_20000():
    """n = 20,000 and 20,001 take the same road with comparable error bars (the rule is continuous in n)."""
    rng = np.random.default_rng(9)
    x = rng.normal(size=(20_001, 2))
    y = np.sin(2 * x) + 0.3 * rng.normal(size=x.shape)
    a = bigalign.cka(x[:20_000], y[:20_000], kernel="rbf")
    b = bigalign.cka(x, y, kernel="rbf")
    assert a.method == b.method
    sa, sb = a.parameters["achieved_stderr"], b.parameters["achieved_stderr"]
    assert sa <= 2e-3 and sb <= 2e-3 and abs(a.value - b.value) <= 4 * max(sa, sb, 1e-4)


# ---------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"method": "exact", "block_rows": 100}, "block_rows"),
        ({"method": "auto", "block_rows": 100}, "block_rows"),
        ({"method": "block", "block_rows": 4}, "block_rows must be an integer >= 8"),
        ({"method": "block", "block_rows": 10_000}, "exceeds n"),
        ({"method": "block", "n_features": 64}, "n_features"),
        ({"method": "exact", "target_stderr": 1e-3}, "target_stderr"),
        ({"method": "auto", "target_stderr": -1.0}, "target_stderr must be"),
        ({"method": "auto", "n_features": 64}, "n_features"),
    ],
)
def test_option_errors(kw, match):
    x, y = pair(1, 100, 3, 2)
    with pytest.raises(InvalidInputError, match=match):
        bigalign.cka(x, y, kernel="rbf", **kw)


def test_linear_kernel_rejects_block_rows_and_records_target():
    x, y = pair(1, 100, 3, 2)
    with pytest.raises(InvalidInputError, match="block_rows"):
        bigalign.cka(x, y, block_rows=50)
    r = bigalign.cka(x, y, target_stderr=1e-4)
    assert r.parameters["target_stderr"] == 1e-4 and r.stderr is None


def test_delta_factor_is_about_one():
    """κ_b → 1 for equal halves of large blocks (the pair-level degenerate variance of δ equals D_B's)."""
    k = block_delta_factor(np.array([1024.0, 9.0]), np.array([512.0, 4.0]), np.array([512.0, 5.0]))
    assert abs(k[0] - 1) < 0.01 and 0.3 < k[1] < 3
    assert kernel_scale("rbf", 1.0) == 0.5
