"""Data checks run inside partials, where the rows are (so errors can name them)."""

from __future__ import annotations

import numpy as np

from .errors import InvalidInputError, NonFiniteError


def raise_nonfinite(block: np.ndarray, name: str, start: int) -> None:
    """Raise :class:`NonFiniteError` naming the rows of ``block`` (rows start..) that are not finite."""
    bad = np.flatnonzero(~np.isfinite(np.asarray(block, dtype=np.float64)).all(axis=1))
    first, last = start + int(bad[0]), start + int(bad[-1])
    raise NonFiniteError(
        f"{name} holds NaN or infinite values: {bad.size} row(s) between rows {first} and {last} "
        f"(block {start}:{start + block.shape[0]}). Expected finite numbers. Remove or repair these rows "
        "(for float16 activations, check for overflow beyond ±65504)."
    )


#: largest magnitude accepted where squared distances are formed (their squares must fit float64)
MAX_KERNEL_MAGNITUDE = 1e100


def finite_float64(block: np.ndarray, name: str, start: int) -> np.ndarray:
    """A float64 copy of ``block``; raises if it holds NaN/Inf or magnitudes whose squares overflow."""
    x = np.array(block, dtype=np.float64, order="C", copy=True)
    if not np.isfinite(x.sum()):
        if not np.isfinite(x).all():
            raise_nonfinite(x, name, start)
    amax = float(np.abs(x).max()) if x.size else 0.0
    if amax > MAX_KERNEL_MAGNITUDE:
        raise InvalidInputError(
            f"{name} has values of magnitude {amax:.3g} (rows {start}..{start + x.shape[0] - 1}); squared "
            f"distances need magnitudes below {MAX_KERNEL_MAGNITUDE:g} to stay inside float64. Rescale the input "
            "(with bandwidth='median' the kernel metrics are scale invariant)."
        )
    return x


def check_applies(func: str, road: str, **options: tuple[object, object]) -> None:
    """Raise :class:`InvalidInputError` for an option that was given but does not apply to ``road``.

    ``options`` maps each option name to ``(value, default)``; an option whose
    value is not its default was set by the caller, and an option that shapes
    nothing must be an error, never silently dropped.  Example:
    ``check_applies("cka", "the linear kernel", bandwidth=(bandwidth, "median"))``.
    """
    given = [name for name, (value, default) in options.items() if not _same(value, default)]
    if given:
        shown = ", ".join(f"{name}={options[name][0]!r}" for name in given)
        raise InvalidInputError(
            f"{func}: {shown} does not apply to {road} (it would be ignored). Expected "
            f"{' and '.join(f'{name}={options[name][1]!r} (the default)' for name in given)}. "
            f"Drop {'it' if len(given) == 1 else 'them'}, or choose a kernel or method that uses "
            f"{'it' if len(given) == 1 else 'them'}."
        )


def _same(value: object, default: object) -> bool:
    if value is default:
        return True
    try:
        return bool(value == default) and type(value) is type(default)
    except (TypeError, ValueError):  # arrays and other values without a plain truth value
        return False


def invalid_parameter(func: str, param: str, expected: str, got: object, fix: str = "") -> InvalidInputError:
    """The one error template for a bad option value: what, expected, got, and how to fix it.

    ``raise invalid_parameter("cka", "estimator", "one of ['unbiased', 'biased']", value)`` reads
    "the 'estimator' parameter of cka must be one of ['unbiased', 'biased']; got 'x' instead."
    """
    message = f"the {param!r} parameter of {func} must be {expected}; got {got!r} instead."
    return InvalidInputError(f"{message} {fix}" if fix else message)
