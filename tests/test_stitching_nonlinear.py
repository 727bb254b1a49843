"""Non-linear stitching (bigalign.metrics.stitching_nonlinear): kernel and MLP stitch classes.

References are written here without bigalign's fitting code: the explicit
feature matrix Z = [x, c·φ(x)] built from the formulas of φ (cos/sin of the
drawn frequencies, or the Nyström kernel rows times the projection) and a
ridge / lstsq solve on it in numpy, an explicit Kronecker least-squares system
for the stitch into the fixed head, per-row errors of explicit predictions for
every risk and np.std(ddof=1)/√n for the standard errors.

Tolerances.  The kernel stitch solves float64 normal equations of merged
moments of Z; against the QR/SVD references its map agrees to ≤ 1e-10 relative
with a ridge (condition number of the Gram ≲ 1e5 here, measured ≤ 3e-12);
risks, being quadratic at the optimum, agree to 1e-10 also at ridge = 0.
Sums of per-row errors (the MLP's risks and every standard error) are plain
float64 sums: 1e-10 relative.  "Never worse than linear" on the fitting rows is
exact for the MLP (the reported value is the linear one minus a non-negative
number) and up to rounding (1e-10 relative) for the kernel; block size and
scheduler invariance: 1e-12 (the rounding of the merge tree, as in
tests/test_stitching.py); the trained MLP weights are bit-identical.
"""

from __future__ import annotations

import json
import math
import runpy
from pathlib import Path

import numpy as np
import pytest

import bigalign
from bigalign.errors import DegenerateInputError, InvalidInputError, NonFiniteError
from bigalign.metrics.stitching import Splits, StitchResult, stitch
from bigalign.metrics.stitching_nonlinear import NonlinearStitchResult, StitchRisksSE

ROOT = Path(__file__).resolve().parents[1]
RTOL = 1e-10
INV_RTOL = 1e-12
MLP_FAST = dict(hidden=(16,), epochs=4, batch_size=64, learning_rate=3e-3)


# ============================================================================
# naive references (no bigalign fitting code)
# ============================================================================


def msq_rows(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    return np.sum((pred - target) ** 2, axis=1)


def onehot(labels):
    classes = np.unique(labels)
    return (labels[:, None] == classes[None, :]).astype(np.float64)


def ref_features(x: np.ndarray, feats) -> np.ndarray:
    """Z = [x, c·φ(x)] from the formulas of φ (the drawn frequencies / landmarks of the result)."""
    phi = feats.phi
    if hasattr(phi, "W"):  # random Fourier: √(1/m) [cos ω₁ᵀx', sin ω₁ᵀx', ...], x' = x − shift
        z = (x - phi.shift) @ phi.W
        f = np.empty((x.shape[0], 2 * z.shape[1]))
        f[:, 0::2], f[:, 1::2] = np.cos(z), np.sin(z)
        f /= math.sqrt(z.shape[1])
    else:  # Nyström: k(x', Z) V Λ^{-1/2}
        from scipy.spatial.distance import cdist

        dist = cdist(x - phi.shift, phi.landmarks)
        k = np.exp(-(dist**2) / (2 * phi.sigma**2)) if phi.kernel == "rbf" else np.exp(-dist / phi.sigma)
        f = k @ phi.proj
    return np.hstack([x, feats.scale * f])


def gram_trace(x, intercept=True):
    """tr G of x's Gram (centred with an intercept): the relative ridge's unit, λ = ridge · tr G."""
    xc = x - x.mean(axis=0) if intercept else x
    return float(np.sum(xc * xc))


def ref_ridge(z, y, lam, intercept=True):
    """Least squares (lstsq, minimum norm) or ridge by an explicit solve; the intercept is unpenalised."""
    mz, my = (z.mean(0), y.mean(0)) if intercept else (np.zeros(z.shape[1]), np.zeros(y.shape[1]))
    zc, yc = z - mz, y - my
    if lam == 0:
        S = np.linalg.lstsq(zc, yc, rcond=None)[0]
    else:
        S = np.linalg.solve(zc.T @ zc + lam * np.eye(z.shape[1]), zc.T @ yc)
    return S, my - mz @ S


def ref_task_stitch(z, t, W, b, lam):
    """min over (S, c) of Σ‖(z S + c) W + b − t‖² + λ‖S‖², one explicit (Kronecker) least-squares system."""
    n, dz = z.shape
    dy = W.shape[0]
    D = np.hstack([np.kron(z, W.T), np.tile(W.T, (n, 1))])
    rhs = (t - b).ravel()
    if lam > 0:
        pen = np.zeros((dz * dy, D.shape[1]))
        pen[:, : dz * dy] = math.sqrt(lam) * np.eye(dz * dy)
        D, rhs = np.vstack([D, pen]), np.concatenate([rhs, np.zeros(dz * dy)])
    sol = np.linalg.lstsq(D, rhs, rcond=None)[0]
    return sol[: dz * dy].reshape(dz, dy), sol[dz * dy :]


def split_masks(n, holdout, seed):
    lab = Splits(holdout=holdout, folds=1, seed=seed, split_rows=1).assign(0, n)
    return lab >= 0, lab < 0


def rel(a, b, scale=None):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    s = scale if scale is not None else max(float(np.max(np.abs(b))), 1e-300)
    return float(np.max(np.abs(a - b))) / s


def se(e):
    return float(np.std(e, ddof=1) / math.sqrt(e.size))


def assert_finite(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            assert_finite(v)
    elif isinstance(obj, list):
        for v in obj:
            assert_finite(v)
    elif isinstance(obj, float):
        assert math.isfinite(obj), obj


# ============================================================================
# data
# ============================================================================


@pytest.fixture(scope="module")
def data():
    """Offset inputs, y a noisy non-linear function of x, 4-class targets (n = 503: ragged last blocks)."""
    rng = np.random.default_rng(11)
    n = 503
    x = rng.normal(size=(n, 4)) @ rng.normal(size=(4, 4)) + 3.0
    y = np.tanh(x @ rng.normal(size=(4, 3)) / 3) + 0.2 * rng.normal(size=(n, 3)) + 1.0
    labels = np.argmax(x[:, :4] + 0.5 * rng.normal(size=(n, 4)), axis=1)
    return x, y, labels


@pytest.fixture(scope="module")
def sine():
    """A clearly non-linear relation y = sin(1.5 x W) + noise (no linear map explains it)."""
    rng = np.random.default_rng(1)
    n = 1200
    x = rng.normal(size=(n, 3)) + 2.0
    y = np.sin(1.5 * (x - 2.0) @ rng.normal(size=(3, 4))) + 0.1 * rng.normal(size=(n, 4))
    return x, y, np.argmax(y, axis=1)


# ============================================================================
# kernel stitch against explicit features
# ============================================================================


@pytest.mark.parametrize("method, kernel", [("rff", "rbf"), ("orf", "laplacian"), ("nystroem", "rbf")])
@pytest.mark.parametrize("lam", [0.0, 0.5])
def test_kernel_matches_explicit_features(data, method, kernel, lam):
    x, y, labels = data
    holdout, seed = 0.25, 4
    r = stitch(x, y, kind="kernel", targets=labels, ridge=lam, holdout=holdout, seed=seed, method=method, kernel=kernel,
               n_features=24, scheduler="sync")  # fmt: skip
    assert isinstance(r, NonlinearStitchResult) and isinstance(r, StitchResult)
    assert r.map is None and r.offset is None and r.kind == "kernel"
    fit, hold = split_masks(len(x), holdout, seed)
    # bandwidth: median pairwise distance of the fitting rows (fewer than 1,000: all of them); scale: their RMS deviation
    from scipy.spatial.distance import pdist

    px = r.parameters["features_x"]
    assert px["bandwidth"] == pytest.approx(np.median(pdist(x[fit])), rel=1e-12)
    assert px["feature_scale"] == pytest.approx(math.sqrt(np.mean(np.sum((x[fit] - x[fit].mean(0)) ** 2, 1))), rel=1e-12)
    z = ref_features(x, r.model.features)
    lx, ly = lam * gram_trace(x[fit]), lam * gram_trace(y[fit])  # the kernel stitch's λ is anchored on x's Gram
    S, b = ref_ridge(z[fit], y[fit], lx)
    if lam > 0:  # the map itself (unique); at ridge 0 the Gram is singular for nystroem and only risks are unique
        assert rel(r.model.coef, S) < RTOL and rel(r.model.offset, b) < RTOL
    for mask, part in ((fit, r.fit), (hold, r.holdout)):
        assert part.residual == pytest.approx(np.mean(msq_rows(z[mask] @ S + b, y[mask])), rel=RTOL)
    # heads: linear on x (risk_1, the same for every kind) and on y (the fixed head g₂)
    t = onehot(labels)
    W1, b1 = ref_ridge(x[fit], t[fit], lx)
    W2, b2 = ref_ridge(y[fit], t[fit], ly)
    assert r.fit.risk_1 == pytest.approx(np.mean(msq_rows(x[fit] @ W1 + b1, t[fit])), rel=RTOL)
    assert r.holdout.risk_2 == pytest.approx(np.mean(msq_rows(y[hold] @ W2 + b2, t[hold])), rel=RTOL)
    # the stitch of the kernel class into the fixed head g₂ (Kronecker least squares)
    St, ct = ref_task_stitch(z[fit], t[fit], W2, b2, lx)
    for mask, part in ((fit, r.fit), (hold, r.holdout)):
        pred = (z[mask] @ St + ct) @ W2 + b2
        assert part.stitched_risk == pytest.approx(np.mean(msq_rows(pred, t[mask])), rel=1e-9)
        assert part.regression_stitch_risk == pytest.approx(np.mean(msq_rows((z[mask] @ S + b) @ W2 + b2, t[mask])), rel=RTOL)
        assert part.bound == pytest.approx((math.sqrt(part.risk_2) + r.kappa * math.sqrt(part.residual)) ** 2, rel=1e-14)
    assert r.kappa == pytest.approx(np.linalg.norm(W2, 2), rel=1e-9)
    # predict() is the map on new rows
    assert rel(r.predict(x[:7]), z[:7] @ S + b) < 1e-8


def test_kernel_standard_errors_match_naive(data):
    x, y, labels = data
    r = stitch(x, y, kind="kernel", targets=labels, ridge=0.3, n_features=32, holdout=0.3, seed=1, scheduler="sync")
    fit, hold = split_masks(len(x), 0.3, 1)
    z = ref_features(x, r.model.features)
    t = onehot(labels)
    W2, b2 = r.head_2
    errs = {
        "residual": msq_rows(r.predict(x[hold]), y[hold]),
        "risk_2": msq_rows(y[hold] @ W2 + b2, t[hold]),
        "risk_1": msq_rows(x[hold] @ r.head_1[0] + r.head_1[1], t[hold]),
        "stitched_risk": msq_rows(r.task_model.predict(x[hold]) @ W2 + b2, t[hold]),
        "regression_stitch_risk": msq_rows(r.predict(x[hold]) @ W2 + b2, t[hold]),
    }
    assert set(r.stderrs) == set(errs)
    for k, e in errs.items():
        assert r.stderrs[k] == pytest.approx(se(e), rel=1e-9), k
        assert getattr(r.holdout, k) == pytest.approx(e.mean(), rel=1e-9), k
    assert r.fit.stderr is None
    # the linear baseline: its own standard errors from the same pass
    lin = r.baseline
    e = msq_rows(x[hold] @ lin.map + lin.offset, y[hold])
    assert lin.holdout.stderr["residual"] == pytest.approx(se(e), rel=1e-9)
    assert lin.holdout.residual == pytest.approx(e.mean(), rel=1e-9)
    assert np.allclose(z[:3], r.model.features(x[:3]), rtol=1e-13, atol=1e-13)


# ============================================================================
# never worse than linear on the fitting rows
# ============================================================================


@pytest.mark.parametrize("method, kernel", [("rff", "rbf"), ("orf", "rbf"), ("nystroem", "laplacian")])
@pytest.mark.parametrize("intercept", [True, False])
def test_kernel_never_worse_than_linear_on_fitting_rows(data, method, kernel, intercept):
    x, y, labels = data
    # ridge 0: the residual itself (the class contains the linear maps)
    r = stitch(x, y, kind="kernel", targets=labels, intercept=intercept, method=method, kernel=kernel, n_features=64, scheduler="sync")
    lin = stitch(x, y, targets=labels, intercept=intercept, scheduler="sync")
    for q in ("residual", "stitched_risk"):
        assert getattr(r.fit, q) <= getattr(lin.fit, q) * (1 + RTOL), q
    assert r.fit.lemma2_gap <= abs(r.fit.risk_1) * RTOL  # stitched ≤ R₁(H₁), the linear head of x (Lemma 2 for linear)
    # the baseline is kind="linear" on the same split and ridge
    for part in ("fit", "holdout"):
        for k, v in getattr(lin, part).to_dict().items():
            if isinstance(v, float) and k not in ("excess_risk", "lemma2_gap", "excess_bound"):  # differences: via their terms
                assert getattr(r.baseline, part).to_dict()[k] == pytest.approx(v, rel=INV_RTOL, abs=1e-300), (part, k)
    # ridge λ > 0: the penalised objective Σ‖z S + b − y‖² + λ‖S‖² (the residual alone need not be smaller)
    lam = 2.0
    r = stitch(x, y, kind="kernel", ridge=lam, intercept=intercept, method=method, kernel=kernel, n_features=64, scheduler="sync")
    lin = r.baseline
    nf = r.fit.n_samples
    lam = r.ridge["map"]  # absolute: ridge · tr G of x's Gram, the same for both stitches
    assert lam == lin.ridge["map"] > 0
    obj_k = nf * r.fit.residual + lam * float(np.sum(r.model.coef**2))
    obj_l = nf * lin.fit.residual + lam * float(np.sum(lin.map**2))
    assert obj_k <= obj_l * (1 + RTOL)


def test_mlp_never_worse_than_linear_by_construction(data):
    x, y, labels = data
    for seed in range(3):
        r = stitch(x, y, kind="mlp", targets=labels, seed=seed, scheduler="sync", **MLP_FAST)
        lin = r.baseline
        # exact: the reported value is the linear one minus (Σq)₊²/(Σs·n) ≥ 0
        assert r.fit.residual <= lin.fit.residual
        assert r.fit.stitched_risk <= lin.fit.stitched_risk
        assert r.parameters["alpha"] >= 0 and r.parameters["alpha_task"] >= 0


def test_mlp_matches_naive_line_search_and_risks(data):
    x, y, labels = data
    holdout, seed = 0.2, 5
    r = stitch(x, y, kind="mlp", targets=labels, holdout=holdout, seed=seed, scheduler="sync", **MLP_FAST)
    fit, hold = split_masks(len(x), holdout, seed)
    t = onehot(labels)
    m = r.model
    # α = argmin over α ≥ 0 of Σ_fit ‖r₀ − α v‖², from explicit per-row residuals and MLP outputs
    r0 = y[fit] - (x[fit] @ m.S + m.b)
    v = m.direction(x[fit])
    assert r.parameters["alpha"] == pytest.approx(max(0.0, np.sum(r0 * v) / np.sum(v * v)), rel=RTOL)
    assert r.parameters["alpha"] > 0  # the MLP helps on this non-linear relation
    W2, b2 = r.head_2
    for mask, part in ((fit, r.fit), (hold, r.holdout)):
        e = msq_rows(r.predict(x[mask]), y[mask])
        assert part.residual == pytest.approx(e.mean(), rel=RTOL)
        e_st = msq_rows(r.task_model.predict(x[mask]) @ W2 + b2, t[mask])
        assert part.stitched_risk == pytest.approx(e_st.mean(), rel=RTOL)
        e_rs = msq_rows(r.predict(x[mask]) @ W2 + b2, t[mask])
        assert part.regression_stitch_risk == pytest.approx(e_rs.mean(), rel=RTOL)
        assert part.regression_stitch_risk <= part.bound * (1 + INV_RTOL)  # Theorem 1 via Minkowski: any stitch, any rows
        if part.split == "holdout":
            assert part.stderr["residual"] == pytest.approx(se(e), rel=1e-9)
            assert part.stderr["stitched_risk"] == pytest.approx(se(e_st), rel=1e-9)
            assert part.stderr["regression_stitch_risk"] == pytest.approx(se(e_rs), rel=1e-9)
    # the task stitch lives in representation 2: t̂ = (x S_t + c_t + α_t u(x) W₂⁺) W₂ + b₂
    assert r.task_model.predict(x[:5]).shape == (5, y.shape[1])
    lin = r.baseline
    e = msq_rows(x[hold] @ lin.map + lin.offset, y[hold])
    assert lin.holdout.stderr["residual"] == pytest.approx(se(e), rel=1e-9)


# ============================================================================
# non-linear relations: non-linear stitches beat linear ones on held-out rows
# ============================================================================


@pytest.mark.parametrize("kind, kw", [
    ("kernel", dict(ridge="cv", n_features=128)),
    ("kernel", dict(ridge="cv", method="nystroem", n_features=100, kernel="laplacian")),
    ("mlp", dict(hidden=(32,), epochs=12, batch_size=32, learning_rate=3e-3)),
])  # fmt: skip
def test_nonlinear_beats_linear_on_sine(sine, kind, kw):
    x, y, labels = sine
    r = stitch(x, y, kind=kind, targets=labels, scheduler="sync", **kw)
    lin = r.baseline
    for q in ("residual", "regression_stitch_risk"):
        gain = getattr(lin.holdout, q) - getattr(r.holdout, q)
        # the gain exceeds 2 combined standard errors (independent-error bound, conservative for paired errors)
        assert gain > 2 * math.hypot(r.stderrs[q], lin.holdout.stderr[q]), (q, gain)
    assert r.holdout.residual < 0.65 * lin.holdout.residual  # measured 0.30–0.52 of the linear residual


# ============================================================================
# determinism, block size, scheduler, held-out rows unused
# ============================================================================


def _numbers(r) -> dict:
    out = {}
    for part in (r.fit, r.holdout):
        d = part.to_dict()
        for k, v in d.items():
            if isinstance(v, float) and k not in ("excess_risk", "lemma2_gap", "excess_bound"):
                out[(part.split, k)] = v
        for k, v in (d.get("stderr") or {}).items():
            out[(part.split, "stderr", k)] = v
    return out


def _assert_same(a, b, rtol=INV_RTOL):
    na, nb = _numbers(a), _numbers(b)
    assert na.keys() == nb.keys()
    for k in na:
        assert na[k] == pytest.approx(nb[k], rel=rtol, abs=1e-300), k


def _mlp_weights_equal(a, b, rtol=0.0):
    """Equal MLP weights (bit for bit with rtol=0)."""
    for ma, mb in ((a.model.mlp, b.model.mlp), (a.task_model.mlp, b.task_model.mlp)):
        for wa, wb in zip(ma.coefs_ + ma.intercepts_, mb.coefs_ + mb.intercepts_):
            if not (np.array_equal(wa, wb) if rtol == 0 else np.max(np.abs(wa - wb)) <= rtol * np.max(np.abs(wb))):
                return False
    return True


@pytest.mark.parametrize("kind, kw", [("kernel", dict(n_features=32, ridge=0.1)), ("kernel", dict(n_features=40, method="nystroem", ridge="cv")),
                                      ("mlp", MLP_FAST)])  # fmt: skip
def test_block_size_and_scheduler_invariance(data, kind, kw):
    x, y, labels = data
    common = dict(kind=kind, targets=labels, folds=3, seed=2, reverse=True, **kw)
    ref = stitch(x, y, block_size=len(x), scheduler="sync", **common)
    for r in (stitch(x, y, block_size=37, scheduler="sync", **common), stitch(x, y, block_size=128, scheduler="threads", num_workers=2, **common)):
        _assert_same(r, ref)
        _assert_same(r.reverse, ref.reverse)
        if kind == "mlp":
            # minibatches are row groups of batch_size rows, whatever the engine's blocks; the weights differ only
            # through the rounding of the linear stitch (S, b) and the standardisation, which define the MLP's
            # inputs and targets (merged moments: ~1e-15), measured ≤ 3e-15 after training
            assert _mlp_weights_equal(r, ref, 1e-9) and _mlp_weights_equal(r.reverse, ref.reverse, 1e-9)
            assert r.parameters["alpha"] == pytest.approx(ref.parameters["alpha"], rel=INV_RTOL)


@pytest.mark.parametrize("kind, kw", [("kernel", dict(n_features=32, ridge=0.1)), ("mlp", MLP_FAST)])
def test_deterministic_for_a_seed(data, kind, kw):
    x, y, labels = data
    a = stitch(x, y, kind=kind, targets=labels, seed=3, scheduler="sync", **kw)
    b = stitch(x, y, kind=kind, targets=labels, seed=3, scheduler="sync", **kw)
    assert _numbers(a) == _numbers(b)
    c = stitch(x, y, kind=kind, targets=labels, seed=4, scheduler="sync", **kw)
    assert _numbers(c) != _numbers(a)
    if kind == "mlp":
        assert _mlp_weights_equal(a, b)
    else:
        assert np.array_equal(a.model.coef, b.model.coef)


@pytest.mark.parametrize("kind, kw", [("kernel", dict(n_features=32, ridge=0.1)), ("kernel", dict(n_features=40, method="nystroem")),
                                      ("mlp", MLP_FAST)])  # fmt: skip
def test_held_out_rows_never_used_for_fitting(data, kind, kw):
    x, y, labels = data
    _, hold = split_masks(len(x), 0.2, 0)
    x2, y2, l2 = x.copy(), y.copy(), labels.copy()
    x2[hold] = 100.0 * np.random.default_rng(0).normal(size=x2[hold].shape)
    y2[hold] = -7.0
    l2[hold] = (l2[hold] + 1) % 4
    a = stitch(x, y, kind=kind, targets=labels, scheduler="sync", block_size=64, **kw)
    b = stitch(x2, y2, kind=kind, targets=l2, scheduler="sync", block_size=64, **kw)
    # bit-identical fitted stitch and fitting-row risks; only the held-out numbers change
    assert a.fit.to_dict() == b.fit.to_dict()
    assert a.holdout.residual != b.holdout.residual
    if kind == "mlp":
        assert _mlp_weights_equal(a, b) and a.parameters["alpha"] == b.parameters["alpha"]
    else:
        assert np.array_equal(a.model.coef, b.model.coef)
        assert a.parameters["features_x"] == b.parameters["features_x"]


@pytest.mark.parametrize("kind, kw", [("kernel", dict(n_features=32, ridge=0.1)), ("mlp", MLP_FAST)])
def test_reverse_equals_swapped_call(data, kind, kw):
    x, y, labels = data
    r = stitch(x, y, kind=kind, targets=labels, reverse=True, scheduler="sync", **kw)
    s = stitch(y, x, kind=kind, targets=labels, scheduler="sync", **kw)
    assert r.reverse.direction == "y->x" and r.reverse.kind == kind
    _assert_same(r.reverse, s)


def test_kernel_scale_equivariance(data):
    """x → a·x with the median bandwidth scales [x, c·φ(x)] by a: the relative ridge gives the same stitch."""
    x, y, _ = data  # no targets: the ridge of the head of y would not be rescaled
    a, lam = 7.0, 0.4
    r1 = stitch(x, y, kind="kernel", ridge=lam, n_features=32, scheduler="sync")
    r2 = stitch(a * x, y, kind="kernel", ridge=lam, n_features=32, scheduler="sync")
    _assert_same(r1, r2, rtol=1e-9)
    assert rel(r2.model.coef[: x.shape[1]] * a, r1.model.coef[: x.shape[1]]) < 1e-9


# ============================================================================
# Theorem 1 with Ã over the class (Remark 3)
# ============================================================================


@pytest.mark.parametrize("kind, kw", [("kernel", dict(n_features=64)), ("kernel", dict(n_features=64, ridge=1.0)), ("mlp", MLP_FAST)])
def test_theorem1_for_nonlinear_stitches(data, kind, kw):
    x, y, labels = data
    r = stitch(x, y, kind=kind, targets=labels, scheduler="sync", **kw)
    for part in (r.fit, r.holdout):
        assert part.regression_stitch_risk <= part.bound * (1 + INV_RTOL)  # Minkowski: any stitch, any rows
    if kind == "kernel" and r.ridge["stitch"] == 0:
        assert r.fit.stitched_risk <= r.fit.bound * (1 + INV_RTOL)  # the class minimiser into the fixed head
    assert "Theorem 1" in r.parameters["bound"]


# ============================================================================
# results, options, errors
# ============================================================================


def test_result_api_without_targets(data):
    x, y, _ = data
    for kind, kw in (("kernel", dict(n_features=16)), ("mlp", MLP_FAST)):
        r = stitch(x, y, kind=kind, scheduler="sync", **kw)
        assert not r.has_targets and r.stitched_risk is None and r.bound is None and r.task_model is None
        assert float(r) == r.residual and set(r.stderrs) == {"residual"}
        assert kind in repr(r) and "±" in repr(r)
        d = r.to_dict()
        json.dumps(d)
        assert_finite(d)
        assert d["kind"] == kind and d["map"] is None and d["holdout"]["stderr"]["residual"] > 0
        assert d["baseline"]["holdout"]["stderr"]["residual"] > 0
        r0 = stitch(x, y, kind=kind, holdout=0, scheduler="sync", **kw)
        assert r0.holdout is None and r0.stderrs is None and r0.ci is None and r0.evaluation is r0.fit


def test_result_api_with_targets(data):
    x, y, labels = data
    r = stitch(x, y, kind="mlp", targets=labels, scheduler="sync", **MLP_FAST)
    assert isinstance(r.holdout, StitchRisksSE)
    assert r.excess_risk == pytest.approx(r.stitched_risk - r.risk_2)
    assert r.risk_1 == r.baseline.risk_1 and r.kappa == r.baseline.kappa
    d = r.to_dict()
    json.dumps(d)
    assert_finite(d)
    assert d["parameters"]["hidden"] == [16] and d["parameters"]["epochs"] == 4 and d["method"] == "mlp-minibatch"
    k = stitch(x, y, kind="kernel", targets=labels, n_features=16, scheduler="sync")
    assert k.parameters["features_x"]["n_random_features"] == 16 and k.method == "kernel-rff-streaming"
    assert k.rank["x_features"] <= 4 + 16


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"kind": "cubic"}, "'kind' parameter of stitch must be one of \\['linear', 'kernel', 'mlp'\\]; got 'cubic'"),
        ({"n_features": 64}, "option\\(s\\) \\['n_features'\\] with kind='linear'.*kind='kernel'"),
        ({"hidden": (8,)}, "option\\(s\\) \\['hidden'\\] with kind='linear'; they belong to kind='mlp'"),
        ({"holdot": 0.1}, "unexpected keyword argument\\(s\\) \\['holdot'\\]. Check the spelling"),
        ({"kind": "mlp", "bandwidth": 1.0}, "kind='mlp'\\) got option\\(s\\) \\['bandwidth'\\] of kind='kernel'"),
        ({"kind": "kernel", "epochs": 3}, "kind='kernel'\\) got option\\(s\\) \\['epochs'\\] of kind='mlp'"),
        ({"kind": "kernel", "n_feature": 3}, "unknown option\\(s\\) \\['n_feature'\\]"),
        ({"kind": "kernel", "kernel": "linear"}, "'kernel' option .* must be 'rbf' or 'laplacian'"),
        ({"kind": "kernel", "method": "exact"}, "'method' option"),
        ({"kind": "kernel", "n_features": 7}, "'n_features' option .* even for rff/orf"),
        ({"kind": "kernel", "n_features": 1, "method": "nystroem"}, "'n_features' option"),
        ({"kind": "kernel", "bandwidth": "mean"}, "'bandwidth' option"),
        ({"kind": "kernel", "bandwidth": -1.0}, "bandwidth of x must be a positive finite number"),
        ({"kind": "mlp", "hidden": ()}, "'hidden' option"),
        ({"kind": "mlp", "hidden": (8, 0)}, "'hidden' option"),
        ({"kind": "mlp", "epochs": 0}, "'epochs' option .* integer ≥ 1"),
        ({"kind": "mlp", "batch_size": 2.5}, "'batch_size' option"),
        ({"kind": "mlp", "learning_rate": 0.0}, "'learning_rate' option"),
        ({"kind": "mlp", "weight_decay": float("nan")}, "'weight_decay' option"),
        ({"kind": "mlp", "activation": "gelu"}, "'activation' option"),
        ({"kind": "kernel", "ridge": -1.0}, "'ridge' parameter of stitch"),
        ({"kind": "mlp", "holdout": 1.0}, "'holdout' parameter of stitch"),
    ],
)
def test_option_errors(data, kw, match):
    x, y, _ = data
    with pytest.raises(InvalidInputError, match=match):
        stitch(x, y, **kw)


def test_data_errors(data):
    x, y, labels = data
    for kind in ("kernel", "mlp"):
        with pytest.raises(InvalidInputError, match="same number of samples"):
            stitch(x, y[:-1], kind=kind)
        with pytest.raises(InvalidInputError, match="one row per sample; got 502 targets for 503 samples"):
            stitch(x, y, kind=kind, targets=labels[:-1])
        bad = x.copy()
        bad[137, 2] = np.nan
        with pytest.raises(NonFiniteError, match="rows? 137"):
            stitch(bad, y, kind=kind, block_size=100, scheduler="sync")
        with pytest.raises(DegenerateInputError, match="single class"):
            stitch(x, y, kind=kind, targets=np.zeros(len(x), dtype=int))
    const = np.ones_like(x)
    for bw in ("median", 1.0):
        with pytest.raises(DegenerateInputError, match="x is constant on the 408 sampled fitting rows") as exc:
            stitch(const, y, kind="kernel", bandwidth=bw)
        assert exc.value.reason == "source_constant"
    with pytest.raises(InvalidInputError, match="diverged"):
        stitch(x, y, kind="mlp", learning_rate=1e300, epochs=2, hidden=(8,), scheduler="sync")
    # a useless (but finite) MLP is not an error: α = 0, the linear stitch, and a flag says so
    r = stitch(x, y, kind="mlp", learning_rate=1e6, epochs=2, hidden=(8,), scheduler="sync")
    assert r.parameters["alpha"] == 0.0 and "mlp_alpha_zero" in r.flags
    assert r.fit.residual == r.baseline.fit.residual and r.holdout.residual == r.baseline.holdout.residual


def test_store_inputs(tmp_path, data):
    """Store layers (read lazily block by block) give the numbers of the in-memory arrays."""
    x, y, labels = data
    with bigalign.ActivationWriter(tmp_path / "a.zarr", chunk_rows=50) as w:
        w.append({"x": x.astype(np.float32), "y": y.astype(np.float32)}, sample_ids=np.arange(len(x)))
    s = bigalign.open_activations(tmp_path / "a.zarr")
    for kind, kw in (("kernel", dict(n_features=16, ridge=0.1)), ("mlp", MLP_FAST)):
        a = stitch(s["x"], s["y"], kind=kind, targets=labels, scheduler="sync", **kw)
        b = stitch(x.astype(np.float32), y.astype(np.float32), kind=kind, targets=labels, scheduler="sync", **kw)
        _assert_same(a, b)


# ============================================================================
# the example
# ============================================================================


@pytest.mark.slow
def test_example_quick(tmp_path, capsys):
    """examples/stitching_linear_vs_nonlinear.py --quick, in this process; its checks are asserted here."""
    from threadpoolctl import threadpool_limits

    mod = runpy.run_path(str(ROOT / "examples" / "stitching_linear_vs_nonlinear.py"), run_name="stitching_nonlinear_example")
    with threadpool_limits(limits=1, user_api="blas"):
        out = mod["main"](["--quick", "--out", str(tmp_path)])
    for f in ("stitching_linear_vs_nonlinear.png", "summary.md", "results.json"):
        assert (tmp_path / f).stat().st_size > 0
    n = out["n_stitches"]
    assert n == 9  # --quick: 3 layers of each network
    # guaranteed: never worse than linear on the fitting rows (kernel up to rounding, MLP exactly)
    assert out["kernel_fit_residual_le_linear"] == n and out["mlp_fit_residual_le_linear"] == n
    assert out["mlp_fit_stitched_le_linear"] == n
    # guaranteed: Theorem 1 (Minkowski) for the regression stitch of every kind, held-out rows
    assert out["theorem1_regression_holdout"] == {k: n for k in ("linear", "kernel", "mlp")}
    # expected, not guaranteed: on held-out rows the non-linear stitches are at most 2 standard errors worse
    assert out["kernel_holdout_within_2se"] >= 0.9 * n and out["mlp_holdout_within_2se"] >= 0.9 * n
    assert "wrote" in capsys.readouterr().out


def test_fitting_row_sample_keeps_m_rows_beyond_the_exact_listing(monkeypatch):
    """Beyond _EXACT_SAMPLE_N rows, candidates are drawn in batches until m fitting rows are kept — even
    when most rows are held out (a single fixed draw used to return fewer than m)."""
    import bigalign.metrics._stitch_nonlinear_base as sn  # where fitting_row_sample reads _EXACT_SAMPLE_N
    from bigalign.metrics.stitching import Splits

    monkeypatch.setattr(sn, "_EXACT_SAMPLE_N", 1000)
    splits = Splits(holdout=0.8, folds=5, seed=0, split_rows=1)
    rows = sn.fitting_row_sample(splits, 100_000, 512, 0, 1)
    assert rows.size == 512 and np.unique(rows).size == 512
    assert (splits.assign_rows(rows) >= 0).all()  # every one a fitting row
    np.testing.assert_array_equal(rows, sn.fitting_row_sample(splits, 100_000, 512, 0, 1))  # seeded


@pytest.mark.parametrize("kind, kw", [("kernel", {"n_features": 64}), ("mlp", {"hidden": (8,), "epochs": 2})])
def test_stitching_matrix_of_a_nonlinear_kind_equals_stitch_per_cell(data, kind, kw):
    """stitching_matrix(kind=...) runs stitch once per cell: each cell is that call; CKA beside it is compare_layers'."""
    x, y, t = data
    layers = {"x": x, "y": y}
    m = bigalign.stitching_matrix(layers, None, targets=t, kind=kind, reverse=False, scheduler="sync", **kw)
    for i, la in enumerate(("x", "y")):
        for j, lb in enumerate(("x", "y")):
            ref = bigalign.stitch(layers[la], layers[lb], kind=kind, targets=t, scheduler="sync", **kw)
            assert m.results[i][j].stitched_risk == pytest.approx(ref.stitched_risk, rel=1e-10, abs=1e-13)
    np.testing.assert_allclose(m.cka.values, bigalign.compare_layers(layers, None, "cka").values, rtol=1e-12)
    assert m.layers_a == ["x", "y"] and m.parameters["kind"] == kind
    assert m.to_dict()["layers_a"] == ["x", "y"]
    with pytest.raises(bigalign.InvalidInputError, match="with kind='linear'"):
        bigalign.stitching_matrix(layers, None, targets=t, **kw)
