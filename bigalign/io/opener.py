""":func:`open_activations`: any activation store or array file, by path or URL."""

from __future__ import annotations

from typing import Any, Mapping

import zarr

from ..errors import InvalidInputError
from ._common import _open_group
from .files import _array_file_kind, ArrayFileStore
from .store import ActivationStore


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
