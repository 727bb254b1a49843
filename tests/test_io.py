"""Activation stores: reading (bigalign.open_activations), writing (ActivationWriter) and pairing.

Crash safety of the writer is tested separately in tests/test_writer_crash.py.
"""

from __future__ import annotations

import os
import warnings

import dask.array as da
import ml_dtypes
import numpy as np
import pytest
import zarr

import bigalign
from bigalign import InvalidInputError, PairingError, PairingWarning, StoreError

BF16 = np.dtype(ml_dtypes.bfloat16)
DTYPES = [np.dtype(np.float16), BF16, np.dtype(np.float32), np.dtype(np.float64)]
DTYPE_IDS = ["float16", "bfloat16", "float32", "float64"]


# --------------------------------------------------------------------------- #
# helpers
# --------------------------------------------------------------------------- #


def bits(a: np.ndarray) -> np.ndarray:
    """Raw bit patterns, so that comparisons are exact (NaN payloads, -0.0 included)."""
    a = np.asarray(a)
    return a.view(f"u{a.dtype.itemsize}")


def assert_bit_equal(got, want) -> None:
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    assert got.shape == want.shape, (got.shape, want.shape)
    np.testing.assert_array_equal(bits(got), bits(want))


def write_store(path, batches, ids=None, **kw):
    """Write ``batches`` (list of {layer: array}) with optional per-batch ids; return the path."""
    with bigalign.ActivationWriter(path, mode=kw.pop("mode", "w"), **kw) as w:
        for i, b in enumerate(batches):
            w.append(b, sample_ids=None if ids is None else ids[i])
    return path


def split(arr: np.ndarray, sizes) -> list[np.ndarray]:
    assert sum(sizes) == arr.shape[0]
    return np.split(arr, np.cumsum(sizes)[:-1])


def plain_group(path, arrays: dict, zarr_format: int = 3, chunk_rows: int | None = None):
    """A Zarr group written with zarr alone (no bigalign metadata)."""
    g = zarr.open_group(str(path), mode="w", zarr_format=zarr_format)
    for name, data in arrays.items():
        data = np.asarray(data)
        chunks = None if chunk_rows is None or data.ndim < 2 else (chunk_rows,) + data.shape[1:]
        kw = {} if chunks is None else {"chunks": chunks}
        dtype = str if data.dtype.kind == "U" else data.dtype  # variable-length strings
        g.create_array(name, shape=data.shape, dtype=dtype, **kw)[...] = data
    return path


def pairing_warnings(record) -> list:
    return [w for w in record if issubclass(w.category, PairingWarning)]


def _special_values(dtype: np.dtype) -> np.ndarray:
    """inf, -inf, -0.0, the smallest subnormal, the largest finite, a NaN with a payload."""
    fi = ml_dtypes.finfo(dtype) if dtype == BF16 else np.finfo(dtype)
    vals = np.array([np.inf, -np.inf, -0.0, 0.0], dtype=np.float64).astype(dtype)
    extra = np.array([fi.smallest_subnormal, fi.max, -fi.max, fi.tiny], dtype=dtype)
    nan = np.array([np.nan], dtype=dtype)
    nan_bits = bits(nan).copy()
    nan_bits |= 1  # set a payload bit: must survive the round trip unchanged
    return np.concatenate([vals, extra, nan_bits.view(dtype)])


# --------------------------------------------------------------------------- #
# opening stores
# --------------------------------------------------------------------------- #


def test_open_missing_path_raises_store_error(tmp_path):
    missing = tmp_path / "nope.zarr"
    for p in (missing, str(missing)):
        with pytest.raises(StoreError, match="no Zarr group found") as exc:
            bigalign.open_activations(p)
        assert "nope.zarr" in str(exc.value)
    assert not missing.exists(), "opening for reading must not create anything"
    assert issubclass(StoreError, bigalign.BigalignError)


@pytest.mark.parametrize("zarr_format", [2, 3])
@pytest.mark.parametrize("content", ["empty", "only_1d"])
def test_group_without_2d_arrays_raises_store_error(tmp_path, zarr_format, content):
    arrays = {} if content == "empty" else {"sample_ids": np.arange(5), "bias": np.ones(5)}
    path = plain_group(tmp_path / "g.zarr", arrays, zarr_format)
    with pytest.raises(StoreError, match="at least 2 dimensions"):
        bigalign.open_activations(path)


def test_open_bigalign_store_with_no_committed_batch_raises_store_error(tmp_path):
    """SPEC DEVIATION: a store whose writer never appended is a group with no >=2-D arrays;
    the requirement says opening such a group raises StoreError, but it opens as an empty
    store with ``layers == []`` (and then every ``store[layer]`` is a KeyError)."""
    path = tmp_path / "empty.zarr"
    bigalign.ActivationWriter(path).close()
    with pytest.raises(StoreError):
        bigalign.open_activations(path)


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_plain_group_layers_natural_order_flattened_with_ids(tmp_path, zarr_format):
    n = 9
    rng = np.random.default_rng(1)
    data = {
        "layer10": rng.normal(size=(n, 4, 3)).astype(np.float32),
        "layer2": rng.normal(size=(n, 5)),
        "layer1": rng.normal(size=(n, 2, 2, 2)).astype(np.float16),
        "bias": np.ones(n),  # 1-D: not a layer
        "sample_ids": np.array([f"img{i}" for i in range(n)]),
    }
    path = plain_group(tmp_path / "g.zarr", data, zarr_format)
    store = bigalign.open_activations(path)
    assert store.layers == ["layer1", "layer2", "layer10"]
    assert list(store) == store.layers and len(store) == 3
    assert "layer2" in store and "bias" not in store and "sample_ids" not in store
    assert store.n_samples == n
    np.testing.assert_array_equal(store.sample_ids, data["sample_ids"])
    layer = store["layer10"]
    assert layer.shape == (n, 12) and layer.ndim == 2 and layer.n_features == 12
    assert layer.feature_shape == (4, 3)
    assert layer.dtype == np.float32
    assert_bit_equal(np.asarray(layer), data["layer10"].reshape(n, 12))
    assert store["layer1"].shape == (n, 8)
    assert_bit_equal(np.asarray(store["layer1"]), data["layer1"].reshape(n, 8))
    assert_bit_equal(np.asarray(store["layer2"]), data["layer2"])
    assert store.attrs == {}


def test_natural_sort_of_many_layer_names(tmp_path):
    names = ["blocks.10.mlp", "blocks.2.mlp", "blocks.1.attn", "blocks.1.mlp", "embed", "blocks.0.attn"]
    path = plain_group(tmp_path / "g.zarr", {nm: np.zeros((3, 2)) for nm in names})
    assert bigalign.open_activations(path).layers == [
        "blocks.0.attn",
        "blocks.1.attn",
        "blocks.1.mlp",
        "blocks.2.mlp",
        "blocks.10.mlp",
        "embed",
    ]


def test_plain_group_without_ids_has_none(tmp_path):
    path = plain_group(tmp_path / "g.zarr", {"x": np.zeros((4, 2))})
    store = bigalign.open_activations(path)
    assert store.sample_ids is None
    assert store["x"].sample_ids is None


def test_plain_group_layers_with_different_sample_counts_raise(tmp_path):
    path = plain_group(tmp_path / "g.zarr", {"x": np.zeros((4, 2)), "y": np.zeros((5, 2))})
    with pytest.raises(StoreError, match="different numbers of samples"):
        bigalign.open_activations(path)


def test_short_sample_ids_raise_store_error(tmp_path):
    path = plain_group(tmp_path / "g.zarr", {"x": np.zeros((4, 2)), "sample_ids": np.arange(3)})
    store = bigalign.open_activations(path)
    with pytest.raises(StoreError, match="sample_ids"):
        store.sample_ids


def test_unknown_layer_is_a_key_error_naming_the_layers(tmp_path):
    path = plain_group(tmp_path / "g.zarr", {"x": np.zeros((4, 2))})
    with pytest.raises(KeyError, match="'x'"):
        bigalign.open_activations(path)["nope"]


def test_open_accepts_a_zarr_group_object(tmp_path):
    path = plain_group(tmp_path / "g.zarr", {"x": np.arange(8.0).reshape(4, 2)})
    store = bigalign.open_activations(zarr.open_group(str(path), mode="r"))
    assert store.layers == ["x"]
    np.testing.assert_array_equal(np.asarray(store["x"]), np.arange(8.0).reshape(4, 2))


# --------------------------------------------------------------------------- #
# Layer access: lazy, chunked along samples
# --------------------------------------------------------------------------- #


@pytest.fixture
def chunked_layer(tmp_path):
    n = 23
    data = np.arange(n * 12, dtype=np.float64).reshape(n, 4, 3)
    path = plain_group(tmp_path / "g.zarr", {"act": data}, chunk_rows=7)
    return bigalign.open_activations(path)["act"], data.reshape(n, 12), path


def test_layer_to_dask_is_chunked_along_samples(chunked_layer):
    layer, flat, _ = chunked_layer
    arr = layer.to_dask()
    assert isinstance(arr, da.Array)
    assert arr.shape == (23, 12) and arr.dtype == np.float64
    assert arr.chunks == ((7, 7, 7, 2), (12,))
    np.testing.assert_array_equal(arr.compute(), flat)
    arr10 = layer.to_dask(10)
    assert arr10.chunks == ((10, 10, 3), (12,))
    np.testing.assert_array_equal(arr10.compute(), flat)


def test_layer_to_dask_is_lazy(chunked_layer):
    layer, flat, path = chunked_layer
    arr = layer.to_dask()
    # change the data on disk after building the graph: the result must reflect it
    zarr.open_group(str(path), mode="r+")["act"][5] = -1.0
    got = arr.compute()
    assert np.all(got[5] == -1.0)
    np.testing.assert_array_equal(np.delete(got, 5, axis=0), np.delete(flat, 5, axis=0))


@pytest.mark.parametrize("start,stop", [(0, 5), (5, 20), (6, 8), (14, 23), (20, 100), (0, 23), (7, 7)])
def test_layer_read_row_ranges(chunked_layer, start, stop):
    layer, flat, _ = chunked_layer
    got = layer.read(start, stop)
    assert got.ndim == 2
    np.testing.assert_array_equal(got, flat[start:stop])


def test_layer_asarray_and_indexing(chunked_layer):
    layer, flat, _ = chunked_layer
    np.testing.assert_array_equal(np.asarray(layer), flat)
    as32 = np.asarray(layer, dtype=np.float32)
    assert as32.dtype == np.float32
    np.testing.assert_array_equal(as32, flat.astype(np.float32))
    np.testing.assert_array_equal(layer[3:9], flat[3:9])
    np.testing.assert_array_equal(layer[[0, 22]], flat[[0, 22]])


# --------------------------------------------------------------------------- #
# writing: dtypes and round trips
# --------------------------------------------------------------------------- #

SIZES = [5, 11, 1, 16, 3, 9]  # 45 rows; chunk_rows=7 so batches straddle chunks


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_writer_round_trips_every_dtype_bit_exactly(tmp_path, dtype):
    n = sum(SIZES)
    rng = np.random.default_rng(2)
    emb = rng.normal(size=(n, 6)).astype(dtype)
    specials = _special_values(dtype)  # 9 values
    emb[0] = specials[:6]
    emb[1, :3] = specials[6:]
    attn = (rng.normal(size=(n, 2, 3, 4)) * 1e3).astype(dtype)
    ids = np.arange(n) * 10 + 7
    path = write_store(
        tmp_path / "s.zarr",
        [{"emb": e, "attn": a} for e, a in zip(split(emb, SIZES), split(attn, SIZES))],
        ids=split(ids, SIZES),
        chunk_rows=7,
    )
    store = bigalign.open_activations(path)
    assert store.layers == ["emb", "attn"], "recorded order, not sorted"
    assert store.n_samples == n
    np.testing.assert_array_equal(store.sample_ids, ids)
    for name, want in (("emb", emb), ("attn", attn.reshape(n, 24))):
        layer = store[name]
        assert layer.dtype == dtype and layer.shape == want.shape
        assert layer.stored_chunk_rows == 7
        assert_bit_equal(np.asarray(layer), want)
        d = layer.to_dask()
        assert d.dtype == dtype and d.chunks[0] == (7,) * 6 + (3,)
        assert_bit_equal(d.compute(), want)
        assert_bit_equal(layer.read(4, 30), want[4:30])
    raw = zarr.open_group(str(path), mode="r")
    if dtype == BF16:
        # stored as a uint16 view, with the logical dtype recorded in the metadata
        assert raw["emb"].dtype == np.uint16 and raw["attn"].dtype == np.uint16
        assert raw.attrs["bigalign"]["dtypes"] == {"emb": "bfloat16", "attn": "bfloat16"}
        assert_bit_equal(raw["emb"][...], bits(emb))
    else:
        assert raw["emb"].dtype == dtype
    assert raw.metadata.zarr_format == 3


def test_writer_compressors_and_default_chunking(tmp_path):
    x = np.random.default_rng(3).normal(size=(40, 8)).astype(np.float32)
    path = write_store(tmp_path / "raw.zarr", [{"x": x[:13]}, {"x": x[13:]}], compressors=None)
    raw = zarr.open_group(str(path), mode="r")["x"]
    assert raw.compressors == ()
    assert raw.chunks[1:] == (8,) and raw.chunks[0] >= 40, "default: ~32 MiB chunks, all rows fit in one"
    np.testing.assert_array_equal(np.asarray(bigalign.open_activations(path)["x"]), x)
    path2 = write_store(tmp_path / "zstd.zarr", [{"x": x}], chunk_rows=16)
    raw2 = zarr.open_group(str(path2), mode="r")["x"]
    assert raw2.chunks == (16, 8) and len(raw2.compressors) >= 1
    np.testing.assert_array_equal(np.asarray(bigalign.open_activations(path2)["x"]), x)


def test_writer_attrs_and_return_values(tmp_path):
    path = tmp_path / "s.zarr"
    with bigalign.ActivationWriter(path, attrs={"model": "gpt2", "revision": 3}) as w:
        assert w.n_samples == 0 and w.layers == []
        assert w.append({"x": np.ones((3, 2))}, sample_ids=["a", "b", "c"]) == 3
        assert w.append({"x": np.ones((0, 2))}, sample_ids=np.array([], dtype=str)) == 3
        assert w.append({"x": np.ones((2, 2))}, sample_ids=["d", "e"]) == 5
        assert w.layers == ["x"] and w.n_samples == 5
    store = bigalign.open_activations(path)
    assert store.attrs == {"model": "gpt2", "revision": 3}
    assert store.n_samples == 5
    assert store.sample_ids.tolist() == ["a", "b", "c", "d", "e"]


def test_append_after_close_raises_store_error(tmp_path):
    with bigalign.ActivationWriter(tmp_path / "s.zarr") as w:
        w.append({"x": np.ones((2, 2))})
    with pytest.raises(StoreError, match="closed"):
        w.append({"x": np.ones((2, 2))})
    assert bigalign.open_activations(tmp_path / "s.zarr").n_samples == 2


def test_batches_may_be_dask_or_lists_and_are_cast_to_the_first_dtype(tmp_path):
    x = np.arange(12.0).reshape(6, 2)
    path = tmp_path / "s.zarr"
    with bigalign.ActivationWriter(path) as w:
        w.append({"x": x[:2].astype(np.float32)})
        w.append({"x": da.from_array(x[2:4], chunks=1)})
        w.append({"x": x[4:].tolist()})
    layer = bigalign.open_activations(path)["x"]
    assert layer.dtype == np.float32
    np.testing.assert_array_equal(np.asarray(layer), x.astype(np.float32))


# --------------------------------------------------------------------------- #
# writing: resume and modes
# --------------------------------------------------------------------------- #


def test_mode_a_resumes_an_existing_store(tmp_path):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(30, 3, 2)).astype(np.float32)
    y = rng.normal(size=(30, 5)).astype(BF16)
    sizes = [7, 4, 12, 7]
    xs, ys, ids = split(x, sizes), split(y, sizes), split(np.arange(100, 130), sizes)
    path = tmp_path / "s.zarr"
    with bigalign.ActivationWriter(path, chunk_rows=5) as w:
        for i in range(2):
            w.append({"x": xs[i], "y": ys[i]}, sample_ids=ids[i])
    assert bigalign.open_activations(path).n_samples == 11
    with bigalign.ActivationWriter(path, mode="a") as w:
        assert w.n_samples == 11 and w.layers == ["x", "y"]
        with pytest.raises(InvalidInputError, match="already in the store"):
            w.append({"x": xs[1], "y": ys[1]}, sample_ids=ids[1])  # written in the earlier session
        for i in range(2, 4):
            w.append({"x": xs[i], "y": ys[i]}, sample_ids=ids[i])
    store = bigalign.open_activations(path)
    assert store.n_samples == 30
    assert store["x"].stored_chunk_rows == 5, "a resumed store keeps its chunking"
    assert_bit_equal(np.asarray(store["x"]), x.reshape(30, 6))
    assert_bit_equal(np.asarray(store["y"]), y)
    np.testing.assert_array_equal(store.sample_ids, np.arange(100, 130))


def test_mode_a_creates_a_missing_store(tmp_path):
    path = tmp_path / "new.zarr"
    with bigalign.ActivationWriter(path, mode="a") as w:
        w.append({"x": np.ones((3, 2))}, sample_ids=[1, 2, 3])
    store = bigalign.open_activations(path)
    assert store.n_samples == 3 and store.layers == ["x"]


def test_mode_w_replaces_an_existing_store(tmp_path):
    path = write_store(tmp_path / "s.zarr", [{"old": np.ones((5, 2))}], ids=[np.arange(5)])
    write_store(path, [{"new": np.zeros((2, 3))}])
    store = bigalign.open_activations(path)
    assert store.layers == ["new"] and store.n_samples == 2 and store.sample_ids is None


def test_mode_a_refuses_a_zarr_group_not_written_by_bigalign(tmp_path):
    path = plain_group(tmp_path / "g.zarr", {"x": np.ones((4, 2))})
    with pytest.raises(StoreError, match="not written by bigalign"):
        bigalign.ActivationWriter(path, mode="a")
    np.testing.assert_array_equal(np.asarray(bigalign.open_activations(path)["x"]), np.ones((4, 2)))


@pytest.mark.parametrize("what", ["directory_with_files", "zarr_array"])
def test_mode_a_on_something_that_is_not_a_store_raises_and_destroys_nothing(tmp_path, what):
    """BUG (directory case: data loss): ``ActivationWriter(path, mode="a")`` on an existing
    directory that is not a Zarr group falls back to ``zarr.open_group(path, mode="w")``,
    which deletes everything in the directory.  On a Zarr array it raises zarr's
    ContainsArrayError instead of a StoreError."""
    path = tmp_path / "thing"
    if what == "directory_with_files":
        path.mkdir()
        (path / "results.csv").write_text("precious")
    else:
        zarr.create_array(str(path), shape=(4, 3), dtype="f4")[...] = 1.0
    before = sorted(os.listdir(path))
    with pytest.raises(StoreError):
        bigalign.ActivationWriter(path, mode="a")
    assert sorted(os.listdir(path)) == before
    if what == "directory_with_files":
        assert (path / "results.csv").read_text() == "precious"


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"mode": "r"}, "mode must be"),
        ({"mode": "r+"}, "mode must be"),
        ({"chunk_rows": 0}, "chunk_rows"),
        ({"chunk_rows": -3}, "chunk_rows"),
        ({"chunk_rows": 2.5}, "chunk_rows"),
        ({"chunk_rows": "10"}, "chunk_rows"),
    ],
)
def test_writer_rejects_bad_options(tmp_path, kwargs, match):
    path = tmp_path / "s.zarr"
    with pytest.raises(InvalidInputError, match=match):
        bigalign.ActivationWriter(path, **kwargs)
    assert not path.exists()


# --------------------------------------------------------------------------- #
# writing: consistency errors
# --------------------------------------------------------------------------- #


def _ok(m, start=100):
    """A valid batch of m rows for the store created by ``started_writer``."""
    return {"a": np.full((m, 3), float(start)), "b": np.full((m, 2, 2), float(start), dtype=np.float32)}, np.arange(
        start, start + m
    )


@pytest.fixture
def started_writer(tmp_path):
    path = tmp_path / "s.zarr"
    w = bigalign.ActivationWriter(path, chunk_rows=3)
    batch, ids = _ok(4, start=0)
    w.append(batch, sample_ids=ids)
    yield w, path
    w.close()


A3 = np.zeros((2, 3))
B22 = np.zeros((2, 2, 2), dtype=np.float32)


@pytest.mark.parametrize(
    "batch,ids,match",
    [
        ({"a": A3}, [10, 11], r"exactly the store's layers \['a', 'b'\]"),
        ({"a": A3, "b": B22, "c": A3}, [10, 11], "exactly the store's layers"),
        ({"a": np.zeros((2, 4)), "b": B22}, [10, 11], r"layer 'a'.*features per sample must stay \(3,\)"),
        ({"a": A3, "b": np.zeros((2, 4), dtype=np.float32)}, [10, 11], r"layer 'b'.*features per sample"),
        ({"a": A3, "b": np.zeros((2, 2, 2, 1), dtype=np.float32)}, [10, 11], "features per sample"),
        ({"a": A3, "b": B22}, None, "either every batch has sample_ids or none"),
        ({"a": A3, "b": B22}, [10, 10], "unique"),
        ({"a": A3, "b": B22}, [3, 11], r"sample_ids \[3\] are already in the store"),
        ({"a": np.zeros((3, 3)), "b": B22}, [10, 11, 12], "same number of rows"),
        ({"a": A3, "b": B22}, [10, 11, 12], "one id per row"),
        ({"a": A3, "b": B22}, [[10], [11]], "1-D"),
        ({"a": A3, "b": B22}, [1.5, 2.5], "integers or strings"),
        ({"a": np.zeros(2), "b": B22}, [10, 11], "layer 'a'.*shape"),
        ({"a": np.array([["x"] * 3] * 2), "b": B22}, [10, 11], "real numbers"),
        ({"a": A3.astype(complex), "b": B22}, [10, 11], "real numbers"),
        ({}, [10, 11], "non-empty mapping"),
        ([("a", A3), ("b", B22)], [10, 11], "mapping"),
    ],
    ids=[
        "missing_layer",
        "extra_layer",
        "changed_features",
        "flattened_features",
        "extra_axis",
        "ids_missing",
        "duplicate_ids_in_batch",
        "duplicate_ids_across_batches",
        "rows_differ_across_layers",
        "ids_wrong_length",
        "ids_2d",
        "float_ids",
        "1d_layer",
        "string_data",
        "complex_data",
        "empty_batch",
        "not_a_mapping",
    ],
)
def test_inconsistent_append_raises_and_leaves_store_usable(started_writer, batch, ids, match):
    w, path = started_writer
    with pytest.raises(InvalidInputError, match=match):
        w.append(batch, sample_ids=ids)
    # the rejected batch left no trace: the store and the writer carry on
    assert bigalign.open_activations(path).n_samples == 4
    good, good_ids = _ok(2, start=50)
    assert w.append(good, sample_ids=good_ids) == 6
    store = bigalign.open_activations(path)
    np.testing.assert_array_equal(store.sample_ids, [0, 1, 2, 3, 50, 51])
    np.testing.assert_array_equal(np.asarray(store["a"])[:, 0], [0, 0, 0, 0, 50, 50])
    np.testing.assert_array_equal(np.asarray(store["b"]), np.repeat([0, 0, 0, 0, 50, 50], 4).reshape(6, 4))


def test_rejected_first_batch_leaves_no_trace(tmp_path):
    """BUG: a first batch rejected for duplicate sample ids still fixes the store's layout.

    ``append`` creates the layer arrays (``_create``, which commits the layer list and
    ``has_ids``) *before* ``_check_unique`` rejects the ids, so the store keeps the rejected
    batch's layer names, feature shapes and ids-ness: a corrected first batch with another
    layout is refused ("a batch must contain exactly the store's layers ['x']").
    """
    path = tmp_path / "s.zarr"
    with bigalign.ActivationWriter(path) as w:
        with pytest.raises(InvalidInputError, match="unique"):
            w.append({"x": np.ones((3, 2))}, sample_ids=[1, 1, 2])
        assert w.layers == [] and w.n_samples == 0
        w.append({"y": np.ones((3, 5))})
    store = bigalign.open_activations(path)
    assert store.layers == ["y"] and store.n_samples == 3 and store.sample_ids is None


def test_ids_in_later_batches_of_a_store_without_ids_raise(tmp_path):
    path = tmp_path / "s.zarr"
    with bigalign.ActivationWriter(path) as w:
        w.append({"x": np.ones((3, 2))})
        with pytest.raises(InvalidInputError, match="has no ids, so omit sample_ids"):
            w.append({"x": np.ones((2, 2))}, sample_ids=[7, 8])
        w.append({"x": np.ones((2, 2))})
    store = bigalign.open_activations(path)
    assert store.n_samples == 5 and store.sample_ids is None


def test_duplicate_ids_across_batches_in_the_same_session_and_strings(tmp_path):
    with bigalign.ActivationWriter(tmp_path / "s.zarr") as w:
        w.append({"x": np.ones((2, 2))}, sample_ids=["cat.jpg", "dog.jpg"])
        w.append({"x": np.ones((1, 2))}, sample_ids=["cow.jpg"])
        with pytest.raises(InvalidInputError, match=r"\['dog.jpg'\] are already in the store"):
            w.append({"x": np.ones((2, 2))}, sample_ids=["eel.jpg", "dog.jpg"])
    assert bigalign.open_activations(tmp_path / "s.zarr").sample_ids.tolist() == ["cat.jpg", "dog.jpg", "cow.jpg"]


@pytest.mark.parametrize("name", ["", "a/b", "/a", "sample_ids", ".hidden", "..", 3, None])
def test_bad_layer_names_raise(tmp_path, name):
    path = tmp_path / "s.zarr"
    with bigalign.ActivationWriter(path) as w:
        with pytest.raises(InvalidInputError, match="layer names must be"):
            w.append({name: np.ones((2, 2))})
        w.append({"ok": np.ones((2, 2))})
    assert bigalign.open_activations(path).layers == ["ok"]


@pytest.mark.parametrize("name", ["zarr.json", "a\\b"])
def test_layer_names_that_clash_with_zarr_paths_raise_invalid_input(tmp_path, name):
    """BUG: names that are not valid as a Zarr node name on disk pass the name check.

    * ``"zarr.json"``: the writer tries to create the array directory ``<store>/zarr.json/``
      where the group's metadata file is, and fails with a bare FileExistsError.
    * ``"a\\b"``: zarr normalises backslashes to ``/``, so the array is written at ``a/b``
      (a nested group), the append succeeds, and every later ``open_activations`` fails with
      "lists layers ['a\\\\b'] in its metadata but has no such arrays; the store is damaged".
    """
    path = tmp_path / "s.zarr"
    with bigalign.ActivationWriter(path) as w:
        with pytest.raises(InvalidInputError, match="layer names must be"):
            w.append({name: np.ones((2, 2))})
        w.append({"ok": np.ones((2, 2))})
    assert bigalign.open_activations(path).layers == ["ok"]


# --------------------------------------------------------------------------- #
# store layers as metric inputs
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_metrics_on_store_layers_equal_metrics_on_arrays(tmp_path, dtype):
    n = 64
    rng = np.random.default_rng(5)
    x = rng.normal(size=(n, 5)).astype(dtype)
    y = (x.astype(np.float64) @ rng.normal(size=(5, 6)) + rng.normal(size=(n, 6))).reshape(n, 2, 3).astype(dtype)
    sizes = [10, 23, 31]
    path = write_store(
        tmp_path / "s.zarr",
        [{"x": a, "y": b} for a, b in zip(split(x, sizes), split(y, sizes))],
        ids=split(np.arange(n), sizes),
        chunk_rows=8,
    )
    store = bigalign.open_activations(path)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        cases = [
            (bigalign.cka, {}),
            (bigalign.cka, {"estimator": "biased"}),
            (bigalign.hsic, {}),
            (bigalign.kernel_alignment, {}),
        ]
        for fn, kw in cases:
            got = fn(store["x"], store["y"], **kw).value
            want = fn(x, y, **kw).value
            assert np.isfinite(want)
            assert got == pytest.approx(want, rel=1e-12, abs=0), (fn.__name__, kw)
        # a store layer against itself
        assert bigalign.cka(store["x"], store["x"]).value == pytest.approx(1.0, rel=1e-12)
    assert pairing_warnings(record) == [], "two layers of the same store need no pairing check"


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_metrics_on_plain_group_layers(tmp_path, zarr_format):
    n = 40
    rng = np.random.default_rng(6)
    x = rng.normal(size=(n, 4, 3)).astype(np.float32)
    y = rng.normal(size=(n, 7))
    path = plain_group(tmp_path / "g.zarr", {"x": x, "y": y}, zarr_format, chunk_rows=9)
    store = bigalign.open_activations(path)
    got = bigalign.cka(store["x"], store["y"]).value
    assert got == pytest.approx(bigalign.cka(x.reshape(n, 12), y).value, rel=1e-12, abs=0)


# --------------------------------------------------------------------------- #
# pairing between stores
# --------------------------------------------------------------------------- #

N_PAIR = 24


@pytest.fixture(scope="module")
def pair_stores(tmp_path_factory):
    """Stores over the same/different/permuted samples; each has layers 'l' (n,4) and 'm' (n,3)."""
    root = tmp_path_factory.mktemp("pairing")
    rng = np.random.default_rng(7)
    base = rng.normal(size=(N_PAIR, 4))
    other = base @ rng.normal(size=(4, 4)) + 0.1 * rng.normal(size=(N_PAIR, 4))
    ids = np.arange(N_PAIR) * 3
    perm = ids.copy()
    perm[[5, 9]] = perm[[9, 5]]
    changed = ids.copy()
    changed[17] = 10_000

    def make(name, data, ids_, n=N_PAIR, sizes=(10, N_PAIR - 10)):
        data = data[:n]
        sizes = [sizes[0], n - sizes[0]]
        path = write_store(
            root / name,
            [{"l": part, "m": part[:, :3]} for part in split(data, sizes)],
            ids=None if ids_ is None else split(np.asarray(ids_)[:n], sizes),
            chunk_rows=7,
        )
        return bigalign.open_activations(path)

    stores = {
        "a": make("a.zarr", base, ids),
        "same": make("same.zarr", other, ids),
        "perm": make("perm.zarr", other, perm),
        "changed": make("changed.zarr", other, changed),
        "noids": make("noids.zarr", base, None),
        "noids2": make("noids2.zarr", other, None),
        "short": make("short.zarr", other, ids, n=N_PAIR - 1),
        "strids": make("strids.zarr", other, [str(i) for i in ids]),
        "v2": bigalign.open_activations(
            plain_group(root / "v2.zarr", {"l": other, "sample_ids": ids}, zarr_format=2, chunk_rows=5)
        ),
    }
    return stores, base, other


def test_same_ids_in_two_stores_compare_without_warning(pair_stores):
    stores, base, other = pair_stores
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        got = bigalign.cka(stores["a"]["l"], stores["same"]["l"]).value
        got_v2 = bigalign.cka(stores["a"]["l"], stores["v2"]["l"]).value
    assert pairing_warnings(record) == []
    want = bigalign.cka(base, other).value
    assert got == pytest.approx(want, rel=1e-12, abs=0)
    assert got_v2 == pytest.approx(want, rel=1e-12, abs=0)


@pytest.mark.parametrize("metric", [bigalign.cka, bigalign.hsic, bigalign.kernel_alignment, bigalign.distance_alignment])
def test_different_sample_ids_raise_pairing_error(pair_stores, metric):
    stores, _, _ = pair_stores
    with pytest.raises(PairingError, match="different samples") as exc:
        metric(stores["a"]["l"], stores["changed"]["l"])
    msg = str(exc.value)
    assert "row 17" in msg and "10000" in msg and "51" in msg, msg
    assert isinstance(exc.value, InvalidInputError)


def test_same_ids_in_different_order_raise_pairing_error(pair_stores):
    stores, _, _ = pair_stores
    with pytest.raises(PairingError, match="different order") as exc:
        bigalign.cka(stores["a"]["l"], stores["perm"]["m"])
    assert "row 5" in str(exc.value)
    with pytest.raises(PairingError, match="different order"):
        bigalign.cka(stores["perm"]["l"], stores["a"]["l"])


def test_integer_and_string_ids_do_not_pair(pair_stores):
    stores, _, _ = pair_stores
    with pytest.raises(PairingError):
        bigalign.cka(stores["a"]["l"], stores["strids"]["l"])


@pytest.mark.parametrize("pair", [("noids", "noids2"), ("a", "noids"), ("noids2", "same")])
def test_stores_without_ids_warn_that_pairing_cannot_be_verified(pair_stores, pair):
    stores, base, other = pair_stores
    x, y = stores[pair[0]]["l"], stores[pair[1]]["l"]
    with pytest.warns(PairingWarning, match="pairing cannot be verified") as record:
        got = bigalign.cka(x, y).value
    assert "has no sample ids" in str(pairing_warnings(record)[0].message)
    assert np.isfinite(got)
    want = bigalign.cka(np.asarray(x), np.asarray(y)).value
    assert got == pytest.approx(want, rel=1e-12, abs=0)


def test_two_layers_of_one_store_without_ids_do_not_warn(pair_stores):
    stores, base, _ = pair_stores
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        got = bigalign.cka(stores["noids"]["l"], stores["noids"]["m"]).value
    assert pairing_warnings(record) == []
    assert got == pytest.approx(bigalign.cka(base, base[:, :3]).value, rel=1e-12, abs=0)


def test_mismatched_sample_counts_raise_invalid_input(pair_stores):
    stores, _, _ = pair_stores
    with pytest.raises(InvalidInputError, match="same number of samples") as exc:
        bigalign.cka(stores["a"]["l"], stores["short"]["l"])
    assert not isinstance(exc.value, PairingError)
    assert f"{N_PAIR} rows" in str(exc.value) and f"{N_PAIR - 1} rows" in str(exc.value)
    with pytest.raises(InvalidInputError, match="same number of samples"):
        bigalign.cka(stores["noids"]["l"], stores["short"]["l"])


# -- targets: the task's labels stored beside the layers ------------------------------------------


def test_targets_round_trip_resume_and_are_not_a_layer(tmp_path):
    rng = np.random.default_rng(0)
    x, labels = rng.normal(size=(70, 4)), rng.integers(0, 3, size=70)
    with bigalign.ActivationWriter(tmp_path / "s.zarr", chunk_rows=16) as w:
        w.append({"h": x[:40]}, sample_ids=np.arange(40), targets=labels[:40])
    with bigalign.ActivationWriter(tmp_path / "s.zarr", mode="a") as w:  # resuming keeps the convention
        w.append({"h": x[40:]}, sample_ids=np.arange(40, 70), targets=labels[40:].astype(np.int32))
    s = bigalign.open_activations(tmp_path / "s.zarr")
    assert s.layers == ["h"]
    np.testing.assert_array_equal(s.targets, labels)
    np.testing.assert_array_equal(s["h"][:], x)


def test_targets_in_a_plain_zarr_group_are_found_and_not_a_layer(tmp_path):
    import zarr

    g = zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    g.create_array("layer1", data=np.ones((10, 3)))
    g.create_array("targets", data=np.arange(20.0).reshape(10, 2))
    s = bigalign.open_activations(tmp_path / "plain.zarr")
    assert s.layers == ["layer1"]
    np.testing.assert_array_equal(s.targets, np.arange(20.0).reshape(10, 2))


def test_store_without_targets_has_none(tmp_path):
    with bigalign.ActivationWriter(tmp_path / "s.zarr") as w:
        w.append({"h": np.ones((5, 2))})
    assert bigalign.open_activations(tmp_path / "s.zarr").targets is None


@pytest.mark.parametrize(
    "first, second, match",
    [
        (np.arange(5), None, "every batch has targets or none"),
        (None, np.arange(5), "every batch has targets or none"),
        (np.arange(5), np.zeros((5, 2)), "keep the shape"),
        (np.arange(5), np.arange(5) + 0.5, "without loss"),
        (np.arange(5, dtype=np.int8), np.array([300, 2**63, 7, 1, 2], dtype=np.uint64), "without loss"),
    ],
)
def test_inconsistent_targets_are_refused(tmp_path, first, second, match):
    with bigalign.ActivationWriter(tmp_path / "s.zarr") as w:
        w.append({"h": np.ones((5, 2))}, targets=first)
        with pytest.raises(bigalign.InvalidInputError, match=match):
            w.append({"h": np.ones((5, 2))}, targets=second)
    assert bigalign.open_activations(tmp_path / "s.zarr").n_samples == 5  # the refused batch left nothing


@pytest.mark.parametrize(
    "targets, match",
    [(np.arange(4), "with 5 rows"), (np.array(["a"] * 5), "numeric"), (np.full(5, np.nan), "NaN"), (np.ones((5, 2, 2)), "1-D")],
)
def test_bad_targets_name_what_was_expected(tmp_path, targets, match):
    with bigalign.ActivationWriter(tmp_path / "s.zarr") as w:
        with pytest.raises(bigalign.InvalidInputError, match=match):
            w.append({"h": np.ones((5, 2))}, targets=targets)


def test_take_reads_a_few_chunks_at_a_time_and_returns_the_same_rows(tmp_path):
    """Representation.take reads sorted rows two stored chunks at a time (bounded decode memory); the rows are
    those of numpy indexing, for every chunk layout, at the edges and in bfloat16."""
    import ml_dtypes

    from bigalign.io import as_representation

    rng = np.random.default_rng(5)
    x = rng.normal(size=(1000, 3)).astype(np.float32)
    with bigalign.ActivationWriter(tmp_path / "s.zarr", chunk_rows=37) as w:
        w.append({"f32": x, "bf16": x.astype(ml_dtypes.bfloat16)})
    s = bigalign.open_activations(tmp_path / "s.zarr")
    for rows in (np.array([0]), np.array([0, 36, 37, 999]), np.sort(rng.choice(1000, 300, replace=False)), np.arange(1000)):
        np.testing.assert_array_equal(as_representation(s["f32"]).take(rows), x[rows])
        got = as_representation(s["bf16"]).take(rows)
        assert got.dtype == ml_dtypes.bfloat16
        np.testing.assert_array_equal(got.astype(np.float32), x[rows].astype(ml_dtypes.bfloat16).astype(np.float32))
