"""The projected (sketched) layer-matrix road: exact when every coordinate is kept, bounded otherwise."""

import math

import ml_dtypes
import numpy as np
import pytest

import bigalign
from bigalign.errors import DegenerateInputError, InvalidInputError, NonFiniteError
from bigalign.metrics.layer_sketch import (
    choose_layer_road,
    cka_matrix_sketched,
    predict_layer_matrix_seconds,
)

from references import cka as ref_cka


def _model(seed, n=500, d=36, L=4, k=5, noise=0.3, offset=4.0):
    """Layers sharing k latent factors with depth-dependent weights, plus a decaying noise spectrum."""
    rng = np.random.default_rng(seed)
    f = rng.standard_normal((n, k))
    out = {}
    for l in range(L):
        w = np.exp(-((np.arange(k) - l * (k - 1) / max(L - 1, 1)) ** 2) / 3.0)
        spec = noise * np.linspace(1.0, 0.1, d)
        out[f"l{l}"] = (f * w) @ rng.standard_normal((k, d)) + rng.standard_normal((n, d)) * spec + offset
    return out


def _reference(layers, estimator):
    names = list(layers)
    return np.array([[ref_cka(layers[a], layers[b], estimator) for b in names] for a in names])


@pytest.mark.parametrize("estimator", ["unbiased", "biased"])
def test_full_rank_is_exact(estimator):
    layers = _model(0)
    m = cka_matrix_sketched(layers, rank=36, estimator=estimator, block_size=77, scheduler="sync")
    ref = _reference(layers, estimator)
    np.testing.assert_allclose(m.values, ref, rtol=1e-10, atol=1e-12)
    assert np.all(m.stderr == 0)
    np.testing.assert_array_equal(m.lower, m.values)
    r = m.results[0][1]
    assert r.method == "sketch" and "all_coordinates_kept" in r.flags and r.estimator == estimator


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("estimator", ["unbiased", "biased"])
def test_low_rank_inside_bounds_and_stderr(seed, estimator):
    layers = _model(seed, d=48)
    ref = _reference(layers, estimator)
    for rank in (4, 8):
        m = cka_matrix_sketched(layers, rank=rank, n_probes=16, estimator=estimator, seed=seed, block_size=128)
        # certified: the exact value always lies inside (rounding margin only)
        assert np.all(ref >= m.lower - 1e-12) and np.all(ref <= m.upper + 1e-12)
        off = ~np.eye(4, dtype=bool)
        assert np.all(m.stderr[off] > 0)
        # the standard error sums the three estimated blocks' errors (conservative under any correlation);
        # 5 of them bounds a 16-probe average's deviation in practice (measured z ≤ 1.5 here)
        assert np.all(np.abs(m.values - ref)[off] <= 5 * m.stderr[off] + 1e-12)
        assert np.allclose(np.diag(m.values), 1.0)


def test_error_shrinks_with_rank():
    layers = _model(4, d=48)
    ref = _reference(layers, "unbiased")
    errs = [np.abs(cka_matrix_sketched(layers, rank=r, n_probes=16).values - ref).max() for r in (2, 6, 24)]
    assert errs[2] < errs[0]
    assert errs[2] < 1e-3


def test_bfloat16_float32_products():
    layers = {k: v.astype(ml_dtypes.bfloat16) for k, v in _model(5, d=30, offset=0.5).items()}
    m = cka_matrix_sketched(layers, rank=30, block_size=100)
    assert m.parameters["compute_dtype"] == "float32"
    # bfloat16 -> float32 is exact; float32 block products with float64 sums: ~1e-6 relative
    ref = _reference({k: v.astype(np.float32) for k, v in layers.items()}, "unbiased")
    np.testing.assert_allclose(m.values, ref, atol=2e-5)


def test_schedulers_agree():
    layers = _model(6, d=40)
    a = cka_matrix_sketched(layers, rank=8, n_probes=8, block_size=100, scheduler="sync").values
    b = cka_matrix_sketched(layers, rank=8, n_probes=8, block_size=100, scheduler="threads").values
    np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13)


def test_store_input_and_to_dict(tmp_path):
    layers = {k: v.astype(np.float32) for k, v in _model(7, n=300, d=20, L=3).items()}
    with bigalign.ActivationWriter(tmp_path / "m.zarr", chunk_rows=64) as w:
        w.append(layers, sample_ids=np.arange(300))
    store = bigalign.open_activations(tmp_path / "m.zarr")
    m = cka_matrix_sketched(store, layers=["l2", "l0"], rank=6, n_probes=4)
    assert m.layers == ["l2", "l0"] and m.values.shape == (2, 2)
    d = m.to_dict()
    assert d["results"][0][1]["bounds"][0] <= d["results"][0][1]["value"] <= d["results"][0][1]["bounds"][1]
    assert d["n_passes"] == 3


def test_constant_layer_is_undefined():
    layers = _model(8, n=200, d=20, L=2)
    layers["c"] = np.full((200, 20), 3.0)
    m = cka_matrix_sketched(layers, rank=5, n_probes=4)
    assert (0, 2) in m.undefined and m.results[0][2] is None and math.isnan(m.values[2, 2])
    assert m.results[0][1] is not None


def test_invalid_options_and_nonfinite():
    layers = _model(9, n=100, d=12, L=2)
    with pytest.raises(InvalidInputError, match="rank"):
        cka_matrix_sketched(layers, rank=0)
    with pytest.raises(InvalidInputError, match="n_probes"):
        cka_matrix_sketched(layers, n_probes=1)
    with pytest.raises(InvalidInputError, match="estimator"):
        cka_matrix_sketched(layers, estimator="debiased")
    bad = dict(layers)
    bad["l1"] = bad["l1"].astype(np.float32)
    bad["l1"][57, 3] = np.nan
    with pytest.raises(NonFiniteError, match="57"):
        cka_matrix_sketched(bad, rank=4)


def test_auto_rule_and_cost_model():
    pairs33 = [(i, j) for i in range(33) for j in range(i, 33)]
    road, why = choose_layer_road(100_000, [4096] * 33, pairs33)
    assert road == "sketch" and "predicted" in why
    road, _ = choose_layer_road(10_000, [256] * 4, [(i, j) for i in range(4) for j in range(i, 4)])
    assert road == "exact"
    t_exact = predict_layer_matrix_seconds(100_000, [4096] * 33, pairs33, "exact")
    t_sketch = predict_layer_matrix_seconds(100_000, [4096] * 33, pairs33, "sketch")
    assert t_exact > 30 * t_sketch
    with pytest.raises(InvalidInputError):
        predict_layer_matrix_seconds(10, [3], [(0, 0)], "fast")


def test_states_report_their_size_to_dask():
    # distributed sizes results with dask.sizeof for memory limits, spilling and transfer accounting;
    # a dataclass of arrays would otherwise count as ~56 bytes
    from dask.sizeof import sizeof

    from bigalign.metrics.layer_sketch import _GramStatistic
    from bigalign.moments import MomentStatistic

    x = np.random.default_rng(0).standard_normal((50, 30))
    m = MomentStatistic(names=("x", "y"), pairs=((0, 1),)).partial([x, x], 0)
    assert sizeof(m) >= 3 * 30 * 30 * 8
    g = _GramStatistic(names=("x",), means=(np.zeros(30),), bases=(None,), dtype=np.float64).partial([x], 0)
    assert sizeof(g) >= 30 * 30 * 8


def test_tasks_read_one_layer_at_a_time_and_states_keep_the_upper_triangle(monkeypatch):
    # a wide model's row block of every layer at once is most of a task's memory (33 layers × 2,048 rows
    # × 4,096 bfloat16 = 553 MB); the engine hands this road blocks that are read when indexed, once each
    from bigalign import engine, io
    from bigalign.metrics.layer_sketch import _GramStatistic

    layers = _model(3, n=300, d=12, L=3)
    reads = []
    read = io.Representation.read

    def counting(self, start, stop):
        reads.append((self.name, start))
        return read(self, start, stop)

    monkeypatch.setattr(io.Representation, "read", counting)
    stat = _GramStatistic(names=tuple(layers), means=tuple(v.mean(axis=0) for v in layers.values()),
                          bases=(None, None, None), dtype=np.float64)  # fmt: skip
    state, _ = engine.run(stat, list(layers.values()), names=list(layers), block_size=100, scheduler="sync")
    assert sorted(reads) == sorted((k, s) for k in layers for s in (0, 100, 200))  # each block read once
    y = np.concatenate([v - v.mean(axis=0) for v in layers.values()], axis=1)
    assert [s.shape for s in state.strips] == [(12, 36), (12, 24), (12, 12)]
    np.testing.assert_allclose(state.gram, y.T @ y, rtol=1e-12, atol=1e-9)
