"""The results of a stitch: :class:`StitchRisks` per split and :class:`StitchResult`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping

import numpy as np

from ..intervals import Interval
from ..result import ResultProtocol, _jsonable
from ._stitch_data import METHOD

# ============================================================================
# results
# ============================================================================


@dataclass(frozen=True)
class StitchRisks:
    """Every risk of one stitching direction on one set of rows (the fitting or the held-out rows).

    All risks are means over the rows of the squared Euclidean norm of the error.

    Attributes
    ----------
    split : {"fit", "holdout"}
    n_samples : int
    residual : float
        mean ‖x S + b − y‖² of the representation map (``StitchResult.map``).
        On the fitting rows with ``intercept=False`` and ``ridge=0`` this is the
        paper's Ã₂ = min_S E‖S f₁ − f₂‖².
    r2 : float or None
        1 − Σ‖x S + b − y‖² / Σ‖y − ȳ‖² (ȳ: the mean of y on these rows; pooled
        over outputs, scikit-learn's ``multioutput="variance_weighted"``).
        ``None`` when y is constant on these rows.
    risk_1, risk_2 : float or None
        R₁(H₁), R₂(H₂): risks of the linear heads t ≈ x W₁ + b₁, t ≈ y W₂ + b₂.
    stitched_risk : float or None
        R₂(g₂ ∘ s ∘ f₁) with s the best affine (``intercept``) or linear stitch
        for the fixed head g₂ (``StitchResult.task_map``).
    regression_stitch_risk : float or None
        R₂(g₂ ∘ s ∘ f₁) with s the representation map (``StitchResult.map``).
        Theorem 1's inequality regression_stitch_risk ≤ bound holds on *any*
        rows and for any ridge (it is Minkowski's inequality).
    bound : float or None
        Theorem 1: (√risk_2 + κ₂·√residual)².  It bounds ``stitched_risk`` on
        the fitting rows when ``ridge=0`` (then stitched_risk ≤
        regression_stitch_risk ≤ bound).
    """

    split: str
    n_samples: int
    residual: float
    r2: float | None
    risk_1: float | None = None
    risk_2: float | None = None
    stitched_risk: float | None = None
    regression_stitch_risk: float | None = None
    bound: float | None = None

    @property
    def excess_risk(self) -> float | None:
        """stitched_risk − risk_2 (the excess stitching risk)."""
        return None if self.stitched_risk is None else self.stitched_risk - self.risk_2

    @property
    def lemma2_gap(self) -> float | None:
        """stitched_risk − risk_1: zero up to rounding on the fitting rows (Lemma 2: ``ridge=0``, no ``"head_2_rank_deficient"`` flag)."""
        return None if self.stitched_risk is None else self.stitched_risk - self.risk_1

    @property
    def excess_bound(self) -> float | None:
        """bound − risk_2 = κ₂²Ã₂ + 2κ₂√(Ã₂R₂): Theorem 1's bound on the excess stitching risk."""
        return None if self.bound is None else self.bound - self.risk_2

    def to_dict(self) -> dict[str, Any]:
        keys = ("residual", "r2", "risk_1", "risk_2", "stitched_risk", "excess_risk", "lemma2_gap",
                "regression_stitch_risk", "bound", "excess_bound")  # fmt: skip
        return {"split": self.split, "n_samples": int(self.n_samples), **{k: _opt(getattr(self, k)) for k in keys}}


def _opt(v: Any) -> float | None:
    return None if v is None else float(v)


@dataclass(frozen=True, eq=False)
class StitchResult(ResultProtocol):
    """Linear stitching of representation x (f₁) into y (f₂), and, with targets, into model 2's head.

    Predictions use the row convention of numpy: ŷ = x @ map + offset, i.e.
    ``map`` is the transpose of the paper's S.

    Follows the result protocol (:class:`bigalign.result.ResultProtocol`):
    ``value`` (and ``float(result)``) is always the map's ``residual``
    mean ‖x S + b − y‖² on the evaluation rows, with or without targets (the
    task risks are their own attributes: ``excess_risk``, ``stitched_risk``,
    ``bound``...).  ``estimator`` is ``"unbiased"`` on held-out rows (an
    unbiased estimate of the fitted map's risk) and ``"biased"`` on the
    fitting rows (in-sample, optimistic).  ``ci`` (with ``ci=``) is a sampling
    interval for the population residual (see :func:`bigalign.stitch`).

    Attributes
    ----------
    direction : str
        ``"x->y"`` (or ``"y->x"`` for :attr:`reverse`).
    map, offset : ndarray of shape (d_x, d_y), (d_y,), or None
        The representation map (least squares / ridge from the streamed normal
        equations).  ``offset`` is zero when ``intercept=False``.  ``None`` in
        the cells of a :class:`StitchingMatrix` unless ``keep_maps=True``.
    fit : StitchRisks
        Everything evaluated on the fitting rows.
    holdout : StitchRisks or None
        Everything evaluated on the held-out rows (``None`` when ``holdout=0``).
    ridge : mapping
        The ridge λ used per problem: ``"map"``, and with targets ``"head_1"``,
        ``"head_2"``, ``"stitch"`` (chosen by cross-validation for ``"cv"``).
    head_1, head_2 : (W, b) or None
        The linear heads t ≈ x W₁ + b₁ and t ≈ y W₂ + b₂.
    task_map, task_offset : ndarray or None
        The best stitch (S, c) for the fixed head g₂: t̂ = (x S + c) W₂ + b₂.
    kappa : float or None
        κ₂ = ‖W₂‖₂, the largest singular value of the head of y.
    rank : mapping
        Numerical ranks of the Grams (x, y) and of W₂ (``"head_2"``) on the
        fitting rows; see the Notes of :func:`stitch` for the tolerance.
    cv : mapping or None
        For ``ridge="cv"``: the folds, and per problem the grid and the mean
        validation error of each λ.
    reverse : StitchResult or None
        The other direction (y into x and model 1's head), when requested.
    n_samples : int
        All rows (fitting + held-out).
    parameters : mapping
    flags : tuple of str
        ``"x_rank_deficient"``, ``"y_rank_deficient"`` (ridge = 0 with a
        singular Gram: the minimum-norm solution was used),
        ``"head_2_rank_deficient"`` (rank W₂ below the rank of the targets'
        Gram — centred with an intercept, where one-hot targets lose one
        dimension: Lemma 2's equality need not hold), ``"risk_zero_up_to_rounding"``.
    """

    direction: str
    map: np.ndarray | None
    offset: np.ndarray | None
    fit: StitchRisks
    holdout: StitchRisks | None
    ridge: Mapping[str, float]
    intercept: bool
    n_samples: int
    head_1: tuple[np.ndarray, np.ndarray] | None = None
    head_2: tuple[np.ndarray, np.ndarray] | None = None
    task_map: np.ndarray | None = None
    task_offset: np.ndarray | None = None
    kappa: float | None = None
    rank: Mapping[str, int] = field(default_factory=dict)
    cv: Mapping[str, Any] | None = None
    reverse: "StitchResult | None" = None
    parameters: Mapping[str, Any] = field(default_factory=dict)
    flags: tuple[str, ...] = ()
    method: str = METHOD
    #: the sampling interval of ``ci=`` (``ci``/``ci_level`` read them; the non-linear kinds define their own)
    sampling_ci: tuple[float, float] | None = field(default=None, repr=False)
    sampling_ci_level: float | None = field(default=None, repr=False)

    # -- the evaluation split: held-out rows when there are some, else the fitting rows --
    @property
    def evaluation(self) -> StitchRisks:
        """The held-out risks when ``holdout > 0``, else the fitting risks (what the plain attributes report)."""
        return self.holdout if self.holdout is not None else self.fit

    @property
    def has_targets(self) -> bool:
        return self.fit.risk_2 is not None

    residual = property(lambda self: self.evaluation.residual, doc="mean ‖x S + b − y‖² on the evaluation rows.")
    r2 = property(lambda self: self.evaluation.r2, doc="R² of the map on the evaluation rows.")
    risk_1 = property(lambda self: self.evaluation.risk_1, doc="R₁(H₁) on the evaluation rows.")
    risk_2 = property(lambda self: self.evaluation.risk_2, doc="R₂(H₂) on the evaluation rows.")
    stitched_risk = property(lambda self: self.evaluation.stitched_risk, doc="R₂(g₂∘s∘f₁) on the evaluation rows.")
    excess_risk = property(lambda self: self.evaluation.excess_risk, doc="stitched_risk − risk_2 on the evaluation rows.")
    bound = property(lambda self: self.evaluation.bound, doc="Theorem 1's bound on the evaluation rows.")
    regression_stitch_risk = property(
        lambda self: self.evaluation.regression_stitch_risk, doc="R₂(g₂∘map∘f₁) on the evaluation rows."
    )

    metric = "stitching"

    @property
    def ci(self) -> tuple[float, float] | None:  # type: ignore[override]
        """The sampling interval of the population residual (``ci=``), or None."""
        return self.sampling_ci

    @property
    def ci_level(self) -> float | None:  # type: ignore[override]
        return self.sampling_ci_level

    @property
    def value(self) -> float:
        """The map's residual mean ‖x S + b − y‖² on the evaluation rows (whatever the options)."""
        return float(self.residual)

    @property
    def estimator(self) -> str:
        """``"unbiased"`` on held-out rows, ``"biased"`` (in-sample) on the fitting rows."""
        return "unbiased" if self.holdout is not None else "biased"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (maps and heads as nested lists)."""

        def arr(a: Any) -> Any:
            return None if a is None else np.asarray(a).tolist()

        return {
            **self.protocol_dict(),
            "direction": self.direction,
            "intercept": self.intercept,
            "fit": self.fit.to_dict(),
            "holdout": None if self.holdout is None else self.holdout.to_dict(),
            "ridge": {k: float(v) for k, v in self.ridge.items()},
            "kappa": _opt(self.kappa),
            "rank": {k: int(v) for k, v in self.rank.items()},
            "cv": None if self.cv is None else _jsonable(dict(self.cv)),
            "map": arr(self.map),
            "offset": arr(self.offset),
            "head_1": None if self.head_1 is None else [arr(self.head_1[0]), arr(self.head_1[1])],
            "head_2": None if self.head_2 is None else [arr(self.head_2[0]), arr(self.head_2[1])],
            "task_map": arr(self.task_map),
            "task_offset": arr(self.task_offset),
            "reverse": None if self.reverse is None else self.reverse.to_dict(),
            "parameters": {k: _jsonable(v) for k, v in self.parameters.items()},
            "flags": list(self.flags),
        }

    def __repr__(self) -> str:
        e = self.evaluation
        parts = [f"residual={e.residual:.6g}"]
        if e.r2 is not None:
            parts.append(f"r2={e.r2:.4g}")
        if self.has_targets:
            parts += [f"risk_1={e.risk_1:.6g}", f"risk_2={e.risk_2:.6g}", f"stitched_risk={e.stitched_risk:.6g}",
                      f"bound={e.bound:.6g}"]  # fmt: skip
        fl = f", flags={list(self.flags)}" if self.flags else ""
        return f"StitchResult({self.direction}, {e.split} n={e.n_samples}: {', '.join(parts)}{fl})"


def with_stitch_interval(r: StitchResult, iv: Interval) -> StitchResult:
    """``r`` with the sampling interval ``iv`` and its parameters."""
    return replace(r, sampling_ci=iv.bounds, sampling_ci_level=iv.level, parameters={**r.parameters, **iv.parameters()})
