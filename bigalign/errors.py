"""Error hierarchy.

Every message bigalign raises says what went wrong, what was expected, what was
got, and how to fix it.  Catch :class:`BigalignError` to catch them all; the
input errors are also ``ValueError`` so generic handlers keep working.
"""

from __future__ import annotations

__all__ = [
    "BigalignError",
    "InvalidInputError",
    "PairingError",
    "NonFiniteError",
    "DegenerateInputError",
    "StoreError",
]


class BigalignError(Exception):
    """Base class of every error bigalign raises on purpose."""


class InvalidInputError(BigalignError, ValueError):
    """An argument has the wrong shape, dtype, value or type."""


class PairingError(InvalidInputError):
    """Two representations do not describe the same samples in the same order."""


class NonFiniteError(InvalidInputError):
    """A representation holds NaN or infinite values (the message names the rows)."""


class DegenerateInputError(BigalignError, ValueError):
    """The metric is undefined for this input (e.g. CKA of a constant representation).

    ``reason`` is a short machine-readable tag such as ``"x_constant"``.
    """

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


class StoreError(BigalignError, OSError):
    """An activation store is missing, malformed, or cannot be written."""
