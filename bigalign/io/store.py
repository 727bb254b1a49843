"""Reading activation stores: :class:`ActivationStore` (a Zarr group) and its :class:`Layer` arrays."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import dask.array as da
import numpy as np
import zarr

from ..errors import StoreError
from ._common import _ATTR, _BF16, _IDS, _natural_key, _take_by_chunks, _TARGETS
from .tail import _load_tail


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
