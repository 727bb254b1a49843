"""Array files and tensors as inputs: .npy, .npz, .safetensors, HDF5, .pt, torch tensors of every float dtype."""

from __future__ import annotations

import json

import ml_dtypes
import numpy as np
import pytest

import bigalign
from bigalign.cli import main
from bigalign.errors import InvalidInputError


@pytest.fixture
def xy():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((120, 6))
    y = x @ rng.standard_normal((6, 5)) + 0.3 * rng.standard_normal((120, 5))
    return x, y


def _ref(x, y):
    return bigalign.cka(np.asarray(x, np.float64), np.asarray(y, np.float64)).value


def test_npy_paths_memory_mapped(tmp_path, xy):
    x, y = xy
    np.save(tmp_path / "a.npy", x)
    np.save(tmp_path / "b.npy", y)
    store = bigalign.open_activations(tmp_path / "a.npy")
    assert store.layers == ["a"] and store.n_samples == 120
    assert isinstance(store["a"]._zarr, np.memmap)
    assert bigalign.cka(str(tmp_path / "a.npy"), tmp_path / "b.npy").value == pytest.approx(_ref(x, y), rel=1e-12)


def test_npz_uncompressed_is_memory_mapped_and_carries_ids(tmp_path, xy):
    x, y = xy
    np.savez(tmp_path / "ab.npz", a=x, b=y.astype(np.float32), sample_ids=np.arange(120), targets=np.arange(120) % 3)
    store = bigalign.open_activations(tmp_path / "ab.npz")
    assert store.layers == ["a", "b"]
    assert isinstance(store["a"]._zarr, np.memmap)
    np.testing.assert_array_equal(store.sample_ids, np.arange(120))
    np.testing.assert_array_equal(store.targets, np.arange(120) % 3)
    np.testing.assert_array_equal(np.asarray(store["a"]), x)
    assert bigalign.cka(store["a"], store["b"]).value == pytest.approx(_ref(x, y.astype(np.float32)), rel=1e-6)
    m = bigalign.compare_layers(tmp_path / "ab.npz")
    assert m.values[0, 1] == pytest.approx(_ref(x, y.astype(np.float32)), rel=1e-6)


def test_npz_compressed(tmp_path, xy):
    x, y = xy
    np.savez_compressed(tmp_path / "ab.npz", a=x, b=y)
    store = bigalign.open_activations(tmp_path / "ab.npz")
    assert bigalign.cka(store["a"], store["b"]).value == pytest.approx(_ref(x, y), rel=1e-12)


def test_safetensors_with_bfloat16(tmp_path, xy):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    x, y = xy
    xb = torch.tensor(x, dtype=torch.bfloat16)
    save_file({"a": xb, "b": torch.tensor(y, dtype=torch.float16)}, str(tmp_path / "t.safetensors"), metadata={"m": "1"})
    store = bigalign.open_activations(tmp_path / "t.safetensors")
    assert store["a"].dtype == ml_dtypes.bfloat16 and store.attrs == {"m": "1"}
    assert isinstance(store["a"]._zarr, np.memmap)
    np.testing.assert_array_equal(np.asarray(store["a"]).view(np.uint16), xb.view(torch.int16).numpy().view(np.uint16))
    got = bigalign.cka(store["a"], store["b"]).value
    assert got == pytest.approx(_ref(xb.to(torch.float64).numpy(), y.astype(np.float16)), rel=1e-9)


def test_safetensors_numpy_writer(tmp_path, xy):
    from safetensors.numpy import save_file

    x, y = xy
    save_file({"a": x, "b": y.astype(np.float32)}, str(tmp_path / "t.safetensors"))
    store = bigalign.open_activations(tmp_path / "t.safetensors")
    assert bigalign.cka(store["a"], store["b"]).value == pytest.approx(_ref(x, y.astype(np.float32)), rel=1e-9)


def test_hdf5_datasets(tmp_path, xy):
    h5py = pytest.importorskip("h5py")
    x, y = xy
    with h5py.File(tmp_path / "acts.h5", "w") as f:
        f.create_dataset("enc/layer1", data=x, chunks=(32, 6))
        f["layer2"] = y
        f["sample_ids"] = np.array([f"s{i}" for i in range(120)], dtype="S")
    store = bigalign.open_activations(tmp_path / "acts.h5")
    assert store.layers == ["enc/layer1", "layer2"]
    assert store.sample_ids[3] == "s3"
    assert store["enc/layer1"].stored_chunk_rows == 32
    assert bigalign.cka(store["enc/layer1"], store["layer2"]).value == pytest.approx(_ref(x, y), rel=1e-12)
    with h5py.File(tmp_path / "acts.h5", "r") as f:  # an open dataset is accepted directly, too
        assert bigalign.cka(f["enc/layer1"], f["layer2"]).value == pytest.approx(_ref(x, y), rel=1e-12)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64", "float8_e4m3fn", "float8_e5m2"])
def test_torch_tensors_of_every_float_dtype(dtype, xy):
    torch = pytest.importorskip("torch")
    x, y = xy
    t = torch.tensor(x).to(getattr(torch, dtype))
    exact = t.to(torch.float64).numpy()  # the values the tensor holds, exactly
    got = bigalign.cka(t, torch.tensor(y))
    assert got.value == pytest.approx(_ref(exact, y), rel=1e-9)


def test_bfloat16_tensor_is_converted_bit_for_bit_not_a_type_error(tmp_path, xy):
    torch = pytest.importorskip("torch")
    x, _ = xy
    t = torch.tensor(x, dtype=torch.bfloat16)
    rep = bigalign.io.as_representation(t, "x")
    assert rep.dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(rep.read(0, 120).view(np.uint16), t.view(torch.int16).numpy().view(np.uint16))
    with bigalign.ActivationWriter(tmp_path / "s.zarr") as w:  # the writer takes tensors too
        w.append({"h": t})
    assert bigalign.open_activations(tmp_path / "s.zarr")["h"].dtype == ml_dtypes.bfloat16


def test_torch_save_file(tmp_path, xy):
    torch = pytest.importorskip("torch")
    x, y = xy
    torch.save({"a": torch.tensor(x, dtype=torch.bfloat16), "b": torch.tensor(y), "sample_ids": torch.arange(120)},
               tmp_path / "acts.pt")  # fmt: skip
    store = bigalign.open_activations(tmp_path / "acts.pt")
    assert store.layers == ["a", "b"] and store["a"].dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(store.sample_ids, np.arange(120))
    xb = torch.tensor(x, dtype=torch.bfloat16).to(torch.float64).numpy()
    assert bigalign.cka(store["a"], store["b"]).value == pytest.approx(_ref(xb, y), rel=1e-9)


def test_path_with_several_arrays_names_them(tmp_path, xy):
    x, y = xy
    np.savez(tmp_path / "ab.npz", a=x, b=y)
    with pytest.raises(InvalidInputError, match=r"holds 2 layers.*open_activations"):
        bigalign.cka(tmp_path / "ab.npz", y)


def test_cli_compare_npy_files(tmp_path, xy, capsys):
    x, y = xy
    np.save(tmp_path / "a.npy", x)
    np.save(tmp_path / "b.npy", y.astype(np.float32))
    out = tmp_path / "r.json"
    assert main(["compare", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), "--quiet", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["values"][0][0] == pytest.approx(_ref(x, y.astype(np.float32)), rel=1e-6)
    assert main(["info", str(tmp_path / "a.npy")]) == 0
    assert "samples: 120" in capsys.readouterr().out
