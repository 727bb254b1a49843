"""Linear stitching (bigalign.metrics.stitching) against naive references.

References are written here from docs/formulas.md without bigalign: numpy ``lstsq``
(minimum norm), explicit ridge solves, scikit-learn's ``Ridge`` and
``r2_score``, an explicit Kronecker least-squares system for the stitch into a
fixed head, and risks computed from explicit predictions row by row.

Tolerances.  Map and risks come from float64 normal equations on merged
moments; on these well-conditioned data they agree with the QR/SVD-based
references to ≤ 1e-12 relative (measured ≤ 3e-14); we require 1e-9 (the normal
equations square the condition number, which reaches ~1e3 here).  Lemma 2's
equality compares two risks computed from the same moments, measured ≤ 2e-14
relative; required 1e-10.  Invariance across block sizes and schedulers:
required 1e-12 relative (see tests/test_engine.py: rounding of the merge tree).
"""

from __future__ import annotations

import doctest
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

import bigalign
import bigalign.metrics.stitching as stitching_mod
from bigalign.errors import DegenerateInputError, InvalidInputError, NonFiniteError, PairingError
from bigalign import stitching_matrix
from bigalign.metrics.stitching import Splits, StitchResult, stitch

ROOT = Path(__file__).resolve().parents[1]
RTOL = 1e-9  # against QR/SVD references (see module docstring)
LEMMA2_RTOL = 1e-10
INV_RTOL = 1e-12


# ============================================================================
# naive references (no bigalign)
# ============================================================================


def msq(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean over rows of the squared Euclidean error norm."""
    return float(np.mean(np.sum((pred - target) ** 2, axis=1)))


def ref_regression(x, y, lam=0.0, intercept=True):
    """Least squares (lstsq, minimum norm) or ridge by an explicit solve; the intercept is unpenalised."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if intercept:
        mx, my = x.mean(0), y.mean(0)
        xc, yc = x - mx, y - my
    else:
        xc, yc = x, y
    if lam == 0:
        S = np.linalg.lstsq(xc, yc, rcond=None)[0]
    else:
        S = np.linalg.solve(xc.T @ xc + lam * np.eye(x.shape[1]), xc.T @ yc)
    b = my - mx @ S if intercept else np.zeros(y.shape[1])
    return S, b


def gram_trace(x, intercept=True):
    """tr G of the regressor's Gram (centred with an intercept): the relative ridge's unit, λ = ridge · tr G."""
    xc = x - x.mean(axis=0) if intercept else x
    return float(np.sum(xc * xc))


def ref_task_stitch(x, t, W, b, lam=0.0, intercept=True):
    """min over (S, c) of Σ‖(x S + c) W + b − t‖² + λ‖S‖², as one explicit (Kronecker) least-squares system."""
    n, dx = x.shape
    dy, C = W.shape
    D = np.kron(x, W.T)  # row i*C + k, column a*dy + m: x[i, a] W[m, k]
    if intercept:
        D = np.hstack([D, np.tile(W.T, (n, 1))])
    rhs = (t - b).ravel()
    if lam > 0:
        pen = np.zeros((dx * dy, D.shape[1]))
        pen[:, : dx * dy] = math.sqrt(lam) * np.eye(dx * dy)
        D = np.vstack([D, pen])
        rhs = np.concatenate([rhs, np.zeros(dx * dy)])
    sol = np.linalg.lstsq(D, rhs, rcond=None)[0]
    S = sol[: dx * dy].reshape(dx, dy)
    c = sol[dx * dy :] if intercept else np.zeros(dy)
    return S, c


def onehot(labels):
    classes = np.unique(labels)
    return (labels[:, None] == classes[None, :]).astype(np.float64)


def random_mlp(rng, x, sizes):
    """Activations of a random ReLU MLP (Glorot-uniform weights): a list of layers, input first."""
    acts, h = [x], x
    for k, (fi, fo) in enumerate(zip(sizes[:-1], sizes[1:])):
        bound = math.sqrt(6.0 / (fi + fo))
        h = h @ rng.uniform(-bound, bound, (fi, fo)) + rng.uniform(-bound, bound, fo)
        if k < len(sizes) - 2:
            h = np.maximum(h, 0)
        acts.append(h)
    return acts


def assert_finite(obj):
    """Every number anywhere in a to_dict() is finite (never NaN/inf)."""
    if isinstance(obj, dict):
        for v in obj.values():
            assert_finite(v)
    elif isinstance(obj, list):
        for v in obj:
            assert_finite(v)
    elif isinstance(obj, float):
        assert math.isfinite(obj), obj


def close(a, b, rtol, scale=None):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    s = scale if scale is not None else max(np.max(np.abs(b)), 1e-300)
    return float(np.max(np.abs(a - b))) <= rtol * s


# ============================================================================
# data
# ============================================================================


@pytest.fixture(scope="module")
def data():
    """Correlated, non-linear, offset data with 4-class targets (n = 503: ragged last blocks)."""
    rng = np.random.default_rng(7)
    n = 503
    x = rng.normal(size=(n, 6)) @ rng.normal(size=(6, 6)) + 3.0
    y = np.tanh(x @ rng.normal(size=(6, 5)) / 3) + 0.2 * rng.normal(size=(n, 5)) + 1.0
    labels = np.argmax(x[:, :4] + 0.5 * rng.normal(size=(n, 4)), axis=1)
    return x, y, labels


@pytest.fixture(scope="module")
def digits_split():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = d.data / 16.0
    order = np.random.default_rng(0).permutation(len(x))
    return x[order[:600]], d.target[order[:600]], x[order[600:1400]], d.target[order[600:1400]]


@pytest.fixture(scope="module")
def trained_layers(digits_split):
    """Layers of two small MLPs trained from different seeds, on digits they were not trained on."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    from bigalign.demo import forward_activations

    xtr, ytr, xev, yev = digits_split
    out = []
    for seed in (0, 1):
        mlp = MLPClassifier(hidden_layer_sizes=(32, 16), max_iter=60, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            mlp.fit(xtr, ytr)
        out.append({k: v.astype(np.float64) for k, v in forward_activations(mlp, xev).items()})
    return out, yev


@pytest.fixture(scope="module")
def random_layers(digits_split):
    _, _, xev, yev = digits_split
    rng = np.random.default_rng(3)
    nets = [random_mlp(rng, xev, [64, 48, 24, 10]) for _ in range(2)]
    return [dict(zip(["input", "h1", "h2", "out"], acts)) for acts in nets], yev


# ============================================================================
# the map: lstsq, ridge, R²
# ============================================================================


@pytest.mark.parametrize("intercept", [True, False])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_map_matches_lstsq(data, intercept, dtype):
    from sklearn.metrics import r2_score

    x, y, _ = data
    x, y = x.astype(dtype), y.astype(dtype)
    r = stitch(x, y, holdout=0, intercept=intercept, scheduler="sync")
    S, b = ref_regression(x, y, 0.0, intercept)
    assert close(r.map, S, RTOL) and close(r.offset, b, RTOL, scale=np.abs(y).max())
    pred = x.astype(np.float64) @ S + b
    assert r.residual == pytest.approx(msq(pred, y), rel=RTOL)
    if intercept:
        assert r.r2 == pytest.approx(r2_score(y, pred, multioutput="variance_weighted"), rel=RTOL)
    assert r.fit is r.evaluation and r.holdout is None
    assert r.rank == {"x": 6, "y": 5}
    assert r.value == r.residual and float(r) == r.residual
    assert_finite(r.to_dict())


@pytest.mark.parametrize("intercept", [True, False])
def test_ridge_matches_explicit_solve_and_sklearn(data, intercept):
    from sklearn.linear_model import Ridge

    x, y, _ = data
    lam = 37.5
    r = stitch(x, y, ridge=lam / gram_trace(x, intercept), holdout=0, intercept=intercept, scheduler="sync")
    S, b = ref_regression(x, y, lam, intercept)
    assert close(r.map, S, RTOL) and close(r.offset, b, RTOL, scale=np.abs(y).max())
    sk = Ridge(alpha=lam, fit_intercept=intercept).fit(x, y)
    assert close(r.map, sk.coef_.T, 1e-8)
    assert r.residual == pytest.approx(msq(x @ S + b, y), rel=RTOL)
    assert r.ridge["map"] == pytest.approx(lam, rel=1e-15)


def test_paper_residual_is_uncentred_min(data):
    """intercept=False, ridge=0: fit.residual = Ã₂ = min_S mean‖x S − y‖² (uncentred, no intercept)."""
    x, y, _ = data
    r = stitch(x, y, intercept=False, holdout=0, scheduler="sync")
    S = np.linalg.lstsq(x, y, rcond=None)[0]
    assert r.fit.residual == pytest.approx(msq(x @ S, y), rel=RTOL)
    # any other S is worse
    assert r.fit.residual < msq(x @ (S + 1e-3), y)


# ============================================================================
# heads, the stitch into a fixed head, κ, Theorem 1's bound
# ============================================================================


@pytest.mark.parametrize("intercept", [True, False])
@pytest.mark.parametrize("lam", [0.0, 4.0])
def test_heads_and_task_stitch_match_explicit(data, intercept, lam):
    x, y, labels = data
    t = onehot(labels)
    r = stitch(x, y, targets=labels, ridge=lam, holdout=0, intercept=intercept, scheduler="sync")
    lx, ly = lam * gram_trace(x, intercept), lam * gram_trace(y, intercept)  # relative ridge: λ = ridge · tr G
    W1, b1 = ref_regression(x, t, lx, intercept)
    W2, b2 = ref_regression(y, t, ly, intercept)
    assert close(r.head_1[0], W1, RTOL) and close(r.head_2[0], W2, RTOL)
    assert close(r.head_1[1], b1, RTOL, scale=1.0) and close(r.head_2[1], b2, RTOL, scale=1.0)
    assert r.risk_1 == pytest.approx(msq(x @ W1 + b1, t), rel=RTOL)
    assert r.risk_2 == pytest.approx(msq(y @ W2 + b2, t), rel=RTOL)
    # the best stitch into the fixed head (W2, b2), by an explicit Kronecker system
    S, c = ref_task_stitch(x, t, W2, b2, lx, intercept)
    ref_risk = msq((x @ S + c) @ W2 + b2, t)
    assert r.stitched_risk == pytest.approx(ref_risk, rel=RTOL)
    got = (x @ r.task_map + r.task_offset) @ r.head_2[0] + r.head_2[1]
    assert msq(got, t) == pytest.approx(ref_risk, rel=RTOL)
    if lam > 0:  # unique solution: the maps themselves agree
        assert close(r.task_map, S, 1e-8)
    assert r.excess_risk == pytest.approx(r.stitched_risk - r.risk_2, rel=1e-15, abs=1e-15)
    # κ₂ = ‖W₂‖₂ and Theorem 1's bound from a naive residual
    assert r.kappa == pytest.approx(np.linalg.norm(W2, 2), rel=RTOL)
    Sm, bm = ref_regression(x, y, lx, intercept)
    A2 = msq(x @ Sm + bm, y)
    assert r.bound == pytest.approx((math.sqrt(msq(y @ W2 + b2, t)) + np.linalg.norm(W2, 2) * math.sqrt(A2)) ** 2, rel=RTOL)
    assert r.regression_stitch_risk == pytest.approx(msq((x @ Sm + bm) @ W2 + b2, t), rel=RTOL)
    want = {"map": lx, "head_1": lx, "head_2": ly, "stitch": lx}  # absolute λ (traces summed in another order)
    assert r.ridge.keys() == want.keys() and all(r.ridge[k] == pytest.approx(v, rel=1e-14) for k, v in want.items())
    assert_finite(r.to_dict())


@pytest.mark.parametrize("intercept", [True, False])
def test_lemma2_equality_random_networks(random_layers, intercept):
    nets, labels = random_layers
    m = stitching_matrix(nets[0], nets[1], targets=labels, holdout=0.25, intercept=intercept, scheduler="sync")
    for direction in ("forward", "reverse"):
        st, r1 = m.values("stitched_risk", "fit", direction), m.values("risk_1", "fit", direction)
        r2 = m.values("risk_2", "fit", direction)
        assert np.all(np.abs(st - r1) <= LEMMA2_RTOL * r1), np.max(np.abs(st - r1) / r1)
        assert np.allclose(m.values("excess_risk", "fit", direction), r1 - r2, rtol=0, atol=1e-10 * r1.max())
    assert not any("head_2_rank_deficient" in r.flags for row in m.results for r in row)
    # the single-pair façade gives the same cell
    r = stitch(nets[0]["h1"], nets[1]["out"], targets=labels, holdout=0.25, intercept=intercept, scheduler="sync")
    assert r.fit.stitched_risk == pytest.approx(r.fit.risk_1, rel=LEMMA2_RTOL)


def test_lemma2_equality_trained_networks(trained_layers):
    nets, labels = trained_layers
    m = stitching_matrix(nets[0], nets[1], targets=labels, holdout=0.25, scheduler="sync")
    for direction in ("forward", "reverse"):
        st, r1 = m.values("stitched_risk", "fit", direction), m.values("risk_1", "fit", direction)
        assert np.all(np.abs(st - r1) <= LEMMA2_RTOL * r1), np.max(np.abs(st - r1) / r1)


def test_lemma2_needs_a_wide_enough_head(data):
    """d_y = 2 < c − 1 = 3 centred one-hot dimensions: W₂ cannot have full rank, the stitch loses risk."""
    x, y, labels = data
    r = stitch(x, y[:, :2], targets=labels, holdout=0, scheduler="sync")
    assert "head_2_rank_deficient" in r.flags
    assert r.fit.stitched_risk > r.fit.risk_1 * (1 + 1e-6)
    S, c = ref_task_stitch(x, onehot(labels), *r.head_2)
    assert r.fit.stitched_risk == pytest.approx(msq((x @ S + c) @ r.head_2[0] + r.head_2[1], onehot(labels)), rel=RTOL)


@pytest.mark.parametrize("which", ["random", "trained"])
@pytest.mark.parametrize("lam", [0.0, 10.0])
def test_theorem1_inequality(random_layers, trained_layers, which, lam):
    nets, labels = random_layers if which == "random" else trained_layers
    m = stitching_matrix(nets[0], nets[1], targets=labels, holdout=0.25, ridge=lam, scheduler="sync")
    tol = 1 + 1e-12  # equality cases (Ã₂ = 0: identical input layers) hold up to rounding
    for direction in ("forward", "reverse"):
        for split in ("fit", "holdout"):
            # Minkowski: the regression stitch is within the bound on any rows, for any ridge
            reg, bound = m.values("regression_stitch_risk", split, direction), m.values("bound", split, direction)
            assert np.all(reg <= bound * tol)
        if lam == 0:  # the best stitch is at least as good as the regression stitch on the fitting rows
            st = m.values("stitched_risk", "fit", direction)
            assert np.all(st <= m.values("regression_stitch_risk", "fit", direction) * tol)
            assert np.all(st <= m.values("bound", "fit", direction) * tol)
    if lam == 0:
        r6 = m.remark6("fit")
        assert np.all(r6["risk_a"] <= r6["bound_a"] * tol) and np.all(r6["risk_b"] <= r6["bound_b"] * tol)
        gap = np.abs(r6["risk_a"][:, None] - r6["risk_b"][None, :])
        assert np.all(gap <= r6["gap_bound"] * tol + 1e-15)


# ============================================================================
# held-out rows, splits, cross-validation
# ============================================================================


def test_holdout_matches_naive(data):
    from sklearn.metrics import r2_score

    x, y, labels = data
    t = onehot(labels)
    r = stitch(x, y, targets=labels, holdout=0.3, seed=5, scheduler="sync")
    lab = Splits(holdout=0.3, folds=1, seed=5, split_rows=1).assign(0, len(x))
    fit, hold = lab == 0, lab == -1
    assert (r.fit.n_samples, r.holdout.n_samples) == (fit.sum(), hold.sum())
    assert r.n_samples == len(x) and r.evaluation is r.holdout
    S, b = ref_regression(x[fit], y[fit])
    W1, b1 = ref_regression(x[fit], t[fit])
    W2, b2 = ref_regression(y[fit], t[fit])
    assert r.residual == pytest.approx(msq(x[hold] @ S + b, y[hold]), rel=RTOL)
    assert r.fit.residual == pytest.approx(msq(x[fit] @ S + b, y[fit]), rel=RTOL)
    assert r.r2 == pytest.approx(r2_score(y[hold], x[hold] @ S + b, multioutput="variance_weighted"), rel=RTOL)
    assert r.risk_1 == pytest.approx(msq(x[hold] @ W1 + b1, t[hold]), rel=RTOL)
    assert r.risk_2 == pytest.approx(msq(y[hold] @ W2 + b2, t[hold]), rel=RTOL)
    Sx, c = ref_task_stitch(x[fit], t[fit], W2, b2)
    assert r.stitched_risk == pytest.approx(msq((x[hold] @ Sx + c) @ W2 + b2, t[hold]), rel=RTOL)


def test_split_assignment():
    n = 20_000
    sp = Splits(holdout=0.2, folds=5, seed=3, split_rows=1)
    lab = sp.assign(0, n)
    # independent of how the rows are blocked
    cuts = [0, 1, 17, 4096, 4097, 12_345, n]
    assert np.array_equal(np.concatenate([sp.assign(a, b) for a, b in zip(cuts[:-1], cuts[1:])]), lab)
    # fractions: binomial, within 5 standard deviations
    for key, p in [(-1, 0.2)] + [(k, 0.16) for k in range(5)]:
        assert abs(np.mean(lab == key) - p) < 5 * math.sqrt(p * (1 - p) / n)
    assert not np.array_equal(Splits(0.2, 5, 4, 1).assign(0, n), lab)  # the seed matters
    grouped = Splits(0.2, 5, 3, 10).assign(0, n)
    assert np.all(grouped.reshape(-1, 10) == grouped.reshape(-1, 10)[:, :1])  # groups of 10 rows stay together
    # the held-out set does not depend on the number of folds (same rows fitted with and without "cv")
    assert np.array_equal(Splits(0.2, 1, 3, 1).assign(0, n) == -1, lab == -1)


def test_cv_matches_naive(data):
    x, y, labels = data
    t = onehot(labels)
    grid = [0.01, 1.0, 30.0, 1000.0]
    lab = Splits(0.2, 3, 1, 1).assign(0, len(x))
    trx = gram_trace(x[lab >= 0])  # ridge_grid is relative to tr G of x on the fitting rows
    r = stitch(x, y, targets=labels, ridge="cv", folds=3, ridge_grid=[g / trx for g in grid], holdout=0.2, seed=1,
               scheduler="sync")  # fmt: skip
    grid = r.cv["map"]["grid"]  # the absolute λ: the values above up to rounding
    assert np.allclose(grid, [0.01, 1.0, 30.0, 1000.0], rtol=1e-14, atol=0)
    nfit = int(np.sum(lab >= 0))

    def cv_errors(fit_fn, src, dst):
        errs = []
        for lam in grid:
            sse = 0.0
            for k in range(3):
                tr, va = (lab >= 0) & (lab != k), lab == k
                A, a0 = fit_fn(src[tr], dst[tr], lam)
                sse += msq(src[va] @ A + a0, dst[va]) * va.sum()
            errs.append(sse / nfit)
        return errs

    exp_map = cv_errors(lambda a, b, lam: ref_regression(a, b, lam), x, y)
    assert np.allclose(r.cv["map"]["errors"], exp_map, rtol=RTOL, atol=0)
    assert r.ridge["map"] == grid[int(np.argmin(exp_map))]
    exp_h1 = cv_errors(lambda a, b, lam: ref_regression(a, b, lam), x, t)
    assert np.allclose(r.cv["head_1"]["errors"], exp_h1, rtol=RTOL, atol=0)
    W2, b2 = r.head_2

    def stitch_fit(a, b, lam):
        S, c = ref_task_stitch(a, b, W2, b2, lam)
        return S @ W2, c @ W2 + b2

    exp_st = cv_errors(stitch_fit, x, t)
    assert np.allclose(r.cv["stitch"]["errors"], exp_st, rtol=1e-8, atol=0)
    assert r.ridge["stitch"] == grid[int(np.argmin(exp_st))]
    # the final fits use the chosen λ on all fitting rows
    fit = lab >= 0
    S, b = ref_regression(x[fit], y[fit], r.ridge["map"])
    assert close(r.map, S, RTOL)
    assert r.cv["folds"] == 3


def test_cv_default_grid(data):
    x, y, _ = data
    r = stitch(x, y, ridge="cv", holdout=0, scheduler="sync")
    xc = x - x.mean(0)
    scale = np.trace(xc.T @ xc) / x.shape[1]
    assert np.allclose(r.cv["map"]["grid"], [10.0**k * scale for k in range(-6, 3)], rtol=1e-12)
    assert r.ridge["map"] in r.cv["map"]["grid"]


# ============================================================================
# engine invariance
# ============================================================================


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
    client = distributed.Client(cluster, set_as_default=False)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def _numbers(r: StitchResult) -> dict:
    out = {}
    for part in (r.fit, r.holdout):
        for k, v in part.to_dict().items():
            # differences of risks (excess_risk, lemma2_gap, excess_bound) are checked through their terms
            if isinstance(v, float) and k not in ("excess_risk", "lemma2_gap", "excess_bound"):
                out[f"{part.split}.{k}"] = v
    out["kappa"] = r.kappa
    for k in ("map", "offset", "task_map", "task_offset"):
        out[k] = getattr(r, k)
    out["W1"], out["W2"] = r.head_1[0], r.head_2[0]
    return out


def _assert_same(a: StitchResult, b: StitchResult, rtol=INV_RTOL):
    na, nb = _numbers(a), _numbers(b)
    for k in na:
        va, vb = np.asarray(na[k]), np.asarray(nb[k])
        scale = max(float(np.max(np.abs(va))), 1e-300)
        assert float(np.max(np.abs(va - vb))) <= rtol * scale, (k, va, vb)
    assert a.ridge == b.ridge or all(math.isclose(a.ridge[k], b.ridge[k], rel_tol=rtol) for k in a.ridge)


@pytest.mark.slow
@pytest.mark.parametrize("ridge", [0.0, "cv"])
def test_block_size_and_scheduler_invariance(data, dask_client, ridge):
    x, y, labels = data
    kw = dict(targets=labels, ridge=ridge, folds=3, holdout=0.2, seed=2, reverse=True)
    ref = stitch(x, y, block_size=len(x), scheduler="sync", **kw)
    for bs in (1, 50, 128) if ridge == 0.0 else (50,):
        _assert_same(stitch(x, y, block_size=bs, scheduler="sync", **kw), ref)
    _assert_same(stitch(x, y, block_size=64, scheduler="threads", num_workers=2, **kw), ref)
    dist = stitch(x, y, block_size=64, scheduler=dask_client, **kw)
    _assert_same(dist, ref)
    _assert_same(dist.reverse, ref.reverse)


def test_reverse_equals_swapped_call(data):
    x, y, labels = data
    r = stitch(x, y, targets=labels, reverse=True, scheduler="sync")
    s = stitch(y, x, targets=labels, scheduler="sync")
    _assert_same(r.reverse, s, rtol=1e-12)
    assert r.reverse.direction == "y->x" and r.reverse.risk_1 == pytest.approx(r.risk_2, rel=1e-12)


def test_low_precision_inputs_equal_their_float64_values(data):
    import ml_dtypes

    x, y, labels = data
    for dt in (np.float16, ml_dtypes.bfloat16, np.float32):
        xl, yl = x.astype(dt), y.astype(dt)
        a = stitch(xl, yl, targets=labels, scheduler="sync")
        b = stitch(xl.astype(np.float64), yl.astype(np.float64), targets=labels, scheduler="sync")
        _assert_same(a, b, rtol=1e-12)


def test_large_offset_is_exact(data):
    """Merged centred moments: an offset of 1e6 changes nothing (an XᵀX − nμμᵀ formula would lose ~12 digits)."""
    x, y, labels = data
    a = stitch(x, y, targets=labels, block_size=64, scheduler="sync")
    b = stitch(x + 1e6, y - 1e6, targets=labels, block_size=64, scheduler="sync")
    assert close(b.map, a.map, 1e-6)  # x + 1e6 is itself rounded at 1e6·eps ≈ 1e-10 absolute
    for k in ("residual", "risk_1", "risk_2", "stitched_risk"):
        assert getattr(b, k) == pytest.approx(getattr(a, k), rel=1e-6)


# ============================================================================
# layer × layer
# ============================================================================


@pytest.fixture
def two_stores(tmp_path, trained_layers):
    nets, labels = trained_layers
    ids = np.arange(len(labels)) * 3 + 11
    paths = []
    for k, net in enumerate(nets):
        p = tmp_path / f"m{k}.zarr"
        with bigalign.ActivationWriter(p, chunk_rows=128) as w:
            w.append({k2: v.astype(np.float32) for k2, v in net.items()}, sample_ids=ids)
        paths.append(p)
    return [bigalign.open_activations(p) for p in paths], labels


def test_stitching_matrix_cells_equal_stitch_and_compare_layers(two_stores):
    (a, b), labels = two_stores
    m = stitching_matrix(a, b, targets=labels, holdout=0.25, seed=4, keep_maps=True, scheduler="sync")
    assert m.layers_a == a.layers and m.layers_b == b.layers and m.n_passes == 1
    L = len(a.layers)
    for i, j in [(0, L - 1), (L - 1, 1), (1, 1)]:  # a few cells (each stitch call is another read)
        ref = stitch(a[a.layers[i]], b[b.layers[j]], targets=labels, holdout=0.25, seed=4, reverse=True, scheduler="sync")
        _assert_same(m.results[i][j], ref, rtol=1e-10)
        _assert_same(m.results[i][j].reverse, ref.reverse, rtol=1e-10)
    cka = bigalign.compare_layers(a, b, metric="cka", scheduler="sync")
    ka = bigalign.compare_layers(a, b, metric="kernel_alignment", scheduler="sync")
    assert np.allclose(m.cka.values, cka.values, rtol=1e-12, atol=0)
    assert np.allclose(m.kernel_alignment.values, ka.values, rtol=1e-12, atol=0)
    # several passes under a tight state budget: the same numbers
    m2 = stitching_matrix(a, b, targets=labels, holdout=0.25, seed=4, state_memory=200_000, scheduler="sync")
    assert m2.n_passes > 1
    for q in ("excess_risk", "bound", "residual"):
        assert np.allclose(m2.values(q), m.values(q), rtol=1e-10, atol=1e-14)
    assert np.allclose(m2.cka.values, m.cka.values, rtol=1e-12, atol=0)
    json.dumps(m2.to_dict())
    assert_finite(m2.to_dict())


def test_stitching_matrix_plot_and_views(two_stores, tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    (a, b), labels = two_stores
    m = stitching_matrix(a, None, targets=labels, layers_a=["hidden1", "logits"], scheduler="sync")
    L = len(a.layers)
    assert m.values("residual").shape == (2, L)
    assert m.values("residual", "fit")[0, a.layers.index("hidden1")] == 0.0  # a layer into itself
    fig = m.plot(("cka", "kernel_alignment", "excess_risk", "bound"))
    fig.savefig(tmp_path / "m.png")
    assert (tmp_path / "m.png").stat().st_size > 1000
    lm = m.layer_matrix("excess_bound", "holdout")
    assert lm.values.shape == (2, L) and lm.results[0][0].metric == "excess_bound"
    with pytest.raises(InvalidInputError, match="quantity"):
        m.values("accuracy")


def test_targets_as_store_layer_and_pairing(tmp_path, data):
    x, y, labels = data
    ids = np.arange(len(x))
    with bigalign.ActivationWriter(tmp_path / "a.zarr") as w:
        w.append({"x": x, "t": onehot(labels)}, sample_ids=ids)
    with bigalign.ActivationWriter(tmp_path / "b.zarr") as w:
        w.append({"y": y}, sample_ids=ids)
    with bigalign.ActivationWriter(tmp_path / "c.zarr") as w:
        w.append({"y": y}, sample_ids=ids[::-1].copy())
    a, b, c = (bigalign.open_activations(tmp_path / f"{k}.zarr") for k in "abc")
    r = stitch(a["x"], b["y"], targets=a["t"], scheduler="sync")
    _assert_same(r, stitch(x, y, targets=labels, scheduler="sync"))
    with pytest.raises(PairingError):
        stitch(a["x"], c["y"], targets=labels)
    with pytest.raises(PairingError), pytest.warns(bigalign.PairingWarning):
        stitch(x, c["y"], targets=a["t"])  # x is a plain array: warned; the two store layers still checked


# ============================================================================
# degenerate inputs: never NaN
# ============================================================================


def test_singular_gram_gives_minimum_norm_solution(data):
    x, y, labels = data
    xs = np.hstack([x, x[:, :2], np.zeros((len(x), 1))])  # duplicated and zero columns
    for intercept in (True, False):
        r = stitch(xs, y, targets=labels, holdout=0, intercept=intercept, scheduler="sync")
        S, b = ref_regression(xs, y, 0.0, intercept)  # lstsq: the minimum-norm solution
        assert close(r.map, S, 1e-8) and "x_rank_deficient" in r.flags and r.rank["x"] == 6
        assert r.residual == pytest.approx(msq(xs @ S + b, y), rel=RTOL)
        # same fit as the full-rank x, and Lemma 2 still holds
        assert r.residual == pytest.approx(stitch(x, y, holdout=0, intercept=intercept, scheduler="sync").residual, rel=1e-9)
        assert r.fit.stitched_risk == pytest.approx(r.fit.risk_1, rel=LEMMA2_RTOL)


def test_more_features_than_samples(rng):
    x, y = rng.normal(size=(20, 50)), rng.normal(size=(20, 3))
    r = stitch(x, y, holdout=0, scheduler="sync")
    S, b = ref_regression(x, y)
    assert close(r.map, S, 1e-8) and r.rank["x"] == 19  # centred: rank n − 1
    # an interpolating map: the residual is 0 up to float64 rounding of y's total variance (measured
    # 0 on one BLAS, 3.6e-16 on another), so the bar is relative to that variance, not an absolute 1e-20
    assert 0.0 <= r.residual < 1e-12 * np.sum(y.var(0)) and r.r2 == pytest.approx(1.0, abs=1e-12)


def test_constant_and_zero_inputs(rng):
    n = 200
    y = rng.normal(size=(n, 3))
    labels = rng.integers(0, 3, n)
    const = np.full((n, 4), 2.5)
    r = stitch(const, y, targets=labels, holdout=0, scheduler="sync")
    assert np.all(r.map == 0) and np.allclose(r.offset, y.mean(0), rtol=1e-14)
    assert r.residual == pytest.approx(np.sum(y.var(0)), rel=1e-12) and r.r2 == pytest.approx(0.0, abs=1e-14)
    assert r.rank["x"] == 0 and "x_rank_deficient" in r.flags
    assert_finite(r.to_dict())
    r = stitch(np.zeros((n, 4)), y, targets=labels, holdout=0, intercept=False, scheduler="sync")
    assert np.all(r.map == 0) and r.residual == pytest.approx(np.mean(np.sum(y * y, 1)), rel=1e-12)
    assert_finite(r.to_dict())
    # y constant: R² undefined (None), head of y is 0 with κ = 0, bound = R₂
    r = stitch(y, const, targets=labels, holdout=0, scheduler="sync")
    assert r.r2 is None and r.kappa == 0.0 and r.bound == pytest.approx(r.risk_2, rel=1e-14)
    assert r.residual == 0.0
    assert_finite(r.to_dict())


def test_perfect_fit(rng):
    x = rng.normal(size=(300, 4))
    q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    r = stitch(x, 2 * x @ q + 1, holdout=0.2, scheduler="sync")
    # zero up to the rounding of tr(Sᵀ Mₓ S) − 2 tr(Sᵀ Mₓᵧ) + tr(Mᵧ) (terms ~ 4 per row)
    assert close(r.map, 2 * q, 1e-12) and 0.0 <= r.residual < 1e-12 and r.r2 == pytest.approx(1.0, abs=1e-12)
    assert r.fit.residual < 1e-12


# ============================================================================
# errors: what, expected, got, how to fix
# ============================================================================


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"ridge": -1.0}, "'ridge' parameter of stitch must be a finite float ≥ 0 or 'cv'; got -1.0"),
        ({"ridge": float("nan")}, "'ridge' parameter"),
        ({"ridge": True}, "'ridge' parameter"),
        ({"ridge": "auto"}, "float ≥ 0 or 'cv'; got 'auto'"),
        ({"holdout": 1.0}, "'holdout' parameter of stitch must be a fraction in \\[0, 1\\)"),
        ({"holdout": -0.1}, "'holdout'"),
        ({"folds": 1, "ridge": "cv"}, "'folds' parameter of stitch must be an integer ≥ 2"),
        ({"seed": -3}, "'seed'"),
        ({"split_rows": 0}, "'split_rows'"),
        ({"intercept": "yes"}, "'intercept'"),
        ({"ridge_grid": [1.0]}, "only used with ridge='cv'"),
        ({"ridge": "cv", "ridge_grid": [1.0, -2.0]}, "non-empty sequence of finite floats ≥ 0"),
        ({"ridge": "cv", "ridge_grid": []}, "non-empty"),
        ({"reverse": 1}, "'reverse'"),
    ],
)
def test_option_errors(data, kw, match):
    x, y, _ = data
    with pytest.raises(InvalidInputError, match=match):
        stitch(x, y, **kw)


def test_data_errors(data):
    x, y, labels = data
    with pytest.raises(InvalidInputError, match="same number of samples; got x: 503 rows, y: 502 rows"):
        stitch(x, y[:-1])
    with pytest.raises(InvalidInputError, match="one row per sample; got 502 targets for 503 samples"):
        stitch(x, y, targets=labels[:-1])
    with pytest.raises(InvalidInputError, match="got 502 rows of targets for 503 samples"):
        stitch(x, y, targets=onehot(labels)[:-1])
    bad = x.copy()
    bad[137, 2] = np.nan
    with pytest.raises(NonFiniteError, match="1 row\\(s\\) between rows 137 and 137"):
        stitch(bad, y, block_size=100, scheduler="sync")
    with pytest.raises(DegenerateInputError, match="single class"):
        stitch(x, y, targets=np.zeros(len(x), dtype=int))
    with pytest.raises(InvalidInputError, match="held-out split received no rows"):
        stitch(x[:3], y[:3], holdout=0.01, seed=0)
    with pytest.raises(InvalidInputError, match="fold\\(s\\) .* received no rows"):
        stitch(x[:6], y[:6], ridge="cv", folds=5, holdout=0)
    with pytest.raises(InvalidInputError, match="needs targets"):
        stitching_matrix({"a": x}, {"b": y}, targets=None)


# ============================================================================
# documentation and the example
# ============================================================================


def test_docstring_examples():
    res = doctest.testmod(stitching_mod)
    assert res.attempted > 0 and res.failed == 0


@pytest.mark.slow
def test_example_runs(tmp_path, capsys):
    """examples/stitching_digits.py --quick, in this process (the imports are already paid for)."""
    import runpy

    from threadpoolctl import threadpool_limits

    mod = runpy.run_path(str(ROOT / "examples" / "stitching_digits.py"), run_name="stitching_digits_example")
    with threadpool_limits(limits=1, user_api="blas"):
        out = mod["main"](["--quick", "--out", str(tmp_path)])
    assert out["lemma2_max"] < LEMMA2_RTOL
    assert "Lemma 2 max relative difference" in capsys.readouterr().out
    for f in ("stitching_digits.png", "stitching_matrices.png", "summary.md", "results.json"):
        assert (tmp_path / f).stat().st_size > 0
    summary = (tmp_path / "summary.md").read_text()
    assert "| Theorem 1 with the regression stitch, held-out rows (guaranteed) | 150/150 |" in summary
