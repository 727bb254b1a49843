"""ci= on MMD² (two samples) and on RSA's rank, non-Euclidean and sampled forms.

Each streamed interval must equal, to 1e-10, the block jackknife built from a naive
recomputation of the measure on the rows minus each group (written here from the formulas).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import pdist
from scipy.stats import rankdata

import bigalign
import bigalign.metrics.mmd as mmd_mod
from bigalign.errors import InvalidInputError
from bigalign.intervals import jackknife_interval, row_groups
from bigalign.metrics.rsa import sample_pairs, tau_a

G = 20
SYNC = {"scheduler": "sync"}


# ---------------------------------------------------------------------------
# naive references
# ---------------------------------------------------------------------------


def naive_mmd(x: np.ndarray, y: np.ndarray, kernel: str, sigma: float, estimator: str) -> float:
    def k(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        if kernel == "linear":
            return a @ b.T
        d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
        return np.exp(-d2 / (2 * sigma**2)) if kernel == "rbf" else np.exp(-np.sqrt(d2) / sigma)

    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    nx, ny = len(x), len(y)
    if estimator == "unbiased":
        return float((kxx.sum() - np.trace(kxx)) / (nx * (nx - 1)) + (kyy.sum() - np.trace(kyy)) / (ny * (ny - 1)) - 2 * kxy.mean())
    return float(kxx.mean() + kyy.mean() - 2 * kxy.mean())


def naive_rsa(x: np.ndarray, y: np.ndarray, distance: str, compare: str) -> float:
    dx, dy = pdist(x, distance), pdist(y, distance)
    if compare == "kendall":
        return tau_a(dx, dy)
    if compare == "spearman":
        dx, dy = rankdata(dx), rankdata(dy)
    return float(np.corrcoef(dx, dy)[0, 1])


def drop(a: np.ndarray, b: np.ndarray, g: int) -> np.ndarray:
    return np.delete(a, np.s_[b[g] : b[g + 1]], axis=0)


def assert_interval(r, value: float, loo: list[float], level: float, scale: str, unbiased: tuple | None = None,
                    extra_se: float = 0.0) -> None:  # fmt: skip
    """``unbiased`` = (value, leave-outs) of a biased estimate's unbiased form: its interval is that form's
    (intervals.estimator_interval); ``extra_se``: a random-feature map's stderr, added in quadrature."""
    centre, reps = (value, loo) if unbiased is None else unbiased
    want = jackknife_interval(centre, np.array(reps), level, scale=scale, extra_se=extra_se)
    assert r.value == pytest.approx(value, rel=1e-10, abs=1e-12)
    np.testing.assert_allclose(r.ci, want.bounds, rtol=1e-10, atol=1e-12)
    assert r.ci_level == level
    assert r.parameters["ci_scale"] == want.scale and r.parameters["ci_groups"] == G


# ---------------------------------------------------------------------------
# MMD²
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_samples() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    return rng.normal(size=(83, 3)) + 2.0, 1.2 * rng.normal(size=(61, 3)) + 2.3


@pytest.mark.parametrize("estimator", ["unbiased", "biased"])
@pytest.mark.parametrize("kernel", ["rbf", "laplacian", "linear"])
def test_mmd_interval_is_the_two_sample_jackknife(two_samples, kernel, estimator):
    """Leave out row group g of x and row group g of y together; identity scale; the biased estimate's interval
    is the unbiased MMD²'s on the same rows.  Tiles of 29 rows cut the groups in many places."""
    x, y = two_samples
    sigma = 1.3
    kw = {} if kernel == "linear" else {"bandwidth": sigma, "method": "exact"}
    r = bigalign.mmd(x, y, kernel=kernel, estimator=estimator, ci=0.9, block_size=29, **kw, **SYNC)
    bx, by = row_groups(len(x), G), row_groups(len(y), G)
    loo = [naive_mmd(drop(x, bx, g), drop(y, by, g), kernel, sigma, estimator) for g in range(G)]
    loo_u = [naive_mmd(drop(x, bx, g), drop(y, by, g), kernel, sigma, "unbiased") for g in range(G)]
    unbiased = (naive_mmd(x, y, kernel, sigma, "unbiased"), loo_u) if estimator == "biased" else None
    assert_interval(r, naive_mmd(x, y, kernel, sigma, estimator), loo, 0.9, "identity", unbiased)
    assert "row group g of x and row group g of y" in r.parameters["ci_groups_two_sample"]
    assert r.ci[0] < r.ci[1]


@pytest.mark.parametrize("estimator", ["unbiased", "biased"])
def test_mmd_rff_interval_is_the_jackknife_of_the_fixed_feature_kernel(two_samples, estimator):
    """rff: the map is drawn once (from the seed and the full-sample bandwidth); each leave-out is the MMD² of the
    approximate kernel φ(a)ᵀφ(b) on the rows minus group g of x and of y."""
    x, y = two_samples
    r = bigalign.mmd(x, y, method="rff", n_features=24, estimator=estimator, ci=0.95, block_size=31, **SYNC)
    z = mmd_mod.pooled(x, y)
    _, (zs,) = mmd_mod.sample_rows([z], mmd_mod.BANDWIDTH_SAMPLE, 0)
    fmap = mmd_mod.draw_random_fourier("rbf", 3, 12, r.parameters["bandwidth"], zs.mean(axis=0),
                                       np.random.default_rng([0, 2, 0]), orthogonal=False)  # fmt: skip
    phi = fmap(np.vstack([x, y]))
    px, py = phi[: len(x)], phi[len(x) :]

    def feature_mmd(a: np.ndarray, b: np.ndarray, estimator: str = estimator) -> float:
        kxx, kyy, kxy = a @ a.T, b @ b.T, a @ b.T
        na, nb = len(a), len(b)
        if estimator == "unbiased":
            return float((kxx.sum() - np.trace(kxx)) / (na * (na - 1)) + (kyy.sum() - np.trace(kyy)) / (nb * (nb - 1)) - 2 * kxy.mean())
        return float(kxx.mean() + kyy.mean() - 2 * kxy.mean())

    bx, by = row_groups(len(x), G), row_groups(len(y), G)
    loo = [feature_mmd(drop(px, bx, g), drop(py, by, g)) for g in range(G)]
    loo_u = [feature_mmd(drop(px, bx, g), drop(py, by, g), "unbiased") for g in range(G)]
    unbiased = (feature_mmd(px, py, "unbiased"), loo_u) if estimator == "biased" else None
    # the map's own error (its stderr) is added in quadrature: the interval is about the exact MMD²
    assert_interval(r, feature_mmd(px, py), loo, 0.95, "identity", unbiased, extra_se=r.stderr)
    assert r.stderr > 0 and "exact MMD²" in r.parameters["ci_features"]


def test_mmd_interval_does_not_move_the_estimate(two_samples):
    x, y = two_samples
    plain = bigalign.mmd(x, y, bandwidth=1.1, method="exact", **SYNC)
    with_ci = bigalign.mmd(x, y, bandwidth=1.1, method="exact", ci=0.95, **SYNC)
    assert with_ci.value == pytest.approx(plain.value, rel=1e-12, abs=1e-15)
    assert plain.ci is None and with_ci.ci is not None and with_ci.stderr is None


def test_mmd_ci_errors(two_samples):
    x, y = two_samples
    with pytest.raises(InvalidInputError, match="not available on the Nystroem road"):
        bigalign.mmd(x, y, method="nystroem", n_features=16, ci=0.95)
    with pytest.raises(InvalidInputError, match="at least 40 rows"):
        bigalign.mmd(x, y[:30], method="exact", ci=0.95)
    with pytest.raises(InvalidInputError, match="'ci' parameter of mmd"):
        bigalign.mmd(x, y, ci=95)


# ---------------------------------------------------------------------------
# RSA
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def paired() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(8)
    x = rng.normal(size=(70, 5)) + 1.5
    return x, x @ rng.normal(size=(5, 4)) + rng.normal(size=(70, 4))


@pytest.mark.parametrize(
    "distance, compare",
    [
        ("euclidean", "spearman"),
        ("euclidean", "kendall"),
        ("correlation", "spearman"),
        ("cosine", "kendall"),
        ("correlation", "pearson"),
        ("cosine", "pearson"),
        ("sqeuclidean", "pearson"),
    ],
)
def test_rsa_interval_is_the_jackknife_of_the_naive_rsa(paired, distance, compare):
    """Rank comparisons: ranks recomputed on the held distances without group g; Pearson on non-Euclidean
    distances: grouped streamed moments.  Fisher's z scale."""
    x, y = paired
    r = bigalign.rsa(x, y, distance=distance, compare=compare, ci=0.95, block_size=17, **SYNC)
    b = row_groups(len(x), G)
    loo = [naive_rsa(drop(x, b, g), drop(y, b, g), distance, compare) for g in range(G)]
    assert_interval(r, naive_rsa(x, y, distance, compare), loo, 0.95, "fisher")
    assert r.method == ("exact-streaming" if compare == "pearson" else "exact-in-memory")


@pytest.mark.parametrize("compare", ["pearson", "spearman", "kendall"])
def test_rsa_sampled_ci_is_about_rows_and_stderr_about_pairs(paired, compare):
    """The sampled road: stderr (and parameters['pair_ci']) is the jackknife over groups of sampled pairs; ci is the
    row jackknife: the same pair sample without the pairs that touch row group g, recomputed naively."""
    x, y = paired
    m = 1500
    r = bigalign.rsa(x, y, compare=compare, method="sampled", n_pairs=m, seed=4, ci=0.8)
    plain = bigalign.rsa(x, y, compare=compare, method="sampled", n_pairs=m, seed=4)
    i, j = sample_pairs(len(x), m, 4)
    dx = np.linalg.norm(x[i] - x[j], axis=1)
    dy = np.linalg.norm(y[i] - y[j], axis=1)

    def corr(u: np.ndarray, v: np.ndarray) -> float:
        if compare == "kendall":
            return tau_a(u, v)
        if compare == "spearman":
            u, v = rankdata(u), rankdata(v)
        return float(np.corrcoef(u, v)[0, 1])

    b = row_groups(len(x), G)
    grp = np.searchsorted(b, np.arange(len(x)), side="right") - 1
    loo = []
    for g in range(G):
        keep = (grp[i] != g) & (grp[j] != g)
        loo.append(corr(dx[keep], dy[keep]))
    assert_interval(r, corr(dx, dy), loo, 0.8, "fisher")
    assert r.stderr == plain.stderr and r.value == plain.value
    assert r.parameters["pair_ci"] == list(plain.ci)  # the former (pair-sampling) interval, kept beside
    assert r.ci != plain.ci and r.parameters["ci_about"].startswith("sampling of rows")


def test_rsa_ci_works_where_auto_samples():
    """Beyond the exact rank limit, compare='spearman' samples pairs; ci= is then the sampled road's row interval."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 3))
    y = x + rng.normal(size=(60, 3))
    r = bigalign.rsa(x, y, compare="spearman", method="sampled", n_pairs=500, ci=0.95)
    assert r.method == "sampled-pairs" and r.ci[0] < r.value < r.ci[1] and r.stderr > 0
