"""Rows, splits, targets and options shared by the linear and the non-linear stitches.

Rows go to folds and a held-out set by a hash of their index (independently of
the blocking); :class:`SplitMomentStatistic` accumulates one set of merged
moments per split in one pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .._checks import raise_nonfinite
from ..errors import DegenerateInputError, InvalidInputError
from ..io import Layer, as_representation, check_pairing
from ..moments import MAX_MAGNITUDE, MIN_MAGNITUDE, MomentStatistic, Moments, merge

METHOD = "exact-streaming"
KINDS = ("linear", "kernel", "mlp")  # stitch classes of stitch(kind=...); the non-linear ones: stitching_nonlinear.py
HOLDOUT = -1  # split key of the held-out rows; folds are 0 .. folds-1
#: default ridge grid for ridge="cv": these multiples of the mean eigenvalue tr(G)/d of the regressor's Gram
DEFAULT_GRID_FACTORS = tuple(10.0**k for k in range(-6, 3))
#: eigenvalues of a Gram G at or below RANK_RTOL_FACTOR · d · eps · max eig(G) count as zero (ridge = 0).
#: Measured: the exactly-zero eigenvalue of a streamed centred one-hot Gram comes out at |e| ≤ 6e-16·max
#: (n up to 10⁶, any blocking); 32·d·eps ≥ 1.4e-14 keeps a 20× margin even for d = 2.
RANK_RTOL_FACTOR = 32.0
_EPS = float(np.finfo(np.float64).eps)
QUANTITIES = (
    "residual",
    "r2",
    "risk_1",
    "risk_2",
    "stitched_risk",
    "excess_risk",
    "lemma2_gap",
    "regression_stitch_risk",
    "bound",
    "excess_bound",
)


# ============================================================================
# splitting rows into folds and a held-out set, independently of the blocking
# ============================================================================


def _splitmix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on a uint64 array (wrap-around arithmetic, no warnings for arrays)."""
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@dataclass(frozen=True)
class Splits:
    """Assignment of rows to the held-out set (key −1) and to folds 0..folds−1.

    Rows are taken in contiguous groups of ``split_rows`` rows; group g gets
    u = SplitMix64(g ⊕ SplitMix64(seed)) / 2⁶⁴ ∈ [0, 1): held out when
    u < holdout, else fold ⌊(u − holdout)/(1 − holdout) · folds⌋.  The
    assignment is a function of the row index only — not of the engine's
    blocks — so results do not depend on ``block_size``, the scheduler or the
    number of workers.
    """

    holdout: float
    folds: int
    seed: int
    split_rows: int

    def assign(self, start: int, stop: int) -> np.ndarray:
        return self.assign_rows(np.arange(start, stop, dtype=np.uint64))

    def assign_rows(self, rows: np.ndarray) -> np.ndarray:
        """The split of arbitrary row indices (held-out → HOLDOUT, else the fold)."""
        groups = (np.asarray(rows).astype(np.uint64) // np.uint64(self.split_rows)).astype(np.uint64)
        key = _splitmix64(np.array([self.seed], dtype=np.uint64))[0]
        u = (_splitmix64(groups ^ key) >> np.uint64(11)).astype(np.float64) * 2.0**-53
        fold = np.minimum(np.floor((u - self.holdout) / (1.0 - self.holdout) * self.folds), self.folds - 1)
        return np.where(u < self.holdout, HOLDOUT, fold).astype(np.int64)


def _check_block(x: np.ndarray, name: str, start: int) -> None:
    """Finite values within the moments' magnitude range, checked on the whole block (exact row numbers)."""
    if x.dtype.kind in "iub" or x.size == 0:
        return
    lo = np.asarray(x.min(axis=0), dtype=np.float64)
    hi = np.asarray(x.max(axis=0), dtype=np.float64)
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        raise_nonfinite(x, name, start)
    amax = max(float(np.max(np.abs(lo))), float(np.max(np.abs(hi))))
    if amax > MAX_MAGNITUDE or 0 < amax < MIN_MAGNITUDE:
        raise InvalidInputError(
            f"{name} has values of magnitude {amax:.3g} (rows {start}..{start + x.shape[0] - 1}); the streamed "
            f"moments need magnitudes within [{MIN_MAGNITUDE:g}, {MAX_MAGNITUDE:g}] to stay inside float64. "
            "Rescale the input (e.g. divide by its standard deviation); maps and risks rescale accordingly."
        )


@dataclass(frozen=True)
class SplitMomentStatistic:
    """Statistic whose state is ``{split key: Moments}``: one :class:`MomentStatistic` per split.

    ``partial`` assigns each row of a block to the held-out set or a fold
    (:class:`Splits`) and accumulates the moments of each part; ``combine``
    merges the states key by key.  One pass gives the moments of every fold
    and of the held-out rows.
    """

    inner: MomentStatistic
    splits: Splits

    def partial(self, blocks: Sequence[np.ndarray], start: int) -> dict[int, Moments]:
        arrs = [np.asarray(b) for b in blocks]
        for k, a in enumerate(arrs):
            _check_block(a, self.inner.names[k], start)
        lab = self.splits.assign(start, start + arrs[0].shape[0])
        out: dict[int, Moments] = {}
        for key in np.unique(lab):
            idx = np.flatnonzero(lab == key)
            part = arrs if idx.size == lab.size else [a[idx] for a in arrs]
            out[int(key)] = self.inner.partial(part, start)
        return out

    def combine(self, a: dict[int, Moments], b: dict[int, Moments]) -> dict[int, Moments]:
        out = dict(a)
        for key, m in b.items():
            out[key] = merge(out[key], m) if key in out else m
        return out

    def finalize(self, state: dict[int, Moments]) -> dict[int, Moments]:
        return state


@dataclass(frozen=True)
class OneHot:
    """Feature map of 1-D class labels (one column) to one-hot float64 columns, one per class."""

    classes: tuple

    def __call__(self, block: np.ndarray) -> np.ndarray:
        return (block[:, :1] == np.asarray(self.classes, dtype=np.float64)[None, :]).astype(np.float64)


# ============================================================================
# validation
# ============================================================================


def _check_ridge(func: str, ridge: Any) -> Any:
    if isinstance(ridge, str):
        if ridge != "cv":
            raise InvalidInputError(f"the 'ridge' parameter of {func} must be a float ≥ 0 or 'cv'; got {ridge!r} instead.")
        return ridge
    if isinstance(ridge, bool) or not isinstance(ridge, (int, float, np.integer, np.floating)) or not math.isfinite(ridge) or ridge < 0:
        raise InvalidInputError(
            f"the 'ridge' parameter of {func} must be a finite float ≥ 0 or 'cv'; got {ridge!r} instead. "
            "Use 0 for least squares, a positive λ for ridge (λ‖S‖²_F added to the sum of squared errors), "
            "or 'cv' to choose λ by k-fold cross-validation."
        )
    return float(ridge)


def _check_options(func: str, ridge: Any, intercept: Any, holdout: Any, seed: Any, folds: Any, ridge_grid: Any, split_rows: Any) -> tuple:
    ridge = _check_ridge(func, ridge)
    if not isinstance(intercept, (bool, np.bool_)):
        raise InvalidInputError(f"the 'intercept' parameter of {func} must be True or False; got {intercept!r} instead.")
    if isinstance(holdout, bool) or not isinstance(holdout, (int, float, np.integer, np.floating)) or not (0 <= holdout < 1):
        raise InvalidInputError(
            f"the 'holdout' parameter of {func} must be a fraction in [0, 1); got {holdout!r} instead. "
            "Use 0 to evaluate on the fitting rows, e.g. 0.2 to hold out about a fifth of the rows."
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not (0 <= seed < 2**64):
        raise InvalidInputError(f"the 'seed' parameter of {func} must be an integer in [0, 2**64); got {seed!r} instead.")
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 2:
        raise InvalidInputError(f"the 'folds' parameter of {func} must be an integer ≥ 2; got {folds!r} instead.")
    if isinstance(split_rows, bool) or not isinstance(split_rows, (int, np.integer)) or split_rows < 1:
        raise InvalidInputError(f"the 'split_rows' parameter of {func} must be an integer ≥ 1; got {split_rows!r} instead.")
    if ridge_grid is not None:
        g = np.asarray(ridge_grid, dtype=object).ravel() if not isinstance(ridge_grid, str) else None
        ok = g is not None and g.size > 0
        if ok:
            try:
                gf = np.asarray(g, dtype=np.float64)
                ok = bool(np.all(np.isfinite(gf)) and np.all(gf >= 0))
            except (TypeError, ValueError):
                ok = False
        if not ok:
            raise InvalidInputError(
                f"the 'ridge_grid' parameter of {func} must be a non-empty sequence of finite floats ≥ 0; "
                f"got {ridge_grid!r} instead."
            )
        if ridge != "cv":
            raise InvalidInputError(f"ridge_grid is only used with ridge='cv' in {func}; got ridge={ridge!r}. Drop ridge_grid or pass ridge='cv'.")
        ridge_grid = [float(v) for v in np.asarray(g, dtype=np.float64)]
    return ridge, bool(intercept), float(holdout), int(seed), int(folds), ridge_grid, int(split_rows)


def _targets_input(targets: Any, n: int, func: str) -> tuple[Any, Any]:
    """(input for the engine, transform or None).  1-D integer/bool labels become one-hot columns."""
    import dask.array as da

    if isinstance(targets, Layer):
        return targets, None
    if isinstance(targets, da.Array) or (hasattr(targets, "ndim") and targets.ndim != 1):
        t = targets
    else:
        t = np.asarray(targets)  # lists, 1-D numpy/zarr labels
    if getattr(t, "ndim", None) == 1:
        if t.shape[0] != n:
            raise InvalidInputError(
                f"targets must have one row per sample; got {t.shape[0]} targets for {n} samples. "
                "Pass the targets of the same samples, in the same order."
            )
        kind = np.dtype(t.dtype).kind
        if kind in "iub":
            labels = np.asarray(t.compute() if isinstance(t, da.Array) else t)
            classes = tuple(float(c) for c in np.unique(labels))
            if len(classes) < 2:
                raise DegenerateInputError(
                    f"targets hold a single class ({classes[0]!r}); every head would predict it exactly and "
                    "every risk would be 0. Expected at least two classes.",
                    reason="single_class",
                )
            return t.reshape(-1, 1), OneHot(classes)
        return t.reshape(-1, 1), None
    return t, None


def _targets_rep(tin: Any, targets: Any, reps: list) -> Any:
    """The targets as a Representation; sample ids checked for a store layer, the row count for plain arrays.

    Plain arrays carry no sample ids: they are taken in the row order of the
    representations (no PairingWarning — that is the documented contract).
    """
    rt = as_representation(tin, "targets")
    if isinstance(targets, Layer):
        layers = [r for r in list(reps) + [rt] if r.kind == "layer"]
        check_pairing(layers)  # ids of the store layers among themselves (check_pairing skips them next to a plain array)
        if len(layers) < len(reps) + 1:
            check_pairing(list(reps) + [rt])  # the PairingWarning for the plain arrays
    elif rt.n != reps[0].n:
        raise InvalidInputError(
            f"targets must have one row per sample; got {rt.n} rows of targets for {reps[0].n} samples. "
            "Pass the targets of the same samples, in the same order."
        )
    return rt


