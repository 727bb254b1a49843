"""One engine-options object per call, passed down typed: no façade repeats the engine keywords,
no helper receives the options as a dict, no ``locals()`` carries options anywhere; and the in-process
permutation tests take the engine keywords too, refusing (never ignoring) those that do not apply.

The source checks parse bigalign/ (ast): nothing is imported for them.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import numpy as np
import pytest

import bigalign
from bigalign import InvalidInputError
from bigalign.options import ENGINE_KEYWORDS

PACKAGE = Path(__file__).resolve().parent.parent / "bigalign"
SOURCES = sorted(PACKAGE.rglob("*.py"))

#: public functions allowed to spell the engine keywords out, and why
OWN_KEYWORDS = {
    # the engine itself: its keywords are what EngineOptions validates (options= takes the built object)
    "run": "the engine entry",
}


def _calls(path: Path, name: str) -> list[int]:
    """Lines of the file that call ``name(...)`` (a bare name) or ``<anything>.name(...)``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            if (isinstance(f, ast.Name) and f.id == name) or (isinstance(f, ast.Attribute) and f.attr == name):
                out.append(node.lineno)
    return out


def _rel(path: Path) -> str:
    return str(path.relative_to(PACKAGE.parent))


def test_no_locals_anywhere():
    """Options travel as typed arguments or frozen option objects, never as a snapshot of a frame."""
    found = {_rel(p): lines for p in SOURCES for lines in [_calls(p, "locals") + _calls(p, "vars")] if lines}
    assert not found, f"locals()/vars() in {found}"


def test_engine_options_are_not_re_expanded_into_dicts():
    """``EngineOptions.kwargs()`` is not called below the façades: helpers take the EngineOptions itself
    and hand it to ``run(..., options=...)`` / ``run_pairs(..., options=...)``."""
    found = {_rel(p): lines for p in SOURCES if p.name != "options.py" for lines in [_calls(p, "kwargs")] if lines}
    assert not found, f".kwargs() in {found}"


#: the top layer calls the public functions, whose engine keywords are keyword arguments by design
PUBLIC_CALLERS = ("report.py", "cli.py")


def test_no_helper_takes_engine_options_as_a_dict():
    """No function below the report/CLI layer has an ``engine_kw`` / ``ekw`` parameter (the old dict plumbing)."""
    bad = []
    for p in SOURCES:
        if p.name in PUBLIC_CALLERS:
            continue
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
                bad += [f"{_rel(p)}:{node.lineno} {node.name}({a.arg})" for a in args if a.arg in ("engine_kw", "ekw", "ekw_in")]
    assert not bad, bad


def _public_functions() -> dict[str, object]:
    names = set(getattr(bigalign, "__all__", ())) | set(getattr(bigalign, "_LAZY", {}))
    return {n: getattr(bigalign, n) for n in sorted(names) if inspect.isfunction(getattr(bigalign, n))}


def test_no_public_function_repeats_an_engine_keyword():
    """The five engine keywords arrive as ``**engine: Unpack[EngineKwargs]`` (or, for stitch and
    stitching_matrix, in the options catch-all), never as a public function's own parameters."""
    funcs = _public_functions()
    assert {"cka", "dcov_test", "permutation_test", "compare_layers"} <= set(funcs)  # the scan sees the façades
    repeated = {n: sorted(set(ENGINE_KEYWORDS) & set(inspect.signature(f).parameters))
                for n, f in funcs.items() if n not in OWN_KEYWORDS}  # fmt: skip
    assert not {n: r for n, r in repeated.items() if r}, repeated


def test_the_source_checks_see_a_violation(tmp_path):
    """The AST scans would catch the patterns they forbid."""
    p = tmp_path / "m.py"
    p.write_text("def f(x, ekw):\n    g(**locals())\n    return o.kwargs()\n", encoding="utf-8")
    assert _calls(p, "locals") == [2] and _calls(p, "kwargs") == [3]


# --------------------------------------------------------------------------- #
# the permutation tests take the engine keywords like every other façade
# --------------------------------------------------------------------------- #


@pytest.fixture(scope="module")
def xy():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(120, 3))
    return x, x[:, :2] ** 2 + rng.normal(size=(120, 2))


TESTS = {
    "dcov_test": lambda x, y, **k: bigalign.dcov_test(x, y, n_permutations=40, seed=1, **k),
    "permutation_test cka": lambda x, y, **k: bigalign.permutation_test(x, y, metric="cka", n_permutations=40, seed=1, **k),
    "permutation_test dcor": lambda x, y, **k: bigalign.permutation_test(x, y, metric="dcor", n_permutations=40, seed=1, **k),
    "permutation_test rsa": lambda x, y, **k: bigalign.permutation_test(x, y, metric="rsa", n_permutations=40, seed=1, **k),
}

#: bytes that hold x and y (120 × 5 float64 = 4.7 KiB) but tiles of only ~35 rows: the tiled road
SMALL = 64 * 1024


@pytest.mark.parametrize("name", list(TESTS))
def test_permutation_options_never_change_the_answer(name, xy):
    """block_size and memory_per_worker change the tiles (the plan), never the statistic beyond rounding,
    nor the permutation p-value (same permutations, ties counted up to rounding)."""
    f = TESTS[name]
    ref = f(*xy)
    assert ref.parameters["block_size"] == 1024  # one tile: n = 120
    for kw in ({"block_size": 17}, {"memory_per_worker": SMALL}, {"block_size": 50, "memory_per_worker": SMALL}):
        got = f(*xy, **kw)
        assert got.parameters["block_size"] < ref.parameters["block_size"], kw  # the tiled road ran
        np.testing.assert_allclose(got.value, ref.value, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(got.null_mean, ref.null_mean, rtol=1e-10, atol=1e-14)
        assert got.pvalue == ref.pvalue and got.n_at_least == ref.n_at_least, kw


@pytest.mark.parametrize("name", list(TESTS))
@pytest.mark.parametrize("kw", [{"scheduler": "threads"}, {"num_workers": 2}, {"scheduler": "sync", "num_workers": 1}])
def test_permutation_options_that_do_not_apply_are_errors(name, kw, xy):
    """The permuted sums run in this process: scheduler / client / num_workers are refused, naming what applies."""
    with pytest.raises(InvalidInputError) as ei:
        TESTS[name](*xy, **kw)
    msg = str(ei.value)
    assert all(k in msg for k in kw) and "block_size" in msg and "memory_per_worker" in msg, msg


@pytest.mark.parametrize("name", list(TESTS))
def test_permutation_engine_keywords_are_validated(name, xy):
    """The one validation point (EngineOptions.build): a misspelt keyword or a bad value is an error."""
    f = TESTS[name]
    with pytest.raises(InvalidInputError, match="blocksize"):
        f(*xy, blocksize=10)
    with pytest.raises(InvalidInputError, match=r"the 'block_size' parameter of (dcov|permutation)_test must be"):
        f(*xy, block_size=0)
    with pytest.raises(InvalidInputError, match="reads x and y into memory"):
        f(*xy, memory_per_worker=1024)  # x and y alone need 4.7 KiB


def test_permutation_knn_search_runs_on_the_engine(xy):
    """mutual_knn's neighbour search is an engine road: every engine option applies, and none changes the answer."""
    x, y = xy
    ref = bigalign.permutation_test(x, y, metric="mutual_knn", k=5, n_permutations=40, seed=1)
    assert ref.parameters["block_size"] == 120  # the search's one tile (n rows)
    for kw in ({"block_size": 16}, {"scheduler": "threads", "num_workers": 2}, {"memory_per_worker": 2**15}):
        got = bigalign.permutation_test(x, y, metric="mutual_knn", k=5, n_permutations=40, seed=1, **kw)
        assert got.value == ref.value and got.pvalue == ref.pvalue, kw
    assert bigalign.permutation_test(x, y, metric="mutual_knn", k=5, n_permutations=40, block_size=16).parameters["block_size"] == 16


# --------------------------------------------------------------------------- #
# roads that hold whole matrices honour memory_per_worker by refusing to run over it
# --------------------------------------------------------------------------- #

IN_MEMORY = {
    # exact Spearman RSA ranks all n(n-1)/2 distances (≈ 112 bytes per pair at peak)
    "rsa spearman": lambda x, y, **k: bigalign.rsa(x, y, compare="spearman", method="exact", **k),
    # exact-kernel COCO holds the n×n kernel matrices (≈ 3·n²·8 bytes at peak)
    "coco rbf exact": lambda x, y, **k: bigalign.coco(x, y, kernel="rbf", method="exact", **k),
    "kcc rbf exact": lambda x, y, **k: bigalign.kcc(x, y, kernel="rbf", method="exact", **k),
}


@pytest.mark.parametrize("name", list(IN_MEMORY))
def test_in_memory_roads_refuse_a_budget_they_exceed(name, xy):
    f = IN_MEMORY[name]
    ref = f(*xy, scheduler="sync")
    with pytest.raises(InvalidInputError, match="memory_per_worker") as ei:
        f(*xy, memory_per_worker=64 * 1024, scheduler="sync")  # n = 120: 0.8 MiB (rsa), 0.3 MiB (kernels)
    assert "MiB" in str(ei.value)
    assert f(*xy, memory_per_worker=2**30, scheduler="sync").value == ref.value  # fits: the same road, the same value


def test_hsic_test_in_memory_roads_record_unused_engine_options(xy):
    """hsic_test picks an in-memory road at small n (kernel matrices, or features held for the permutation null):
    engine options it does not use are recorded in parameters, never silently dropped, and never change the answer."""
    x, y = xy
    plain = bigalign.hsic_test(x, y, n_permutations=49, seed=3)
    assert "engine_not_used" not in plain.parameters
    for kernel in ("rbf", "linear"):
        r = bigalign.hsic_test(x, y, kernel=kernel, n_permutations=49, seed=3, block_size=7, scheduler="sync")
        note = r.parameters["engine_not_used"]
        assert "block_size" in note and "scheduler" in note and "into memory" in note
        ref = bigalign.hsic_test(x, y, kernel=kernel, n_permutations=49, seed=3)
        assert r.statistic == ref.statistic and r.pvalue == ref.pvalue
    streamed = bigalign.hsic_test(x, y, kernel="linear", null="gamma", block_size=7)
    assert "engine_not_used" not in streamed.parameters
