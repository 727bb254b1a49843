"""The streaming engine: block-size and scheduler invariance, determinism, and the
algebra of MomentStatistic.combine (associative, commutative, exact re-centring).

Tolerance policy: the block partials are merged with exact algebraic identities
(Chan et al.'s pairwise update and its 4th-order extension), so different
blockings / merge orders differ only by float64 rounding of O(#merges) terms.
Measured: ≤ 1.1e-15 relative between any two block sizes or schedulers on these
data; 1e-12 is the required bound and leaves > 2 orders of margin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import dask.array as da
import numpy as np
import pytest

import bigalign
from bigalign.engine import Plan, run, tree_reduce
from bigalign.moments import Moments, MomentStatistic, merge
import references as ref
from references import correlated_pair

RTOL = 1e-12  # see module docstring: measured ≤ 1.1e-15 (rounding of the merge tree)

N = 503  # prime: every block size except n leaves a ragged last block

FUNCS = {
    "cka": bigalign.cka,
    "hsic": bigalign.hsic,
    "kernel_alignment": bigalign.kernel_alignment,
    "distance_alignment": bigalign.distance_alignment,
}
METRICS = [
    ("cka", "unbiased"),
    ("cka", "biased"),
    ("hsic", "unbiased"),
    ("hsic", "biased"),
    ("kernel_alignment", None),
    ("distance_alignment", None),
]
METRIC_IDS = [f"{m}-{e}" if e else m for m, e in METRICS]


@pytest.fixture(scope="module")
def dask_client():
    """A real multi-process ``distributed`` cluster (2 worker processes × 1 thread),
    started once for this module (~1-2 s) and closed after it.  It is *not* made the
    default client, so ``scheduler=None`` elsewhere keeps meaning threads."""
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",  # never collide with a dashboard already on :8787
    )
    client = distributed.Client(cluster, set_as_default=False)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def call(metric, estimator, x, y, **kw):
    if estimator is not None:
        kw["estimator"] = estimator
    return FUNCS[metric](x, y, **kw)


@pytest.fixture(scope="module")
def data():
    """Correlated, skewed data with non-zero means: every moment (incl. the third-order
    a, b and the fourth-order t4) is far from zero, so merges have work to do."""
    rng = np.random.default_rng(11)
    x, y = correlated_pair(rng, N, 7, 5)
    x = np.exp(0.5 * x) + np.arange(7)  # skewed, offset per column
    y = y**2 - 2.0 + 0.3 * y
    return x, y


def _assert_close(a: float, b: float, rtol: float = RTOL):
    assert a == pytest.approx(b, rel=rtol, abs=0)


# --------------------------------------------------------------------------- #
# block-size invariance
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("metric,estimator", METRICS, ids=METRIC_IDS)
def test_block_size_invariance(metric, estimator, data):
    x, y = data
    sizes = (1, N // 10, N // 4, N // 2, N)
    results = {bs: call(metric, estimator, x, y, block_size=bs, scheduler="sync") for bs in sizes}
    base = results[N].value
    for bs, r in results.items():
        _assert_close(r.value, base)
        for k, v in r.terms.items():
            _assert_close(v, results[N].terms[k])
        assert r.parameters["block_size"] == bs
        assert r.parameters["n_blocks"] == math.ceil(N / bs)
    # and the one-block answer is right (independent reference; see test_reference.py)
    want = ref.REFERENCES[(metric, estimator)](x, y)
    assert base == pytest.approx(want, rel=1e-10)  # reference policy of test_reference.py


def test_block_size_larger_than_n_is_one_block(data):
    x, y = data
    r = bigalign.cka(x, y, block_size=10 * N, scheduler="sync")
    assert r.parameters["block_size"] == N and r.parameters["n_blocks"] == 1
    _assert_close(r.value, bigalign.cka(x, y, block_size=N, scheduler="sync").value)


def test_memory_budget_splits_into_blocks(data):
    """A small memory_per_worker forces many planned blocks; the value is unchanged."""
    x, y = data
    small = bigalign.cka(x, y, memory_per_worker=4096, scheduler="sync")
    assert small.parameters["n_blocks"] > 10
    # per-row bytes: Σ d·(12 + itemsize) = (7 + 5)·20 = 240 → ⌊4096/240⌋ = 17 rows
    assert small.parameters["block_size"] == 4096 // ((7 + 5) * 20)
    _assert_close(small.value, bigalign.cka(x, y, block_size=N, scheduler="sync").value)


def test_default_plan_respects_stored_chunks(tmp_path):
    """With no block_size, blocks are a multiple of the stored chunk rows where possible."""
    zarr = pytest.importorskip("zarr")
    rng = np.random.default_rng(3)
    x, y = correlated_pair(rng, 400, 3, 2)
    zx = zarr.create_array(store=str(tmp_path / "x.zarr"), shape=x.shape, chunks=(30, 3), dtype="f8")
    zx[...] = x
    r = bigalign.cka(zx, y, scheduler="threads", num_workers=2)
    assert r.parameters["block_size"] % 30 == 0
    assert r.parameters["n_blocks"] >= 2 * 2  # at least 2 blocks per worker thread
    _assert_close(r.value, bigalign.cka(x, y, block_size=400, scheduler="sync").value)


# --------------------------------------------------------------------------- #
# scheduler invariance and determinism
# --------------------------------------------------------------------------- #

SCHEDULERS = [
    ("sync", {}),
    ("threads-1", {"scheduler": "threads", "num_workers": 1}),
    ("threads-2", {"scheduler": "threads", "num_workers": 2}),
    ("threads-4", {"scheduler": "threads", "num_workers": 4}),
]


def _all_runners(client):
    runners = [(name, dict(kw)) for name, kw in SCHEDULERS]
    runners[0][1]["scheduler"] = "sync"
    runners.append(("client-as-scheduler", {"scheduler": client}))
    runners.append(("distributed+client", {"scheduler": "distributed", "client": client}))
    runners.append(("client-kwarg-only", {"client": client}))  # scheduler=None + client= → distributed
    return runners


@pytest.mark.slow
@pytest.mark.parametrize("metric,estimator", METRICS, ids=METRIC_IDS)
def test_schedulers_agree(metric, estimator, data, dask_client):
    x, y = data
    runners = _all_runners(dask_client)
    results = {name: call(metric, estimator, x, y, block_size=50, **kw) for name, kw in runners}
    base = results["sync"]
    for name, r in results.items():
        _assert_close(r.value, base.value)
        for k, v in r.terms.items():
            _assert_close(v, base.terms[k])
        assert r.parameters["n_blocks"] == math.ceil(N / 50)
    assert results["sync"].parameters["scheduler"] == "sync"
    assert results["threads-2"].parameters["scheduler"] == "threads"
    assert results["client-as-scheduler"].parameters["scheduler"] == "distributed"
    assert results["distributed+client"].parameters["scheduler"] == "distributed"
    assert results["client-kwarg-only"].parameters["scheduler"] == "distributed"


def test_scheduler_none_uses_active_client(data, dask_client):
    x, y = data
    with dask_client.as_current():
        r = bigalign.cka(x, y, block_size=100)
    assert r.parameters["scheduler"] == "distributed"
    _assert_close(r.value, bigalign.cka(x, y, block_size=100, scheduler="sync").value)
    # without an active client the default is the threaded scheduler
    from distributed import default_client

    try:
        default_client()
    except ValueError:  # none active (unless some other test left one behind)
        assert bigalign.cka(x, y, block_size=100).parameters["scheduler"] == "threads"


def test_dask_input_on_cluster(data, dask_client):
    """Irregularly chunked dask inputs are re-blocked to common rows on the cluster too."""
    x, y = data
    dx = da.from_array(x, chunks=((7, 13, 80, 200, 203), (3, 4)))
    dy = da.from_array(y, chunks=((100,) * 5 + (3,), (5,)))
    for metric, estimator in METRICS:
        got = call(metric, estimator, dx, dy, scheduler=dask_client, block_size=64)
        want = call(metric, estimator, x, y, scheduler="sync", block_size=64)
        _assert_close(got.value, want.value)


def test_errors_propagate_from_cluster_workers(data, dask_client):
    """A NonFiniteError raised in a worker *process* reaches the caller with its type
    and its message (input name and global row index)."""
    x, y = data
    y = y.copy()
    y[101, 1] = np.nan
    with pytest.raises(bigalign.NonFiniteError, match=r"^y .*\b101\b"):
        bigalign.cka(da.from_array(x, chunks=(30, 7)), y, block_size=20, scheduler=dask_client)


@pytest.mark.parametrize("runner", ["sync", "threads-2", "threads-4", "distributed"])
def test_bit_identical_reruns(runner, data, dask_client):
    """Same inputs + same block size ⇒ the same bits: the merge tree is fixed, so the
    order in which workers finish cannot matter."""
    x, y = data
    kw = {"distributed": {"scheduler": dask_client}}.get(runner) or dict(_all_runners(dask_client))[runner]
    bs = 17 if runner != "distributed" else 64  # fewer tasks on the cluster: ~30 ms each
    for metric, estimator in METRICS:
        first = call(metric, estimator, x, y, block_size=bs, **kw)
        for _ in range(2 if runner != "distributed" else 1):
            again = call(metric, estimator, x, y, block_size=bs, **kw)
            assert again.value == first.value  # exact equality, deliberately
            assert dict(again.terms) == dict(first.terms)
            assert again.to_dict() == first.to_dict()


# --------------------------------------------------------------------------- #
# MomentStatistic: partial / combine algebra
# --------------------------------------------------------------------------- #


def _assert_field_close(got, want, what, rtol):
    """Numeric fields: integers and integer arrays exactly; floats to ``rtol`` relative
    to the largest entry of the field (norm-wise, so a component that happens to be
    ~0 is not judged on its own; the skewed test data keep every field well away from 0)."""
    g, w = np.asarray(got), np.asarray(want)
    assert g.shape == w.shape, what
    if w.dtype.kind in "iub":
        np.testing.assert_array_equal(g, w, err_msg=what)
        return
    scale = np.max(np.abs(w)) if w.size else 0.0
    err = np.max(np.abs(g - w)) if w.size else 0.0
    assert err <= rtol * scale, (what, err, scale)


def assert_moments_close(got: Moments, want: Moments, rtol: float = RTOL):
    """Every field of every side and cross (whatever the Moments layout is)."""
    assert len(got.sides) == len(want.sides)
    assert set(got.crosses) == set(want.crosses)
    for k, (g, w) in enumerate(zip(got.sides, want.sides)):
        for f in fields(w):
            if f.name in ("colmin", "colmax"):
                # order statistics: exact under any merge order
                np.testing.assert_array_equal(getattr(g, f.name), getattr(w, f.name))
            else:
                _assert_field_close(getattr(g, f.name), getattr(w, f.name), ("side", k, f.name), rtol)
    for key, w in want.crosses.items():
        g = got.crosses[key]
        for f in fields(w):
            _assert_field_close(getattr(g, f.name), getattr(w, f.name), ("cross", key, f.name), rtol)


def assert_moments_match_definitions(m: Moments, inputs, pairs, rtol: float = RTOL):
    """The definitions of moments.py's docstring, evaluated directly on all rows:
    mean μ, M = Σuᵢuᵢᵀ (uᵢ = xᵢ − μ), Σ‖uᵢ‖⁴, min/max; crosses Σuᵢvᵢᵀ and Σ‖uᵢ‖²‖vᵢ‖²."""
    us, ps = [], []
    for k, a in enumerate(inputs):
        a = np.asarray(a, dtype=np.float64)
        s = m.sides[k]
        u = a - a.mean(axis=0)
        p = np.einsum("ij,ij->i", u, u)
        us.append(u)
        ps.append(p)
        assert s.n == len(a)
        _assert_field_close(s.mean, a.mean(axis=0), ("mean", k), rtol)
        _assert_field_close(s.M, u.T @ u, ("M", k), rtol)
        _assert_field_close(s.trace, p.sum(), ("trace", k), rtol)
        _assert_field_close(s.t4, p @ p, ("t4", k), rtol)
        _assert_field_close(s.uncentred_gram(), a.T @ a, ("XᵀX", k), rtol)
        np.testing.assert_array_equal(s.colmin, a.min(axis=0))
        np.testing.assert_array_equal(s.colmax, a.max(axis=0))
    for i, j in pairs:
        c = m.crosses[(i, j)]
        _assert_field_close(c.M, us[i].T @ us[j], ("cross M", i, j), rtol)
        _assert_field_close(c.t4, ps[i] @ ps[j], ("cross t4", i, j), rtol)


@pytest.fixture(scope="module")
def three_inputs():
    rng = np.random.default_rng(5)
    n = 300
    x = np.exp(rng.normal(size=(n, 4))) * 3 + 50.0  # skewed, large mean
    y = rng.normal(size=(n, 3)) ** 3 - 7.0
    z = np.concatenate([x[:, :2] - y[:, :2], np.full((n, 1), 2.5)], axis=1)  # with a constant column
    return x, y, z


PAIRS = ((0, 1), (0, 2), (2, 1))
# ragged, unequal parts with very different means (rows are sorted by x[:,0] first)
SPLITS = [(0, 1, 2, 300), (0, 100, 101, 300), (0, 37, 250, 300)]


def _parts(three_inputs, split):
    x, y, z = three_inputs
    order = np.argsort(x[:, 0])  # each part then has its own, very different mean
    x, y, z = x[order], y[order], z[order]
    stat = MomentStatistic(names=("x", "y", "z"), pairs=PAIRS)
    a0, a1, a2, a3 = split
    parts = [stat.partial([v[lo:hi] for v in (x, y, z)], lo) for lo, hi in ((a0, a1), (a1, a2), (a2, a3))]
    return stat, parts, (x, y, z)


@pytest.mark.parametrize("split", SPLITS, ids=str)
def test_combine_associative_and_commutative(split, three_inputs):
    stat, (a, b, c), _ = _parts(three_inputs, split)
    left = stat.combine(stat.combine(a, b), c)
    right = stat.combine(a, stat.combine(b, c))
    assert_moments_close(left, right)
    assert_moments_close(stat.combine(b, a), stat.combine(a, b))
    assert_moments_close(stat.combine(c, stat.combine(b, a)), left)
    assert_moments_close(merge(merge(c, a), b), left)


@pytest.mark.parametrize("split", SPLITS, ids=str)
def test_combine_equals_one_pass_and_definitions(split, three_inputs):
    """Merging parts gives the moments of all rows at once — checked against a single
    partial over all rows and against the textbook definitions."""
    stat, (a, b, c), (x, y, z) = _parts(three_inputs, split)
    merged = stat.combine(stat.combine(a, b), c)
    assert_moments_close(merged, stat.partial([x, y, z], 0))
    assert_moments_match_definitions(merged, [x, y, z], PAIRS)
    # a constant column keeps its exact value as its mean through every merge,
    # and centres to exact zeros
    assert merged.sides[2].mean[2] == 2.5
    assert np.all(merged.sides[2].M[2] == 0.0)
    assert merged.sides[2].colmin[2] == merged.sides[2].colmax[2] == 2.5


def test_engine_run_returns_merged_moments(three_inputs):
    x, y, z = three_inputs
    stat = MomentStatistic(names=("x", "y", "z"), pairs=PAIRS)
    state, plan = run(stat, [x, y, z], block_size=41, scheduler="sync", finalize=False)
    assert isinstance(plan, Plan) and plan.block_rows == 41 and plan.n_blocks == math.ceil(300 / 41)
    assert_moments_match_definitions(state, [x, y, z], PAIRS)


# --------------------------------------------------------------------------- #
# a custom toy Statistic through run()
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class IndexedSums:
    """Toy statistic over two inputs: Σᵢ xᵢ, Σᵢ i·xᵢ (checks the ``start`` offsets),
    Σᵢ xᵢᵀyᵢ (checks that both inputs get the *same* rows), row count, and the list of
    blocks seen.  On integer-valued data every sum is exact, so the result must equal
    numpy bit for bit under any blocking, merge order and scheduler."""

    def partial(self, blocks, start):
        bx, by = (np.asarray(b, dtype=np.float64) for b in blocks)
        assert bx.shape[0] == by.shape[0]
        idx = np.arange(start, start + bx.shape[0], dtype=np.float64)
        return (bx.sum(axis=0), idx @ bx, bx.T @ by, bx.shape[0], ((start, start + bx.shape[0]),))

    def combine(self, a, b):
        return (a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3], tuple(sorted(a[4] + b[4])))

    def finalize(self, state):
        return {"sum": state[0], "isum": state[1], "cross": state[2], "n": state[3], "blocks": state[4]}


@pytest.fixture(scope="module")
def int_data():
    rng = np.random.default_rng(9)
    x = rng.integers(-20, 20, size=(211, 3)).astype(np.float32)
    y = rng.integers(-20, 20, size=(211, 2)).astype(np.int16)
    return x, y


@pytest.mark.parametrize("runner", ["sync", "threads-1", "threads-4", "distributed"])
@pytest.mark.parametrize("container", ["numpy", "dask"])
def test_toy_statistic(runner, container, int_data, dask_client):
    x, y = int_data
    if container == "dask":
        xs = da.from_array(x, chunks=((7, 13, 80, 111), (3,)))
        ys = da.from_array(y, chunks=((50, 50, 50, 50, 11), (1, 1)))
    else:
        xs, ys = x, y
    kw = {"scheduler": dask_client} if runner == "distributed" else dict(_all_runners(dask_client))[runner]
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    # single-row blocks only where tasks are cheap (sync); 211 = one block; 20 ragged
    for bs in (1, 20, 211) if runner == "sync" else (20, 211):
        out, plan = run(IndexedSums(), [xs, ys], block_size=bs, **kw)
        np.testing.assert_array_equal(out["sum"], x64.sum(axis=0))
        np.testing.assert_array_equal(out["isum"], np.arange(211) @ x64)
        np.testing.assert_array_equal(out["cross"], x64.T @ y64)
        assert out["n"] == 211
        starts = list(range(0, 211, bs))
        assert out["blocks"] == tuple((s, min(s + bs, 211)) for s in starts)
        assert plan.n_blocks == len(starts) and plan.block_rows == bs
        expected_scheduler = {"sync": "sync", "distributed": "distributed"}.get(runner, "threads")
        assert plan.scheduler == expected_scheduler


@dataclass(frozen=True)
class TreeRecorder:
    """A deliberately non-commutative combine that records the merge tree as a string."""

    def partial(self, blocks, start):
        return str(start)

    def combine(self, a, b):
        return f"({a} {b})"

    def finalize(self, state):
        return state


@pytest.mark.parametrize("n_blocks", [1, 2, 3, 5, 6, 7, 8, 11, 13, 16, 29])
def test_merge_tree_identical_under_every_runner(n_blocks, dask_client):
    """'The tree of combines is identical under every runner': the streaming sync loop
    and the dask graphs (threads, distributed) build exactly tree_reduce's tree."""
    x = np.zeros((n_blocks * 3, 1))
    starts = [str(s) for s in range(0, n_blocks * 3, 3)]
    want = tree_reduce(starts, lambda p, q: f"({p} {q})")
    for kw in ({"scheduler": "sync"}, {"scheduler": "threads", "num_workers": 2}, {"scheduler": dask_client}):
        got, plan = run(TreeRecorder(), [x], block_size=3, **kw)
        assert plan.n_blocks == n_blocks
        assert got == want, kw


def test_tree_reduce_is_a_fixed_balanced_tree():
    """tree_reduce combines neighbours level by level; an odd one out moves up a level."""
    rec = lambda p, q: f"({p}{q})"  # noqa: E731 - records the tree shape
    assert tree_reduce(list("a"), rec) == "a"
    assert tree_reduce(list("abcde"), rec) == "(((ab)(cd))e)"
    assert tree_reduce(list("abcdefg"), rec) == "(((ab)(cd))((ef)g))"
    with pytest.raises(bigalign.InvalidInputError):
        tree_reduce([], rec)
