"""permutation_test: the streamed permuted statistic equals the measure on re-paired data."""

from __future__ import annotations

import math

import numpy as np
import pytest

import bigalign
from bigalign.errors import InvalidInputError
from bigalign.metrics.permutation import draw_permutations

METRIC_FN = {
    "cka": lambda x, y: bigalign.cka(x, y).value,
    "ka": lambda x, y: bigalign.kernel_alignment(x, y).value,
    "dcor": lambda x, y: bigalign.dcor(x, y, method="exact").value,
    "rsa": lambda x, y: bigalign.rsa(x, y).value,
    "mutual_knn": lambda x, y: bigalign.mutual_knn(x, y, k=10).value,
}


def _naive(x, y, metric, B, seed):
    """p-value and null moments by re-running the public measure on y re-paired by each permutation."""
    obs = METRIC_FN[metric](x, y)
    null = np.array([METRIC_FN[metric](x, y[p]) for p in draw_permutations(x.shape[0], B, seed)])
    b = int(np.sum(null >= obs - 1e-9 * max(abs(obs), np.abs(null).max())))
    return obs, null, (b + 1) / (B + 1)


def _data(rng, n=40):
    x = rng.normal(size=(n, 5)) + 2.0
    y = 0.4 * x[:, :3] @ rng.normal(size=(3, 4)) + rng.normal(size=(n, 4))
    return x, y


@pytest.mark.parametrize("metric", list(METRIC_FN))
@pytest.mark.parametrize("block_size", [None, 13])
def test_matches_naive_repairing(rng, metric, block_size):
    x, y = _data(rng)
    B = 30
    r = bigalign.permutation_test(x, y, metric=metric, n_permutations=B, seed=4, block_size=block_size)
    obs, null, p = _naive(x, y, metric, B, 4)
    assert r.value == pytest.approx(obs, rel=1e-10, abs=1e-12)
    assert r.null_mean == pytest.approx(null.mean(), rel=1e-9, abs=1e-12)
    assert r.null_sd == pytest.approx(null.std(ddof=1), rel=1e-8, abs=1e-12)
    assert r.pvalue == pytest.approx(p, abs=1e-15)
    assert r.pvalue_stderr == pytest.approx(math.sqrt(p * (1 - p) / B))
    assert r.calibrated == pytest.approx((obs - null.mean()) / null.std(ddof=1), rel=1e-8)
    assert r.metric == metric and r.method == "permutation"


@pytest.mark.parametrize("option", [{"estimator": "biased"}, {"distance": "correlation"}, {"distance": "cosine"}])
def test_options(rng, option):
    x, y = _data(rng, n=30)
    metric = "rsa" if "distance" in option else "cka"
    r = bigalign.permutation_test(x, y, metric=metric, n_permutations=10, **option)
    ref = bigalign.rsa(x, y, **option).value if metric == "rsa" else bigalign.cka(x, y, **option).value
    assert r.value == pytest.approx(ref, rel=1e-10)
    d = bigalign.permutation_test(x, y, metric="dcor", estimator="biased", n_permutations=10)
    assert d.value == pytest.approx(bigalign.dcor(x, y, estimator="biased").value, rel=1e-10)


def test_strong_dependence_and_calibration(rng):
    x = rng.normal(size=(60, 3))
    r = bigalign.permutation_test(x, x + 0.3 * rng.normal(size=(60, 3)), n_permutations=99)
    assert r.pvalue == 0.01 and r.reject and r.calibrated > 5
    d = r.to_dict()
    assert d["pvalue"] == 0.01 and d["reject"] is True and "calibrated" in d
    assert "pvalue=0.01" in repr(r)


def test_seed_reproducible_and_errors(rng):
    x, y = _data(rng, n=20)
    a = bigalign.permutation_test(x, y, n_permutations=20, seed=1)
    b = bigalign.permutation_test(x, y, n_permutations=20, seed=1)
    assert a.pvalue == b.pvalue and a.null_mean == b.null_mean
    with pytest.raises(InvalidInputError):
        bigalign.permutation_test(x, y, metric="cka", distance="cosine")
    with pytest.raises(InvalidInputError):
        bigalign.permutation_test(x, y, metric="rsa", k=3)
    with pytest.raises(InvalidInputError):
        bigalign.permutation_test(x, y, metric="hsic")
    with pytest.raises(InvalidInputError):
        bigalign.permutation_test(x, y, n_permutations=0)


@pytest.mark.parametrize("block_size", [None, 7])
@pytest.mark.parametrize("metric", ["cka", "ka"])
def test_wide_inputs_use_gram_tiles(rng, metric, block_size):
    # d ≫ n: the permuted ‖UᵀV_π‖² comes from Gram tiles (single or several), not the d_x×d_y feature form
    x = rng.normal(size=(20, 30))
    y = x[:, :25] + rng.normal(size=(20, 25))
    r = bigalign.permutation_test(x, y, metric=metric, n_permutations=15, seed=2, block_size=block_size)
    obs, null, p = _naive(x, y, metric, 15, 2)
    assert r.value == pytest.approx(obs, rel=1e-10)
    assert r.null_mean == pytest.approx(null.mean(), rel=1e-9)
    assert r.pvalue == pytest.approx(p)


def test_randomized_ties(rng):
    """ties="randomize": p = (g + u(e + 1))/(B + 1) with the seeded u; between the strict and the tie-counting p."""
    from bigalign.metrics.permutation import tie_uniform

    x, y = _data(rng, n=25)
    B = 40
    c = bigalign.permutation_test(x, y, metric="mutual_knn", k=3, n_permutations=B, seed=3)
    r = bigalign.permutation_test(x, y, metric="mutual_knn", k=3, n_permutations=B, seed=3, ties="randomize")
    obs, null, _ = _naive(x, y, "mutual_knn", B, 3)
    g, e = int(np.sum(null > obs + 1e-12)), int(np.sum(np.abs(null - obs) <= 1e-12))
    assert r.pvalue == pytest.approx((g + tie_uniform(3) * (e + 1)) / (B + 1))
    assert c.pvalue == pytest.approx((g + e + 1) / (B + 1)) and r.pvalue <= c.pvalue
    assert r.parameters["ties"] == "randomize"


def test_reads_dask_inputs(rng):
    da = pytest.importorskip("dask.array")
    x, y = _data(rng, n=30)
    a = bigalign.permutation_test(da.from_array(x, chunks=7), da.from_array(y, chunks=9), metric="dcor", n_permutations=20)
    b = bigalign.permutation_test(x, y, metric="dcor", n_permutations=20)
    assert a.value == pytest.approx(b.value, rel=1e-12) and a.pvalue == b.pvalue
