"""The frozen Result every metric returns."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

__all__ = ["Result", "ResultProtocol"]


def _freeze(mapping: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping or {}))


class ResultProtocol:
    """The protocol of every public result that carries more than one number.

    :class:`Result` is the plain form; the richer results (spectra, KARE,
    stitching, tests) add their own fields and keep these, so any result can
    be read, printed and serialised the same way:

    ``metric``
        The measure's name.
    ``value``, ``float(result)``
        The one headline quantity (a Python float), the same quantity whatever
        the options (each class's docstring says which).
    ``estimator``
        ``"unbiased"`` or ``"biased"`` (plug-in / V-statistic / in-sample).
    ``method``
        The estimation road that produced the value.
    ``parameters``
        Every option that shaped the answer (one that does not apply is an
        error, never ignored).
    ``flags``
        Degenerate or noteworthy conditions.
    ``stderr``
        Approximation error against the exact value on the same rows, or None.
    ``ci``, ``ci_level``
        A confidence interval for the population value and its level, or None.
    ``to_dict()``
        All of it as JSON-safe plain types (``protocol_dict()`` holds the
        protocol's part).
    """

    metric: str
    stderr: float | None = None
    ci: tuple[float, float] | None = None
    ci_level: float | None = None

    def __float__(self) -> float:
        return float(self.value)  # type: ignore[attr-defined]

    def protocol_dict(self) -> dict[str, Any]:
        """The protocol's fields as JSON-safe plain types."""
        ci = self.ci
        return {
            "metric": self.metric,
            "value": float(self.value),  # type: ignore[attr-defined]
            "estimator": self.estimator,  # type: ignore[attr-defined]
            "method": self.method,  # type: ignore[attr-defined]
            "n_samples": int(self.n_samples),  # type: ignore[attr-defined]
            "parameters": {k: _jsonable(v) for k, v in self.parameters.items()},  # type: ignore[attr-defined]
            "stderr": None if self.stderr is None else float(self.stderr),
            "ci": None if ci is None else [float(ci[0]), float(ci[1])],
            "ci_level": None if self.ci_level is None else float(self.ci_level),
            "flags": list(self.flags),  # type: ignore[attr-defined]
        }


@dataclass(frozen=True)
class Result(ResultProtocol):
    """The value of an alignment metric and everything needed to interpret it.

    Attributes
    ----------
    metric : str
        The measure, e.g. ``"cka"``, ``"dcor"``, ``"mutual_knn"``.
    value : float
        The estimate.  Never NaN: undefined values raise
        :class:`~bigalign.errors.DegenerateInputError` instead.
    estimator : str
        ``"unbiased"`` (U-statistic) or ``"biased"`` (V-statistic).
    method : str
        The algorithm that produced the value, e.g. ``"exact-streaming"``.
    n_samples : int
        Number of paired samples used.
    terms : mapping
        The sums behind the value, e.g. ``hsic_xy``, ``hsic_xx``, ``hsic_yy``
        for CKA, so a user can recombine or audit them.
    parameters : mapping
        Kernel and engine parameters (kernel, block size, scheduler, ...).
    stderr : float or None
        Standard error where the method is approximate; ``None`` for exact methods.
    flags : tuple of str
        Degenerate or noteworthy conditions, e.g. ``"x_constant"`` for an HSIC
        of a constant representation (which is exactly 0) or
        ``"negative_unbiased_estimate"``.
    ci, ci_level : (float, float) or None, float or None
        A confidence interval for the population value and its level, where
        the estimator provides one (sampled neighbourhoods and RSA: normal,
        95%); ``None`` otherwise.
    """

    metric: str
    value: float
    estimator: str
    method: str
    n_samples: int
    terms: Mapping[str, float] = field(default_factory=dict)
    parameters: Mapping[str, Any] = field(default_factory=dict)
    stderr: float | None = None
    flags: tuple[str, ...] = ()
    ci: tuple[float, float] | None = None
    ci_level: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "terms", _freeze(self.terms))
        object.__setattr__(self, "parameters", _freeze(self.parameters))
        object.__setattr__(self, "flags", tuple(self.flags))
        if not math.isfinite(self.value):  # a bug, not a user error: fail loudly
            raise AssertionError(f"internal error: {self.metric} produced a non-finite value {self.value!r}")

    def __float__(self) -> float:
        return float(self.value)

    @property
    def hsic_xy(self) -> float | None:
        return self.terms.get("hsic_xy")

    @property
    def hsic_xx(self) -> float | None:
        return self.terms.get("hsic_xx")

    @property
    def hsic_yy(self) -> float | None:
        return self.terms.get("hsic_yy")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field."""
        return {
            "metric": self.metric,
            "value": float(self.value),
            "estimator": self.estimator,
            "method": self.method,
            "n_samples": int(self.n_samples),
            "terms": {k: float(v) for k, v in self.terms.items()},
            "parameters": {k: _jsonable(v) for k, v in self.parameters.items()},
            "stderr": None if self.stderr is None else float(self.stderr),
            "flags": list(self.flags),
            "ci": None if self.ci is None else [float(self.ci[0]), float(self.ci[1])],
            "ci_level": None if self.ci_level is None else float(self.ci_level),
        }

    def __repr__(self) -> str:
        se = "" if self.stderr is None else f" ± {self.stderr:.3g}"
        fl = f", flags={list(self.flags)}" if self.flags else ""
        ci = "" if self.ci is None else f", ci=({self.ci[0]:.4g}, {self.ci[1]:.4g})"
        return (
            f"{type(self).__name__}({self.metric}={self.value:.6g}{se}, estimator={self.estimator!r}, "
            f"method={self.method!r}, n_samples={self.n_samples}{fl}{ci})"
        )


def _jsonable(v: Any) -> Any:
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [_jsonable(u) for u in v]
    if isinstance(v, Mapping):
        return {str(k): _jsonable(u) for k, u in v.items()}
    try:
        import numpy as np

        if isinstance(v, np.generic):
            return v.item()
    except ImportError:  # pragma: no cover
        pass
    return str(v)
