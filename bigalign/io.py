"""Activation stores: open, write, and turn anything array-like into a representation.

A store is a Zarr group (v3 written, v2 readable) holding one array per layer,
samples along the first axis (further axes are flattened into features), and an
optional 1-D ``sample_ids`` array, and optional ``targets`` (the task's labels
or regression targets, one row per sample: what stitching and task alignment
need).  Stores written by :class:`ActivationWriter`
also carry a ``bigalign`` group attribute with the layer order and the number of
*committed* samples; readers never look past that count, which is what makes an
interrupted writer safe (see :class:`ActivationWriter`).

Everywhere bigalign expects a representation it accepts a numpy array, a dask
array, a zarr array, a store :class:`Layer`, a PyTorch tensor (any float dtype,
bfloat16 included, on any device), an h5py dataset, or the path of an array file
(``.npy``, ``.npz``, ``.safetensors``, ``.h5``/``.hdf5``, ``.pt``) holding one
array, in float16, bfloat16 (ml_dtypes), float32, float64 or an integer dtype.
:func:`open_activations` opens those files as read-only stores (one layer per
array of two or more dimensions), so the command line reads them too.

A store may also live in object storage or on any other filesystem fsspec
knows: address it by URL (``s3://bucket/acts.zarr``, ``gs://...``, ...) and pass
credentials or an endpoint as ``storage_options`` (handed to fsspec, e.g.
``{"endpoint_url": ..., "key": ..., "secret": ...}`` for s3fs).
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import dask.array as da
import ml_dtypes
import numpy as np
import zarr

from .errors import InvalidInputError, PairingError, StoreError

__all__ = [
    "ActivationStore",
    "ActivationWriter",
    "ArrayFileStore",
    "Layer",
    "PairingWarning",
    "Representation",
    "as_representation",
    "check_pairing",
    "open_activations",
]

FORMAT_VERSION = 1
_ATTR = "bigalign"
_IDS = "sample_ids"
_TARGETS = "targets"
_BF16 = np.dtype(ml_dtypes.bfloat16)
_DEFAULT_CHUNK_BYTES = 32 * 2**20
_LAYER_NAME = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9._\-]*")
_RESERVED = {_IDS, _TARGETS, "zarr.json", "bigalign_tail"}


class PairingWarning(UserWarning):
    """Two stores are compared but their sample pairing cannot be verified."""


# --------------------------------------------------------------------------- #
# reading
# --------------------------------------------------------------------------- #


def _natural_key(s: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def _is_url(path: Any) -> bool:
    """True for fsspec URLs (``s3://...``, ``gs://...``, chained ``a::b://...``), as zarr decides."""
    return isinstance(path, str) and ("://" in path or ("::" in path and "local://" not in path))


def _zarr_open_group(path: Any, mode: str, storage_options: Mapping[str, Any] | None) -> zarr.Group:
    """``zarr.open_group``, for a URL through fsspec with ``storage_options`` and fresh listings."""
    if not _is_url(path):
        if storage_options is not None:
            raise InvalidInputError(
                f"storage_options only apply to stores addressed by URL (e.g. 's3://bucket/acts.zarr'); "
                f"got {path!r}, which is not a URL. Drop storage_options, or pass a URL."
            )
        return zarr.open_group(path, mode=mode)
    try:
        store = zarr.storage.FsspecStore.from_url(path, storage_options=dict(storage_options or {}), read_only=mode == "r")
    except ImportError as exc:
        raise StoreError(
            f"cannot open {path!r}: the fsspec backend of its protocol is missing ({exc}). "
            "Install it; for s3:// URLs: pip install 'bigalign[s3]' (installs s3fs)."
        ) from exc
    # fsspec reuses filesystem instances, listings cached included: without this, a store
    # written by another process (or filesystem instance) since the last open looks stale.
    store.fs.invalidate_cache()
    return zarr.open_group(store, mode=mode)


def _open_group(path: Any, mode: str = "r", storage_options: Mapping[str, Any] | None = None) -> zarr.Group:
    if isinstance(path, zarr.Group) and storage_options is None:
        return path
    try:
        return _zarr_open_group(str(path) if isinstance(path, Path) else path, mode, storage_options)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError) as exc:  # type: ignore[attr-defined]
        raise StoreError(
            f"no Zarr group found at {path!r}. Expected a directory (or URL) written by "
            "bigalign.ActivationWriter or any Zarr v2/v3 group of arrays; check the path"
            + (" (and, for a URL, the bucket and storage_options)." if _is_url(path) else ".")
        ) from exc


class ActivationStore:
    """A read-only view of an activation store.

    Use :func:`open_activations` to create one.

    Attributes
    ----------
    layers : list of str
        Layer names in their recorded order (natural sort order for groups not
        written by bigalign).
    n_samples : int
        Number of complete samples (committed batches only).
    sample_ids : numpy.ndarray or None
        The sample identifiers, or ``None`` when the store has none.
    targets : numpy.ndarray or None
        The targets (1-D labels or (n_samples, c) values) stored in an array
        named ``targets``, or ``None``.  Never counted as a layer.
    """

    def __init__(self, group: zarr.Group, source: str):
        self._group = group
        self.source = source
        self._local_root = Path(source) if "://" not in source and Path(source).is_dir() else None
        meta = dict(group.attrs).get(_ATTR)
        arrays = {name: arr for name, arr in group.arrays()}
        self._arrays = arrays
        if meta is not None:
            self._meta = dict(meta)
            layers = list(self._meta["layers"])
            missing = [l for l in layers if l not in arrays]
            if missing:
                raise StoreError(
                    f"store {source!r} lists layers {missing} in its metadata but has no such arrays; "
                    "the store is damaged. Rewrite it, or open the arrays directly with zarr."
                )
            if not layers:
                raise StoreError(
                    f"store {source!r} has no committed batch yet (its writer never completed an append). "
                    "Expected at least one layer; append data with ActivationWriter(path, mode='a')."
                )
            self.layers = layers
            self._n_zarr = int(self._meta["n_samples"])
            # batches committed to the log of a writer that is still open (or died) and not yet compacted
            rows, self._tail = _load_tail(self._local_root, self._n_zarr) if self._local_root is not None else (0, {})
            self.n_samples = self._n_zarr + rows
        else:
            self._meta = {}
            self.layers = sorted(
                (n for n, a in arrays.items() if n not in (_IDS, _TARGETS) and a.ndim >= 2), key=_natural_key
            )
            if not self.layers:
                raise StoreError(
                    f"store {source!r} holds no array with at least 2 dimensions "
                    f"(found: {sorted(arrays) or 'nothing'}). Expected one (n_samples, ...) array per layer."
                )
            ns = {l: arrays[l].shape[0] for l in self.layers}
            if len(set(ns.values())) != 1:
                raise StoreError(
                    f"layers of store {source!r} have different numbers of samples: {ns}. "
                    "Every layer must hold the same samples; open the arrays individually instead."
                )
            self.n_samples = next(iter(ns.values()))
            self._n_zarr, self._tail = self.n_samples, {}
        self._ids: np.ndarray | None | bool = False  # False: not loaded yet
        self._targets: np.ndarray | None | bool = False

    # -- mapping-like access -------------------------------------------------
    def __getitem__(self, layer: str) -> "Layer":
        if layer not in self.layers:
            raise KeyError(f"store {self.source!r} has no layer {layer!r}; its layers are {self.layers}")
        return Layer(self, layer)

    def __iter__(self) -> Iterator[str]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def __contains__(self, layer: object) -> bool:
        return layer in self.layers

    @property
    def attrs(self) -> dict[str, Any]:
        """User attributes of the group (model name, ...), without bigalign's own."""
        return {k: v for k, v in dict(self._group.attrs).items() if k != _ATTR}

    @property
    def sample_ids(self) -> np.ndarray | None:
        if self._ids is False:
            arr = self._arrays.get(_IDS)
            if arr is None:
                self._ids = None
            else:
                if arr.ndim != 1 or arr.shape[0] < self._n_zarr:
                    raise StoreError(
                        f"store {self.source!r} has a sample_ids array of shape {arr.shape}; expected "
                        f"a 1-D array of at least {self._n_zarr} entries. Rewrite the ids or delete the array."
                    )
                self._ids = self._with_tail(_IDS, np.asarray(arr[: self._n_zarr]))
        return self._ids  # type: ignore[return-value]

    @property
    def targets(self) -> np.ndarray | None:
        if self._targets is False:
            arr = self._arrays.get(_TARGETS)
            if arr is None:
                self._targets = None
            else:
                if arr.ndim not in (1, 2) or arr.shape[0] < self._n_zarr:
                    raise StoreError(
                        f"store {self.source!r} has a targets array of shape {arr.shape}; expected a 1-D "
                        f"(labels) or 2-D (n_samples, c) array of at least {self._n_zarr} rows. Rewrite the "
                        "targets, or rename the array if it is a layer."
                    )
                self._targets = self._with_tail(_TARGETS, np.asarray(arr[: self._n_zarr]))
        return self._targets  # type: ignore[return-value]

    def _with_tail(self, name: str, head: np.ndarray) -> np.ndarray:
        tail = self._tail.get(name)
        if tail is None or not len(tail):
            return head
        if head.dtype.kind in "OT":  # numpy's variable-width strings, as Zarr reads them
            return np.concatenate([head, tail.astype(head.dtype)])
        if head.dtype.kind == "U" or tail.dtype.kind == "U":
            return np.concatenate([head, tail])
        return np.concatenate([head, tail.astype(head.dtype, copy=False)])

    def _logical_dtype(self, layer: str) -> np.dtype:
        special = self._meta.get("dtypes", {}).get(layer)
        if special == "bfloat16":
            return _BF16
        return np.dtype(self._arrays[layer].dtype)

    def __repr__(self) -> str:
        ids = "with sample ids" if self._arrays.get(_IDS) is not None else "without sample ids"
        return f"ActivationStore({self.source!r}, n_samples={self.n_samples}, layers={self.layers}, {ids})"


class Layer:
    """One layer of an :class:`ActivationStore`: a lazily read (n_samples, n_features) array.

    Further axes of the stored array are flattened into features.  Reading is
    lazy: :meth:`to_dask` gives a dask array chunked along samples, and
    ``np.asarray(layer)`` or indexing reads from disk.
    """

    def __init__(self, store: ActivationStore, name: str):
        self.store = store
        self.name = name
        self._zarr: zarr.Array = store._arrays[name]
        self.dtype = store._logical_dtype(name)
        self.feature_shape = tuple(self._zarr.shape[1:])
        self.n_features = int(np.prod(self.feature_shape, dtype=np.int64)) if self.feature_shape else 1
        self.shape = (store.n_samples, self.n_features)
        self.stored_chunk_rows = int(self._zarr.chunks[0])
        self.ndim = 2

    @property
    def sample_ids(self) -> np.ndarray | None:
        return self.store.sample_ids

    def to_dask(self, rows: int | None = None) -> da.Array:
        """The layer as a dask array of shape ``(n_samples, n_features)``, ``rows`` rows per chunk."""
        rows = int(rows or self.stored_chunk_rows)
        arr = da.from_zarr(self._zarr, chunks=(rows,) + tuple(self._zarr.shape[1:]))
        arr = arr[: self.store._n_zarr]
        tail = self.store._tail.get(self.name)
        if tail is not None and len(tail):
            arr = da.concatenate([arr, da.from_array(tail, chunks=(rows,) + tail.shape[1:])]).rechunk({0: rows})
        if self.dtype == _BF16:
            arr = arr.map_blocks(lambda b: b.view(_BF16), dtype=_BF16)
        if arr.ndim != 2:
            arr = arr.reshape(arr.shape[0], self.n_features)
        return arr

    def _check_chunks(self, start: int, stop: int) -> None:
        """Every chunk of a bigalign store is written (write_empty_chunks), so a missing one is damage.

        Zarr itself would silently read a missing chunk as zeros.  Checked for
        local stores (a stat per chunk); object stores are not checked.
        """
        root = self.store._local_root
        if root is None or not self.store._meta or stop <= start:
            return
        rows = self.stored_chunk_rows
        tail = ["0"] * (self._zarr.ndim - 1)
        for i in range(start // rows, (stop - 1) // rows + 1):
            if not root.joinpath(self.name, "c", str(i), *tail).is_file():
                lo, hi = i * rows, min((i + 1) * rows, self.store._n_zarr) - 1
                raise StoreError(
                    f"layer {self.name!r} of store {self.store.source!r} is missing the chunk holding rows {lo}..{hi} "
                    "(deleted or never written); Zarr would read it as zeros. Expected every committed chunk to "
                    "exist. Restore the store from a copy, or rewrite these rows."
                )

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` as a numpy array of shape (stop - start, n_features).

        Raises :class:`StoreError` naming the layer and rows if a chunk is
        missing or cannot be decoded.
        """
        stop = min(stop, self.store.n_samples)
        nz = self.store._n_zarr
        if stop > nz:  # rows still in the writer's log
            tail = self.store._tail[self.name][max(start, nz) - nz : stop - nz]
            block = tail if start >= nz else np.concatenate([self._read_stored(start, nz), tail])
        else:
            block = self._read_stored(start, stop)
        if self.dtype == _BF16:
            block = block.view(_BF16)
        return block.reshape(block.shape[0], self.n_features)

    def _take(self, rows: np.ndarray) -> np.ndarray:
        """The rows at sorted indices ``rows``, (len(rows), n_features), in the logical dtype."""
        rows = np.asarray(rows, dtype=np.int64)
        nz = self.store._n_zarr
        cut = int(np.searchsorted(rows, nz))
        block = _take_by_chunks(self._zarr, rows[:cut]) if cut else np.empty((0,) + self._zarr.shape[1:], self._zarr.dtype)
        if cut < len(rows):
            block = np.concatenate([block, self.store._tail[self.name][rows[cut:] - nz]])
        if self.dtype == _BF16:
            block = block.view(_BF16)
        return block.reshape(len(rows), self.n_features)

    def _read_stored(self, start: int, stop: int) -> np.ndarray:
        self._check_chunks(start, stop)
        try:
            block = np.asarray(self._zarr[start:stop])
        except Exception as exc:  # a corrupt chunk: the codec fails
            raise StoreError(
                f"could not read rows {start}..{stop - 1} of layer {self.name!r} of store {self.store.source!r}: "
                f"{type(exc).__name__}: {exc}. A chunk in that range is corrupt or truncated; restore the store "
                "from a copy, or rewrite these rows."
            ) from exc
        return block

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self.read(0, self.store.n_samples)
        return out if dtype is None else out.astype(dtype)

    def __getitem__(self, item: Any) -> np.ndarray:
        return np.asarray(self.to_dask()[item])

    def __repr__(self) -> str:
        return f"Layer({self.name!r} of {self.store.source!r}, shape={self.shape}, dtype={self.dtype})"


def open_activations(path: Any, storage_options: Mapping[str, Any] | None = None) -> ActivationStore:
    """Open an activation store (a Zarr v3 or v2 group) for reading.

    Parameters
    ----------
    path : str, pathlib.Path or zarr.Group
        Directory or URL of the group.  A URL (``s3://bucket/acts.zarr``, or any
        protocol fsspec knows) is opened with fsspec; its backend (e.g. s3fs)
        must be installed.
    storage_options : dict, optional
        Options for the fsspec filesystem of a URL, e.g. ``{"endpoint_url": ...,
        "key": ..., "secret": ...}`` for S3 (default: the backend's own
        configuration, such as the standard ``AWS_*`` environment variables).
        They travel with the store's arrays to dask workers.  Only for URLs.

    Returns
    -------
    ActivationStore

    Raises
    ------
    StoreError
        If there is no group at ``path`` or it holds no layer arrays.
    """
    if _array_file_kind(path) is not None:
        if storage_options is not None:
            raise InvalidInputError(f"storage_options only apply to Zarr stores addressed by URL; got the file {str(path)!r}.")
        return ArrayFileStore(path)
    group = _open_group(path, mode="r", storage_options=storage_options)
    return ActivationStore(group, str(path) if not isinstance(path, zarr.Group) else str(group.store))


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


# --------------------------------------------------------------------------- #
# normalising inputs
# --------------------------------------------------------------------------- #


@dataclass
class Representation:
    """Internal normalised view of one input: a 2-D lazily readable array plus provenance."""

    name: str
    shape: tuple[int, int]
    dtype: np.dtype
    kind: str  # "numpy" | "dask" | "zarr" | "layer"
    source: Any
    native_rows: int | None  # rows per stored chunk (None: in memory)
    sample_ids: np.ndarray | None = None

    @property
    def n(self) -> int:
        return self.shape[0]

    @property
    def d(self) -> int:
        return self.shape[1]

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows start:stop as numpy (in the input dtype)."""
        src = self.source
        if self.kind == "numpy":
            return src[start:stop]
        if self.kind == "layer":
            return src.read(start, stop)
        if self.kind == "zarr":
            return np.asarray(src[start:stop]).reshape(stop - start, self.d)
        return np.asarray(src[start:stop].compute(scheduler="sync"))

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The rows at sorted indices ``rows`` as numpy (in the input dtype)."""
        src = self.source
        if self.kind == "numpy":
            return src[rows]
        if self.kind == "layer":
            return src._take(rows)
        if self.kind == "zarr":
            return _take_by_chunks(src, rows).reshape(len(rows), self.d)
        return np.asarray(src[rows].compute(scheduler="sync"))

    def to_dask(self, rows: int) -> da.Array:
        """Dask array of shape (n, d) with chunks of ``rows`` rows and all features in one chunk."""
        src = self.source
        if self.kind == "layer":
            arr = src.to_dask(rows)
        elif self.kind == "zarr":
            arr = da.from_zarr(src, chunks=(rows,) + tuple(src.shape[1:]))
            arr = arr.reshape(self.n, self.d) if arr.ndim != 2 else arr
        elif self.kind == "numpy":
            arr = da.from_array(src, chunks=(rows, self.d), name=False)
        else:
            arr = src
        if arr.chunks[0] != _regular_chunks(self.n, rows) or len(arr.chunks[1]) != 1:
            arr = arr.rechunk({0: rows, 1: -1})
        return arr


#: stored chunks decoded at once by ``take``: one orthogonal-index read over every chunk lets zarr decode
#: them all concurrently (1,000 random rows of a 200,000 × 512 zstd layer, 32 MiB chunks: +472 MiB peak;
#: two chunks at a time: +169 MiB and twice as fast; raw: +211 → +66 MiB)
_TAKE_CHUNKS = 2


def _take_by_chunks(arr: zarr.Array, rows: np.ndarray) -> np.ndarray:
    """``arr.oindex[rows]`` for sorted rows, read a few stored chunks at a time (bounded decode memory)."""
    rows = np.asarray(rows, dtype=np.int64)
    tail = (slice(None),) * (arr.ndim - 1)
    chunk = rows // int(arr.chunks[0])
    starts = np.flatnonzero(np.r_[True, chunk[1:] != chunk[:-1]])  # first selected row of each touched chunk
    if starts.size <= _TAKE_CHUNKS:
        return np.asarray(arr.oindex[(rows,) + tail])
    out = np.empty((rows.size,) + tuple(arr.shape[1:]), dtype=arr.dtype)
    bounds = np.r_[starts[::_TAKE_CHUNKS], rows.size]
    for a, b in zip(bounds[:-1], bounds[1:]):
        out[a:b] = arr.oindex[(rows[a:b],) + tail]
    return out


def _regular_chunks(n: int, rows: int) -> tuple[int, ...]:
    full, rem = divmod(n, rows)
    return (rows,) * full + ((rem,) if rem else ())


def _check_dtype(dtype: np.dtype, name: str) -> None:
    if dtype == _BF16 or dtype.kind in "fiu":
        return
    raise InvalidInputError(
        f"{name} must hold real numbers (float16, bfloat16, float32, float64 or integers); "
        f"got dtype {dtype}. Convert it, e.g. with x.astype('float32')."
    )


def _torch_to_numpy(t: Any, name: str) -> np.ndarray:
    """A torch tensor as numpy: bfloat16 as ml_dtypes.bfloat16 (bit for bit), float8 widened to float32 (exact)."""
    import torch

    t = t.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    if t.is_complex():
        raise InvalidInputError(
            f"{name} is a complex torch tensor ({t.dtype}); expected real numbers. Pass t.real or t.abs()."
        )
    if t.dtype == torch.bfloat16:
        return t.contiguous().view(torch.int16).numpy().view(_BF16)
    if t.is_floating_point() and t.dtype not in (torch.float16, torch.float32, torch.float64):
        return t.to(torch.float32).numpy()  # float8 kinds: every value is a float32 exactly
    if t.dtype == torch.bool:
        return t.numpy().astype(np.uint8)
    return t.numpy()


def _is_torch_tensor(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "detach") and hasattr(x, "dtype")


def _as_numpy(x: Any, name: str) -> np.ndarray:
    """``np.asarray`` that also takes torch tensors of every dtype (bfloat16 and float8 included)."""
    if _is_torch_tensor(x):
        return _torch_to_numpy(x, name)
    return np.asarray(x)


def as_representation(x: Any, name: str = "x") -> Representation:
    """Normalise a numpy/dask/zarr array or a store :class:`Layer` into a :class:`Representation`.

    Arrays of more than two dimensions are flattened to (n_samples, n_features).

    Raises
    ------
    InvalidInputError
        For 0-D/1-D input, a non-numeric dtype, or an unsupported type.
    """
    if isinstance(x, Representation):
        return x
    if isinstance(x, (str, Path)):
        return as_representation(_layer_of_path(x, name), name)
    if _is_torch_tensor(x):
        return as_representation(_torch_to_numpy(x, name), name)
    if type(x).__module__.startswith("h5py") and hasattr(x, "shape") and hasattr(x, "dtype"):
        rows = max(1, _ROWS_PER_READ // max(1, int(np.prod(x.shape[1:], dtype=np.int64)) * x.dtype.itemsize))
        return as_representation(da.from_array(x, chunks=(rows,) + tuple(x.shape[1:]), name=False, lock=True), name)
    if isinstance(x, Layer):
        _check_dtype(x.dtype, name)
        return Representation(
            name=f"{name} (layer {x.name!r} of {x.store.source!r})",
            shape=x.shape,
            dtype=x.dtype,
            kind="layer",
            source=x,
            native_rows=x.stored_chunk_rows,
            sample_ids=None,
        )
    if isinstance(x, zarr.Array):
        kind, shape, dtype, native = "zarr", tuple(x.shape), np.dtype(x.dtype), int(x.chunks[0])
    elif isinstance(x, da.Array):
        kind, shape, dtype, native = "dask", tuple(x.shape), np.dtype(x.dtype), int(max(x.chunks[0])) if x.chunks[0] else None
    elif isinstance(x, np.ndarray):
        kind, shape, dtype, native = "numpy", x.shape, x.dtype, None
    elif isinstance(x, (list, tuple)):
        arr = np.asarray(x)
        return as_representation(arr, name)
    else:
        if hasattr(x, "__array__") and hasattr(x, "shape"):
            return as_representation(np.asarray(x), name)
        raise InvalidInputError(
            f"{name} must be a numpy array, dask array, zarr array or a store layer; "
            f"got {type(x).__name__}. Convert it with np.asarray(...) or open a store with "
            "bigalign.open_activations(path)[layer]."
        )
    if len(shape) < 2:
        raise InvalidInputError(
            f"{name} must have shape (n_samples, n_features); got a {len(shape)}-D array of shape {shape}. "
            f"If each sample has a single feature, pass {name}.reshape(-1, 1)."
        )
    _check_dtype(dtype, name)
    n = int(shape[0])
    d = int(np.prod(shape[1:], dtype=np.int64))
    src: Any = x
    if kind == "numpy":
        src = np.ascontiguousarray(x).reshape(n, d)
    elif kind == "dask" and len(shape) != 2:
        src = x.rechunk({i: -1 for i in range(1, len(shape))}).reshape(n, d)
    if d == 0 or n == 0:
        raise InvalidInputError(
            f"{name} is empty: shape {shape}. Expected at least one sample and one feature."
        )
    return Representation(name=name, shape=(n, d), dtype=dtype, kind=kind, source=src, native_rows=native)


def _layer_of_path(path: Any, name: str) -> "Layer":
    """The one layer of an array file or store at ``path``."""
    store = open_activations(path)
    if len(store.layers) != 1:
        raise InvalidInputError(
            f"{name} is the path {str(path)!r}, which holds {len(store.layers)} layers {store.layers[:10]}; a single "
            f"representation is expected. Pick one: bigalign.open_activations({str(path)!r})[{store.layers[0]!r}], "
            "or compare every layer with bigalign.compare_layers."
        )
    return store[store.layers[0]]


def _item(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def check_pairing(reps: Sequence[Representation]) -> None:
    """Verify that representations describe the same samples in the same order.

    Raises
    ------
    InvalidInputError
        If the numbers of samples differ.
    PairingError
        If two store layers carry sample ids that differ or come in another order.

    Warns
    -----
    PairingWarning
        When comparing store layers of which at least one has no sample ids.
    """
    first = reps[0]
    for r in reps[1:]:
        if r.n != first.n:
            raise InvalidInputError(
                f"{first.name} and {r.name} must have the same number of samples; "
                f"got {first.name}: {first.n} rows, {r.name}: {r.n} rows. "
                "Pass the same samples, in the same order, for both representations."
            )
    # array files without ids are plain arrays, whose pairing is the caller's word
    layers = [r for r in reps if r.kind == "layer" and not (isinstance(r.source, ArrayLayer) and r.source.store.sample_ids is None)]
    if len(layers) < len(reps) and not any(r.kind == "layer" for r in layers):
        return
    stores = {id(r.source.store): r.source.store for r in layers}
    if len(stores) < 2 and len(layers) == len(reps):
        return  # all from one store: pairing is the store's own row order
    if not layers:
        return
    with_ids = [(r, r.source.store.sample_ids) for r in layers]
    missing = [r.name for r, ids in with_ids if ids is None]
    _compare_ids([(r, ids) for r, ids in with_ids if ids is not None])  # what can be checked is checked
    if missing or len(layers) < len(reps):
        warnings.warn(
            "sample pairing cannot be verified: "
            + (f"{', '.join(missing)} has no sample ids" if missing else "one input is a plain array")
            + ". bigalign assumes row i of each input is the same sample. Write stores with "
            "ActivationWriter.append(..., sample_ids=ids) to have pairing checked.",
            PairingWarning,
            stacklevel=3,
        )
        return


def _compare_ids(with_ids: list) -> None:
    """Raise PairingError if the sample ids of these (representation, ids) pairs differ."""
    if len(with_ids) < 2:
        return
    ref_rep, ref = with_ids[0]
    for r, ids in with_ids[1:]:
        if ids is ref or np.array_equal(ids, ref):
            continue
        if ids.shape == ref.shape and np.array_equal(np.sort(ids), np.sort(ref)):
            i = int(np.flatnonzero(ids != ref)[0])
            raise PairingError(
                f"{ref_rep.name} and {r.name} hold the same samples in a different order "
                f"(first difference at row {i}: {_item(ref[i])!r} vs {_item(ids[i])!r}). Expected identical sample ids "
                "in identical order. Reorder one store (e.g. rewrite it sorted by sample id) before comparing."
            )
        diff = np.flatnonzero(ids != ref) if ids.shape == ref.shape else np.array([0])
        i = int(diff[0])
        raise PairingError(
            f"{ref_rep.name} and {r.name} hold different samples (first difference at row {i}: "
            f"{_item(ref[i])!r} vs {_item(ids[i])!r}). Expected identical sample ids in identical order. "
            "Compare activations of the same inputs."
        )


# --------------------------------------------------------------------------- #
# the staged tail of a local store
# --------------------------------------------------------------------------- #
#
# A local writer logs every appended batch, raw, to a small append-only file in
# the store's ``bigalign_tail`` folder (one file per stretch of ``chunk_rows``
# rows, one self-checking record per batch and stretch): once the record is in
# the operating system (and, with durability="power", fsynced) the batch is
# committed.  Whenever a stretch is complete, its rows are written to the Zarr
# arrays as whole chunks (compressed once), recorded as compacted in the group
# metadata (fsynced first with durability="power"), and its log file is deleted.  ``close``
# compacts the last, partial stretch too, so a closed store is a plain Zarr
# group; a store whose writer died is read as its compacted rows plus the whole
# batches of its log.

_TAIL = "bigalign_tail"
_LOG_MAGIC = b"BALOG001"
#: magic, header length, payload length, crc32 of the header, crc32 of the payload
_LOG_PREFIX = struct.Struct("<8sIQII")


def _read_log(path: Path) -> list[tuple[dict, dict[str, np.ndarray]]]:
    """The intact records of one log file, in order: reading stops at the first torn or unwritten one."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    out = []
    pos = 0
    view = memoryview(data)
    while pos + _LOG_PREFIX.size <= len(data):
        magic, hlen, plen, hcrc, pcrc = _LOG_PREFIX.unpack_from(data, pos)
        h0 = pos + _LOG_PREFIX.size
        p0, end = h0 + hlen, h0 + hlen + plen
        if magic != _LOG_MAGIC or end > len(data) or zlib.crc32(view[h0:p0]) != hcrc:
            break
        if zlib.crc32(view[p0:end]) != pcrc:
            break
        head = json.loads(bytes(view[h0:p0]))
        arrays, off = {}, p0
        for name, dt, shape in head["sections"]:
            dtype = np.dtype(dt)
            count = int(np.prod(shape, dtype=np.int64))
            arrays[name] = np.frombuffer(data, dtype=dtype, count=count, offset=off).reshape(shape)
            off += count * dtype.itemsize
        out.append((head, arrays))
        pos = end
    return out


def _load_tail(root: Path, compacted: int) -> tuple[int, dict[str, np.ndarray]]:
    """Rows committed in the log beyond ``compacted``: (count, {array name: rows}).

    A batch counts when every one of its records is intact and it continues the
    rows before it; reading stops at the first batch that does not.
    """
    folder = root / _TAIL
    try:
        files = sorted(p for p in folder.iterdir() if p.suffix == ".log")
    except (FileNotFoundError, NotADirectoryError):
        return 0, {}
    records = [rec for f in files for rec in _read_log(f) if rec[0]["start"] >= compacted]
    # rows of each batch in intact records; the batch's rows before `compacted` are in the arrays already
    covered: dict[int, int] = {}
    for head, _ in records:
        covered[head["batch"]] = covered.get(head["batch"], 0) + head["rows"]
    records.sort(key=lambda r: r[0]["start"])
    pos, taken = compacted, []
    for head, arrays in records:
        whole = head["bstop"] - max(head["bstart"], compacted)
        if head["start"] != pos or covered[head["batch"]] != whole:
            break
        taken.append(arrays)
        pos += head["rows"]
    if not taken:
        return 0, {}
    return pos - compacted, {name: np.concatenate([a[name] for a in taken]) for name in taken[0]}


def _fsync_path(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Log:
    """One open log file of the staged tail."""

    def __init__(self, path: Path, size: int, sync: bool):
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        self.offset = 0
        self.on_disk = sync  # whether some of its records were fsynced (so its rows may go only once on disk elsewhere)
        self.dirty = False  # whether records were written since the last fsync
        if size > 0 and hasattr(os, "posix_fallocate"):
            try:  # allocated up front, a record's fdatasync need not journal a new file size
                os.posix_fallocate(self.fd, 0, size)
            except OSError:
                pass
        if sync:
            os.fsync(self.fd)
            _fsync_path(path.parent)

    def write(self, head: dict, sections: Sequence[tuple[str, np.ndarray]]) -> None:
        head = dict(head, sections=[[n, a.dtype.str, list(a.shape)] for n, a in sections])
        header = json.dumps(head).encode()
        buffers = [memoryview(np.ascontiguousarray(a)).cast("B") for _, a in sections]
        crc = 0
        for b in buffers:
            crc = zlib.crc32(b, crc)
        plen = sum(b.nbytes for b in buffers)
        prefix = _LOG_PREFIX.pack(_LOG_MAGIC, len(header), plen, zlib.crc32(header), crc)
        chunks: list[Any] = [prefix, header, *buffers]
        total = len(prefix) + len(header) + plen
        written = os.pwritev(self.fd, chunks, self.offset) if hasattr(os, "pwritev") else -1
        if written != total:  # short write (or no pwritev): write the rest plainly
            data = b"".join(bytes(c) for c in chunks)
            os.lseek(self.fd, self.offset, os.SEEK_SET)
            view = memoryview(data)
            done = 0
            while done < total:
                done += os.write(self.fd, view[done:])
        self.offset += total
        self.dirty = True

    def sync(self) -> None:
        (os.fdatasync if hasattr(os, "fdatasync") else os.fsync)(self.fd)
        self.on_disk, self.dirty = True, False

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


# --------------------------------------------------------------------------- #
# the writer
# --------------------------------------------------------------------------- #


class ActivationWriter:
    """Append batches of activations, for every layer at once, to a Zarr v3 store.

    Use as a context manager::

        with bigalign.ActivationWriter("acts.zarr") as w:
            for batch_ids, acts in batches:          # acts: {"layer1": array, ...}
                w.append(acts, sample_ids=batch_ids)

    Guarantees
    ----------
    * A batch is committed once :meth:`append` returns.  With
      ``durability="process"`` (default) it is then in the operating system:
      it survives the writing process being killed (SIGKILL, out-of-memory
      killer, a crash of Python), not a power loss or an OS crash; call
      :meth:`flush` (or :meth:`close`) to put everything acknowledged on disk.
      ``durability="power"`` fsyncs every batch before ``append`` returns, so
      every acknowledged batch also survives a power loss or an OS crash, at
      the price of one disk flush per batch.
    * A process killed mid-``append`` leaves a store that opens with exactly
      the batches whose ``append`` returned (and at most the batch in flight,
      whole): a half-written batch is invisible and is discarded when the store
      is reopened for appending.
    * ``mode="x"`` (default) creates a store and refuses to touch an existing
      one; ``mode="a"`` resumes an existing store (or creates one);
      ``mode="w"`` replaces whatever store is at ``path``.

    How (local stores): each batch is written raw to a small self-checking log
    in the store's ``bigalign_tail`` folder (and fsynced with
    ``durability="power"``), which commits it; once ``chunk_rows`` rows have
    gathered, they are written to the Zarr arrays as whole chunks (compressed
    once) and recorded, and the log is dropped.  So small batches cost about what writing the same data to Zarr in
    whole chunks costs, instead of recompressing a growing chunk on every
    append.  :meth:`close` (or leaving the ``with`` block) writes the last,
    partial chunk and removes the log folder: a closed store is a plain Zarr
    group.  bigalign reads a store whose writer died (its compacted chunks plus
    the batches in the log); other Zarr readers see the compacted rows only.

    Object stores (``s3://...`` URLs): each batch is written to the Zarr arrays
    directly, every chunk and metadata object by one PUT, which the store makes
    visible atomically, and the commit record last, so the guarantees above
    hold; fsync does not apply there (``durability`` is ignored), an object is
    durable once its PUT returns.  A killed writer may leave uncommitted chunk
    objects beyond the committed count; readers never look at them and
    ``mode="a"`` removes them.

    Parameters
    ----------
    path : str or pathlib.Path
        Directory or URL (``s3://bucket/acts.zarr``, any fsspec protocol) of the store.
    mode : {"x", "a", "w"}, default "x"
        ``"x"``: create a new store; an existing store (or any non-empty
        directory) at ``path`` is an error, never overwritten.  ``"a"``: append
        to / resume the store at ``path`` (created if missing).  ``"w"``:
        replace whatever store is at ``path``.
    chunk_rows : int, optional
        Rows per stored chunk, the same for every layer.  Default: a power of
        two giving the widest layer about 32 MiB per chunk.
    compressors : "default", None, or zarr codecs
        ``"default"`` uses Zarr's default (zstd); ``None`` stores uncompressed,
        which reads fastest for activations (they barely compress).
    durability : {"process", "power"}, default "process"
        What an acknowledged batch survives (local stores).  ``"process"``:
        the writing process being killed at any moment; nothing is fsynced
        until :meth:`flush` or :meth:`close`.  ``"power"``: also a power loss
        or an operating-system crash; every batch, compacted chunk and commit
        record is fsynced before it is acknowledged (one disk flush per
        ``append``: at small batches the disk's flush latency sets the pace).
    attrs : dict, optional
        User attributes to store on the group (e.g. model name).
    storage_options : dict, optional
        Options for the fsspec filesystem of a URL (credentials, endpoint, ...);
        see :func:`open_activations`.  Only for URLs.
    """

    def __init__(
        self,
        path: Any,
        mode: str = "x",
        *,
        chunk_rows: int | None = None,
        compressors: Any = "default",
        durability: str = "process",
        attrs: Mapping[str, Any] | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ):
        if mode not in ("x", "w", "a"):
            raise InvalidInputError(
                f"mode must be 'x' (create, never overwrite), 'a' (append/resume) or 'w' (replace); got {mode!r}."
            )
        if durability not in ("process", "power"):
            raise InvalidInputError(
                "durability must be 'process' (every acknowledged batch survives the writer being killed) or "
                f"'power' (also a power loss or OS crash: one fsync per batch); got {durability!r}."
            )
        if chunk_rows is not None and (not isinstance(chunk_rows, (int, np.integer)) or chunk_rows < 1):
            raise InvalidInputError(f"chunk_rows must be a positive integer; got {chunk_rows!r}.")
        self.path = path
        self._local = isinstance(path, (str, Path)) and "://" not in str(path)
        self._root = Path(path) if self._local else None
        self.chunk_rows = chunk_rows
        self.compressors = compressors
        self.durability = durability
        #: fsync every batch, compacted chunk and commit record (durability="power", local stores)
        self._sync_each = durability == "power" and self._local
        #: row ranges written into the arrays and not fsynced yet (durability="process"): flush() syncs them
        self._unsynced: list[tuple[int, int]] = []
        self._closed = True  # until opened
        self._logs: dict[int, _Log] = {}
        self._cache: dict[str, zarr.Array] = {}
        # rows logged but not yet compacted, from row self._staged_from on: a buffer of one chunk
        # stretch per array (a list of pieces for string ids); a second set is being compacted
        self._staged: dict[str, Any] | None = None
        self._staged_from = 0
        self._staged_rows = 0
        self._spare: dict[str, Any] | None = None
        self._pool: Any = None
        self._job: Any = None
        self._unit_rows: int | None = None
        self._tail_ready = False  # whether the log folder exists
        self._batch_seq = int.from_bytes(os.urandom(6), "little")
        exists = False
        try:
            if mode == "a":
                try:
                    group = _zarr_open_group(str(path), "r+", storage_options)
                    exists = True
                except (FileNotFoundError, zarr.errors.GroupNotFoundError):  # type: ignore[attr-defined]
                    group = self._create_group(path, storage_options, "a")
            elif mode == "x":
                group = self._create_group(path, storage_options, "x")
            else:
                group = _zarr_open_group(str(path), "w", storage_options)
        except zarr.errors.ContainsArrayError as exc:  # type: ignore[attr-defined]
            raise StoreError(
                f"{path!r} holds a Zarr array, not a group; expected an activation store (a group). "
                "Choose another path."
            ) from exc
        self._group = group
        if exists:
            meta = dict(group.attrs).get(_ATTR)
            if meta is None:
                raise StoreError(
                    f"{path!r} is a Zarr group not written by bigalign (no '{_ATTR}' attribute); "
                    "mode='a' can only resume bigalign stores. Write a new store with mode='w'."
                )
            self._meta = dict(meta)
            self._n = int(self._meta["n_samples"])
            self._closed = False
            self._recover()
        else:
            self._meta = {"format": FORMAT_VERSION, "layers": [], "n_samples": 0, "dtypes": {}, "has_ids": None,
                          "has_targets": None}  # fmt: skip
            self._n = 0
            if attrs:
                group.attrs.update(dict(attrs))
            self._commit()
            if self._local:
                self._clear_tail()
        self._closed = False
        if attrs and exists:
            group.attrs.update(dict(attrs))
        self._seen_ids: set | None = None

    def _create_group(self, path: Any, storage_options: Any, mode: str) -> zarr.Group:
        """A new group at ``path``, which must be missing, an empty directory or (URL) an empty prefix."""
        if mode == "x":
            hint = "Use mode='a' to append to (or resume) it, or mode='w' to replace it."
            what = "exists"
        else:
            hint = "Choose another path, or use mode='w' to replace it."
            what = "exists and is not a Zarr group; mode='a' never overwrites it"
        if self._local and self._root is not None and self._root.exists():
            if not self._root.is_dir() or any(self._root.iterdir()):
                kind = "a bigalign store" if (self._root / "zarr.json").is_file() else "something"
                raise StoreError(
                    f"{str(path)!r} {what} (it holds {kind}); mode={mode!r} "
                    + ("(the default) never overwrites. " if mode == "x" else "")
                    + "Expected a missing path or an empty directory. "
                    + hint
                )
        try:
            # a URL: "w-" creates the group only where nothing is stored under the prefix
            return _zarr_open_group(str(path), "w" if self._local else "w-", storage_options)
        except (FileExistsError, zarr.errors.ContainsGroupError) as exc:  # type: ignore[attr-defined]
            raise StoreError(
                f"{str(path)!r} {what}; mode={mode!r} never overwrites. Expected nothing stored under it. {hint}"
            ) from exc

    # -- state ----------------------------------------------------------------
    @property
    def n_samples(self) -> int:
        """Number of committed samples."""
        return int(self._n)

    @property
    def layers(self) -> list[str]:
        return list(self._meta["layers"])

    def _names(self) -> list[str]:
        names = list(self._meta["layers"]) + ([_IDS] if self._meta.get("has_ids") else [])
        return names + ([_TARGETS] if self._meta.get("has_targets") else [])

    def _arrays(self) -> dict[str, zarr.Array]:
        names = self._names()
        if set(self._cache) != set(names):
            # write every chunk, even all-zero ones (dead units): readers treat a missing chunk as damage
            self._cache = {n: self._group[n].with_config({"write_empty_chunks": True}) for n in names}  # type: ignore[union-attr]
        return self._cache

    def _unit(self) -> int:
        """Rows per compaction: the smallest chunk of the store's layers."""
        if self._unit_rows is None:
            arrays = self._arrays()
            self._unit_rows = min(int(arrays[n].chunks[0]) for n in self._meta["layers"])
        return self._unit_rows

    def _recover(self) -> None:
        """Adopt the batches committed in the log, drop whatever an interrupted append left beyond them."""
        n = int(self._meta["n_samples"])
        if self._meta["layers"]:
            for arr in self._arrays().values():
                if arr.shape[0] != n:
                    arr.resize((n,) + tuple(arr.shape[1:]))
        if self._local:
            assert self._root is not None
            # temporary files of chunk writes that a killed writer never renamed
            for tmp in self._root.rglob("*.partial"):
                tmp.unlink(missing_ok=True)
            rows, tail = _load_tail(self._root, n) if self._meta["layers"] else (0, {})
            if rows:
                self._n = n + rows
                self._write_rows(n, self._n, tail)
                self._sync_arrays()  # the log may have been flushed: its rows go on disk before it goes
            self._staged_from = self._n
            self._clear_tail()

    def _commit(self) -> None:
        # zarr writes metadata by write-to-temp-then-rename: the commit is atomic.
        self._group.attrs.update({_ATTR: dict(self._meta)})
        if self._sync_each:
            assert self._root is not None
            _fsync_path(self._root / "zarr.json")
            _fsync_path(self._root)

    def _clear_tail(self) -> None:
        """Remove the log folder (every row in it is compacted, or none of it is committed)."""
        if any(log.on_disk for log in self._logs.values()):
            self._sync_arrays()  # a flushed log goes only once its rows are on disk in the arrays
        for log in self._logs.values():
            log.close()
        self._logs.clear()
        assert self._root is not None
        folder = self._root / _TAIL
        self._tail_ready = False
        if folder.is_dir():
            for f in folder.iterdir():
                f.unlink(missing_ok=True)
            folder.rmdir()
            if self._sync_each:
                _fsync_path(self._root)

    # -- API --------------------------------------------------------------------
    def append(self, batch: Mapping[str, Any], sample_ids: Any = None, targets: Any = None) -> int:
        """Write one batch of every layer and commit it.

        Parameters
        ----------
        batch : mapping of str to array
            One array per layer, all with the same number of rows.  The first
            batch fixes the layer set, feature shapes and dtypes.
        sample_ids : array-like, optional
            One unique id (integer or string) per row.  Either every batch has
            ids or none does.
        targets : array-like, optional
            The task's targets for these rows: 1-D labels (integers, bools) or
            values, or a 2-D (batch_size, c) array.  Either every batch has
            targets or none does; readers get them as ``store.targets``
            (used by stitching and task alignment, and by ``bigalign report``).

        Returns
        -------
        int
            The number of committed samples after this batch.
        """
        if self._closed:
            raise StoreError("this ActivationWriter is closed; open a new one with mode='a' to append more.")
        if not isinstance(batch, Mapping) or not batch:
            raise InvalidInputError(
                f"batch must be a non-empty mapping of layer name to array; got {type(batch).__name__}."
            )
        arrays = {}
        for name, value in batch.items():
            if not isinstance(name, str) or not _LAYER_NAME.fullmatch(name) or name in _RESERVED:
                raise InvalidInputError(
                    "layer names must be made of letters, digits, '.', '_' and '-', not start with '.', and "
                    f"not be one of {sorted(_RESERVED)}; got {name!r}. Rename the layer (e.g. 'blocks.3.mlp' is fine)."
                )
            a = _as_numpy(value, f"layer {name!r}")
            if a.ndim < 2:
                raise InvalidInputError(
                    f"layer {name!r}: a batch must have shape (batch_size, n_features, ...); got shape {a.shape}. "
                    "Reshape a single-feature batch with a.reshape(-1, 1)."
                )
            _check_dtype(a.dtype, f"layer {name!r}")
            arrays[name] = a
        rows = {n: a.shape[0] for n, a in arrays.items()}
        if len(set(rows.values())) != 1:
            raise InvalidInputError(
                f"every layer of a batch must have the same number of rows; got {rows}. "
                "Append the same samples for every layer."
            )
        m = next(iter(rows.values()))
        ids = None
        if sample_ids is not None:
            ids = np.asarray(sample_ids)
            if ids.ndim != 1 or ids.shape[0] != m:
                raise InvalidInputError(
                    f"sample_ids must be 1-D with one id per row ({m}); got shape {ids.shape}."
                )
            if ids.dtype.kind not in "iuUTO":
                raise InvalidInputError(f"sample_ids must be integers or strings; got dtype {ids.dtype}.")
            if ids.dtype.kind in "UTO":
                ids = ids.astype(str)
        tgt = None
        if targets is not None:
            tgt = np.asarray(targets)
            if tgt.ndim not in (1, 2) or tgt.shape[0] != m:
                raise InvalidInputError(
                    f"targets must be 1-D (one label or value per row) or 2-D (rows, c) with {m} rows, like the "
                    f"batch; got shape {tgt.shape}."
                )
            if tgt.dtype.kind not in "biuf":
                raise InvalidInputError(
                    f"targets must be numeric (integer/bool labels or float values); got dtype {tgt.dtype}. "
                    "Encode string labels as integers first (e.g. numpy.unique(labels, return_inverse=True))."
                )
            if tgt.dtype.kind == "f" and not np.isfinite(tgt).all():
                raise InvalidInputError("targets contain NaN or infinity; expected finite values. Drop those samples.")
        if ids is not None:
            uniq, counts = np.unique(ids, return_counts=True)
            if (counts > 1).any():
                raise InvalidInputError(
                    f"sample_ids within a batch must be unique; got duplicates {uniq[counts > 1][:5].tolist()}."
                )
        if not self._meta["layers"]:
            self._create(arrays, ids, tgt)
        else:
            self._check_consistent(arrays, ids, tgt)
        if ids is not None:
            self._check_unique(ids)
        if m == 0:
            return self.n_samples
        # in the stored dtypes (bfloat16 as its bits)
        data: dict[str, np.ndarray] = {}
        for name, a in arrays.items():
            if self._meta["dtypes"].get(name) == "bfloat16":
                a = a.astype(_BF16, copy=False).view(np.uint16)
            else:
                want = self._arrays()[name].dtype
                if a.dtype != want:
                    a = a.astype(want)
            data[name] = a
        if ids is not None:
            data[_IDS] = ids if ids.dtype.kind == "U" else ids.astype(np.int64, copy=False)
        if tgt is not None:
            data[_TARGETS] = tgt.astype(self._arrays()[_TARGETS].dtype, copy=False)
        if self._local:
            stop = self._append_logged(data, m)
        else:
            stop = self._append_direct(data, m)
        if ids is not None and self._seen_ids is not None:
            self._seen_ids.update(ids.tolist())
        return stop

    def _append_logged(self, data: dict[str, np.ndarray], m: int) -> int:
        """Commit the batch to the log (one record per chunk stretch it touches), then compact full stretches."""
        assert self._root is not None
        unit = self._unit()
        start, stop = self._n, self._n + m
        if self._job is not None and self._job[0].done():
            self._wait()  # surface a failed compaction early
        cuts = [start] + list(range((start // unit + 1) * unit, stop, unit)) + [stop]
        self._batch_seq += 1  # tells the records of one batch apart from others' (the log starts empty per session)
        batch_id = self._batch_seq
        folder = self._root / _TAIL
        if not self._tail_ready:
            folder.mkdir(exist_ok=True)
            self._tail_ready = True
            # an (empty) Zarr group, so that Zarr's listing of the store recognises the folder
            (folder / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group", "attributes": {}}')
            if self._sync_each:
                _fsync_path(self._root)
        row_bytes = sum(a[:1].nbytes for a in data.values() if a.dtype.kind != "U") + 64
        touched = []
        for a, b in zip(cuts[:-1], cuts[1:]):
            k = a // unit
            log = self._logs.get(k)
            if log is None:
                log = self._logs[k] = _Log(folder / f"{k:012d}.log", (min(unit, (k + 1) * unit - a) * row_bytes
                                                                   if self._sync_each else 0), self._sync_each)  # fmt: skip
            head = {"batch": batch_id, "bstart": start, "bstop": stop, "start": a, "rows": b - a}
            log.write(head, [(name, arr[a - start : b - start]) for name, arr in data.items()])
            touched.append(log)
        if self._sync_each:
            for log in touched:
                log.sync()
        # committed: readers now see the batch
        self._n = stop
        # stage the rows; every chunk stretch they complete goes to the arrays in the background
        for a, b in zip(cuts[:-1], cuts[1:]):
            self._stage(data, a - start, b - start)
            if b % unit == 0:
                self._compact_staged(b)
        return stop

    def _stage(self, data: Mapping[str, np.ndarray], i0: int, i1: int) -> None:
        if self._staged is None:
            self._staged = self._spare if self._spare is not None else self._new_buffers()
            self._spare = None
            for name, buf in self._staged.items():
                if isinstance(buf, list):
                    buf.clear()
        offset = self._staged_rows
        for name, buf in self._staged.items():
            if isinstance(buf, list):
                buf.append(np.array(data[name][i0:i1]))
            else:
                buf[offset : offset + i1 - i0] = data[name][i0:i1]
        self._staged_rows += i1 - i0

    def _new_buffers(self) -> dict[str, Any]:
        unit = self._unit()
        out: dict[str, Any] = {}
        for name, arr in self._arrays().items():
            if np.dtype(arr.dtype).kind in "OTU":
                out[name] = []
            else:
                out[name] = np.empty((unit,) + tuple(arr.shape[1:]), dtype=arr.dtype)
        return out

    def _staged_view(self, staged: Mapping[str, Any], rows: int) -> dict[str, np.ndarray]:
        return {name: (np.concatenate(buf) if buf else np.empty(0, str)) if isinstance(buf, list) else buf[:rows]
                for name, buf in staged.items()}  # fmt: skip

    def _compact_staged(self, upto: int) -> None:
        """Hand the staged rows ``self._staged_from .. upto`` to the background compaction."""
        self._wait()
        staged, start, rows = self._staged, self._staged_from, self._staged_rows
        assert staged is not None and start + rows == upto
        self._staged, self._staged_rows, self._staged_from = None, 0, upto
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bigalign-writer")
        self._job = (self._pool.submit(self._write_rows, start, upto, self._staged_view(staged, rows)), staged, upto)

    def flush(self) -> None:
        """Put every acknowledged batch on disk (fsync), so that it survives a power loss or an OS crash.

        Waits until the rows handed to the background compaction are in the
        arrays (re-raising its error), then fsyncs the chunks written since the
        last flush, the commit record and the log of the rows not compacted
        yet.  With ``durability="power"`` everything is on disk already; with
        ``durability="process"`` calling ``flush()`` every so many batches
        bounds what a power loss can take.  Object stores: waits only.
        """
        if self._closed:
            return
        self._wait()
        if not self._local:
            return
        self._sync_arrays()
        for log in self._logs.values():
            if log.dirty:
                log.sync()
        if self._logs:
            assert self._root is not None
            _fsync_path(self._root / _TAIL)
            _fsync_path(self._root)

    def _sync_arrays(self) -> None:
        """fsync the chunks written into the arrays since the last sync, then the commit record."""
        if not self._unsynced:
            return
        ranges, self._unsynced = self._unsynced, []
        for done, upto in ranges:
            for name, arr in self._arrays().items():
                self._fsync_chunks(name, arr, done, upto)
        assert self._root is not None
        _fsync_path(self._root / "zarr.json")
        _fsync_path(self._root)

    def _wait(self) -> None:
        """Wait until the rows handed to the background compaction are in the arrays (re-raising its error)."""
        if self._job is None:
            return
        future, staged, upto = self._job
        self._job = None
        try:
            future.result()
        except BaseException:
            self._closed = True  # what was acknowledged is in the log: reopen with mode="a"
            raise
        self._spare = staged
        self._drop_logs(upto)

    def _drop_logs(self, upto: int) -> None:
        unit = self._unit()
        drop = [k for k in self._logs if (k + 1) * unit <= upto or upto >= self._n]
        if any(self._logs[k].on_disk for k in drop):
            self._sync_arrays()  # a flushed log goes only once its rows are on disk in the arrays
        for k in drop:
            log = self._logs.pop(k)
            log.close()
            log.path.unlink(missing_ok=True)

    def _write_rows(self, done: int, upto: int, rows: Mapping[str, np.ndarray]) -> None:
        """Write rows ``done .. upto`` into the Zarr arrays, fsync them, then record them as compacted."""
        stored = self._arrays()
        for name, arr in stored.items():
            if arr.shape[0] < upto:
                arr.resize((upto,) + tuple(arr.shape[1:]))
            arr[done:upto] = rows[name][: upto - done]
        if self._sync_each:
            for name, arr in stored.items():
                self._fsync_chunks(name, arr, done, upto)
        else:
            self._unsynced.append((done, upto))
        self._meta["n_samples"] = upto
        self._commit()

    def _append_direct(self, data: dict[str, np.ndarray], m: int) -> int:
        """Object stores: write the batch into the arrays, then commit the count."""
        start, stop = self._n, self._n + m
        stored = self._arrays()
        # 1. grow the arrays (invisible to readers: they stop at the committed count)
        for arr in stored.values():
            arr.resize((stop,) + tuple(arr.shape[1:]))
        # 2. write the data (each chunk object is replaced atomically)
        for name, arr in stored.items():
            arr[start:stop] = data[name]
        # 3. commit
        self._meta["n_samples"] = stop
        self._commit()
        self._n = stop
        return stop

    def _create(self, arrays: Mapping[str, np.ndarray], ids: np.ndarray | None, tgt: np.ndarray | None = None) -> None:
        comp: Any = "auto" if self.compressors == "default" else self.compressors
        dtypes = {}
        widest = max(max(1, int(np.prod(a.shape[1:]))) * (2 if a.dtype == _BF16 else a.dtype.itemsize)
                     for a in arrays.values())  # fmt: skip
        rows = self.chunk_rows or max(1, 2 ** int(math.log2(max(1, _DEFAULT_CHUNK_BYTES // widest))))
        for name, a in arrays.items():
            stored = np.dtype(np.uint16) if a.dtype == _BF16 else a.dtype
            if a.dtype == _BF16:
                dtypes[name] = "bfloat16"
            # overwrite: arrays left by a writer killed during its first append are not committed
            self._group.create_array(
                name,
                shape=(0,) + a.shape[1:],
                chunks=(rows,) + a.shape[1:],
                dtype=stored,
                compressors=comp,
                overwrite=True,
            )
        if ids is not None:
            self._group.create_array(
                _IDS,
                shape=(0,),
                chunks=(self.chunk_rows or 65536,),
                dtype=str if ids.dtype.kind == "U" else ids.dtype,
                overwrite=True,
            )
        if tgt is not None:
            self._group.create_array(  # labels as int64, values as float64: later batches never narrow
                _TARGETS,
                shape=(0,) + tgt.shape[1:],
                chunks=(self.chunk_rows or 65536,) + tgt.shape[1:],
                dtype=np.float64 if tgt.dtype.kind == "f" else np.int64,
                overwrite=True,
            )
        self._meta.update(layers=list(arrays), dtypes=dtypes, has_ids=ids is not None, has_targets=tgt is not None)
        self._unit_rows = None
        self._commit()

    def _check_consistent(self, arrays: Mapping[str, np.ndarray], ids: np.ndarray | None, tgt: np.ndarray | None) -> None:
        if set(arrays) != set(self._meta["layers"]):
            raise InvalidInputError(
                f"a batch must contain exactly the store's layers {self._meta['layers']}; got {list(arrays)}."
            )
        cached = self._arrays()
        for name, a in arrays.items():
            arr = cached[name]
            if tuple(a.shape[1:]) != tuple(arr.shape[1:]):  # type: ignore[union-attr]
                raise InvalidInputError(
                    f"layer {name!r}: features per sample must stay {tuple(arr.shape[1:])}; "  # type: ignore[union-attr]
                    f"got a batch of shape {a.shape}."
                )
        if (ids is not None) != bool(self._meta.get("has_ids")):
            raise InvalidInputError(
                "either every batch has sample_ids or none does; this store "
                + ("has ids, so pass sample_ids=..." if self._meta.get("has_ids") else "has no ids, so omit sample_ids.")
            )
        if (tgt is not None) != bool(self._meta.get("has_targets")):
            raise InvalidInputError(
                "either every batch has targets or none does; this store "
                + ("has targets, so pass targets=..." if self._meta.get("has_targets") else "has no targets, so omit targets.")
            )
        if tgt is not None:
            arr = cached[_TARGETS]
            if tuple(tgt.shape[1:]) != tuple(arr.shape[1:]) or not np.can_cast(tgt.dtype, arr.dtype, "safe"):  # type: ignore[union-attr]
                raise InvalidInputError(
                    f"targets must keep the shape (rows,) + {tuple(arr.shape[1:])} of the first batch and a dtype "  # type: ignore[union-attr]
                    f"that converts to the stored {arr.dtype} without loss; got shape {tgt.shape}, dtype {tgt.dtype}. "  # type: ignore[union-attr]
                    "Labels stay integers (int64) and values floats for the whole store."
                )

    def _check_unique(self, ids: np.ndarray) -> None:
        if self._seen_ids is None:
            self._wait()  # rows up to self._staged_from are in the arrays (object stores: every committed row)
            n = self._staged_from if self._local else self._n
            existing = self._arrays()[_IDS][:n] if n else np.array([])
            seen = set(np.asarray(existing).tolist())
            if self._staged is not None:  # rows logged since, not yet handed to the arrays
                seen.update(self._staged_view(self._staged, self._staged_rows)[_IDS].tolist())
            self._seen_ids = seen
        dup = [i for i in ids.tolist() if i in self._seen_ids]
        if dup:
            raise InvalidInputError(
                f"sample_ids {dup[:5]} are already in the store; each sample may be written once. "
                "Skip samples that were already appended (e.g. after resuming)."
            )

    def _fsync_chunks(self, name: str, arr: zarr.Array, start: int, stop: int) -> None:
        assert self._root is not None
        rows = int(arr.chunks[0])
        tail = ["0"] * (arr.ndim - 1)
        base = self._root / name
        for i in range(start // rows, (stop - 1) // rows + 1):
            _fsync_path(base.joinpath("c", str(i), *tail))
        _fsync_path(base / "zarr.json")
        for i in {start // rows, (stop - 1) // rows}:
            _fsync_path(base.joinpath("c", str(i), *tail[:-1]) if tail else base / "c")

    def close(self) -> None:
        """Write the rows still in the log into the arrays (a partial last chunk) and remove the log."""
        if self._closed:
            return
        try:
            self._wait()
        finally:
            self._closed = True
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
        if self._local and self._meta.get("layers"):
            if self._n > self._staged_from:
                assert self._staged is not None
                self._write_rows(self._staged_from, self._n, self._staged_view(self._staged, self._staged_rows))
                self._staged, self._staged_rows, self._staged_from = None, 0, self._n
            self._clear_tail()

    def __enter__(self) -> "ActivationWriter":
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None or issubclass(exc_type, Exception):
            self.close()
        else:  # KeyboardInterrupt and the like: what is committed stays committed, in the log
            self._closed = True
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=False)
                self._pool = None
            for log in self._logs.values():
                log.close()

    def __repr__(self) -> str:
        return f"ActivationWriter({self.path!r}, n_samples={self.n_samples}, layers={self.layers})"
