"""Errors and degenerate inputs: every bad input gets the documented exception type
with a message that names what is wrong; degenerate-but-valid inputs get the
documented value (never NaN)."""

from __future__ import annotations

import dataclasses
import json
import math
import re

import dask.array as da
import numpy as np
import pytest

import bigalign
import references as ref
from bigalign import DegenerateInputError, InvalidInputError, NonFiniteError, Result

ALL = {
    "cka": bigalign.cka,
    "hsic": bigalign.hsic,
    "kernel_alignment": bigalign.kernel_alignment,
    "distance_alignment": bigalign.distance_alignment,
}
WITH_ESTIMATOR = ("cka", "hsic")


@pytest.fixture
def xy(rng):
    return ref.correlated_pair(rng, 40, 3, 2)


# --------------------------------------------------------------------------- #
# shapes
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("name", list(ALL))
def test_mismatched_n_names_both_row_counts(name, rng):
    x, y = rng.normal(size=(40, 3)), rng.normal(size=(37, 2))
    with pytest.raises(InvalidInputError) as ei:
        ALL[name](x, y)
    msg = str(ei.value)
    assert re.search(r"\b40\b", msg) and re.search(r"\b37\b", msg), msg
    assert isinstance(ei.value, ValueError)  # generic handlers keep working
    # the other way round too
    with pytest.raises(InvalidInputError, match=r"(?s)37.*40|40.*37"):
        ALL[name](y, x)


@pytest.mark.parametrize("name", WITH_ESTIMATOR)
def test_mismatched_n_reported_even_when_x_is_small(name, rng):
    """x with 3 rows, y with 40: the problem is the mismatch.  Today the unbiased
    n ≥ 4 check runs first on x alone ("needs at least 4 samples; got 3. Use more
    samples or estimator='biased'"), so the message hides the mismatch and its advice
    leads to a second error; with x and y swapped the mismatch is reported."""
    x, y = rng.normal(size=(3, 2)), rng.normal(size=(40, 2))
    with pytest.raises(InvalidInputError) as ei:
        ALL[name](x, y)
    msg = str(ei.value)
    assert re.search(r"\b3\b", msg) and re.search(r"\b40\b", msg), msg


@pytest.mark.parametrize("name", list(ALL))
@pytest.mark.parametrize("bad", ["x", "y"])
def test_one_dimensional_input(name, bad, rng):
    x, y = rng.normal(size=(20, 3)), rng.normal(size=(20, 2))
    args = (x[:, 0], y) if bad == "x" else (x, y[:, 0])
    with pytest.raises(InvalidInputError) as ei:
        ALL[name](*args)
    msg = str(ei.value)
    assert msg.startswith(bad) and "1-D" in msg and "reshape(-1, 1)" in msg  # says which, what, and the fix


@pytest.mark.parametrize("shape", [(0, 3), (5, 0)])
def test_empty_input(shape, rng):
    with pytest.raises(InvalidInputError):
        bigalign.cka(np.zeros(shape), np.zeros(shape), estimator="biased")


def test_scalar_input():
    with pytest.raises(InvalidInputError):
        bigalign.hsic(np.float64(1.0), np.ones((4, 1)))


# --------------------------------------------------------------------------- #
# sample size and the unbiased estimator
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("name", WITH_ESTIMATOR)
@pytest.mark.parametrize("n", [1, 2, 3])
def test_unbiased_needs_four_samples(name, n, rng):
    x, y = rng.normal(size=(n, 3)), rng.normal(size=(n, 2))
    with pytest.raises(InvalidInputError, match=r"at least 4 samples") as ei:
        ALL[name](x, y)  # unbiased is the default
    assert f"got {n}" in str(ei.value)
    with pytest.raises(InvalidInputError, match=r"at least 4 samples"):
        ALL[name](x, y, estimator="unbiased")


@pytest.mark.parametrize("n", [2, 3])
def test_biased_defined_for_two_and_three_samples(n, rng):
    x, y = ref.correlated_pair(rng, n, 3, 2)
    h = bigalign.hsic(x, y, estimator="biased")
    assert h.value == pytest.approx(ref.hsic_biased(x, y), rel=1e-10)  # see test_reference.py policy
    c = bigalign.cka(x, y, estimator="biased")
    assert c.value == pytest.approx(ref.cka(x, y, "biased"), rel=1e-10)
    assert 0.0 <= c.value <= 1.0 + 4 * np.finfo(float).eps
    # KA and D have no estimator choice and are defined for any n ≥ 1
    assert bigalign.kernel_alignment(x, y).value == pytest.approx(ref.kernel_alignment(x, y), rel=1e-10)
    assert bigalign.distance_alignment(x, y).value == pytest.approx(ref.distance_alignment(x, y), rel=1e-10)


def test_unbiased_at_exactly_four_samples(rng):
    x, y = ref.correlated_pair(rng, 4, 2, 2)
    want = ref.hsic_unbiased(x, y)
    assert bigalign.hsic(x, y).value == pytest.approx(want, rel=1e-9, abs=1e-12)  # n(n−3) = 4: tiny-n rounding


def test_single_sample_is_constant_not_a_crash(rng):
    """n = 1: every column is constant.  hsic (biased) is exactly 0 (not 0/0 from the
    (n−1)² normaliser); cka raises the documented DegenerateInputError."""
    x, y = rng.normal(size=(1, 3)), rng.normal(size=(1, 2))
    h = bigalign.hsic(x, y, estimator="biased")
    assert h.value == 0.0 and "x_constant" in h.flags
    with pytest.raises(DegenerateInputError):
        bigalign.cka(x, y, estimator="biased")
    assert bigalign.distance_alignment(x, y).value == 0.0


# --------------------------------------------------------------------------- #
# non-finite values
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("which", ["x", "y"])
@pytest.mark.parametrize("name", list(ALL))
def test_non_finite_names_input_and_row(value, which, name, rng):
    x, y = rng.normal(size=(120, 3)), rng.normal(size=(120, 2))
    row = 77
    (x if which == "x" else y)[row, 1 if which == "x" else 0] = value
    with pytest.raises(NonFiniteError) as ei:
        ALL[name](x, y, block_size=25, scheduler="sync")
    msg = str(ei.value)
    assert msg.startswith(f"{which} "), msg  # names the input
    assert re.search(rf"\b{row}\b", msg), msg  # and the (global, not block-local) row
    assert isinstance(ei.value, InvalidInputError) and isinstance(ei.value, ValueError)


def test_non_finite_propagates_through_threaded_runner(rng):
    """The error raised inside a dask task reaches the caller with its type and message
    (the distributed runner is checked in test_engine.py, next to its cluster)."""
    x, y = rng.normal(size=(120, 3)), rng.normal(size=(120, 2))
    y[101, 1] = np.nan
    with pytest.raises(NonFiniteError, match=r"^y .*\b101\b"):
        bigalign.cka(da.from_array(x, chunks=(30, 3)), y, block_size=20, scheduler="threads", num_workers=2)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # numpy's min/max over NaN
@pytest.mark.parametrize("dtype", [np.float16, "bfloat16", np.float32])
@pytest.mark.parametrize("scheduler", ["sync", "threads"])
def test_non_finite_low_precision(dtype, scheduler, rng):
    import ml_dtypes

    dtype = ml_dtypes.bfloat16 if dtype == "bfloat16" else dtype
    x = rng.normal(size=(30, 3)).astype(dtype)
    x[17, 2] = np.nan
    with pytest.raises(NonFiniteError, match=r"^x .*\b17\b"):
        bigalign.cka(x, rng.normal(size=(30, 2)), scheduler=scheduler)


def test_float16_overflow_is_reported_as_non_finite():
    x = np.ones((10, 2), dtype=np.float16)
    x[:, 0] = np.arange(10)
    with np.errstate(over="ignore"):
        x[6, 1] = np.float16(70000.0)  # beyond float16 max 65504 → inf
    with pytest.raises(NonFiniteError, match=r"\b6\b"):
        bigalign.hsic(x, np.arange(10.0).reshape(10, 1))


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.parametrize("method", ["exact", "rff"])
def test_finite_values_whose_sum_overflows_are_not_a_crash(method, rng):
    """Every value is finite (≤ 1.5e308) but a block's sum overflows to inf.
    _checks.finite_float64 tests ``np.isfinite(x.sum())`` and then calls
    raise_nonfinite, which finds no non-finite row and fails on ``bad[0]`` with an
    IndexError.  Expected: a value, or a bigalign error (never an IndexError)."""
    x = np.full((20, 2), 1e307)
    x[:, 0] = np.linspace(1e307, 1.5e308, 20)
    assert np.isfinite(x).all()
    y = rng.normal(size=(20, 2))
    try:
        bigalign.hsic(x, y, kernel="rbf", method=method, bandwidth=1.0, scheduler="sync")
    except bigalign.BigalignError:
        pass


def test_several_bad_rows_counted(rng):
    x = rng.normal(size=(50, 2))
    x[[3, 9, 40], 0] = np.nan
    with pytest.raises(NonFiniteError) as ei:
        bigalign.cka(x, rng.normal(size=(50, 2)), scheduler="sync", block_size=50)
    msg = str(ei.value)
    assert "3 row(s)" in msg and re.search(r"\b3\b.*\b40\b", msg), msg


# --------------------------------------------------------------------------- #
# constant and zero representations
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("estimator", ["unbiased", "biased"])
@pytest.mark.parametrize("scheduler,block_size", [("sync", None), ("sync", 7), ("threads", 9)])
def test_constant_x(estimator, scheduler, block_size, rng):
    x = np.full((40, 3), 2.5) + np.array([0.0, 1e4, -3.0])  # constant rows, any values
    y = rng.normal(size=(40, 2))
    kw = {"estimator": estimator, "scheduler": scheduler, "block_size": block_size}
    with pytest.raises(DegenerateInputError) as ei:
        bigalign.cka(x, y, **kw)
    assert ei.value.reason == "x_constant"
    assert "constant" in str(ei.value)
    h = bigalign.hsic(x, y, **kw)
    assert h.value == 0.0 and not math.isnan(h.value)  # exactly 0, never NaN
    assert "x_constant" in h.flags and "y_constant" not in h.flags
    assert "negative_unbiased_estimate" not in h.flags


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.int8])
def test_constant_y_low_precision(dtype, rng):
    x = rng.normal(size=(30, 3))
    y = np.full((30, 4), 3, dtype=dtype)
    with pytest.raises(DegenerateInputError) as ei:
        bigalign.cka(x, y)
    assert ei.value.reason == "y_constant"
    h = bigalign.hsic(x, y)
    assert h.value == 0.0 and h.flags == ("y_constant",)


def test_both_constant(rng):
    x, y = np.ones((10, 2)), np.zeros((10, 3))
    with pytest.raises(DegenerateInputError) as ei:
        bigalign.cka(x, y)
    assert ei.value.reason == "x_constant" and "x and y" in str(ei.value)
    h = bigalign.hsic(x, y)
    assert h.value == 0.0 and set(h.flags) == {"x_constant", "y_constant"}


def test_constant_x_other_metrics(rng):
    """KA and D are defined for a constant (non-zero) x; they flag it."""
    x = np.full((30, 2), 4.0)
    y = rng.normal(size=(30, 3))
    ka = bigalign.kernel_alignment(x, y)
    assert ka.value == pytest.approx(ref.kernel_alignment(x, y), rel=1e-10)
    assert "x_constant" in ka.flags
    d = bigalign.distance_alignment(x, y)
    assert d.value == pytest.approx(ref.distance_alignment(x, y), rel=1e-10)
    assert "x_constant" in d.flags


def test_partially_constant_x_is_fine(rng):
    """Only *all* columns constant is degenerate; a constant column just drops out."""
    x = np.concatenate([rng.normal(size=(30, 2)), np.full((30, 1), 7.0)], axis=1)
    y = x[:, :2] @ rng.normal(size=(2, 2)) + rng.normal(size=(30, 2))
    r = bigalign.cka(x, y)
    assert r.flags == () or r.flags == ("negative_unbiased_estimate",)
    assert r.value == pytest.approx(ref.cka(x, y), rel=1e-10)
    assert r.value == pytest.approx(bigalign.cka(x[:, :2], y).value, rel=1e-12)  # the constant column adds nothing


@pytest.mark.parametrize("which", ["x", "y"])
def test_kernel_alignment_of_zero_input(which, rng):
    x, y = rng.normal(size=(10, 2)), rng.normal(size=(10, 2))
    if which == "x":
        x = np.zeros_like(x)
    else:
        y = np.zeros_like(y)
    with pytest.raises(DegenerateInputError) as ei:
        bigalign.kernel_alignment(x, y)
    assert ei.value.reason == f"{which}_zero"


def test_unbiased_cka_nonpositive_self_hsic_is_degenerate():
    """A non-constant x whose unbiased self-HSIC is exactly 0: only one row differs.

    x = (0, 0, 0, 1)ᵀ: K̃ = 0, so HSIC_u(x, x) = 0 and the unbiased CKA is 0/0.
    """
    x = np.array([[0.0], [0.0], [0.0], [1.0]])
    assert ref.hsic_unbiased(x, x) == 0.0
    y = np.array([[1.0], [2.0], [0.0], [5.0]])
    with pytest.raises(DegenerateInputError) as ei:
        bigalign.cka(x, y)
    assert ei.value.reason == "nonpositive_self_hsic"
    # the biased CKA is defined there
    assert bigalign.cka(x, y, estimator="biased").value == pytest.approx(ref.cka(x, y, "biased"), rel=1e-12)


# --------------------------------------------------------------------------- #
# dtypes and options
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    "bad",
    [
        np.array([["a", "b"], ["c", "d"], ["e", "f"], ["g", "h"]]),
        np.ones((4, 2), dtype=np.complex128),
        np.ones((4, 2), dtype=object),
        np.array([[b"a"], [b"b"], [b"c"], [b"d"]]),
    ],
    ids=["str", "complex", "object", "bytes"],
)
@pytest.mark.parametrize("name", list(ALL))
def test_non_real_dtypes_rejected(bad, name, rng):
    good = rng.normal(size=(4, 2))
    with pytest.raises(InvalidInputError, match=r"real numbers") as ei:
        ALL[name](bad, good)
    assert str(ei.value).startswith("x ") and str(bad.dtype) in str(ei.value)
    with pytest.raises(InvalidInputError, match=r"^y "):
        ALL[name](good, bad)


@pytest.mark.parametrize("name", WITH_ESTIMATOR)
@pytest.mark.parametrize("estimator", ["Unbiased", "debiased", "", None, 1, "biased "])
def test_bad_estimator(name, estimator, xy):
    with pytest.raises(InvalidInputError, match=r"estimator") as ei:
        ALL[name](*xy, estimator=estimator)
    assert "unbiased" in str(ei.value) and "biased" in str(ei.value)  # lists the choices


@pytest.mark.parametrize("name", list(ALL))
@pytest.mark.parametrize("scheduler", ["processes", "Sync", "thread", 3, object()])
def test_bad_scheduler(name, scheduler, xy):
    with pytest.raises(InvalidInputError, match=r"scheduler"):
        ALL[name](*xy, scheduler=scheduler)


def test_distributed_without_client(xy):
    distributed = pytest.importorskip("distributed")
    try:
        distributed.default_client()
        pytest.skip("another test left a default distributed client active")
    except ValueError:
        pass
    with pytest.raises(InvalidInputError, match=r"Client"):
        bigalign.cka(*xy, scheduler="distributed")


@pytest.mark.parametrize("block_size", [0, -5, 2.5, "10"])
def test_bad_block_size(block_size, xy):
    with pytest.raises(InvalidInputError, match=r"block_size"):
        bigalign.cka(*xy, block_size=block_size)


def test_bad_kernel(xy):
    with pytest.raises(InvalidInputError, match=r"kernel"):
        bigalign.cka(*xy, kernel="rbf-typo")


def test_unsupported_input_type():
    with pytest.raises(InvalidInputError, match=r"numpy array"):
        bigalign.cka({"a": 1}, np.ones((4, 1)))


# --------------------------------------------------------------------------- #
# Result
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("name", list(ALL))
def test_result_is_frozen_and_serialisable(name, xy):
    r = ALL[name](*xy)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.value = 0.5
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.flags = ("x",)
    with pytest.raises(TypeError):
        r.terms["hsic_xy"] = 1.0  # read-only mapping
    with pytest.raises(TypeError):
        r.parameters["block_size"] = 1
    d = r.to_dict()
    back = json.loads(json.dumps(d))
    assert back == d
    assert back["metric"] == name and back["value"] == r.value and back["n_samples"] == 40
    assert set(back) >= {"metric", "value", "estimator", "method", "n_samples", "terms", "parameters", "flags"}
    assert back["parameters"]["scheduler"] in ("sync", "threads", "distributed")
    assert float(r) == r.value
    assert name in repr(r)


def test_result_to_dict_with_numpy_parameters():
    r = Result(
        metric="cka", value=0.5, estimator="biased", method="m", n_samples=3,
        terms={"hsic_xy": np.float64(1.0)}, parameters={"k": np.int64(3), "arr": (np.float32(1.5),)},
        flags=["x_constant"],
    )
    assert r.flags == ("x_constant",)
    assert json.loads(json.dumps(r.to_dict()))["parameters"] == {"k": 3, "arr": [1.5]}


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_result_refuses_non_finite_value(bad):
    with pytest.raises(AssertionError):
        Result(metric="cka", value=bad, estimator="biased", method="m", n_samples=3)


def test_cka_properties_mirror_terms(xy):
    r = bigalign.cka(*xy)
    assert (r.hsic_xy, r.hsic_xx, r.hsic_yy) == (r.terms["hsic_xy"], r.terms["hsic_xx"], r.terms["hsic_yy"])
    ka = bigalign.kernel_alignment(*xy)
    assert ka.hsic_xy is None  # not an HSIC-based metric
