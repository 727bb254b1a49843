"""Shared pieces of the activation-store modules.

Format constants, opening Zarr groups (local or by URL), chunk-wise reads and array conversions.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

import ml_dtypes
import numpy as np
import zarr

from ..errors import InvalidInputError, StoreError


FORMAT_VERSION = 1


_ATTR = "bigalign"


_IDS = "sample_ids"


_TARGETS = "targets"


_BF16 = np.dtype(ml_dtypes.bfloat16)


_DEFAULT_CHUNK_BYTES = 32 * 2**20


_LAYER_NAME = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9._\-]*")


_RESERVED = {_IDS, _TARGETS, "zarr.json", "bigalign_tail"}


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
