"""Shared machinery of the kernel independence tests: the test result and the HSIC null laws.

The metric layer builds its tests on this module (:func:`bigalign.hsic_test`
in :mod:`bigalign.metrics.hsic_test`, :func:`bigalign.mmd_test`):

:class:`TestResult`
    a :class:`~bigalign.Result` with a p-value, a level and the null law.
the null laws of T = tr(K_c P L_c Pᵀ) under random re-pairing P
    the exact first two moments (:func:`_null_moments`, Kazi-Aoual et al.
    1995) and the gamma law fitted to them (:func:`_gamma_null`); the
    permutation null over B seeded permutations (:func:`_permutation_null`,
    with batched evaluators over centred kernel matrices or centred feature
    maps, and a rounding allowance for ties).

The formulas, their derivation and measured calibration are in
:mod:`bigalign.metrics.hsic_test`.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from ._numba.permute import permuted_traces
from .errors import DegenerateInputError
from .result import Result, _freeze, _jsonable

__all__ = ["TestResult"]

_PERMUTATION_TAG = 0x5E57  # the permutations draw from default_rng([seed, tag])


# --------------------------------------------------------------------------- #
# the result
# --------------------------------------------------------------------------- #


@dataclass(frozen=True, repr=False)
class TestResult(Result):
    """The outcome of a hypothesis test: a :class:`~bigalign.Result` with a p-value.

    ``value`` (also ``float(result)`` and ``statistic``) is the test statistic;
    for :func:`hsic_test` the biased HSIC_b = tr(K_c L_c)/(n − 1)² (of the
    approximate kernels for ``method="rff"``/``"nystroem"``), the same number
    as ``bigalign.hsic(x, y, estimator="biased")`` on the exact road.
    ``method`` is the estimation road (``"exact"``, ``"rff"``, ``"nystroem"``)
    and ``parameters["null"]`` the null distribution (``"permutation"`` or
    ``"gamma"``).

    Attributes (beyond :class:`~bigalign.Result`'s)
    ------------------------------------------------
    pvalue : float
        The p-value of H0 (for :func:`hsic_test`: x and y are independent).
    alpha : float
        The level ``reject`` refers to.
    null : mapping
        The null law of ``n_samples * value``: its ``distribution``; for
        ``"gamma"`` its ``shape``, ``scale``, ``mean`` and ``variance``; for
        ``"permutation"`` ``n_permutations``, ``n_at_least`` (permuted
        statistics ≥ the observed one) and the ``mean`` and ``variance`` of
        the permuted values.
    flags : tuple of str
        ``"x_constant"`` / ``"y_constant"`` when a kernel is constant (the
        statistic is then exactly 0 and the p-value 1).
    """

    __test__ = False  # not a pytest test class, whatever its name

    pvalue: float = 1.0
    alpha: float = 0.05
    null: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "null", _freeze(self.null))
        if not 0.0 <= self.pvalue <= 1.0:  # a bug, not a user error
            raise AssertionError(f"internal error: p-value {self.pvalue!r}")

    @property
    def statistic(self) -> float:
        """The test statistic (the same number as ``value``)."""
        return self.value

    @property
    def reject(self) -> bool:
        """Whether H0 is rejected at level ``alpha`` (``pvalue < alpha``)."""
        return bool(self.pvalue < self.alpha)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field (and ``reject``)."""
        return {
            **super().to_dict(),
            "pvalue": float(self.pvalue),
            "reject": self.reject,
            "alpha": float(self.alpha),
            "null": {k: _jsonable(v) for k, v in self.null.items()},
        }

    def __repr__(self) -> str:
        fl = f", flags={list(self.flags)}" if self.flags else ""
        return (
            f"{type(self).__name__}({self.metric}={self.value:.6g}, pvalue={self.pvalue:.4g}, reject={self.reject} at "
            f"alpha={self.alpha:g}, method={self.method!r}, null={self.parameters.get('null')!r}, "
            f"n_samples={self.n_samples}{fl})"
        )


# --------------------------------------------------------------------------- #
# the null moments
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class _SideStats:
    """t = tr K_c, f = ‖K_c‖²_F, s = Σᵢ (K_c)ᵢᵢ² of one centred kernel."""

    t: float
    f: float
    s: float
    constant: bool = False


def _null_moments(n: int, a: _SideStats, b: _SideStats) -> tuple[float, float]:
    """Exact mean and variance of tr(K_c P L_c Pᵀ) over uniform random permutations P."""
    mean = a.t * b.t / (n - 1)
    v1 = 2.0 * ((n - 1) * a.f - a.t**2) * ((n - 1) * b.f - b.t**2) / ((n - 1) ** 2 * (n + 1) * (n - 2))
    ca = n * (n + 1) * a.s - (n - 1) * (a.t**2 + 2.0 * a.f)
    cb = n * (n + 1) * b.s - (n - 1) * (b.t**2 + 2.0 * b.f)
    v2 = ca * cb / ((n + 1) * n * (n - 1) * (n - 2) * (n - 3))
    return mean, v1 + v2


def _gamma_null(n: int, t_obs: float, a: _SideStats, b: _SideStats) -> tuple[float, dict[str, Any]]:
    """p-value and parameters of the gamma law fitted to t_obs/n (``_finish`` rescales them to n·HSIC_b)."""
    from scipy.special import gammaincc

    mean, var = _null_moments(n, a, b)
    mean, var = mean / n, var / n**2  # moments of n·HSIC_b
    if not var > 1e-12 * mean * mean:
        raise DegenerateInputError(
            "the gamma approximation is undefined: the statistic takes (numerically) the same value under every "
            f"re-pairing of the samples (null mean {mean:.3g}, variance {var:.3g}). This happens when a kernel "
            "matrix is (close to) the identity, e.g. a bandwidth far below the pairwise distances. Expected a "
            "bandwidth comparable to the distances (bandwidth='median') or use null='permutation'.",
            reason="degenerate_null",
        )
    shape, scale = mean * mean / var, var / mean
    p = float(gammaincc(shape, (t_obs / n) / scale))
    return p, {"distribution": "gamma", "statistic": "n * HSIC_b", "shape": shape, "scale": scale, "mean": mean, "variance": var}


# --------------------------------------------------------------------------- #
# permutations
# --------------------------------------------------------------------------- #

def _gram_batch(kc: np.ndarray, lc: np.ndarray, workers: int) -> Callable[[np.ndarray], np.ndarray]:
    kern = permuted_traces
    n = kc.shape[0]

    def batch(perms: np.ndarray) -> np.ndarray:
        out = np.empty(perms.shape[0])
        w = min(workers, perms.shape[0]) if n * n * perms.shape[0] > 4_000_000 else 1
        if w <= 1:
            kern(kc, lc, perms, out)
            return out
        cuts = np.linspace(0, perms.shape[0], w + 1).astype(int)
        with ThreadPoolExecutor(w) as ex:  # nogil loops; each permutation's sum is independent: deterministic
            list(ex.map(lambda i: kern(kc, lc, perms[cuts[i] : cuts[i + 1]], out[cuts[i] : cuts[i + 1]]), range(w)))
        return out

    return batch


def _feature_batch(phi: np.ndarray, psi: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    n, dy = psi.shape
    phi_t = np.ascontiguousarray(phi.T)  # (measured ~1.4× faster GEMM than the transposed view)

    def batch(perms: np.ndarray) -> np.ndarray:
        b = perms.shape[0]
        stacked = psi[perms.T].reshape(n, b * dy)  # column block k = Ψ_c rows permuted by perms[k]
        c = (phi_t @ stacked).reshape(phi_t.shape[0], b, dy)
        return np.einsum("ikj,ikj->k", c, c)

    return batch


def _permutation_null(
    n: int, n_perm: int, seed: int, t_obs: float, tol: float, batch: Callable[[np.ndarray], np.ndarray], batch_rows: int
) -> tuple[float, dict[str, Any]]:
    rng = np.random.default_rng([seed, _PERMUTATION_TAG])
    dtype = np.int32 if n < 2**31 else np.int64
    values = np.empty(n_perm)
    done = 0
    while done < n_perm:
        b = min(batch_rows, n_perm - done)
        perms = np.empty((b, n), dtype=dtype)
        for k in range(b):  # sequential draws: the permutations do not depend on the batch size
            perms[k] = rng.permutation(n)
        values[done : done + b] = batch(perms)
        done += b
    count = int(np.count_nonzero(values >= t_obs - tol))
    scaled = values / n  # n·HSIC_b
    null = {
        "distribution": "permutation",
        "statistic": "n * HSIC_b",
        "n_permutations": n_perm,
        "n_at_least": count,
        "mean": float(scaled.mean()),
        "variance": float(scaled.var()),
    }
    return (1.0 + count) / (1.0 + n_perm), null


def _tie_tolerance(n: int, a: _SideStats, b: _SideStats) -> float:
    """Rounding allowance for T_π ≥ T: 8·n·ε times the Cauchy–Schwarz bound ‖K_c‖_F‖L_c‖_F on |T_π|.

    Permuted statistics equal to the observed one in exact arithmetic (discrete
    data) count as ≥, which keeps the test conservative; genuine gaps are many
    orders of magnitude larger for continuous data.
    """
    return 8.0 * n * np.finfo(np.float64).eps * math.sqrt(max(a.f, 0.0) * max(b.f, 0.0))


# --------------------------------------------------------------------------- #
# kernels and features
# --------------------------------------------------------------------------- #


def _gram_stats(kc: np.ndarray, constant: bool) -> _SideStats:
    d = np.diagonal(kc)
    return _SideStats(t=float(d.sum()), f=float(np.vdot(kc, kc)), s=float(np.dot(d, d)), constant=constant)


def _centre_features(phi: np.ndarray) -> bool:
    """Centre columns in place (constant columns to exact zeros); True if every column is constant."""
    lo, hi = phi.min(axis=0), phi.max(axis=0)
    const = lo == hi
    mean = phi.mean(axis=0)
    mean[const] = lo[const]
    phi -= mean
    return bool(const.all())


def _feature_stats(phi: np.ndarray, constant: bool) -> _SideStats:
    g = phi.T @ phi
    rn = np.einsum("ij,ij->i", phi, phi)
    return _SideStats(t=float(np.trace(g)), f=float(np.vdot(g, g)), s=float(np.dot(rn, rn)), constant=constant)
