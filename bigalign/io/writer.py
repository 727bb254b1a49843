""":class:`ActivationWriter`: crash-safe appends of activation batches to a Zarr store."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import zarr

from ..errors import InvalidInputError, StoreError
from ._common import (
    _ATTR,
    _BF16,
    _DEFAULT_CHUNK_BYTES,
    _IDS,
    _LAYER_NAME,
    _RESERVED,
    _TARGETS,
    FORMAT_VERSION,
    _as_numpy,
    _check_dtype,
    _zarr_open_group,
)
from .tail import _fsync_path, _load_tail, _Log, _TAIL


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
