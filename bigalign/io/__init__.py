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

The package, by concern (every name is importable from ``bigalign.io``):

* :mod:`~bigalign.io.store` -- reading Zarr stores (:class:`ActivationStore`, :class:`Layer`);
* :mod:`~bigalign.io.files` -- array files read as stores (``.npy``, ``.npz``, ``.safetensors``, HDF5, ``.pt``);
* :mod:`~bigalign.io.opener` -- :func:`open_activations`;
* :mod:`~bigalign.io.representation` -- :func:`as_representation` and :class:`Representation`;
* :mod:`~bigalign.io.pairing` -- :func:`check_pairing` and :class:`PairingWarning`;
* :mod:`~bigalign.io.writer` -- the crash-safe :class:`ActivationWriter`, and
  :mod:`~bigalign.io.tail` -- its staged log;
* :mod:`~bigalign.io._common` -- format constants, group opening, chunk reads, array conversions.
"""

from __future__ import annotations

from ._common import (  # noqa: F401
    _as_numpy,
    _ATTR,
    _BF16,
    _check_dtype,
    _DEFAULT_CHUNK_BYTES,
    FORMAT_VERSION,
    _IDS,
    _is_torch_tensor,
    _is_url,
    _LAYER_NAME,
    _natural_key,
    _open_group,
    _regular_chunks,
    _RESERVED,
    _take_by_chunks,
    _TAKE_CHUNKS,
    _TARGETS,
    _torch_to_numpy,
    _zarr_open_group,
)
from .tail import (  # noqa: F401
    _fsync_path,
    _load_tail,
    _Log,
    _LOG_MAGIC,
    _LOG_PREFIX,
    _read_log,
    _TAIL,
)
from .store import (  # noqa: F401
    ActivationStore,
    Layer,
)
from .files import (  # noqa: F401
    _array_file_kind,
    ARRAY_FILE_SUFFIXES,
    ArrayFileStore,
    ArrayLayer,
    _read_hdf5,
    _read_npz,
    _read_safetensors,
    _read_torch,
    _ROWS_PER_READ,
    _SAFETENSORS_DTYPES,
)
from .opener import (  # noqa: F401
    open_activations,
)
from .representation import (  # noqa: F401
    as_representation,
    _layer_of_path,
    Representation,
)
from .pairing import (  # noqa: F401
    check_pairing,
    _compare_ids,
    _item,
    PairingWarning,
)
from .writer import (  # noqa: F401
    ActivationWriter,
)

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
