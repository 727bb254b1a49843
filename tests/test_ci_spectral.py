"""ci= of the spectral views: the streamed interval equals the naive leave-one-group-out jackknife.

spectrum, spectral_alignment, task_alignment and kare keep one moment state per contiguous
row group in their one pass and recompute the finalize step (eigendecompositions, D×D
solves) for every leave-one-group-out state.  The references here are written from the
formulas on the rows minus each group (dense numpy, n×n where the formula is n×n), nothing
streamed.
"""

from __future__ import annotations

import numpy as np
import pytest

import bigalign
from bigalign.errors import InvalidInputError
from bigalign.intervals import CI_ABOUT, jackknife_interval, row_groups
from bigalign.io import as_representation
from bigalign.metrics._spectral_common import _nystroem

RTOL = 1e-10
N = 83  # not a multiple of 20: groups of 4 and 5 rows


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(23)
    x = rng.normal(size=(N, 5)) * np.array([3.0, 2.0, 1.0, 0.7, 0.4]) + 1.0
    y = x[:, :3] @ rng.normal(size=(3, 4)) + 0.9 * rng.normal(size=(N, 4))
    t = x @ rng.normal(size=5) + rng.normal(size=N)
    labels = np.digitize(t, np.quantile(t, [0.3, 0.7]))
    return x, y, t, labels


def _loo(arrays, f):
    b = row_groups(arrays[0].shape[0])
    return [f(*(np.delete(a, np.s_[b[g] : b[g + 1]], axis=0) for a in arrays)) for g in range(20)]


def _check(res, f, arrays, level, scale, bias_correct):
    value = f(*arrays)
    iv = jackknife_interval(value, _loo(arrays, f), level, scale=scale, bias_correct=bias_correct)
    assert res.value == pytest.approx(value, rel=RTOL)
    assert res.ci == pytest.approx(iv.bounds, rel=RTOL)
    assert res.ci_level == level
    assert res.parameters["ci_scale"] == iv.scale == scale
    assert res.parameters["ci_se"] == pytest.approx(iv.se, rel=1e-8)
    assert res.parameters["ci_about"] == CI_ABOUT and res.parameters["ci_groups"] == 20
    assert res.to_dict()["ci"] == [pytest.approx(v, rel=RTOL) for v in iv.bounds]


def _cov(a, center=True):
    a = a - a.mean(axis=0) if center else a
    return a.T @ a / a.shape[0]


def ref_effective_dimension(x, center=True):
    lam = np.linalg.eigvalsh(_cov(x, center))
    return lam.sum() ** 2 / (lam**2).sum()


def ref_alignment(x, y, center=True):
    """⟨K, L⟩/(‖K‖‖L‖) of the (centred) linear Gram matrices, n×n."""
    if center:
        x, y = x - x.mean(axis=0), y - y.mean(axis=0)
    k, l = x @ x.T, y @ y.T
    return float(np.sum(k * l) / np.sqrt(np.sum(k * k) * np.sum(l * l)))


def ref_truncated_alignment(x, y, r):
    """Σᵢⱼ η̂ᵢμ̂ⱼCᵢⱼ² over the leading r eigenvectors of each centred Gram (n×n eigenproblems)."""
    xc, yc = x - x.mean(axis=0), y - y.mean(axis=0)
    n = x.shape[0]
    ek, uk = np.linalg.eigh(xc @ xc.T / n)
    el, ul = np.linalg.eigh(yc @ yc.T / n)
    ik, il = np.argsort(ek)[::-1][:r], np.argsort(el)[::-1][:r]
    C = uk[:, ik].T @ ul[:, il]
    return float(np.sum(np.outer(ek[ik], el[il]) * C**2) / np.sqrt(np.sum(ek**2) * np.sum(el**2)))


def ref_kare(x, y, ridge, center=False):
    """[(1/n)yᵀ(K/n + λI)⁻²y] / [(1/n)tr (K/n + λI)⁻¹]², λ = ridge·tr(K/n), n×n."""
    if center:
        x, y = x - x.mean(axis=0), y - y.mean(axis=0)
    n = x.shape[0]
    k = x @ x.T / n
    lam = ridge * np.trace(k)
    inv = np.linalg.inv(k + lam * np.eye(n))
    y = y.reshape(n, -1)
    num = np.trace(y.T @ inv @ inv @ y) / n
    return float(num / (np.trace(inv) / n) ** 2)


def one_hot(labels):
    return (labels[:, None] == np.unique(labels)[None, :]).astype(float)


@pytest.mark.parametrize("center", [True, False])
def test_spectrum_interval_is_about_the_effective_dimension(data, center):
    x = data[0]
    res = bigalign.spectrum(x, center=center, ci=0.9, block_size=17)
    _check(res, lambda a: ref_effective_dimension(a, center), [x], 0.9, "identity", True)


def test_spectrum_rbf_interval_uses_the_fixed_nystroem_map(data):
    x = data[0]
    res = bigalign.spectrum(x, kernel="rbf", n_features=30, ci=0.95, block_size=29)
    fmap, _ = _nystroem(as_representation(x, "x"), "median", 30, 0, "spectrum")  # the same seeded map
    phi = fmap(x)
    _check(res, ref_effective_dimension, [phi], 0.95, "identity", True)


@pytest.mark.parametrize("rank", [None, 2])
def test_spectral_alignment_interval_equals_naive(data, rank):
    x, y = data[:2]
    res = bigalign.spectral_alignment(x, y, rank=rank, ci=0.95, block_size=19)
    f = ref_alignment if rank is None else (lambda a, b: ref_truncated_alignment(a, b, rank))
    _check(res, f, [x, y], 0.95, "logit", True)


def test_spectral_alignment_uncentred_interval(data):
    x, y = data[:2]
    res = bigalign.spectral_alignment(x, y, center=False, ci=0.95, block_size=40)
    _check(res, lambda a, b: ref_alignment(a, b, False), [x, y], 0.95, "logit", True)


@pytest.mark.parametrize("which", ["regression", "labels"])
def test_task_alignment_interval_equals_naive(data, which):
    x, _, t, labels = data
    targets = t if which == "regression" else labels
    res = bigalign.task_alignment(x, targets, ci=0.95, block_size=21)
    tt = t.reshape(-1, 1) if which == "regression" else one_hot(labels)
    _check(res, ref_alignment, [x, tt], 0.95, "logit", True)


@pytest.mark.parametrize("center", [False, True])
def test_kare_interval_equals_naive(data, center):
    x, _, t, labels = data
    res = bigalign.kare(x, t, ridge=[0.05, 1.0], center=center, ci=0.95, block_size=23)
    _check(res, lambda a, b: ref_kare(a, b, 0.05, center), [x, t], 0.95, "identity", False)
    res = bigalign.kare(x, labels, ridge=0.2, ci=0.9, scheduler="sync")
    _check(res, lambda a, b: ref_kare(a, b, 0.2), [x, one_hot(labels)], 0.9, "identity", False)


def test_spectral_interval_without_ci_changes_nothing(data):
    x, y = data[:2]
    a, b = bigalign.spectral_alignment(x, y), bigalign.spectral_alignment(x, y, ci=0.95)
    assert a.ci is None and a.ci_level is None and "ci_about" not in a.parameters
    assert a.value == pytest.approx(b.value, rel=1e-13)
    assert bigalign.spectrum(x).ci is None


def test_randomized_road_has_no_interval(data):
    x, y = data[:2]
    with pytest.raises(InvalidInputError, match="method='exact'"):
        bigalign.spectrum(x, rank=2, method="randomized", ci=0.95)
    with pytest.raises(InvalidInputError, match="method='exact'"):
        bigalign.spectral_alignment(x, y, rank=2, method="randomized", ci=0.95)
    with pytest.raises(InvalidInputError, match="ci"):
        bigalign.spectrum(x, ci=1.5)
    with pytest.raises(InvalidInputError, match="40"):
        bigalign.spectrum(x[:30], ci=0.95)


# --------------------------------------------------------------------------- #
# coco, kcc, kmi with the rbf and laplacian kernels
# --------------------------------------------------------------------------- #


@pytest.fixture(scope="module")
def dep():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(N, 3)) + 4.0
    y = np.tanh(x[:, :2] - 4.0) + 0.5 * rng.normal(size=(N, 2))
    return x, y


def _kernel(a, kernel, sigma):
    d2 = np.sum((a[:, None, :] - a[None, :, :]) ** 2, axis=-1)
    return np.exp(-d2 / (2 * sigma**2)) if kernel == "rbf" else np.exp(-np.sqrt(d2) / sigma)


@pytest.mark.parametrize("kernel", ["rbf", "laplacian"])
@pytest.mark.parametrize("func", ["coco", "kcc", "kmi"])
def test_exact_kernel_intervals_equal_naive_gram_formulas(dep, func, kernel):
    # the naive n×n formulas of tests/test_independence.py, the bandwidths fixed at the full sample's
    from test_independence import naive

    x, y = dep
    res = getattr(bigalign, func)(x, y, kernel=kernel, method="exact", ci=0.95)
    sx, sy = res.parameters["bandwidth_x"], res.parameters["bandwidth_y"]
    kappa = 0.0 if func == "coco" else 1e-2
    f = lambda a, b: naive(_kernel(a, kernel, sx), _kernel(b, kernel, sy), kappa)[func]  # noqa: E731
    value = f(x, y)
    iv = jackknife_interval(value, _loo([x, y], f), 0.95, scale="logit" if func == "kcc" else "identity", bias_correct=True)
    # the naive eigen-solvers (non-symmetric eigvals, slogdet) agree with the factored algebra to ~1e-10
    assert res.value == pytest.approx(value, rel=1e-8)
    assert res.ci == pytest.approx(iv.bounds, rel=1e-8)
    assert res.parameters["ci_scale"] == iv.scale and res.parameters["ci_center"] == "jackknife bias-corrected"
    assert res.stderr is None


@pytest.mark.parametrize("method", ["nystroem", "rff"])
@pytest.mark.parametrize("func", ["coco", "kcc", "kmi"])
def test_feature_road_intervals_equal_naive_feature_covariances(dep, monkeypatch, func, method):
    # the feature maps are fixed by the seed: record them, apply them to every row, and build each
    # leave-one-group-out value from the covariances of the features on the other rows (dense numpy)
    import bigalign.metrics._kernel_nonlinear as kn
    import bigalign.metrics.independence as ind

    maps = []
    for name in ("draw_nystroem", "draw_random_fourier"):
        real = getattr(kn, name)
        monkeypatch.setattr(kn, name, lambda *a, _real=real, **k: maps.append(_real(*a, **k)) or maps[-1])
    res = getattr(bigalign, func)(x := dep[0], y := dep[1], kernel="rbf", method=method, n_features=24, ci=0.9, block_size=17)
    fx, fy = maps[0], maps[1]  # x's and y's map (Nyström: the full landmark level comes first)
    phi, psi = fx(x), fy(y)
    kappa = 1e-2

    def value(a, b):
        ac, bc = a - a.mean(axis=0), b - b.mean(axis=0)
        n = a.shape[0]
        cov = ind.Covariances(n, ac.T @ ac / n, bc.T @ bc / n, ac.T @ bc / n,
                              getattr(fx, "bounds", None), getattr(fy, "bounds", None))  # fmt: skip
        if func == "coco":
            return ind._values(cov, None, False).coco
        job = ind._Job(cov, method, {}, (), grouped=method == "rff")
        return ind._canonical_result_body(func, job, kappa).value

    v = value(phi, psi)
    iv = jackknife_interval(v, _loo([phi, psi], value), 0.9, scale="logit" if func == "kcc" else "identity", bias_correct=True)
    assert res.value == pytest.approx(v, rel=1e-9)
    assert res.ci == pytest.approx(iv.bounds, rel=1e-9)
    assert res.parameters["ci_se"] == pytest.approx(iv.se, rel=1e-7)
    assert res.stderr is not None  # the approximation's error stays beside the sampling interval


def test_independence_interval_needs_40_rows(dep):
    x, y = dep
    with pytest.raises(InvalidInputError, match="at least 40 rows"):
        bigalign.kcc(x[:39], y[:39], kernel="rbf", ci=0.95)


# --------------------------------------------------------------------------- #
# stitch: each leave-one-group-out value refits the map
# --------------------------------------------------------------------------- #


def ref_stitch_residual(x, y, hold, ridge=0.0, holdout=True):
    """Affine least squares / ridge (λ = ridge·tr of x's centred Gram) on the fitting rows,
    mean ‖x S + b − y‖² on the held-out rows (or on the fitting rows without a holdout)."""
    fit = ~hold if holdout else np.ones(x.shape[0], bool)
    ev = hold if holdout else fit
    xf, yf = x[fit], y[fit]
    mx, my = xf.mean(axis=0), yf.mean(axis=0)
    xc, yc = xf - mx, yf - my
    g = xc.T @ xc
    S = np.linalg.solve(g + ridge * np.trace(g) * np.eye(g.shape[0]), xc.T @ yc)
    e = (x[ev] - mx) @ S + my - y[ev]
    return float(np.mean(np.sum(e * e, axis=1)))


@pytest.mark.parametrize("holdout,ridge", [(0.3, 0.0), (0.0, 0.0), (0.25, 0.01)])
def test_stitch_interval_refits_per_leave_out(data, holdout, ridge):
    from bigalign.metrics._stitch_data import HOLDOUT, Splits

    x, y = data[:2]
    res = bigalign.stitch(x, y, holdout=holdout, ridge=ridge, seed=3, ci=0.95, block_size=13)
    # the split of each row is a function of its index in the full data: removing a group keeps the others' splits
    hold = Splits(holdout=holdout, folds=1, seed=3, split_rows=1).assign(0, N) == HOLDOUT
    f = lambda a, b, h: ref_stitch_residual(a, b, h.astype(bool), ridge, holdout > 0)  # noqa: E731
    _check(res, f, [x, y, hold.astype(float)], 0.95, "identity", True)


def test_stitch_interval_with_targets_and_cv_is_about_the_residual(data):
    x, y, t, labels = data
    res = bigalign.stitch(x, y, targets=labels, ridge="cv", folds=3, ci=0.9)
    plain = bigalign.stitch(x, y, targets=labels, ridge="cv", folds=3)
    assert res.value == pytest.approx(plain.value, rel=1e-12) and plain.ci is None
    lo, hi = res.ci
    assert lo < res.parameters["ci_center_value"] < hi and res.ci_level == 0.9
    with pytest.raises(InvalidInputError, match="kind='mlp'"):
        bigalign.stitch(x, y, kind="mlp", ci=0.95)


@pytest.mark.parametrize("method", ["rff", "nystroem"])
def test_kernel_stitch_interval_refits_on_the_fixed_features(data, method):
    from bigalign.metrics._stitch_data import HOLDOUT, Splits

    x, y = data[:2]
    res = bigalign.stitch(x, y, kind="kernel", method=method, n_features=12, holdout=0.3, seed=2, ci=0.95, block_size=11)
    plain = bigalign.stitch(x, y, kind="kernel", method=method, n_features=12, holdout=0.3, seed=2)
    assert plain.ci_level == 0.95 and plain.ci != res.ci  # without ci=: the held-out normal interval, map fixed
    z = res.model.features(x.astype(float).copy())  # z(x) = [x, c·φ(x)], fixed by the seed
    hold = Splits(holdout=0.3, folds=1, seed=2, split_rows=1).assign(0, N) == HOLDOUT
    f = lambda a, b, h: ref_stitch_residual(a, b, h.astype(bool))  # noqa: E731
    _check(res, f, [z, y, hold.astype(float)], 0.95, "identity", True)


def test_stitching_matrix_cells_carry_the_stitch_intervals(data):
    x, y, t, labels = data
    st = {"a": x, "b": y, "c": x[:, :3] ** 2}
    M = bigalign.stitching_matrix(st, targets=labels, holdout=0.25, ci=0.95)
    for i, la in enumerate(M.layers_a):
        for j, lb in enumerate(M.layers_b):
            want = bigalign.stitch(st[la], st[lb], targets=labels, holdout=0.25, ci=0.95)
            got = M.results[i][j]
            assert got.value == pytest.approx(want.value, rel=1e-9)
            assert got.ci == pytest.approx(want.ci, rel=1e-8) and got.ci_level == 0.95
    with pytest.raises(InvalidInputError, match="kind='mlp'"):
        bigalign.stitching_matrix(st, targets=labels, kind="mlp", ci=0.95)


@pytest.mark.parametrize("func", ["coco", "kcc", "kmi"])
def test_compare_layers_passes_ci_to_the_nonlinear_independence_measures(dep, func):
    x, y = dep
    M = bigalign.compare_layers({"x": x, "y": y}, metric=func, kernel="rbf", method="nystroem", n_features=16, ci=0.95)
    want = getattr(bigalign, func)(x, y, kernel="rbf", method="nystroem", n_features=16, ci=0.95)
    assert M["x", "y"].ci == pytest.approx(want.ci, rel=1e-9)


def test_spectral_and_stitch_bandwidths_follow_the_shared_rule(data):
    from bigalign.features import BANDWIDTH_SAMPLE, resolve_bandwidths, sample_rows

    x, y = data[:2]
    _, (xs, ys) = sample_rows([as_representation(x, "x"), as_representation(y, "y")], BANDWIDTH_SAMPLE, 0)
    sx, _, mx, _ = resolve_bandwidths("median", xs, ys)
    s = bigalign.spectrum(x, kernel="rbf", n_features=20)
    assert s.parameters["bandwidth"] == s.parameters["median"] == pytest.approx(sx, rel=1e-14) == mx
    assert bigalign.spectrum(x, kernel="rbf", n_features=20, bandwidth=2.5).parameters["bandwidth"] == 2.5
    for bad in ("mean", (1.0, 2.0), -1.0):
        with pytest.raises(InvalidInputError, match="bandwidth"):
            bigalign.spectrum(x, kernel="rbf", bandwidth=bad)
    r = bigalign.stitch(x, y, kind="kernel", bandwidth=1.7, n_features=16)
    fx = r.parameters["features_x"]
    assert fx["bandwidth"] == 1.7 and fx["median"] > 0  # the median is recorded beside a given bandwidth
