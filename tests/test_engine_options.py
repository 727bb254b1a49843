"""EngineOptions: the five engine keywords validated once per call, and memory_per_worker honoured on
every road (row blocks and exact tiles): it changes the block or tile plan, never the value beyond
rounding (1e-10 relative, the exactness contract: only the order of the float64 sums changes)."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import bigalign
from bigalign import InvalidInputError
from bigalign.options import ENGINE_KEYWORDS, EngineOptions

SYNC = {"scheduler": "sync"}
SMALL = 2**17  # bytes per task: tiles of ~60 rows at d = 4 instead of one 300-row tile


@pytest.fixture(scope="module")
def xy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4))
    return x, x + rng.normal(size=(300, 4))


ROADS = {
    # exact tiles (engine.run_pairs)
    "cka rbf exact tiles": lambda x, y, **k: bigalign.cka(x, y, kernel="rbf", method="exact", **k),
    "dcor exact tiles": lambda x, y, **k: bigalign.dcor(x, y, method="exact", **k),
    "rsa exact tiles": lambda x, y, **k: bigalign.rsa(x, y, **k),
    "mutual_knn tiles": lambda x, y, **k: bigalign.mutual_knn(x, y, k=5, **k),
    "mmd exact tiles": lambda x, y, **k: bigalign.mmd(x, y[:200], method="exact", **k),
    "energy_distance exact tiles": lambda x, y, **k: bigalign.energy_distance(x, y[:200], method="exact", **k),
    # row blocks (engine.run)
    "cka linear blocks": lambda x, y, **k: bigalign.cka(x, y, **k),
    "procrustes blocks": lambda x, y, **k: bigalign.procrustes(x, y, **k),
}


@pytest.mark.parametrize("road", list(ROADS))
def test_memory_per_worker_changes_the_plan_never_the_value(road, xy):
    f = ROADS[road]
    default = f(*xy, **SYNC)
    small = f(*xy, memory_per_worker=SMALL if "tiles" in road else 2**12, **SYNC)
    assert small.parameters["block_size"] < default.parameters["block_size"]  # the plan changed
    np.testing.assert_allclose(small.value, default.value, rtol=1e-10, atol=1e-14)


def test_unknown_keyword_names_the_valid_ones(xy):
    with pytest.raises(InvalidInputError, match="blocksize") as ei:
        bigalign.cka(*xy, blocksize=10)
    assert all(k in str(ei.value) for k in ENGINE_KEYWORDS)


@pytest.mark.parametrize(
    "kw, name",
    [({"block_size": 0}, "block_size"), ({"num_workers": 1.5}, "num_workers"), ({"memory_per_worker": -1}, "memory_per_worker"),
     ({"memory_per_worker": True}, "memory_per_worker"), ({"scheduler": "processes"}, "scheduler")],
)  # fmt: skip
def test_one_error_template(kw, name):
    with pytest.raises(InvalidInputError) as ei:
        EngineOptions.build("cka", kw)
    msg = str(ei.value)
    assert msg.startswith(f"the {name!r} parameter of cka must be ") and f"got {next(iter(kw.values()))!r} instead." in msg


def test_built_once_and_frozen():
    o = EngineOptions.build("f", {"block_size": 64, "scheduler": "sync"})
    assert EngineOptions.build("g", o) is o
    assert o.given() == {"block_size": 64, "scheduler": "sync"} and set(o.kwargs()) == set(ENGINE_KEYWORDS)
    with pytest.raises(Exception):
        o.block_size = 3  # type: ignore[misc]


FACADES = [
    "cka", "hsic", "kernel_alignment", "dcor", "dcov", "rsa", "procrustes", "distance_alignment", "svcca", "pwcca",
    "coco", "kcc", "kmi", "mmd", "mmd_test", "hsic_test", "mutual_knn", "cknna", "cycle_knn", "lcs_knn",
    "edit_distance_knn", "knn_sweep", "spectrum", "spectral_alignment", "task_alignment", "kare", "compare_layers",
    "cka_matrix_sketched", "partial_dcor", "energy_distance", "dcov_test", "permutation_test",
]  # fmt: skip


@pytest.mark.parametrize("name", FACADES)
def test_facades_take_the_engine_block_once(name):
    """No façade repeats the five keywords: they arrive as ``**engine`` (typed by EngineKwargs)."""
    params = inspect.signature(getattr(bigalign, name)).parameters
    assert not set(ENGINE_KEYWORDS) & set(params)
    assert params["engine"].kind is inspect.Parameter.VAR_KEYWORD


@pytest.mark.parametrize("name", ["stitch", "stitching_matrix"])
def test_stitch_engine_keywords_share_the_options_catch_all(name, xy):
    """stitch and stitching_matrix take their kind's options by keyword too: the engine keywords arrive there."""
    params = inspect.signature(getattr(bigalign, name)).parameters
    assert not set(ENGINE_KEYWORDS) & set(params)
    r = bigalign.stitch(*xy, block_size=64, **SYNC)
    assert r.parameters["block_size"] == 64
    with pytest.raises(InvalidInputError, match="block_size"):
        bigalign.stitch(*xy, block_size=0)
