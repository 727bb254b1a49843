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


# -- every measure of the family by name ------------------------------------------------------------

def _facade(metric):
    """The public function a cell of ``metric`` must equal, returning the value (written independently of
    compare.py's tables: Gaussian MI / W2 come from spectral_alignment's exact road)."""
    if metric == "gaussian_mi":
        return lambda x, y, **kw: bigalign.spectral_alignment(x, y, **kw).gaussian_mi
    if metric == "gaussian_w2":
        return lambda x, y, **kw: bigalign.spectral_alignment(x, y, **kw).gaussian_wasserstein
    if metric == "procrustes_angular":
        return lambda x, y, **kw: bigalign.procrustes(x, y, angular=True, **kw).value
    fn = getattr(bigalign, metric)
    return lambda x, y, **kw: fn(x, y, **kw).value


FAMILY_KW = {  # the options each façade is called with, as compare_layers passes them
    "dcor": {"estimator": "unbiased"},
    "dcov": {"estimator": "unbiased"},
    "mmd": {"estimator": "unbiased", "seed": 0, "kernel": "linear"},  # compare_layers' kernel (default linear) is passed on
    "rsa": {"seed": 0},
    "mutual_knn": {"seed": 0},
}


@pytest.mark.parametrize("metric", sorted(set(bigalign.compare.METRICS) - set(METRICS)))
def test_every_family_member_by_name_equals_its_function(stores, metric):
    a, b = stores
    m = bigalign.compare_layers(a, b, metric=metric)
    assert m.metric == metric
    for i, la in enumerate(a.layers):
        for j, lb in enumerate(b.layers):
            if metric == "mmd" and a[la].n_features != b[lb].n_features:
                # two samples of different spaces: reported as undefined, with the reason
                assert m[la, lb] is None and "features" in m.undefined[(i, j)]
                continue
            ref = _facade(metric)(a[la], b[lb], **FAMILY_KW.get(metric, {}))
            # moment metrics: same sums in another merge order (rounding only); per-pair metrics: the same call
            assert m.values[i, j] == pytest.approx(ref, rel=1e-10, abs=1e-12), (la, lb)


def test_metric_options_reach_the_function(stores):
    a, b = stores
    m = bigalign.compare_layers(a, b, metric="kcc", metric_options={"ridge": 0.1})
    ref = bigalign.kcc(a["l1"], b["l2"], ridge=0.1).value
    assert m["l1", "l2"].value == pytest.approx(ref, rel=1e-10)
    assert m["l1", "l2"].value != pytest.approx(bigalign.kcc(a["l1"], b["l2"]).value, rel=1e-3)
    k = bigalign.compare_layers(a, b, metric="mutual_knn", metric_options={"k": 5}, layers_a=["l1"], layers_b=["l2"])
    assert k.values[0, 0] == pytest.approx(bigalign.mutual_knn(a["l1"], b["l2"], k=5).value, rel=1e-12)


def test_nonlinear_independence_measures_per_pair(stores):
    a, b = stores
    m = bigalign.compare_layers(a, b, metric="kmi", kernel="rbf", method="exact", layers_a=["l1", "l2"], layers_b=["l2"])
    for i, la in enumerate(["l1", "l2"]):
        ref = bigalign.kmi(a[la], b["l2"], kernel="rbf", method="exact").value
        assert m.values[i, 0] == pytest.approx(ref, rel=1e-10)
    assert m.n_passes == 2  # one call (at least one pass) per pair, as documented


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"metric": "dcor", "kernel": "rbf"}, "takes no 'kernel'"),
        ({"metric": "rsa", "n_features": 64}, "takes no 'n_features'"),
        ({"metric": "cka", "metric_options": {"k": 3}}, "not options of 'cka'"),
        ({"metric": "mutual_knn", "metric_options": {"kk": 3}}, "not options of bigalign.mutual_knn"),
        ({"metric": "mutual_knn", "metric_options": {"k": [3, 5]}}, "one k per matrix"),
        ({"metric": "dcor", "metric_options": {"seed": 3}}, "compare_layers' own arguments"),
        ({"metric": "gaussian_mi", "kernel": "rbf"}, "kernel must be 'linear'"),
        ({"metric": "cka", "metric_options": [1]}, "must be a mapping"),
        ({"metric": "procrustes_shape"}, "must be one of"),
    ],
)
def test_bad_metric_arguments_are_named(stores, kw, match):
    a, b = stores
    with pytest.raises(bigalign.InvalidInputError, match=match):
        bigalign.compare_layers(a, b, **kw)


def test_gaussian_mi_of_a_layer_with_itself_is_undefined_not_inf(stores):
    a, _ = stores
    m = bigalign.compare_layers(a, None, metric="gaussian_mi", layers_a=["l1"], layers_b=["l1", "l3"])
    assert m.results[0][0] is None and "canonical correlation is 1" in m.undefined[(0, 0)]
    assert np.isfinite(m.values[0, 1])


# -- roads chosen per matrix: the projected road of wide linear CKA, the kernel block road --------------


def _wide_layers(n=300, widths=(40, 48, 56), seed=5):
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, 6))
    return {f"w{k}": base @ rng.normal(size=(6, d)) + 0.3 * rng.normal(size=(n, d)) for k, d in enumerate(widths)}


def test_sketch_road_cells_equal_the_sketched_matrix_and_bound_the_exact_value():
    from bigalign.metrics.layer_sketch import cka_matrix_sketched

    layers = _wide_layers()
    m = bigalign.compare_layers(layers, metric="cka", method="sketch", metric_options={"rank": 8, "n_probes": 8})
    ref = cka_matrix_sketched(layers, rank=8, n_probes=8)
    exact = bigalign.compare_layers(layers, metric="cka", method="exact")
    assert m.plan["road"] == "sketch"
    np.testing.assert_allclose(m.values, ref.values, rtol=1e-12)
    for i in range(3):
        for j in range(3):
            cell = m.results[i][j]
            lo, hi = cell.bounds
            # certified interval: the exact value on the same rows lies inside it (rounding aside)
            assert lo - 1e-12 <= exact.values[i, j] <= hi + 1e-12, (i, j)


def test_auto_keeps_the_exact_moment_road_when_it_is_cheap_and_says_why():
    layers = _wide_layers()
    m = bigalign.compare_layers(layers, metric="cka")
    assert m.plan["road"] == "moments" and "predicted" in m.plan["reason"]
    assert m["w0", "w1"].value == pytest.approx(bigalign.cka(layers["w0"], layers["w1"]).value, rel=1e-10)


def test_sketch_options_are_refused_where_they_do_not_apply():
    layers = _wide_layers()
    with pytest.raises(bigalign.InvalidInputError, match="do not apply"):
        bigalign.compare_layers(layers, metric="cka", method="exact", metric_options={"rank": 8})
    with pytest.raises(bigalign.InvalidInputError, match="sketch"):
        bigalign.compare_layers(layers, metric="hsic", method="sketch")


def test_kernel_block_road_cells_equal_the_single_pair_calls():
    layers = _wide_layers(n=400, widths=(5, 6, 7))
    opts = {"block_rows": 50}
    m = bigalign.compare_layers(layers, metric="cka", kernel="rbf", method="block", metric_options=opts)
    assert m.plan["road"] == "per pair"
    names = list(layers)
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            ref = bigalign.cka(layers[a], layers[b], kernel="rbf", method="block", **opts)
            cell = m.results[i][j]
            assert cell.value == pytest.approx(ref.value, rel=1e-12) and cell.stderr == pytest.approx(ref.stderr, rel=1e-12)
            assert cell.parameters["bandwidth_x"] == ref.parameters["bandwidth_x"], (a, b)


@pytest.mark.slow
def test_kernel_auto_beyond_the_shared_exact_range_has_no_cliff():
    """n = 20,001 rows: each pair's auto (exact tiles or the block road for target_stderr), not Nyström."""
    rng = np.random.default_rng(0)
    n = 20_001
    z = rng.normal(size=(n, 3))
    layers = {"a": z + 0.5 * rng.normal(size=(n, 3)), "b": np.tanh(z) + 0.5 * rng.normal(size=(n, 3))}
    m = bigalign.compare_layers(layers, metric="cka", kernel="rbf")
    cell = m["a", "b"]
    assert cell.method in ("exact-tiles", "block"), cell.method
    assert cell.method == "exact-tiles" or cell.stderr <= 1e-3  # the default target_stderr
    single = bigalign.cka(layers["a"], layers["b"], kernel="rbf")
    assert cell.value == pytest.approx(single.value, rel=1e-12) and cell.method == single.method
