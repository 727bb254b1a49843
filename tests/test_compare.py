"""compare_layers: the layer × layer matrix equals cell-by-cell metric calls, in few passes."""

import json

import numpy as np
import pytest

import bigalign
from bigalign.io import Representation

METRICS = {
    "cka": bigalign.cka,
    "hsic": bigalign.hsic,
    "kernel_alignment": bigalign.kernel_alignment,
    "distance_alignment": bigalign.distance_alignment,
}


def _layers(seed, n=240):
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, 6))
    return {
        "l1": (base @ rng.normal(size=(6, 9))).astype(np.float32),
        "l2": np.maximum(base @ rng.normal(size=(6, 12)), 0).astype(np.float32) + 3.0,
        "l3": rng.normal(size=(n, 5, 2)),  # unrelated, 3-D: flattened to 10 features
    }


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("stores")
    paths = []
    for seed in (0, 1):
        layers = _layers(seed)
        # different chunkings on the two sides: the engine must re-block them
        with bigalign.ActivationWriter(root / f"m{seed}.zarr", chunk_rows=32 + 13 * seed) as w:
            for s in range(0, 240, 100):
                w.append({k: v[s : s + 100] for k, v in layers.items()}, sample_ids=np.arange(s, min(s + 100, 240)))
        paths.append(root / f"m{seed}.zarr")
    return [bigalign.open_activations(p) for p in paths]


@pytest.mark.parametrize("metric", sorted(METRICS))
def test_matrix_equals_cellwise_calls(stores, metric):
    a, b = stores
    kw = {} if metric in ("kernel_alignment", "distance_alignment") else {"estimator": "biased"}
    m = bigalign.compare_layers(a, b, metric=metric, **kw)
    assert m.layers_a == a.layers and m.layers_b == b.layers
    for i, la in enumerate(a.layers):
        for j, lb in enumerate(b.layers):
            ref = METRICS[metric](a[la], b[lb], **kw).value
            # same sums, different block partition and merge tree: rounding only
            assert m.values[i, j] == pytest.approx(ref, rel=1e-12, abs=1e-14)
            assert m[la, lb].value == m.values[i, j]


def test_more_passes_same_values(stores):
    a, b = stores
    one = bigalign.compare_layers(a, b)
    many = bigalign.compare_layers(a, b, state_memory=6000)  # forces pairs into separate passes
    assert one.n_passes == 1 and many.n_passes > 1
    np.testing.assert_allclose(many.values, one.values, rtol=1e-12, atol=1e-14)


def test_each_layer_read_once_per_pass(stores, monkeypatch):
    a, b = stores
    calls = []
    real = Representation.read

    def counting(self, start, stop):
        calls.append((self.name, start))
        return real(self, start, stop)

    monkeypatch.setattr(Representation, "read", counting)
    m = bigalign.compare_layers(a, b, scheduler="sync", block_size=60)
    assert m.n_passes == 1
    n_inputs = len(a.layers) + len(b.layers)
    # 3 x 3 = 9 pairs but every layer's 4 blocks are read exactly once
    assert len(calls) == n_inputs * 4
    assert len(set(calls)) == len(calls)


def test_self_comparison_symmetric_unit_diagonal(stores):
    a, _ = stores
    m = bigalign.compare_layers(a, metric="cka", estimator="unbiased")
    v = m.values
    np.testing.assert_allclose(np.diag(v), 1.0, rtol=1e-12)
    np.testing.assert_allclose(v, v.T, rtol=1e-12)


def test_subsets_and_order(stores):
    a, b = stores
    m = bigalign.compare_layers(a, b, layers_a=["l3", "l1"], layers_b=["l2"])
    assert m.values.shape == (2, 1)
    assert m.values[1, 0] == pytest.approx(bigalign.cka(a["l1"], b["l2"]).value, rel=1e-12)
    with pytest.raises(bigalign.InvalidInputError, match="do not exist"):
        bigalign.compare_layers(a, b, layers_a=["nope"])


def test_constant_layer_is_reported_not_nan():
    rng = np.random.default_rng(3)
    a = {"ok": rng.normal(size=(50, 4)), "flat": np.ones((50, 3))}
    b = {"ok": rng.normal(size=(50, 2))}
    m = bigalign.compare_layers(a, b, metric="cka")
    assert m.values.mask.tolist() == [[False], [True]]
    assert "constant" in m.undefined[(1, 0)]
    h = bigalign.compare_layers(a, b, metric="hsic")
    assert h.values[1, 0] == 0.0 and "x_constant" in h.results[1][0].flags
    assert not np.isnan(m.values.filled(0)).any()


def test_to_dict_and_plot(stores, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    a, b = stores
    m = bigalign.compare_layers(a, b)
    d = json.loads(json.dumps(m.to_dict()))
    assert d["values"][0][0] == pytest.approx(m.values[0, 0])
    assert d["layers_a"] == a.layers and d["n_samples"] == 240
    ax = m.plot()
    assert ax.get_title().startswith("cka")
    assert len(ax.texts) == 9


def test_pairing_checked(stores, tmp_path):
    a, _ = stores
    layers = _layers(5)
    with bigalign.ActivationWriter(tmp_path / "other.zarr") as w:
        w.append(layers, sample_ids=np.arange(1000, 1240))
    with pytest.raises(bigalign.PairingError):
        bigalign.compare_layers(a, bigalign.open_activations(tmp_path / "other.zarr"))
