"""Array files read as stores: ``.npy``, ``.npz``, ``.safetensors``, HDF5 and PyTorch files."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any, Mapping

import dask.array as da
import ml_dtypes
import numpy as np

from ..errors import StoreError
from ._common import _BF16, _IDS, _is_torch_tensor, _is_url, _natural_key, _TARGETS, _torch_to_numpy
from .store import ActivationStore, Layer


# --------------------------------------------------------------------------- #
# array files: .npy, .npz, .safetensors, HDF5, PyTorch
# --------------------------------------------------------------------------- #

#: file suffix -> kind of array file that open_activations and every metric read directly
ARRAY_FILE_SUFFIXES = {
    ".npy": "npy", ".npz": "npz", ".safetensors": "safetensors",
    ".h5": "hdf5", ".hdf5": "hdf5", ".hdf": "hdf5", ".pt": "torch", ".pth": "torch",
}  # fmt: skip


_ROWS_PER_READ = 32 * 2**20  # bytes of rows per block read from an array file


def _array_file_kind(path: Any) -> str | None:
    if not isinstance(path, (str, Path)) or _is_url(path):
        return None
    p = Path(path)
    kind = ARRAY_FILE_SUFFIXES.get(p.suffix.lower())
    return kind if kind is not None and not p.is_dir() else None


_SAFETENSORS_DTYPES = {
    "F64": np.dtype(np.float64), "F32": np.dtype(np.float32), "F16": np.dtype(np.float16), "BF16": _BF16,
    "I64": np.dtype(np.int64), "I32": np.dtype(np.int32), "I16": np.dtype(np.int16), "I8": np.dtype(np.int8),
    "U64": np.dtype(np.uint64), "U32": np.dtype(np.uint32), "U16": np.dtype(np.uint16), "U8": np.dtype(np.uint8),
    "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn), "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2), "BOOL": np.dtype(np.uint8),
}  # fmt: skip


def _read_safetensors(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Every tensor of a .safetensors file, memory-mapped (the format is a JSON header and raw little-endian data)."""
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise StoreError(f"{str(path)!r} is too short to be a .safetensors file; expected an 8-byte header length.")
        (hlen,) = struct.unpack("<Q", raw)
        try:
            header = json.loads(f.read(hlen))
        except (ValueError, UnicodeDecodeError) as exc:
            raise StoreError(f"{str(path)!r} has no valid .safetensors JSON header ({exc}).") from exc
    meta = header.pop("__metadata__", None) or {}
    out = {}
    for name, info in header.items():
        dtype = _SAFETENSORS_DTYPES.get(info["dtype"])
        if dtype is None:
            raise StoreError(f"tensor {name!r} of {str(path)!r} has dtype {info['dtype']}, which bigalign cannot read.")
        a, b = info["data_offsets"]
        shape = tuple(info["shape"])
        if b == a:
            out[name] = np.zeros(shape, dtype)
            continue
        out[name] = np.memmap(path, dtype=dtype, mode="r", offset=8 + hlen + a, shape=shape)
    return out, meta


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an .npz: memory-mapped where stored uncompressed (numpy.savez), else read into memory."""
    import zipfile

    out: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(path) as zf, open(path, "rb") as fh:
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                continue
            key = info.filename[: -len(".npy")]
            if info.compress_type == zipfile.ZIP_STORED:
                fh.seek(info.header_offset)
                local = fh.read(30)
                name_len, extra_len = struct.unpack("<HH", local[26:30])
                start = info.header_offset + 30 + name_len + extra_len
                fh.seek(start)
                version = np.lib.format.read_magic(fh)
                read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, fortran, dtype = read_header(fh)
                if dtype.hasobject:
                    raise StoreError(f"array {key!r} of {str(path)!r} holds Python objects; expected numbers or strings.")
                out[key] = np.memmap(path, dtype=dtype, mode="r", offset=fh.tell(), shape=shape,
                                     order="F" if fortran else "C")  # fmt: skip
            else:
                with zf.open(info) as member:
                    out[key] = np.lib.format.read_array(member, allow_pickle=False)
    return out


def _read_hdf5(path: Path) -> dict[str, Any]:
    try:
        import h5py
    except ImportError as exc:
        raise ImportError(f"reading the HDF5 file {str(path)!r} needs h5py: pip install h5py") from exc
    f = h5py.File(path, "r")
    out: dict[str, Any] = {}
    f.visititems(lambda name, obj: out.__setitem__(name, obj) if isinstance(obj, h5py.Dataset) else None)
    return out


def _read_torch(path: Path) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError as exc:
        raise ImportError(f"reading the PyTorch file {str(path)!r} needs torch: pip install 'bigalign[torch]'") from exc
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:
        raise StoreError(
            f"could not load {str(path)!r} with torch.load(weights_only=True): {type(exc).__name__}: {exc}. "
            "Expected a tensor or a dict of tensors saved with torch.save."
        ) from exc
    if _is_torch_tensor(obj):
        return {path.stem: _torch_to_numpy(obj, str(path))}
    if isinstance(obj, Mapping):
        return {str(k): _torch_to_numpy(v, f"{k!r} of {str(path)!r}") for k, v in obj.items() if _is_torch_tensor(v)}
    raise StoreError(f"{str(path)!r} holds a {type(obj).__name__}; expected a tensor or a dict of tensors.")


class ArrayFileStore(ActivationStore):
    """An array file (.npy, .npz, .safetensors, HDF5, .pt) seen as a read-only activation store.

    Every array of at least two dimensions is a layer (a .npy file or a single
    saved tensor: one layer named after the file); arrays named ``sample_ids``
    and ``targets`` are the sample ids and targets.  Arrays are memory-mapped
    where the format allows (.npy, uncompressed .npz, .safetensors, .pt saved
    by torch.save) and read a block of rows at a time (HDF5 datasets).
    """

    def __init__(self, path: Any):
        p = Path(path)
        if not p.is_file():
            raise StoreError(f"no file at {str(path)!r}; expected an existing {p.suffix} file. Check the path.")
        kind = _array_file_kind(p)
        self.source = str(path)
        self._group = None  # type: ignore[assignment]
        self._local_root = None
        self._meta = {}
        self._tail = {}
        attrs: dict[str, Any] = {}
        if kind == "npy":
            arrays: dict[str, Any] = {p.stem: np.load(p, mmap_mode="r", allow_pickle=False)}
        elif kind == "npz":
            arrays = _read_npz(p)
        elif kind == "safetensors":
            arrays, attrs = _read_safetensors(p)
        elif kind == "hdf5":
            arrays = _read_hdf5(p)
        else:
            arrays = _read_torch(p)
        self._attrs = attrs
        self._arrays = arrays
        self.layers = sorted((k for k, a in arrays.items() if k not in (_IDS, _TARGETS) and len(a.shape) >= 2),
                             key=_natural_key)  # fmt: skip
        if not self.layers:
            found = {k: tuple(a.shape) for k, a in arrays.items()}
            raise StoreError(
                f"{str(path)!r} holds no array of shape (n_samples, n_features, ...) (found: {found or 'nothing'}). "
                "Expected at least one array with two or more dimensions, samples first."
            )
        ns = {l: int(arrays[l].shape[0]) for l in self.layers}
        if len(set(ns.values())) != 1:
            raise StoreError(
                f"the arrays of {str(path)!r} have different numbers of samples: {ns}. Every layer must hold the "
                "same samples; open the arrays individually (e.g. numpy.load) instead."
            )
        self.n_samples = self._n_zarr = next(iter(ns.values()))
        self._ids = False
        self._targets = False

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self._attrs)

    @property
    def sample_ids(self) -> np.ndarray | None:
        if self._ids is False:
            arr = self._arrays.get(_IDS)
            if arr is None:
                self._ids = None
            else:
                ids = np.asarray(arr[: self.n_samples])
                if ids.dtype.kind == "S" or ids.dtype.kind == "O":
                    ids = np.array([i.decode() if isinstance(i, bytes) else str(i) for i in ids.tolist()])
                if ids.ndim != 1 or len(ids) != self.n_samples:
                    raise StoreError(f"sample_ids of {self.source!r} have shape {ids.shape}; expected ({self.n_samples},).")
                self._ids = ids
        return self._ids  # type: ignore[return-value]

    @property
    def targets(self) -> np.ndarray | None:
        if self._targets is False:
            arr = self._arrays.get(_TARGETS)
            self._targets = None if arr is None else np.asarray(arr[: self.n_samples])
        return self._targets  # type: ignore[return-value]

    def _logical_dtype(self, layer: str) -> np.dtype:
        return np.dtype(self._arrays[layer].dtype)

    def __getitem__(self, layer: str) -> "Layer":
        if layer not in self.layers:
            raise KeyError(f"{self.source!r} has no array {layer!r}; its layers are {self.layers}")
        return ArrayLayer(self, layer)

    def __repr__(self) -> str:
        return f"ArrayFileStore({self.source!r}, n_samples={self.n_samples}, layers={self.layers})"


class ArrayLayer(Layer):
    """One array of an :class:`ArrayFileStore`, read a block of rows at a time."""

    def __init__(self, store: ArrayFileStore, name: str):
        self.store = store  # type: ignore[assignment]
        self.name = name
        src = store._arrays[name]
        self._zarr = src  # type: ignore[assignment]
        self.dtype = np.dtype(src.dtype)
        self.feature_shape = tuple(src.shape[1:])
        self.n_features = int(np.prod(self.feature_shape, dtype=np.int64))
        self.shape = (store.n_samples, self.n_features)
        chunks = getattr(src, "chunks", None)
        native = int(chunks[0]) if isinstance(chunks, tuple) and chunks else 0
        row_bytes = max(1, self.n_features * self.dtype.itemsize)
        self.stored_chunk_rows = native or max(1, min(store.n_samples, _ROWS_PER_READ // row_bytes))
        self.ndim = 2

    def _fix(self, block: Any) -> np.ndarray:
        block = np.asarray(block)
        if block.dtype in (np.dtype(ml_dtypes.float8_e4m3fn), np.dtype(ml_dtypes.float8_e5m2)):
            block = block.astype(np.float32)
        return block.reshape(block.shape[0], self.n_features)

    def read(self, start: int, stop: int) -> np.ndarray:
        stop = min(stop, self.store.n_samples)
        return self._fix(self._zarr[start:stop])

    def _take(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        if isinstance(self._zarr, np.ndarray):
            return self._fix(self._zarr[rows])
        if len(rows) and (np.diff(rows) > 0).all():  # h5py reads increasing index lists
            return self._fix(self._zarr[rows])
        return self._fix(np.concatenate([np.asarray(self._zarr[a : a + 1]) for a in rows.tolist()]) if len(rows)
                         else np.empty((0,) + self.feature_shape, self.dtype))  # fmt: skip

    def to_dask(self, rows: int | None = None) -> da.Array:
        rows = int(rows or self.stored_chunk_rows)
        src = self._zarr
        lock = not isinstance(src, np.ndarray)  # h5py datasets are read one block at a time
        arr = da.from_array(src, chunks=(rows,) + tuple(src.shape[1:]), name=False, lock=lock)
        if arr.dtype in (np.dtype(ml_dtypes.float8_e4m3fn), np.dtype(ml_dtypes.float8_e5m2)):
            arr = arr.astype(np.float32)
        return arr.reshape(arr.shape[0], self.n_features) if arr.ndim != 2 else arr

    def __repr__(self) -> str:
        return f"ArrayLayer({self.name!r} of {self.store.source!r}, shape={self.shape}, dtype={self.dtype})"
