"""Child process for the crash-safety test (tests/test_writer_crash.py).

Usage::

    python tests/writer_child.py PATH TOTAL_BATCHES [COMPRESSORS]

Opens ``bigalign.ActivationWriter(PATH, mode="a")`` (creating the store when it
is missing), works out from the committed sample count which batch comes next,
and appends the deterministic batches up to ``TOTAL_BATCHES``.  Protocol on
stdout, one line each, flushed immediately:

* ``READY <n>`` once the writer is open (recovery done), ``n`` committed samples;
* ``ACK <n>`` after each ``append`` returned, ``n`` committed samples;
* ``DONE <n>`` when every batch is in the store.

Exit status 3 (with a message on stderr) if the store's committed sample count
is not a whole number of batches, which a correct writer never produces.

The batch contents are a pure function of the batch index (see
:func:`make_batch`); the parent test imports this module to recompute them.
Values are small integers so that float16 and bfloat16 hold them exactly.
"""

from __future__ import annotations

import sys

import ml_dtypes
import numpy as np

#: layer name -> (feature shape, dtype); one wide float32 layer carries most of the bytes.
LAYERS: dict[str, tuple[tuple[int, ...], np.dtype]] = {
    "a": ((2048,), np.dtype(np.float32)),
    "h": ((16, 64), np.dtype(np.float16)),
    "c": ((512,), np.dtype(ml_dtypes.bfloat16)),
}
#: rows per stored chunk; deliberately not a divisor of any batch size.
CHUNK_ROWS = 96


def batch_rows(b: int) -> int:
    """Rows of batch ``b`` (160..309: about 1.8-3.4 MB per batch over all layers)."""
    return 160 + (b * 53) % 150


def boundaries(total: int) -> list[int]:
    """Committed sample counts that are whole batches: [0, rows(0), rows(0)+rows(1), ...]."""
    out = [0]
    for b in range(total):
        out.append(out[-1] + batch_rows(b))
    return out


def sample_ids(start: int, stop: int) -> np.ndarray:
    """Ids of global rows start..stop-1 (strings, so the vlen-string path is exercised too)."""
    return np.array([f"sample-{r:06d}" for r in range(start, stop)])


def layer_values(name: str, start: int, stop: int) -> np.ndarray:
    """Content of layer ``name`` for global rows start..stop-1, in the layer's dtype and shape."""
    shape, dtype = LAYERS[name]
    width = int(np.prod(shape))
    salt = np.uint64(sum(map(ord, name)))
    rows = np.arange(start, stop, dtype=np.uint64)[:, None]
    cols = np.arange(width, dtype=np.uint64)[None, :]
    x = rows * np.uint64(2654435761) + cols * np.uint64(40503) + salt * np.uint64(97)
    x ^= x >> np.uint64(13)
    v = (x % np.uint64(251)).astype(np.int16) - 125  # integers in [-125, 125]: exact in bf16
    return v.astype(dtype).reshape((stop - start,) + shape)


def make_batch(b: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The deterministic batch ``b``: ({layer: array}, sample_ids)."""
    start = boundaries(b)[-1]
    stop = start + batch_rows(b)
    return {name: layer_values(name, start, stop) for name in LAYERS}, sample_ids(start, stop)


def main(argv: list[str]) -> int:
    path, total = argv[1], int(argv[2])
    compressors = None if len(argv) < 4 or argv[3] == "none" else "default"

    import bigalign

    bounds = boundaries(total)
    import os

    durability = os.environ.get("BIGALIGN_SOAK_DURABILITY", "process")  # or "power": one fsync per batch
    w = bigalign.ActivationWriter(path, mode="a", chunk_rows=CHUNK_ROWS, compressors=compressors, durability=durability)
    n = w.n_samples
    if n not in bounds:
        print(f"BAD committed sample count {n} is not a whole number of batches {bounds}", file=sys.stderr)
        return 3
    print(f"READY {n}", flush=True)
    with w:
        for b in range(bounds.index(n), total):
            batch, ids = make_batch(b)
            n = w.append(batch, sample_ids=ids)
            if b % 5 == 4:
                w.flush()  # kills land inside flush() too
            print(f"ACK {n}", flush=True)
    print(f"DONE {n}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
