"""Data checks run inside partials, where the rows are (so errors can name them)."""

from __future__ import annotations

import numpy as np

from .errors import NonFiniteError


def raise_nonfinite(block: np.ndarray, name: str, start: int) -> None:
    """Raise :class:`NonFiniteError` naming the rows of ``block`` (rows start..) that are not finite."""
    bad = np.flatnonzero(~np.isfinite(np.asarray(block, dtype=np.float64)).all(axis=1))
    first, last = start + int(bad[0]), start + int(bad[-1])
    raise NonFiniteError(
        f"{name} holds NaN or infinite values: {bad.size} row(s) between rows {first} and {last} "
        f"(block {start}:{start + block.shape[0]}). Expected finite numbers. Remove or repair these rows "
        "(for float16 activations, check for overflow beyond ±65504)."
    )


def finite_float64(block: np.ndarray, name: str, start: int) -> np.ndarray:
    """A float64 copy of ``block``; raises :class:`NonFiniteError` if it holds NaN/Inf."""
    x = np.array(block, dtype=np.float64, order="C", copy=True)
    if not np.isfinite(x.sum()):
        raise_nonfinite(x, name, start)
    return x
