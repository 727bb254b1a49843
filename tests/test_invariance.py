"""One invariance test for every public metric: the answer does not depend on how the engine runs.

The engine's contract (docs/guarantees.md): a result does not depend on the block size, the
scheduler or the number of workers beyond float rounding — the combine tree is built from block
indices, random choices come from the seed, never from the blocking.  Every public function is
listed once in ``REGISTRY``; the tests below run each entry

* with several block sizes under the plain loop (``scheduler="sync"``),
* under the threaded scheduler with 2 workers,
* on one real ``distributed.LocalCluster`` of 2 worker processes (states are pickled),
  started once for the whole session (``slow``: run by ``.ci/run``),

and demand the reference answer (``value``, ``stderr``, p-values) to ``RTOL``.

To cover a new metric, append a ``Case`` to ``REGISTRY``: a name, and a function of
``(data, **engine_options)`` returning a result that follows the result protocol.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pytest

import bigalign

#: relative agreement demanded between runs that differ only in blocking or scheduler: sums are
#: combined in another order, so rounding differs (measured ≤ 1e-12 on these sizes); 1e-9 is the
#: project's exactness bar
RTOL = 1e-9
#: random-feature roads of cka/hsic/kernel_alignment compute each block's feature products in float32
#: (float64 across blocks): another blocking rounds those products differently, by up to ~1e-7
#: relative (float32's unit roundoff times the block's dynamic range), far below their stderr
RTOL_FLOAT32 = 1e-6
N = 96  # rows: small enough that every case runs in well under a second


@dataclass(frozen=True)
class Case:
    name: str
    run: Callable[..., Any]  # run(data, **engine_options) -> result
    block_sizes: tuple[int, ...] = (7, 40)  # besides the planned default
    #: the engine options the function takes; in-memory roads (the permutation tests hold both inputs)
    #: take only ``block_size`` (their tile), and the cases they cannot take are skipped with that reason
    engine: tuple[str, ...] = ("block_size", "scheduler", "num_workers")
    rtol: float = RTOL

    def takes(self, **kw: Any) -> bool:
        return set(kw) <= set(self.engine)

    def call(self, data: dict[str, Any], **kw: Any) -> Any:
        """Run with the engine options this case takes (the others are the defaults it runs under)."""
        return self.run(data, **{k: v for k, v in kw.items() if k in self.engine})


@pytest.fixture(scope="module")
def data() -> dict[str, Any]:
    rng = np.random.default_rng(2024)
    x = rng.normal(size=(N, 5)) + 3.0  # an offset: centring must be exact, not cancellation-prone
    y = np.tanh(x[:, :3] @ rng.normal(size=(3, 4))) + 0.3 * rng.normal(size=(N, 4))
    labels = (x[:, 0] > 3.0).astype(int) + (x[:, 1] > 3.0).astype(int)
    x2 = rng.normal(size=(N - 17, 5)) + 3.2  # a second sample of x's space (MMD: unpaired, n_x ≠ n_y)
    return {"x": x, "y": y, "labels": labels, "x2": x2}


REGISTRY: list[Case] = [
    # kernel family
    Case("cka-linear", lambda d, **kw: bigalign.cka(d["x"], d["y"], **kw)),
    Case("cka-linear-biased", lambda d, **kw: bigalign.cka(d["x"], d["y"], estimator="biased", **kw)),
    Case("cka-rbf-exact", lambda d, **kw: bigalign.cka(d["x"], d["y"], kernel="rbf", method="exact", **kw)),
    Case("cka-rbf-rff", lambda d, **kw: bigalign.cka(d["x"], d["y"], kernel="rbf", method="rff", n_features=96, **kw),
         rtol=RTOL_FLOAT32),
    Case("cka-laplacian-nystroem",
         lambda d, **kw: bigalign.cka(d["x"], d["y"], kernel="laplacian", method="nystroem", n_features=24, **kw)),  # fmt: skip
    Case("cka-rbf-block", lambda d, **kw: bigalign.cka(d["x"], d["y"], kernel="rbf", method="block", block_rows=24, **kw)),
    Case("hsic", lambda d, **kw: bigalign.hsic(d["x"], d["y"], **kw)),
    Case("hsic-rbf-orf", lambda d, **kw: bigalign.hsic(d["x"], d["y"], kernel="rbf", method="orf", n_features=96, **kw),
         rtol=RTOL_FLOAT32),
    Case("kernel_alignment", lambda d, **kw: bigalign.kernel_alignment(d["x"], d["y"], **kw)),
    Case("distance_alignment", lambda d, **kw: bigalign.distance_alignment(d["x"], d["y"], **kw)),
    # dependence
    Case("dcor-exact", lambda d, **kw: bigalign.dcor(d["x"], d["y"], method="exact", **kw)),
    Case("dcov-exact-biased", lambda d, **kw: bigalign.dcov(d["x"], d["y"], estimator="biased", method="exact", **kw)),
    Case("coco", lambda d, **kw: bigalign.coco(d["x"], d["y"], **kw)),
    Case("kcc", lambda d, **kw: bigalign.kcc(d["x"], d["y"], **kw)),
    Case("kmi-rbf-exact", lambda d, **kw: bigalign.kmi(d["x"], d["y"], kernel="rbf", method="exact", **kw)),
    Case("rsa-pearson", lambda d, **kw: bigalign.rsa(d["x"], d["y"], **kw)),
    Case("rsa-euclidean", lambda d, **kw: bigalign.rsa(d["x"], d["y"], distance="euclidean", **kw)),
    Case("mutual_knn", lambda d, **kw: bigalign.mutual_knn(d["x"], d["y"], k=5, **kw)),
    Case("cknna", lambda d, **kw: bigalign.cknna(d["x"], d["y"], k=5, **kw)),
    Case("cycle_knn", lambda d, **kw: bigalign.cycle_knn(d["x"], d["y"], k=5, **kw)),
    Case("lcs_knn", lambda d, **kw: bigalign.lcs_knn(d["x"], d["y"], k=5, **kw)),
    Case("edit_distance_knn", lambda d, **kw: bigalign.edit_distance_knn(d["x"], d["y"], k=5, **kw)),
    Case("mutual_knn-sampled", lambda d, **kw: bigalign.mutual_knn(d["x"], d["y"], k=5, n_queries=40, seed=3, **kw)),
    # shape and canonical-correlation measures
    Case("procrustes", lambda d, **kw: bigalign.procrustes(d["x"], d["y"], **kw)),
    Case("procrustes-angular", lambda d, **kw: bigalign.procrustes(d["x"], d["y"], angular=True, **kw)),
    Case("svcca", lambda d, **kw: bigalign.svcca(d["x"], d["y"], **kw)),
    Case("pwcca", lambda d, **kw: bigalign.pwcca(d["x"], d["y"], **kw)),
    # energy statistics
    Case("dcov_test", lambda d, **kw: bigalign.dcov_test(d["x"], d["y"], n_permutations=49, **kw),
         engine=("block_size",)),
    Case("partial_dcor", lambda d, **kw: bigalign.partial_dcor(d["x"], d["y"], d["x"][:, :2] ** 2, **kw)),
    Case("energy_distance", lambda d, **kw: bigalign.energy_distance(d["x"], d["x2"], method="exact", **kw)),
    Case("permutation_test-cka", lambda d, **kw: bigalign.permutation_test(d["x"], d["y"], metric="cka", n_permutations=49, **kw),
         engine=("block_size",)),
    # tests and two samples
    Case("mmd-rbf-exact", lambda d, **kw: bigalign.mmd(d["x"], d["x2"], method="exact", **kw)),
    Case("mmd-linear", lambda d, **kw: bigalign.mmd(d["x"], d["x2"], kernel="linear", **kw)),
    Case("mmd_test-permutation", lambda d, **kw: bigalign.mmd_test(d["x"], d["x2"], null="permutation", n_permutations=49, **kw)),
    Case("hsic_test-gamma-nystroem-streamed",
         lambda d, **kw: bigalign.hsic_test(d["x"], d["y"], null="gamma", method="nystroem", n_features=20, **kw)),  # fmt: skip
    # spectral views
    Case("spectrum", lambda d, **kw: bigalign.spectrum(d["x"], **kw)),
    Case("spectrum-randomized", lambda d, **kw: bigalign.spectrum(d["x"], rank=3, method="randomized", **kw)),
    Case("spectral_alignment", lambda d, **kw: bigalign.spectral_alignment(d["x"], d["y"], ridge=1e-3, **kw)),
    Case("task_alignment", lambda d, **kw: bigalign.task_alignment(d["x"], d["labels"], **kw)),
    Case("kare", lambda d, **kw: bigalign.kare(d["x"], d["labels"], ridge=1e-2, **kw)),
    # sampling intervals (ci=) on the exact tile roads: the leave-one-group-out values come from groups of rows,
    # cut into sub-tiles at the group boundaries, so neither the tile size nor the scheduler moves the interval
    Case("cka-rbf-exact-ci", lambda d, **kw: bigalign.cka(d["x"], d["y"], kernel="rbf", method="exact", ci=0.95, **kw)),
    Case("hsic-laplacian-exact-ci-biased",
         lambda d, **kw: bigalign.hsic(d["x"], d["y"], kernel="laplacian", method="exact", estimator="biased", ci=0.9, **kw)),  # fmt: skip
    Case("kernel_alignment-rbf-exact-ci", lambda d, **kw: bigalign.kernel_alignment(d["x"], d["y"], kernel="rbf", method="exact", ci=0.95, **kw)),
    Case("dcor-exact-ci", lambda d, **kw: bigalign.dcor(d["x"], d["y"], method="exact", ci=0.95, **kw)),
    Case("dcov-exact-ci-biased", lambda d, **kw: bigalign.dcov(d["x"], d["y"], method="exact", estimator="biased", ci=0.95, **kw)),
    Case("rsa-euclidean-ci", lambda d, **kw: bigalign.rsa(d["x"], d["y"], distance="euclidean", method="exact", ci=0.95, **kw)),
    Case("partial_dcor-exact-ci", lambda d, **kw: bigalign.partial_dcor(d["x"], d["y"], d["x"][:, :2] ** 2, method="exact", ci=0.95, **kw)),
    Case("energy_distance-exact-ci", lambda d, **kw: bigalign.energy_distance(d["x"], d["x2"], method="exact", ci=0.95, **kw)),
    # dCor's projection road: row group g left out with direction group g, from the projections held in memory
    Case("dcor-projection-ci", lambda d, **kw: bigalign.dcor(d["x"], d["y"], method="projection", n_projections=40, seed=1, ci=0.95, **kw)),
    # energy distance's block road reads its random blocks itself (no engine options): the case pins its Result shape
    Case("energy_distance-block-ci",
         lambda d, **kw: bigalign.energy_distance(d["x"], d["y"][:, :1] @ np.ones((1, 5)), method="block", block_rows=2, ci=0.95, **kw),
         engine=()),  # fmt: skip
    Case("knn_sweep-ci", lambda d, **kw: bigalign.knn_sweep(d["x"], d["y"], k=[3, 5], ci=0.95, **kw)[5]),
    # two samples: row group g of x and row group g of y left out together
    Case("mmd-rbf-exact-ci", lambda d, **kw: bigalign.mmd(d["x"], d["x2"], method="exact", ci=0.95, **kw)),
    Case("mmd-laplacian-exact-ci-biased",
         lambda d, **kw: bigalign.mmd(d["x"], d["x2"], kernel="laplacian", method="exact", estimator="biased", ci=0.9, **kw)),  # fmt: skip
    Case("mmd-linear-ci", lambda d, **kw: bigalign.mmd(d["x"], d["x2"], kernel="linear", ci=0.95, **kw)),
    Case("mmd-rff-ci", lambda d, **kw: bigalign.mmd(d["x"], d["x2"], method="rff", n_features=96, ci=0.95, **kw),
         rtol=RTOL_FLOAT32),
    # RSA's rank comparisons (held distances), non-Euclidean Pearson (grouped moments) and sampled pairs
    Case("rsa-spearman-ci", lambda d, **kw: bigalign.rsa(d["x"], d["y"], compare="spearman", ci=0.95, **kw)),
    Case("rsa-kendall-correlation-ci",
         lambda d, **kw: bigalign.rsa(d["x"], d["y"], compare="kendall", distance="correlation", ci=0.95, **kw)),  # fmt: skip
    Case("rsa-correlation-pearson-ci", lambda d, **kw: bigalign.rsa(d["x"], d["y"], distance="correlation", ci=0.95, **kw)),
    Case("rsa-cosine-pearson-ci", lambda d, **kw: bigalign.rsa(d["x"], d["y"], distance="cosine", ci=0.9, **kw)),
    Case("rsa-sampled-ci", lambda d, **kw: bigalign.rsa(d["x"], d["y"], method="sampled", n_pairs=3000, seed=2, ci=0.95, **kw)),
    # stitching
    Case("stitch-linear", lambda d, **kw: bigalign.stitch(d["x"], d["y"], targets=d["labels"], **kw)),
    Case("stitch-kernel", lambda d, **kw: bigalign.stitch(d["x"], d["y"], kind="kernel", n_features=16, ridge=1e-3, **kw)),
    # sampling intervals (ci=): per-row-group states, groups fixed by row index, never by the blocks
    Case("cka-linear-ci", lambda d, **kw: bigalign.cka(d["x"], d["y"], ci=0.95, **kw)),
    Case("cka-linear-biased-ci", lambda d, **kw: bigalign.cka(d["x"], d["y"], estimator="biased", ci=0.9, **kw)),
    Case("hsic-ci", lambda d, **kw: bigalign.hsic(d["x"], d["y"], ci=0.95, **kw)),
    Case("kernel_alignment-ci", lambda d, **kw: bigalign.kernel_alignment(d["x"], d["y"], ci=0.95, **kw)),
    Case("cka-rbf-rff-ci", lambda d, **kw: bigalign.cka(d["x"], d["y"], kernel="rbf", method="rff", n_features=96, ci=0.95, **kw),
         rtol=RTOL_FLOAT32),
    Case("procrustes-ci", lambda d, **kw: bigalign.procrustes(d["x"], d["y"], ci=0.95, **kw)),
    Case("svcca-ci", lambda d, **kw: bigalign.svcca(d["x"], d["y"], ci=0.95, **kw)),
    Case("pwcca-ci", lambda d, **kw: bigalign.pwcca(d["x"], d["y"], ci=0.95, **kw)),
    Case("distance_alignment-ci", lambda d, **kw: bigalign.distance_alignment(d["x"], d["y"], ci=0.95, **kw)),
    Case("coco-ci", lambda d, **kw: bigalign.coco(d["x"], d["y"], ci=0.95, **kw)),
    Case("kcc-ci", lambda d, **kw: bigalign.kcc(d["x"], d["y"], ci=0.95, **kw)),
    Case("kmi-ci", lambda d, **kw: bigalign.kmi(d["x"], d["y"], ci=0.95, **kw)),
    Case("mutual_knn-ci", lambda d, **kw: bigalign.mutual_knn(d["x"], d["y"], k=5, ci=0.95, **kw)),
    Case("cknna-ci", lambda d, **kw: bigalign.cknna(d["x"], d["y"], k=5, ci=0.95, **kw)),
    Case("cycle_knn-ci", lambda d, **kw: bigalign.cycle_knn(d["x"], d["y"], k=5, ci=0.95, **kw)),
    Case("mutual_knn-sampled-ci", lambda d, **kw: bigalign.mutual_knn(d["x"], d["y"], k=5, n_queries=50, seed=3, ci=0.95, **kw)),
    # spectral views and non-linear COCO/KCC/KMI: per-row-group (feature) moment states, leave-outs by unmerging
    Case("spectrum-ci", lambda d, **kw: bigalign.spectrum(d["x"], ci=0.95, **kw)),
    Case("spectrum-rbf-ci", lambda d, **kw: bigalign.spectrum(d["x"], kernel="rbf", n_features=24, ci=0.95, **kw)),
    Case("spectral_alignment-ci", lambda d, **kw: bigalign.spectral_alignment(d["x"], d["y"], rank=3, ci=0.95, **kw)),
    Case("task_alignment-ci", lambda d, **kw: bigalign.task_alignment(d["x"], d["labels"], ci=0.95, **kw)),
    Case("kare-ci", lambda d, **kw: bigalign.kare(d["x"], d["y"][:, 0], ridge=0.1, ci=0.95, **kw)),
    Case("kcc-rbf-nystroem-ci", lambda d, **kw: bigalign.kcc(d["x"], d["y"], kernel="rbf", method="nystroem", n_features=24, ci=0.95, **kw)),
    Case("kmi-rbf-rff-ci", lambda d, **kw: bigalign.kmi(d["x"], d["y"], kernel="rbf", method="rff", n_features=48, ci=0.95, **kw)),
    Case("coco-laplacian-exact-ci", lambda d, **kw: bigalign.coco(d["x"], d["y"], kernel="laplacian", method="exact", ci=0.95, **kw)),
    Case("stitch-ci", lambda d, **kw: bigalign.stitch(d["x"], d["y"], targets=d["labels"], ridge="cv", folds=3, ci=0.95, **kw)),
    Case("stitch-kernel-ci", lambda d, **kw: bigalign.stitch(d["x"], d["y"], kind="kernel", n_features=16, ci=0.95, **kw)),
    Case("stitch-mlp", lambda d, **kw: bigalign.stitch(d["x"], d["y"], kind="mlp", targets=d["labels"], hidden=(8,), epochs=2,
                                                       batch_size=32, **kw)),  # fmt: skip
]


def _signature(r: Any) -> dict[str, Any]:
    """The numbers that must not move: value, stderr, p-value, and the held-out risks of a stitch."""
    out = {"value": float(r.value), "stderr": r.stderr}
    ci = getattr(r, "ci", None)
    if ci is not None:
        out["ci_low"], out["ci_high"] = float(ci[0]), float(ci[1])
    for extra in ("pvalue", "stitched_risk", "risk_2"):
        v = getattr(r, extra, None)
        if v is not None:
            out[extra] = float(v)
    if getattr(r, "ci", None) is not None:  # a sampling interval must not move either
        out["ci_low"], out["ci_high"] = (float(v) for v in r.ci)
    return out


def _assert_same(got: Any, ref: Any, what: str, rtol: float = RTOL) -> None:
    g, r = _signature(got), _signature(ref)
    assert g.keys() == r.keys(), what
    for k, v in r.items():
        if v is None:
            assert g[k] is None, (what, k)
        elif k == "pvalue":  # counts of permuted statistics: identical, or rounding flips a tie
            assert g[k] == pytest.approx(v, abs=2.0 / 50), (what, k)
        else:
            assert g[k] == pytest.approx(v, rel=rtol, abs=1e-13 * max(1.0, abs(r["value"]))), (what, k, g[k], v)


def test_registry_covers_every_public_function():
    """A public function that returns a result must be in REGISTRY (extend it with yours)."""
    public = {
        "cka", "hsic", "kernel_alignment", "distance_alignment", "dcor", "dcov", "coco", "kcc", "kmi", "rsa",
        "mutual_knn", "cknna", "mmd", "mmd_test", "hsic_test", "spectrum", "spectral_alignment", "task_alignment",
        "kare", "stitch", "cycle_knn", "lcs_knn", "edit_distance_knn", "procrustes", "svcca", "pwcca", "dcov_test",
        "partial_dcor", "energy_distance", "permutation_test",
    }  # fmt: skip
    covered = {c.name.split("-")[0] for c in REGISTRY}
    assert public <= covered, sorted(public - covered)
    assert public <= set(bigalign.__all__)


@pytest.mark.parametrize("case", REGISTRY, ids=lambda c: c.name)
def test_result_protocol(case, data):
    """Every public return value: value/float/estimator/method/parameters/flags/stderr/ci/to_dict."""
    import json

    r = case.call(data, scheduler="sync")
    assert isinstance(r.value, float) and float(r) == r.value and math.isfinite(r.value)
    assert isinstance(r.estimator, str) and r.estimator and isinstance(r.method, str) and r.method
    assert isinstance(r.metric, str) and isinstance(r.n_samples, int)
    assert isinstance(dict(r.parameters), dict) and isinstance(r.flags, tuple)
    assert r.stderr is None or (isinstance(r.stderr, float) and r.stderr >= 0)
    assert (r.ci is None) == (r.ci_level is None)
    d = json.loads(json.dumps(r.to_dict()))  # JSON-safe, plain floats
    for key in ("metric", "value", "estimator", "method", "n_samples", "parameters", "flags", "stderr", "ci", "ci_level"):
        assert key in d, key
    assert d["value"] == r.value and d["method"] == r.method and d["estimator"] == r.estimator


@pytest.mark.parametrize("case", REGISTRY, ids=lambda c: c.name)
def test_block_size_invariance(case, data):
    if not case.takes(block_size=1):
        pytest.skip(f"{case.name} has no block_size option")
    ref = case.call(data, scheduler="sync")
    for bs in case.block_sizes:
        _assert_same(case.call(data, scheduler="sync", block_size=bs), ref, f"{case.name}, block_size={bs}", case.rtol)


@pytest.mark.parametrize("case", REGISTRY, ids=lambda c: c.name)
def test_threads_agree_with_the_plain_loop(case, data):
    if not case.takes(scheduler="threads", num_workers=2):
        pytest.skip(f"{case.name} computes in memory: no scheduler option")
    ref = case.call(data, scheduler="sync", block_size=case.block_sizes[0])
    got = case.call(data, scheduler="threads", num_workers=2, block_size=case.block_sizes[0])
    _assert_same(got, ref, f"{case.name}, threads", case.rtol)


@pytest.mark.slow
@pytest.mark.parametrize("case", REGISTRY, ids=lambda c: c.name)
def test_local_cluster_agrees_with_the_plain_loop(case, data, local_cluster):
    """A real 2-process distributed.LocalCluster (started once per session): states are pickled."""
    if not case.takes(scheduler="threads"):
        pytest.skip(f"{case.name} computes in memory: no scheduler option")
    ref = case.call(data, scheduler="sync", block_size=case.block_sizes[0])
    got = case.call(data, scheduler=local_cluster, block_size=case.block_sizes[0])
    _assert_same(got, ref, f"{case.name}, LocalCluster", case.rtol)


def test_memory_per_worker_is_honoured_on_tile_roads(data):
    """run_pairs plans smaller tiles under a small memory_per_worker, for the same answer."""
    from bigalign.engine import DEFAULT_TILE_ROWS, prepare, tile_rows

    reps = prepare([data["x"], data["y"]], ["x", "y"])
    assert tile_rows(reps, None, 1) == DEFAULT_TILE_ROWS
    small = tile_rows(reps, 32 * 30**2 + 2 * 30 * 9 * 16, 1)  # room for 30-row tiles exactly
    assert small == 30
    ref = bigalign.dcor(data["x"], data["y"], method="exact", scheduler="sync")
    got = bigalign.dcor(data["x"], data["y"], method="exact", scheduler="sync", memory_per_worker=32 * 30**2 + 2 * 30 * 9 * 16)
    assert got.parameters["block_size"] == 30 and ref.parameters["block_size"] == N
    assert got.value == pytest.approx(ref.value, rel=RTOL)
