"""Layer matrices: every cell describes its own orientation and equals the single-pair call.

``compare_layers(a)`` (one store against itself) computes a symmetric measure once per unordered
pair but reports cell (i, j) with x = layer i and y = layer j: per-side fields (``bandwidth_x``,
``hsic_xx``, ``dvar2_x``, ``sd_x``, ...) belong to the row layer.  Each cell must equal, field by
field, the public function called on (layer i, layer j) with the same options.

Tolerance: the same sums in another order (moment road: another merge tree) — 1e-10 relative.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import bigalign
from bigalign.compare import mirror
from bigalign.result import Result

RTOL = 1e-10


def _layers(n=90, seed=5):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 4))
    return {
        "a": z @ rng.normal(size=(4, 6)) + 0.3 * rng.normal(size=(n, 6)),
        "b": 5.0 * np.tanh(z @ rng.normal(size=(4, 6))) + rng.normal(size=(n, 6)),  # same width as a (mmd)
        "c": 0.1 * (z[:, :2] ** 2) @ rng.normal(size=(2, 3)) + 0.05 * rng.normal(size=(n, 3)),
    }


def _close(a, b, where):
    if isinstance(a, (float, np.floating)) and isinstance(b, (float, np.floating)) and not isinstance(a, bool):
        assert a == pytest.approx(b, rel=RTOL, abs=1e-12), where
    elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        assert len(a) == len(b), where
        for u, v in zip(a, b):
            _close(u, v, where)
    else:
        assert a == b, where


#: parameters a layer matrix adds to a cell (how the matrix was computed, not what the cell is)
MATRIX_ONLY = {"n_passes", "per_layer"}


def assert_same_result(cell: Result, ref: Result, where: str = "") -> None:
    """Field by field: type, metric, estimator, method, n, terms, parameters, stderr, flags, ci."""
    assert type(cell) is type(ref), where
    for f in ("metric", "estimator", "method", "n_samples", "flags", "ci_level"):
        assert getattr(cell, f) == getattr(ref, f), (where, f)
    _close(cell.value, ref.value, (where, "value"))
    assert set(cell.terms) == set(ref.terms), where
    for k in ref.terms:
        _close(float(cell.terms[k]), float(ref.terms[k]), (where, k))
    assert set(cell.parameters) - MATRIX_ONLY == set(ref.parameters), (where, set(cell.parameters) ^ set(ref.parameters))
    for k in ref.parameters:
        _close(cell.parameters[k], ref.parameters[k], (where, k))
    for f in ("stderr", "ci"):
        a, b = getattr(cell, f), getattr(ref, f)
        assert (a is None) == (b is None), (where, f)
        if a is not None:
            _close(a, b, (where, f))


CASES = {
    "cka-linear": ("cka", {}, bigalign.cka, {}),
    "cka-rbf-exact": ("cka", {"kernel": "rbf", "method": "exact"}, bigalign.cka, {"kernel": "rbf", "method": "exact"}),
    "hsic-rbf-exact": ("hsic", {"kernel": "laplacian", "method": "exact"}, bigalign.hsic, {"kernel": "laplacian", "method": "exact"}),
    "ka-rbf-exact": ("kernel_alignment", {"kernel": "rbf", "method": "exact"}, bigalign.kernel_alignment, {"kernel": "rbf", "method": "exact"}),
    "dcor": ("dcor", {}, bigalign.dcor, {"estimator": "unbiased"}),
    "dcov-biased": ("dcov", {"estimator": "biased"}, bigalign.dcov, {"estimator": "biased"}),
    "rsa": ("rsa", {}, bigalign.rsa, {"seed": 0}),
    "kcc-rbf": ("kcc", {"kernel": "rbf"}, bigalign.kcc, {"kernel": "rbf"}),
    "mmd-rbf": ("mmd", {"kernel": "rbf", "method": "exact"}, bigalign.mmd, {"kernel": "rbf", "method": "exact", "estimator": "unbiased", "seed": 0}),
    "mutual_knn": ("mutual_knn", {"metric_options": {"k": 5}}, bigalign.mutual_knn, {"k": 5, "seed": 0}),
    "cknna": ("cknna", {"metric_options": {"k": 5}}, bigalign.cknna, {"k": 5}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_self_comparison_cells_equal_single_pair_calls(case):
    metric, kw, fn, fkw = CASES[case]
    layers = _layers()
    m = bigalign.compare_layers(layers, metric=metric, scheduler="sync", **kw)
    ids = set()
    for i, la in enumerate(m.layers_a):
        for j, lb in enumerate(m.layers_b):
            cell = m.results[i][j]
            if metric == "mmd" and layers[la].shape[1] != layers[lb].shape[1]:
                assert cell is None
                continue
            ids.add(id(cell))
            assert_same_result(cell, fn(layers[la], layers[lb], scheduler="sync", **fkw), f"{case} {la}|{lb}")
    assert len(ids) == sum(r is not None for row in m.results for r in row)  # no object shared by two cells


def test_per_side_parameters_follow_the_row_layer():
    """The regression this guards: results[j][i] was results[i][j], with bandwidth_x of layer i."""
    layers = _layers()
    m = bigalign.compare_layers(layers, metric="cka", kernel="rbf", method="rff", n_features=256, scheduler="sync")
    med = {l: bigalign.cka(layers[l], layers[l], kernel="rbf", method="exact").parameters["median_x"] for l in layers}
    for i, la in enumerate(m.layers_a):
        for j, lb in enumerate(m.layers_b):
            p = m.results[i][j].parameters
            assert p["bandwidth_x"] == pytest.approx(med[la], rel=1e-12) and p["bandwidth_y"] == pytest.approx(med[lb], rel=1e-12)
            r, t = m.results[i][j], m.results[j][i]
            assert r.value == t.value and r.terms["hsic_xx"] == t.terms["hsic_yy"]


def test_mirror_swaps_every_per_side_field():
    r = Result("x", 0.5, "biased", "m", 10, {"hsic_xy": 1.0, "hsic_xx": 2.0, "dvar2_x": 3.0, "mean_kyy": 4.0, "norm_k": 5.0},
               {"bandwidth_x": 1.0, "median_y": 2.0, "ranks": [3, 4], "C_p": 1.5, "n_x": 7, "kernel": "rbf"},
               flags=("x_constant", "negative_unbiased_estimate"))  # fmt: skip
    m = mirror(r)
    assert dict(m.terms) == {"hsic_xy": 1.0, "hsic_yy": 2.0, "dvar2_y": 3.0, "mean_kxx": 4.0, "norm_l": 5.0}
    assert dict(m.parameters) == {"bandwidth_y": 1.0, "median_x": 2.0, "ranks": [4, 3], "C_q": 1.5, "n_y": 7, "kernel": "rbf"}
    assert m.flags == ("y_constant", "negative_unbiased_estimate") and m is not r and mirror(m) == r


# -- neighbourhood measures: per-layer lists, searched once per layer ---------------------------------

KNN = ("mutual_knn", "cknna", "cycle_knn", "lcs_knn", "edit_distance_knn")


def _two_stores(n=120):
    rng = np.random.default_rng(11)
    z = rng.normal(size=(n, 3))
    a = {f"a{t}": z @ rng.normal(size=(3, 4 + t)) + 0.7 * rng.normal(size=(n, 4 + t)) for t in range(3)}
    b = {f"b{t}": np.tanh(z @ rng.normal(size=(3, 5))) + 0.5 * rng.normal(size=(n, 5)) for t in range(2)}
    return a, b


@pytest.mark.parametrize("metric", KNN)
@pytest.mark.parametrize("sampled", [False, True])
def test_knn_cells_equal_single_pair_calls(metric, sampled):
    """Every ordered cell (self-comparison and two stores) is the public call on (row layer, column
    layer): the lists of a layer do not depend on the layers searched beside it.  block_size is
    passed to both: the sampled road plans its candidate blocks from the widths of all inputs."""
    if metric == "cknna" and sampled:
        pytest.skip("cknna has no sampled road")
    a, b = _two_stores()
    opts = {"k": 4, **({"n_queries": 50} if sampled else {})}
    fn = getattr(bigalign, metric)
    for right in (None, b):
        m = bigalign.compare_layers(a, right, metric=metric, metric_options=opts, seed=3, block_size=37, scheduler="sync")
        assert m.plan["road"] == "per-layer neighbour lists" and m.plan["searches"] == len(a) + (0 if right is None else len(b))
        cols = a if right is None else b
        for i, la in enumerate(m.layers_a):
            for j, lb in enumerate(m.layers_b):
                ref = fn(a[la], cols[lb], **opts, **({} if metric == "cknna" else {"seed": 3}), block_size=37, scheduler="sync")
                assert_same_result(m.results[i][j], ref, f"{metric} {la}|{lb}")
                assert right is not None or i == j or m.results[i][j] is not m.results[j][i]


def test_knn_layers_searched_once_each(monkeypatch):
    """L layers: one search (one run of tiles over all of them), not one per pair and side."""
    import bigalign.metrics.neighbors as nb

    calls = []
    real = nb.search

    def counting(reps, k, options, queries=None):
        calls.append([r.name for r in reps])
        return real(reps, k, options, queries)

    monkeypatch.setattr(nb, "search", counting)
    a, _ = _two_stores()
    bigalign.compare_layers(a, metric="mutual_knn", metric_options={"k": 3}, scheduler="sync")
    assert len(calls) == 1 and sorted(calls[0]) == sorted(f"a:{l}" for l in a)
    calls.clear()
    bigalign.compare_layers(a, metric="cycle_knn", metric_options={"k": 3, "n_queries": 30}, scheduler="sync")
    assert len(calls) == 2  # the queries' lists, then x's lists of the queries' y-neighbours


def test_knn_state_memory_groups_and_fallback():
    """Lists of all layers held within state_memory: groups of searches when the lists in flight do
    not fit together, one call per pair when even the finished lists do not; the same values."""
    a, _ = _two_stores()
    opts = {"metric": "cknna", "metric_options": {"k": 4}, "scheduler": "sync"}
    one = bigalign.compare_layers(a, **opts)
    per = 120 * 4 * 16  # one layer's lists
    grouped = bigalign.compare_layers(a, state_memory=3 * per + 3 * per, **opts)
    assert grouped.plan["search_groups"] > 1 and grouped.n_passes == grouped.plan["search_groups"]
    fallback = bigalign.compare_layers(a, state_memory=2 * per, **opts)
    assert fallback.plan["road"] == "per pair" and "exceed state_memory" in fallback.plan["per_layer"]
    for m in (grouped, fallback):
        for i in range(3):
            for j in range(3):
                assert_same_result(m.results[i][j], one.results[i][j], f"{i}|{j}")
    assert one.results[0][1].value != one.results[1][0].value  # cknna is not symmetric: each orientation computed
    for metric in ("mutual_knn", "lcs_knn", "cycle_knn"):  # the fallback mirrors symmetric measures, computes the others per orientation
        opts = {"metric": metric, "metric_options": {"k": 4}, "scheduler": "sync"}
        one, fallback = bigalign.compare_layers(a, **opts), bigalign.compare_layers(a, state_memory=per, **opts)
        assert fallback.plan["road"] == "per pair"
        for i in range(3):
            for j in range(3):
                assert_same_result(fallback.results[i][j], one.results[i][j], f"{metric} {i}|{j}")


def test_plan_is_reported_and_json_safe():
    import json

    a, _ = _two_stores()
    for kw in ({"metric": "mutual_knn"}, {"metric": "cka"}, {"metric": "cka", "kernel": "rbf", "method": "rff", "n_features": 64},
               {"metric": "dcor"}):  # fmt: skip
        m = bigalign.compare_layers(a, scheduler="sync", **kw)
        d = json.loads(json.dumps(m.to_dict()))
        assert d["plan"]["road"] in ("per-layer neighbour lists", "moments", "features", "per pair") and d["plan"]["per_layer"]
