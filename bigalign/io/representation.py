"""Normalising inputs: anything array-like (numpy, dask, zarr, torch, h5py, store layers,
array-file paths) as a :class:`Representation`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import zarr

from ..errors import InvalidInputError
from ._common import _check_dtype, _is_torch_tensor, _regular_chunks, _take_by_chunks, _torch_to_numpy
from .files import _ROWS_PER_READ
from .opener import open_activations
from .store import Layer


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
