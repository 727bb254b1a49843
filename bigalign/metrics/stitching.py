"""Linear stitching: maps between representations, stitching risk, and the paper's bounds.

Model q is h_q = g_q ∘ f_q (f_q: a representation, g_q: a head).  A *stitch*
s maps representation 1 into representation 2, and the stitched model is
g₂ ∘ s ∘ f₁.  With squared loss and linear (affine) maps every quantity the
paper's stitching section uses is a closed form of the merged centred moments
of x = f₁, y = f₂ and the targets t (:mod:`bigalign.moments`), accumulated in
**one streaming pass** for every split at once (fitting folds and held-out rows):

* the representation map S minimising Σ‖x S + b − y‖² (+ λ‖S‖²) and its
  residual Ã (Theorem 1's Ã₂ when ``intercept=False`` and ``ridge=0``);
* linear heads H_q: t ≈ f_q W_q + b_q, with risks R₁, R₂;
* the best stitch for the *fixed* head g₂(z) = z W₂ + b₂:
  min over (S, c) of Σ‖(x S + c) W₂ + b₂ − t‖² (+ λ‖S‖²), and its risk;
* κ₂ = ‖W₂‖₂ and Theorem 1's bound (√R₂ + κ₂√Ã₂)².

Every risk is a mean over samples of a squared Euclidean error norm.  On a set
of rows with centred moments Mₓ, M_xt, M_t and means μₓ, μ_t, an affine
predictor t̂ = x A + a₀ has

    Σ‖x A + a₀ − t‖² = tr(Aᵀ Mₓ A) − 2 tr(Aᵀ M_xt) + tr(M_t) + n‖μₓ A + a₀ − μ_t‖²,

so risks on the fitting rows, on each cross-validation fold and on the
held-out rows all come from the same pass.

References
----------
Insulla, Huang & Rosasco, "Towards a Learning Theory of Representation
Alignment", arXiv:2502.14047 (ICLR 2025) — Lemma 2, Theorem 1, Theorem 2 and
Remark 6.
Lenc & Vedaldi, "Understanding image representations by measuring their
equivariance and equivalence", CVPR 2015 — model stitching.
Bansal, Nakkiran & Barak, "Revisiting model stitching to compare neural
representations", NeurIPS 2021.
"""

from __future__ import annotations

import math
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Sequence

import numpy as np

from .._checks import raise_nonfinite
from ..engine import run, tree_reduce
from ..errors import DegenerateInputError, InvalidInputError
from ..io import Layer, as_representation, check_pairing
from ..moments import MAX_MAGNITUDE, MIN_MAGNITUDE, Moments, MomentStatistic, merge
from ..result import Result, ResultProtocol, _jsonable
from ._common import ESTIMATORS, check_choice, check_unbiased_n, engine_parameters, with_engine_doc

__all__ = ["StitchResult", "StitchRisks", "StitchingMatrix", "stitch", "stitching_matrix"]

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
    fitting rows (in-sample, optimistic).

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


# ============================================================================
# closed forms on merged moments
# ============================================================================


@dataclass
class _Eig:
    e: np.ndarray  # eigenvalues, ascending
    V: np.ndarray
    tol: float  # eigenvalues ≤ tol are zero for ridge = 0
    trace: float
    d: int

    @property
    def rank(self) -> int:
        return int(np.count_nonzero(self.e > self.tol))

    def weights(self, lam: float) -> np.ndarray:
        """1/(e + λ) on the kept eigenvalues, 0 elsewhere (minimum-norm for λ = 0)."""
        keep = self.e > self.tol if lam == 0 else (self.e + lam) > 0
        w = np.zeros_like(self.e)
        w[keep] = 1.0 / (self.e[keep] + lam)
        return w


@dataclass
class _Head:
    W: np.ndarray  # (d, c)
    b: np.ndarray  # (c,)
    lam: float
    U: np.ndarray  # left singular vectors of W (d, r), r = numerical rank
    s: np.ndarray  # singular values (r,)
    Q: np.ndarray  # right singular vectors (c, r)
    kappa: float
    rank: int
    cv: dict | None


class _Problem:
    """Closed forms over the moments of one pass: the fitting rows, the folds, the held-out rows.

    Inputs are addressed by their index in the pass; eigen-decompositions of
    Grams and fitted heads are cached, so a layer's Gram is decomposed once
    per pass however many pairs it is in.
    """

    def __init__(self, splits: Mapping[int, Moments], n_folds: int, holdout: bool, intercept: bool):
        #: input -> the input whose Gram trace scales its relative ridge (the kernel stitch anchors
        #: its expanded input [x, c·φ(x)] on x, so that it gets the linear stitch's λ)
        self.ridge_anchor: dict[int, int] = {}
        missing = [k for k in range(n_folds) if k not in splits]
        if missing:
            raise InvalidInputError(
                f"cross-validation fold(s) {missing} received no rows (folds={n_folds}, n = "
                f"{sum(m.n for m in splits.values())}). Expected at least one row per fold. Use fewer folds, more "
                "samples, or a smaller split_rows."
            )
        if holdout and HOLDOUT not in splits:
            raise InvalidInputError(
                f"the held-out split received no rows (n = {sum(m.n for m in splits.values())}). Use a larger "
                "holdout fraction, more samples, a smaller split_rows, or holdout=0 to evaluate on the fitting rows."
            )
        self.folds = [splits[k] for k in range(n_folds)]
        self.fit = tree_reduce(self.folds, merge) if n_folds > 1 else self.folds[0]
        self.hold = splits.get(HOLDOUT) if holdout else None
        self.intercept = intercept
        self._train: dict[int, Moments] = {}
        self._eig: dict[tuple, _Eig] = {}
        self.heads: dict[tuple, _Head] = {}
        self.flags: set[str] = set()

    @property
    def all_rows(self) -> Moments:
        parts = self.folds + ([self.hold] if self.hold is not None else [])
        return tree_reduce(parts, merge)

    def train(self, k: int) -> Moments:
        if k not in self._train:
            self._train[k] = tree_reduce([m for j, m in enumerate(self.folds) if j != k], merge)
        return self._train[k]

    # -- second moments (centred with an intercept, uncentred without) --
    def gram(self, m: Moments, i: int) -> np.ndarray:
        s = m.sides[i]
        return s.M if self.intercept else s.uncentred_gram()

    def cross(self, m: Moments, i: int, j: int) -> np.ndarray:
        M = m.pair(i, j)[0]
        if self.intercept:
            return M
        return M + m.n * np.outer(m.sides[i].mean, m.sides[j].mean)

    def eig(self, key: Any, m: Moments, i: int) -> _Eig:
        k = (key, i)
        if k not in self._eig:
            G = self.gram(m, i)
            e, V = np.linalg.eigh(G)
            top = float(e[-1]) if e.size else 0.0
            self._eig[k] = _Eig(e=e, V=V, tol=RANK_RTOL_FACTOR * G.shape[0] * _EPS * max(top, 0.0),
                                trace=float(np.trace(G)), d=G.shape[0])  # fmt: skip
        return self._eig[k]

    # -- fits --
    def regression(self, m: Moments, eg: _Eig, i: int, j: int, lam: float) -> tuple[np.ndarray, np.ndarray]:
        """Ridge regression of input j on input i: (A, a₀) with ĵ = i A + a₀."""
        C = self.cross(m, i, j)
        A = eg.V @ (eg.weights(lam)[:, None] * (eg.V.T @ C))
        a0 = m.sides[j].mean - m.sides[i].mean @ A if self.intercept else np.zeros(C.shape[1])
        return A, a0

    def head_stitch(self, m: Moments, eg: _Eig, i: int, t: int, head: _Head, lam: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Best stitch (S, c) of input i into the fixed head (W, b): min Σ‖(x S + c) W + b − t‖² + λ‖S‖².

        With G = V diag(e) Vᵀ the Gram of i and W = U diag(s) Qᵀ (thin SVD,
        numerical rank r), the normal equations G S W Wᵀ + λ S = B, B = C_it' Wᵀ
        (C_it' the cross moment with t − b), diagonalise:
        S = V [ (Vᵀ B U)_kl / (e_k s_l² + λ) ] Uᵀ.  For λ = 0 the pairs with
        e_k ≤ tol are dropped (minimum norm, as for the heads).  The intercept
        c = (μ_t − b − μ_i S W) W⁺ (minimum norm; exact when W has full column
        rank).  Returns (S, c, A, a₀) with the stitched predictor t̂ = i A + a₀.
        """
        si, st = m.sides[i], m.sides[t]
        C = self.cross(m, i, t)
        if not self.intercept:
            C = C - m.n * np.outer(si.mean, head.b)  # Σ x (t − b)ᵀ; b = 0 without intercept anyway
        Bt = (eg.V.T @ C) @ (head.Q * head.s[None, :])  # Vᵀ C W ᵀ U = Vᵀ C Q diag(s)
        f = head.s**2
        if lam == 0:
            keep = (eg.e > eg.tol)[:, None] & np.ones(f.size, dtype=bool)[None, :]
        else:
            keep = (eg.e[:, None] * f[None, :] + lam) > 0
        St = np.zeros_like(Bt)
        St[keep] = Bt[keep] / (eg.e[:, None] * f[None, :] + lam)[keep]
        S = eg.V @ St @ head.U.T
        A = eg.V @ (St * head.s[None, :]) @ head.Q.T  # S W = V S̃ diag(s) Qᵀ
        if self.intercept:
            r = st.mean - head.b - si.mean @ A  # what c W must supply
            c = ((r @ head.Q) / head.s) @ head.U.T if head.s.size else np.zeros(head.W.shape[0])
            a0 = (r @ head.Q) @ head.Q.T + head.b
        else:
            c = np.zeros(head.W.shape[0])
            a0 = head.b.copy()
        return S, c, A, a0

    # -- evaluation --
    def sse(self, m: Moments, i: int, j: int, A: np.ndarray, a0: np.ndarray) -> float:
        """Σ over the rows of m of ‖x_i A + a₀ − x_j‖² (exact from centred moments)."""
        si, sj = m.sides[i], m.sides[j]
        Mij = m.pair(i, j)[0]
        q1 = float(np.vdot(si.M @ A, A))
        q2 = float(np.vdot(Mij, A))
        q3 = float(np.trace(sj.M))
        dm = si.mean @ A + a0 - sj.mean
        return self._combine_sse(q1, q2, q3, m.n * float(dm @ dm))

    def _combine_sse(self, q1: float, q2: float, q3: float, mean_term: float) -> float:
        """q1 − 2 q2 + q3 + mean_term; a negative centred part within rounding of its terms is an exact 0."""
        val = q1 - 2.0 * q2 + q3
        if val < 0:
            tol = 1e-10 * (abs(q1) + 2.0 * abs(q2) + abs(q3))
            if val < -tol:  # pragma: no cover - a bug, not a user error
                raise AssertionError(f"internal error: negative sum of squares {val!r} (terms {q1!r}, {q2!r}, {q3!r})")
            val = 0.0  # the exact value is 0: a perfect fit, computed as a difference of equal terms
            self.flags.add("risk_zero_up_to_rounding")
        return val + mean_term

    def risk(self, m: Moments, i: int, j: int, A: np.ndarray, a0: np.ndarray) -> float:
        return self.sse(m, i, j, A, a0) / m.n

    # -- ridge selection --
    def ridge_scale(self, i: int) -> float:
        """tr G of the input that anchors input i's relative ridge: λ = ridge · tr G (fitting rows)."""
        return self.eig("fit", self.fit, self.ridge_anchor.get(i, i)).trace

    def grid(self, eg: _Eig, user_grid: Sequence[float] | None, scale: float) -> list[float]:
        """Absolute λ to cross-validate: the user's relative ridges × tr G, or the default multiples of tr G/d."""
        if user_grid is not None:
            return [float(g) * scale for g in user_grid]
        scale = eg.trace / max(eg.d, 1)
        return [f * scale for f in DEFAULT_GRID_FACTORS] if scale > 0 else [0.0]

    def cv_regression(self, i: int, j: int, grid: list[float]) -> list[float]:
        """Mean validation error (over all fitting rows) of each λ for regressing j on i.

        Everything is rotated into the eigenbasis V of the fold's training
        Gram once per fold (Ã = Vᵀ A = diag(w_λ) Vᵀ C, M̃ = Vᵀ M_val V), so each
        λ costs one d_i × d_i × d_j product instead of three.
        """
        sse = np.zeros(len(grid))
        for k, val in enumerate(self.folds):
            tr = self.train(k)
            eg = self.eig(("train", k), tr, i)
            Ct = eg.V.T @ self.cross(tr, i, j)
            Mv = eg.V.T @ val.sides[i].M @ eg.V
            Cv = eg.V.T @ val.pair(i, j)[0]
            q3 = float(np.trace(val.sides[j].M))
            mu_tr, mu_val = tr.sides[i].mean @ eg.V, val.sides[i].mean @ eg.V
            for g, lam in enumerate(grid):
                At = eg.weights(lam)[:, None] * Ct
                a0 = tr.sides[j].mean - mu_tr @ At if self.intercept else np.zeros(At.shape[1])
                dm = mu_val @ At + a0 - val.sides[j].mean
                sse[g] += self._combine_sse(float(np.vdot(Mv @ At, At)), float(np.vdot(Cv, At)), q3, val.n * float(dm @ dm))
        return list(sse / self.fit.n)

    def cv_stitch(self, i: int, t: int, head: _Head, grid: list[float]) -> list[float]:
        """Mean validation error of each λ for the stitch of i into the fixed head (fitted on all fitting rows)."""
        sse = np.zeros(len(grid))
        for k, val in enumerate(self.folds):
            tr = self.train(k)
            eg = self.eig(("train", k), tr, i)
            for g, lam in enumerate(grid):
                _, _, A, a0 = self.head_stitch(tr, eg, i, t, head, lam)
                sse[g] += self.sse(val, i, t, A, a0)
        return list(sse / self.fit.n)

    def choose(self, spec: Any, i: int, user_grid: Any, errors_of: Any) -> tuple[float, dict | None]:
        """The absolute λ for regressions on input i: ridge · tr G, or the cross-validated one."""
        scale = self.ridge_scale(i)
        if spec != "cv":  # ridge is relative: λ = ridge · tr G (G the regressor's Gram on the fitting rows)
            return float(spec) * scale, None
        grid = self.grid(self.eig("fit", self.fit, i), user_grid, scale)
        errors = errors_of(grid)
        best = int(np.argmin(errors))
        return grid[best], {"grid": grid, "errors": [float(v) for v in errors], "chosen": grid[best]}

    def head(self, i: int, t: int, spec: Any, user_grid: Any) -> _Head:
        """The linear head t ≈ x_i W + b on the fitting rows (cached per input), with the thin SVD of W.

        W = G⁺C is formed in reduced coordinates, W = V_k [diag(w) V_kᵀ C Q_t] Q_tᵀ,
        with V_k the kept eigenvectors of the Gram of x_i and Q_t those of the
        targets' Gram.  Exact arithmetic gives the same W (C vanishes on the
        targets' null directions, e.g. 1 for centred one-hot targets); in
        floating point it keeps rounding noise out of W's small singular
        values, so the rank of W — which decides the minimum-norm stitch for
        ridge = 0 — does not flip with the blocking.
        """
        if (i, t) not in self.heads:
            eg = self.eig("fit", self.fit, i)
            lam, cv = self.choose(spec, i, user_grid, lambda g: self.cv_regression(i, t, g))
            et = self.eig("fit", self.fit, t)
            Qt = et.V[:, et.e > et.tol]
            w = eg.weights(lam)
            keep = w != 0
            Vk = eg.V[:, keep]
            core = (w[keep][:, None] * (Vk.T @ self.cross(self.fit, i, t))) @ Qt
            W = Vk @ core @ Qt.T
            b = self.fit.sides[t].mean - self.fit.sides[i].mean @ W if self.intercept else np.zeros(W.shape[1])
            Uc, sc, Qct = np.linalg.svd(core, full_matrices=False)
            top = float(sc[0]) if sc.size else 0.0
            r = int(np.count_nonzero(sc > RANK_RTOL_FACTOR * max(core.shape) * _EPS * top)) if top > 0 else 0
            self.heads[(i, t)] = _Head(W=W, b=b, lam=lam, U=Vk @ Uc[:, :r], s=sc[:r], Q=Qt @ Qct[:r].T, kappa=top,
                                       rank=r, cv=cv)  # fmt: skip
        return self.heads[(i, t)]


def _direction(
    P: _Problem, i: int, j: int, t: int | None, ridge: Any, grid: Any, keep_maps: bool, labels: tuple[str, str],
    parameters: dict, n_total: int,
) -> StitchResult:  # fmt: skip
    """Stitch input i into input j (and, with targets t, into j's head)."""
    flags0 = set(P.flags)
    P.flags = set()
    eg_i = P.eig("fit", P.fit, i)
    lam_map, cv_map = P.choose(ridge, i, grid, lambda g: P.cv_regression(i, j, g))
    S, b = P.regression(P.fit, eg_i, i, j, lam_map)
    eg_j = P.eig("fit", P.fit, j)
    rank = {labels[0]: eg_i.rank, labels[1]: eg_j.rank}
    flags = set()
    if lam_map == 0 and eg_i.rank < eg_i.d:
        flags.add(f"{labels[0]}_rank_deficient")
    ridges = {"map": lam_map}
    cv = {"map": cv_map} if cv_map else {}
    head_1 = head_2 = None
    task = None
    kappa = None
    if t is not None:
        head_1 = P.head(i, t, ridge, grid)
        head_2 = P.head(j, t, ridge, grid)
        if head_2.lam == 0 and eg_j.rank < eg_j.d:
            flags.add(f"{labels[1]}_rank_deficient")
        if head_2.rank < P.eig("fit", P.fit, t).rank:  # W₂ = V_k core Q_tᵀ has rank ≤ rank of the targets' Gram
            # W₂'s row space misses directions the (centred) targets use: Lemma 2's equality need not hold
            flags.add("head_2_rank_deficient")
        lam_st, cv_st = P.choose(ridge, i, grid, lambda g: P.cv_stitch(i, t, head_2, g))
        task = P.head_stitch(P.fit, eg_i, i, t, head_2, lam_st)
        kappa = head_2.kappa
        ridges.update(head_1=head_1.lam, head_2=head_2.lam, stitch=lam_st)
        if cv_st:
            cv.update(head_1=head_1.cv, head_2=head_2.cv, stitch=cv_st)
        rank["head_2"] = head_2.rank

    def risks(m: Moments, split: str) -> StitchRisks:
        res = P.risk(m, i, j, S, b)
        sst = float(np.trace(m.sides[j].M))
        r2 = 1.0 - res * m.n / sst if sst > 0 else None
        if t is None:
            return StitchRisks(split=split, n_samples=m.n, residual=res, r2=r2)
        r1 = P.risk(m, i, t, head_1.W, head_1.b)
        r2_ = P.risk(m, j, t, head_2.W, head_2.b)
        stitched = P.risk(m, i, t, task[2], task[3])
        via_map = P.risk(m, i, t, S @ head_2.W, b @ head_2.W + head_2.b)
        bound = (math.sqrt(r2_) + kappa * math.sqrt(res)) ** 2
        return StitchRisks(split=split, n_samples=m.n, residual=res, r2=r2, risk_1=r1, risk_2=r2_,
                           stitched_risk=stitched, regression_stitch_risk=via_map, bound=bound)  # fmt: skip

    fit = risks(P.fit, "fit")
    hold = risks(P.hold, "holdout") if P.hold is not None else None
    flags |= P.flags
    P.flags = flags0 | P.flags
    if cv:
        cv = {"folds": len(P.folds), **cv}
    return StitchResult(
        direction=f"{labels[0]}->{labels[1]}",
        map=S if keep_maps else None,
        offset=b if keep_maps else None,
        fit=fit,
        holdout=hold,
        ridge=ridges,
        intercept=P.intercept,
        n_samples=n_total,
        head_1=(head_1.W, head_1.b) if (head_1 is not None and keep_maps) else None,
        head_2=(head_2.W, head_2.b) if (head_2 is not None and keep_maps) else None,
        task_map=task[0] if (task is not None and keep_maps) else None,
        task_offset=task[1] if (task is not None and keep_maps) else None,
        kappa=kappa,
        rank=rank,
        cv=cv or None,
        parameters=parameters,
        flags=tuple(sorted(flags)),
    )


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


def _engine_kw(block_size: Any, scheduler: Any, client: Any, num_workers: Any, memory_per_worker: Any) -> dict[str, Any]:
    return {"block_size": block_size, "scheduler": scheduler, "client": client, "num_workers": num_workers,
            "memory_per_worker": memory_per_worker}  # fmt: skip


# ============================================================================
# public façades
# ============================================================================


def _no_options_for_linear(func: str, options: Mapping[str, Any]) -> None:
    """Options of the non-linear kinds given with kind='linear' (or misspelt keywords): a named error."""
    if not options:
        return
    from .stitching_nonlinear import OPTIONS

    of_kind = {k: kd for kd, defaults in OPTIONS.items() for k in defaults}
    unknown = sorted(set(options) - set(of_kind))
    if unknown:
        raise InvalidInputError(
            f"{func} got unexpected keyword argument(s) {unknown}. Check the spelling; the keywords are listed in "
            f"stitch's docstring (options of the non-linear kinds: {sorted(of_kind)})."
        )
    raise InvalidInputError(
        f"{func} got option(s) {sorted(options)} with kind='linear'; they belong to "
        f"kind={of_kind[sorted(options)[0]]!r} (kernel, bandwidth, method, n_features: kind='kernel'; hidden, epochs, "
        "batch_size, learning_rate, weight_decay, activation: kind='mlp'). Pass the matching kind=..., or drop them."
    )


@with_engine_doc
def stitch(
    x: Any,
    y: Any,
    /,
    *,
    kind: Literal["linear", "kernel", "mlp"] = "linear",
    ridge: float | Literal["cv"] = 0.0,
    intercept: bool = True,
    targets: Any = None,
    holdout: float = 0.2,
    seed: int = 0,
    folds: int = 5,
    ridge_grid: Sequence[float] | None = None,
    split_rows: int = 1,
    reverse: bool = False,
    block_size: int | None = None,
    scheduler: Any = None,
    client: Any = None,
    num_workers: int | None = None,
    memory_per_worker: int | None = None,
    **options: Any,
) -> StitchResult:
    """Linear stitching of representation x into y (and into y's linear head), in one streaming pass.

    Fits the map ŷ = x @ S + b by least squares or ridge from the streamed
    normal equations, and with ``targets`` linear heads for x and y, the best
    stitch of x into y's *fixed* head, κ₂ = ‖W₂‖₂ and Theorem 1's bound —
    on the fitting rows and on held-out rows.

    Parameters
    ----------
    x, y : array-like of shape (n_samples, d_x), (n_samples, d_y)
        numpy, dask or zarr arrays or store layers; the same samples in the same order.
    kind : {"linear", "kernel", "mlp"}, default="linear"
        The stitch class (the paper's Remark 3: Ã = inf over the class of
        E‖s(f₁) − f₂‖²).  ``"linear"``: everything below.  ``"kernel"``: ridge
        on the explicit features [x, c·φ(x)] (random Fourier/orthogonal/Nyström
        φ, streamed like the linear stitch); ``"mlp"``: the linear stitch plus
        α·m(x), m a scikit-learn MLP trained by minibatches on the linear
        residual, α ≥ 0 by a closed-form line search on the fitting rows.  The
        non-linear kinds return a :class:`~bigalign.metrics.stitching_nonlinear.NonlinearStitchResult`
        (``map``/``offset`` None, ``.predict``, held-out standard errors,
        ``.baseline`` the linear stitch on the same split); see
        :func:`bigalign.metrics.stitching_nonlinear.stitch_nonlinear`.
    **options
        Options of the non-linear kinds only (an error with ``kind="linear"``):
        ``kernel``, ``bandwidth``, ``method``, ``n_features`` for ``"kernel"``;
        ``hidden``, ``epochs``, ``batch_size``, ``learning_rate``,
        ``weight_decay``, ``activation`` for ``"mlp"``.
    ridge : float ≥ 0 or "cv", default=0.0
        Relative ridge r: λ = r · tr G in Σ‖x S + b − y‖² + λ‖S‖²_F, with G
        the regressor's Gram on the fitting rows (centred with an intercept),
        so that r means the same shrinkage at any scale of x (scikit-learn's
        ``Ridge(alpha=λ)`` penalises the sum of squared errors the same way;
        the intercept is never penalised; ``result.ridge`` reports the
        absolute λ).  The same r applies to the map, both heads and the task
        stitch.  ``"cv"``: each of these chooses its own λ from
        ``ridge_grid`` by k-fold cross-validation over the fitting rows.
    intercept : bool, default=True
        Affine maps and heads (x S + b).  ``False``: linear maps through the
        origin on uncentred moments, as in the paper (with ``ridge=0``,
        ``fit.residual`` is then exactly Ã₂ = min_S E‖S f₁ − f₂‖²).
    targets : array-like, optional
        (n_samples, c) targets, or 1-D labels: integer or bool labels become
        one-hot columns (one per class present), 1-D floats one output.
        Squared loss throughout.  Plain arrays are taken in the row order of
        x and y (their sample ids cannot be checked).
    holdout : float in [0, 1), default=0.2
        Fraction of rows held out (assigned by a seeded hash of the row index;
        the realised count is ``holdout.n_samples``).  Everything is fitted on
        the other rows and evaluated on both; the plain attributes
        (``.residual``, ``.risk_1``, ...) report the held-out rows, or the
        fitting rows when ``holdout=0``.
    seed : int, default=0
        Seeds the held-out split and the folds.
    folds : int, default=5
        Folds for ``ridge="cv"``.
    ridge_grid : sequence of float, optional
        Candidate relative ridges for ``ridge="cv"`` (each × tr G, as
        ``ridge``).  Default: 9 values 10⁻⁶ … 10² times tr(G)/d, the mean
        eigenvalue of the regressor's Gram on the fitting rows (centred with
        an intercept).
    split_rows : int, default=1
        Rows are assigned to the held-out set and to folds in contiguous
        groups of this many rows; use a larger value when neighbouring rows
        are dependent (tokens of one document, frames of one clip).
    reverse : bool, default=False
        Also stitch y into x (and into x's head): ``result.reverse``; the same
        pass, no extra read.
    {engine}

    Returns
    -------
    StitchResult
        ``.map``, ``.offset``, ``.residual``, ``.r2``; with targets
        ``.risk_1``, ``.risk_2``, ``.stitched_risk``, ``.excess_risk``,
        ``.kappa``, ``.bound``; ``.fit`` and ``.holdout`` hold every quantity
        on each split; ``float(result)`` is the excess risk (or the residual
        without targets).

    Raises
    ------
    InvalidInputError
        Mismatched n, bad options, a split or fold without rows.
    NonFiniteError
        NaN or infinite values (the message names the input and rows).
    PairingError
        Store layers whose sample ids differ.
    DegenerateInputError
        Targets with a single class.

    Notes
    -----
    One pass over x, y (and the targets) accumulating, per fold and for the
    held-out rows, the merged centred moments (:mod:`bigalign.moments`):
    O(n·(d_x + d_y + c)²) time, O((folds + 1)·(d_x + d_y + c)²) memory.  The
    solves are O(d³) eigen-decompositions of the Grams on the fitting rows
    (and of each fold's training rows for ``"cv"``).

    Singular Grams with ``ridge=0``: eigenvalues e ≤ 32·d·eps·max(e) of the
    (d × d) Gram are treated as zero and the minimum-norm solution is used —
    numpy's ``lstsq`` solution up to that tolerance (flags
    ``"x_rank_deficient"``/``"y_rank_deficient"``; ``result.rank``).

    Lemma 2 (ridge = 0, and rank W₂ = rank of the targets' Gram, which
    needs d_y ≥ that rank — c, or c − 1 for one-hot targets with an
    intercept; otherwise the flag ``"head_2_rank_deficient"``):
    ``fit.stitched_risk == fit.risk_1`` up to rounding.  Theorem 1:
    ``fit.stitched_risk ≤ fit.regression_stitch_risk ≤ fit.bound`` (ridge = 0);
    ``regression_stitch_risk ≤ bound`` on any split and for any ridge.  With an
    intercept, Ã₂ is the affine residual; Theorem 1's argument holds for any
    stitch, affine included.  For ``"cv"`` the task stitch is cross-validated
    with the head g₂ fixed (fitted on all fitting rows): g₂ is given in the
    stitching problem.

    References
    ----------
    Insulla, Huang & Rosasco, "Towards a Learning Theory of Representation
    Alignment", arXiv:2502.14047 — Lemma 2 and Theorem 1.

    Examples
    --------
    >>> import numpy as np
    >>> from bigalign.metrics.stitching import stitch
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(500, 3))
    >>> y = x @ np.array([[1.0, 2.0], [0.0, 1.0], [1.0, 0.0]]) + 5.0
    >>> r = stitch(x, y, holdout=0)
    >>> np.round(r.map, 12) + 0.0, np.round(r.offset, 12) + 0.0   # + 0.0: no negative zeros
    (array([[1., 2.],
           [0., 1.],
           [1., 0.]]), array([5., 5.]))
    >>> r.residual < 1e-12, round(r.r2, 12)   # an exact fit: zero up to rounding
    (True, 1.0)
    """
    ridge, intercept, holdout, seed, folds, ridge_grid, split_rows = _check_options(
        "stitch", ridge, intercept, holdout, seed, folds, ridge_grid, split_rows
    )
    if not isinstance(reverse, (bool, np.bool_)):
        raise InvalidInputError(f"the 'reverse' parameter of stitch must be True or False; got {reverse!r} instead.")
    check_choice("stitch", "kind", kind, KINDS)
    if kind != "linear":
        from .stitching_nonlinear import stitch_nonlinear

        return stitch_nonlinear(
            x, y, kind=kind, options=options, ridge=ridge, intercept=intercept, targets=targets, holdout=holdout,
            seed=seed, folds=folds, ridge_grid=ridge_grid, split_rows=split_rows, reverse=bool(reverse),
            engine_kw=_engine_kw(block_size, scheduler, client, num_workers, memory_per_worker),
        )  # fmt: skip
    _no_options_for_linear("stitch", options)
    rx, ry = as_representation(x, "x"), as_representation(y, "y")
    reps = [rx, ry]
    check_pairing(reps)
    n = rx.n
    inputs: list[Any] = [rx, ry]
    names = ["x", "y"]
    transforms: list[Any] = [None, None]
    pairs: list[tuple[int, int]] = [(0, 1)]
    if targets is not None:
        tin, tf = _targets_input(targets, n, "stitch")
        rt = _targets_rep(tin, targets, [rx, ry])
        inputs.append(rt)
        names.append("targets")
        transforms.append(tf)
        pairs += [(0, 2), (1, 2)]
    n_folds = folds if ridge == "cv" else 1
    inner = MomentStatistic(names=tuple(names), pairs=tuple(pairs), transforms=tuple(transforms) if any(transforms) else ())
    stat = SplitMomentStatistic(inner=inner, splits=Splits(holdout=holdout, folds=n_folds, seed=seed, split_rows=split_rows))
    ekw = _engine_kw(block_size, scheduler, client, num_workers, memory_per_worker)
    splits, plan = run(stat, inputs, names=names, check_pairing=False, **ekw)
    P = _Problem(splits, n_folds, holdout > 0, intercept)
    params = {
        "ridge": ridge, "intercept": intercept, "holdout": holdout, "seed": seed, "folds": n_folds,
        "split_rows": split_rows, "ridge_grid": ridge_grid, "rank_tolerance": "32*d*eps*max_eigenvalue",
        "n_classes": len(transforms[2].classes) if len(transforms) > 2 and transforms[2] is not None else None,
        **engine_parameters(plan),
    }  # fmt: skip
    t = 2 if targets is not None else None
    fwd = _direction(P, 0, 1, t, ridge, ridge_grid, True, ("x", "y"), params, n)
    if reverse:
        rev = _direction(P, 1, 0, t, ridge, ridge_grid, True, ("y", "x"), params, n)
        fwd = _replace(fwd, reverse=rev)
    return fwd


def _replace(r: StitchResult, **kw: Any) -> StitchResult:
    import dataclasses

    return dataclasses.replace(r, **kw)


# ============================================================================
# layer × layer
# ============================================================================


@dataclass(frozen=True, eq=False)
class StitchingMatrix:
    """Stitching between every layer of store a and every layer of store b, with CKA and KA beside it.

    Cell (i, j) stitches ``layers_a[i]`` into ``layers_b[j]`` and its head
    (:class:`StitchResult`, with the reverse direction when requested).

    Attributes
    ----------
    layers_a, layers_b : list of str
    results : list of list of StitchResult
    cka, kernel_alignment : LayerMatrix
        Linear CKA (``cka_estimator``) and uncentred KA on all rows, from the
        moments of the same pass (equal to :func:`bigalign.compare_layers`
        up to rounding).
    n_samples, n_passes : int
    parameters : mapping
    """

    layers_a: list[str]
    layers_b: list[str]
    results: list[list[StitchResult]]
    cka: Any
    kernel_alignment: Any
    n_samples: int
    n_passes: int
    parameters: Mapping[str, Any] = field(default_factory=dict)

    def values(self, quantity: str, split: Literal["evaluation", "fit", "holdout"] = "evaluation", direction: Literal["forward", "reverse"] = "forward") -> np.ndarray:
        """An (L_a, L_b) array of one quantity of :class:`StitchRisks` (``"excess_risk"``, ``"bound"``, ...).

        ``direction="reverse"`` reads the y→x stitches (b layer into a's head).
        """
        check_choice("StitchingMatrix.values", "quantity", quantity, QUANTITIES)
        check_choice("StitchingMatrix.values", "split", split, ("evaluation", "fit", "holdout"))
        check_choice("StitchingMatrix.values", "direction", direction, ("forward", "reverse"))
        out = np.zeros((len(self.layers_a), len(self.layers_b)))
        for i, row in enumerate(self.results):
            for j, r in enumerate(row):
                if direction == "reverse":
                    if r.reverse is None:
                        raise InvalidInputError("this matrix was computed with reverse=False; recompute with reverse=True.")
                    r = r.reverse
                part = {"evaluation": r.evaluation, "fit": r.fit, "holdout": r.holdout}[split]
                if part is None:
                    raise InvalidInputError("this matrix has no held-out rows (holdout=0); use split='fit'.")
                v = getattr(part, quantity)
                if v is None:
                    raise InvalidInputError(f"{quantity!r} needs targets; this matrix was computed without them.")
                out[i, j] = v
        return out

    @property
    def risk_a(self) -> np.ndarray:
        """R(H) of the linear head of each a-layer (evaluation rows)."""
        return self.values("risk_1")[:, 0]

    @property
    def risk_b(self) -> np.ndarray:
        """R(H) of the linear head of each b-layer (evaluation rows)."""
        return self.values("risk_2")[0, :]

    def remark6(self, split: Literal["evaluation", "fit", "holdout"] = "fit") -> dict[str, np.ndarray]:
        """Theorem 2 / Remark 6: bounds on each layer's head risk through the best layer of the other model.

        For a-layer i, R(H_aᵢ) ≤ stitched risk into any b-layer j ≤ its
        Theorem 1 bound, hence R(H_aᵢ) ≤ minⱼ bound_ij (guaranteed on the
        fitting rows with ``ridge=0``).  Returns ``{"risk_a", "bound_a",
        "argmin_a"}`` and, with the reverse direction, the same for b, plus
        ``"gap_bound"``: max(forward, reverse excess bound) ≥ |R(H_aᵢ) − R(H_bⱼ)|.
        """
        bound = self.values("bound", split)
        out = {"risk_a": self.values("risk_1", split)[:, 0], "bound_a": bound.min(axis=1), "argmin_a": bound.argmin(axis=1)}
        if self.results and self.results[0] and self.results[0][0].reverse is not None:
            rb = self.values("bound", split, "reverse")
            out.update(risk_b=self.values("risk_2", split)[0, :], bound_b=rb.min(axis=0), argmin_b=rb.argmin(axis=0))
            out["gap_bound"] = np.maximum(self.values("excess_bound", split), self.values("excess_bound", split, "reverse"))
        return out

    def layer_matrix(self, quantity: str, split: Literal["evaluation", "fit", "holdout"] = "evaluation") -> Any:
        """One quantity as a :class:`bigalign.LayerMatrix` (for its ``.plot`` and ``.to_dict``)."""
        from ..compare import LayerMatrix

        if quantity == "cka":
            return self.cka
        if quantity == "kernel_alignment":
            return self.kernel_alignment
        vals = self.values(quantity, split)
        first = self.results[0][0]
        part = {"evaluation": first.evaluation, "fit": first.fit, "holdout": first.holdout}[split]
        results = [
            [Result(metric=quantity, value=float(v), estimator="", method=METHOD, n_samples=part.n_samples,
                    parameters=dict(self.parameters)) for v in row]  # fmt: skip
            for row in vals
        ]
        return LayerMatrix(metric=f"{quantity} ({part.split})", layers_a=list(self.layers_a), layers_b=list(self.layers_b),
                           results=results, n_samples=part.n_samples, estimator="")  # fmt: skip

    def plot(
        self,
        quantities: Sequence[str] = ("cka", "excess_risk", "excess_bound"),
        *,
        split: Literal["evaluation", "fit", "holdout"] = "evaluation",
        axes: Any = None,
        log: Sequence[str] = ("bound", "excess_bound"),
        **imshow_kw: Any,
    ) -> Any:
        """Heatmaps side by side, one per quantity (``LayerMatrix.plot`` style); returns the figure.

        ``quantities``: ``"cka"``, ``"kernel_alignment"`` or any of
        :data:`QUANTITIES`.  Quantities named in ``log`` get a logarithmic
        colour scale when all their values are positive (the bound spans
        orders of magnitude when a head has a large norm).  Needs matplotlib
        (``pip install bigalign[plot]``).
        """
        try:
            import matplotlib.pyplot as plt
        except ImportError as exc:  # pragma: no cover
            raise ImportError("StitchingMatrix.plot needs matplotlib: pip install 'bigalign[plot]'") from exc
        quantities = list(quantities)
        if axes is None:
            w = max(4.0, 0.5 * len(self.layers_b) + 2.5)
            h = max(3.5, 0.45 * len(self.layers_a) + 1.5)
            fig, axes = plt.subplots(1, len(quantities), figsize=(w * len(quantities), h), squeeze=False)
            axes = axes[0]
        for ax, q in zip(axes, quantities):
            lm = self.layer_matrix(q, split)
            kw = dict(imshow_kw)
            vals = lm.values.compressed()
            if q in log and "norm" not in kw and vals.size and vals.min() > 0:
                from matplotlib.colors import LogNorm

                kw["norm"] = LogNorm(vmin=vals.min(), vmax=vals.max())
            lm.plot(ax=ax, **kw)
        fig = axes[0].figure
        fig.tight_layout()
        return fig

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": "stitching_matrix",
            "layers_a": list(self.layers_a),
            "layers_b": list(self.layers_b),
            "n_samples": int(self.n_samples),
            "n_passes": int(self.n_passes),
            "results": [[r.to_dict() for r in row] for row in self.results],
            "cka": self.cka.to_dict(),
            "kernel_alignment": self.kernel_alignment.to_dict(),
            "parameters": {k: _jsonable(v) for k, v in self.parameters.items()},
        }


def stitching_matrix(
    a: Any,
    b: Any = None,
    *,
    targets: Any,
    layers_a: Sequence[str] | None = None,
    layers_b: Sequence[str] | None = None,
    ridge: float | Literal["cv"] = 0.0,
    intercept: bool = True,
    holdout: float = 0.2,
    seed: int = 0,
    folds: int = 5,
    ridge_grid: Sequence[float] | None = None,
    split_rows: int = 1,
    reverse: bool = True,
    keep_maps: bool = False,
    cka_estimator: Literal["unbiased", "biased"] = "unbiased",
    kind: Literal["linear", "kernel", "mlp"] = "linear",
    state_memory: int | None = None,
    block_size: int | None = None,
    scheduler: Any = None,
    client: Any = None,
    num_workers: int | None = None,
    memory_per_worker: int | None = None,
    **options: Any,
) -> StitchingMatrix:
    """Stitching risk and Theorem 1's bound for every layer pair of two stores, beside CKA and KA.

    Cell (i, j) is :func:`stitch` of a-layer i into b-layer j with the same
    options (the same seed gives the same split, so a cell equals the
    corresponding ``stitch`` call up to rounding).  Every layer's Gram is
    decomposed and its head fitted once, and all pairs share one read of the
    data per pass.

    Parameters
    ----------
    a, b : ActivationStore, path, or mapping of layer name to array
        ``b=None`` stitches the layers of ``a`` into each other.
    targets : array-like
        As for :func:`stitch` (required: the stitching risk needs a task).
    layers_a, layers_b : list of str, optional
        Subsets (and order) of layers; default all.
    ridge, intercept, holdout, seed, folds, ridge_grid, split_rows
        As for :func:`stitch`.
    reverse : bool, default=True
        Also stitch each b-layer into each a-layer's head (Remark 6's bound on
        b's risks and the two-sided gap bound).
    keep_maps : bool, default=False
        Keep every cell's maps and heads (memory L_a·L_b·d_a·d_b).
    cka_estimator : {"unbiased", "biased"}, default="unbiased"
    kind : {"linear", "kernel", "mlp"}, default="linear"
        The stitch class, with its options as keyword arguments (see
        :func:`stitch`).  The non-linear kinds run :func:`stitch` once per
        cell (their feature maps and networks belong to the source layer and
        split), so they read the data once or more per pair; CKA and KA beside
        them come from one linear pass.  Each cell equals that ``stitch`` call.
    state_memory : int, optional
        Bytes of accumulated state allowed per pass (default 1 GiB; the
        state of one pass is (folds + 1) copies of the moments).
    block_size, scheduler, client, num_workers, memory_per_worker
        As for :func:`stitch`.

    Returns
    -------
    StitchingMatrix
        ``.values(quantity, split)``, ``.cka``, ``.kernel_alignment``,
        ``.remark6()``, ``.plot()``, ``.to_dict()``.

    Notes
    -----
    Time O(n·(Σ d)²) per pass plus O(d³) per layer; pairs are grouped into
    passes (as in :func:`bigalign.compare_layers`) so that (folds + 1) copies
    of the accumulated moments fit in ``state_memory``.
    """
    from ..compare import DEFAULT_STATE_MEMORY, _plan_passes, layer_inputs
    from .kernel import cka_from_moments, ka_from_moments

    func = "stitching_matrix"
    ridge, intercept, holdout, seed, folds, ridge_grid, split_rows = _check_options(
        func, ridge, intercept, holdout, seed, folds, ridge_grid, split_rows
    )
    check_choice(func, "cka_estimator", cka_estimator, ESTIMATORS)
    check_choice(func, "kind", kind, KINDS)
    if kind == "linear":
        _no_options_for_linear(func, options)
    if not isinstance(reverse, (bool, np.bool_)) or not isinstance(keep_maps, (bool, np.bool_)):
        raise InvalidInputError(f"reverse and keep_maps of {func} must be True or False; got {reverse!r}, {keep_maps!r}.")
    if targets is None:
        raise InvalidInputError(
            "stitching_matrix needs targets (the stitching risk is a risk on a task); got targets=None. "
            "Pass labels or an (n_samples, c) target array; for task-free maps use bigalign.stitch(x, y)."
        )
    la, lb, reps, labels, ia, ib = layer_inputs(a, b, layers_a, layers_b)
    n = reps[0].n
    check_unbiased_n(func, n, cka_estimator)
    tin, tf = _targets_input(targets, n, func)
    rt = _targets_rep(tin, targets, reps)
    if kind != "linear":
        return _nonlinear_matrix(
            kind, options, la, lb, reps, ia, ib, targets, n,
            dict(ridge=ridge, intercept=intercept, holdout=holdout, seed=seed, folds=folds, ridge_grid=ridge_grid,
                 split_rows=split_rows, reverse=reverse),
            cka_estimator, _engine_kw(block_size, scheduler, client, num_workers, memory_per_worker),
        )  # fmt: skip

    n_folds = folds if ridge == "cv" else 1
    splits_def = Splits(holdout=holdout, folds=n_folds, seed=seed, split_rows=split_rows)
    budget = int(state_memory or DEFAULT_STATE_MEMORY) // (n_folds + (1 if holdout > 0 else 0))
    widths = [r.d for r in reps]
    wanted = sorted({(min(i, j), max(i, j)) for i in ia for j in ib})
    passes = _plan_passes(wanted, widths, budget)
    ekw = _engine_kw(block_size, scheduler, client, num_workers, memory_per_worker)
    base = {"ridge": ridge, "intercept": intercept, "holdout": holdout, "seed": seed, "folds": n_folds,
            "split_rows": split_rows, "ridge_grid": ridge_grid, "rank_tolerance": "32*d*eps*max_eigenvalue"}  # fmt: skip
    cells: dict[tuple[int, int], StitchResult] = {}
    cka_cells: dict[tuple[int, int], Any] = {}
    ka_cells: dict[tuple[int, int], Any] = {}
    plan = None
    for group in passes:
        used = sorted({k for pr in group for k in pr})
        local = {g: k for k, g in enumerate(used)}
        t = len(used)
        pairs = [(local[i], local[j]) for i, j in group if i != j] + [(k, t) for k in range(len(used))]
        transforms = tuple([None] * len(used) + [tf]) if tf is not None else ()
        inner = MomentStatistic(names=tuple(labels[k] for k in used) + ("targets",), pairs=tuple(pairs), transforms=transforms)
        stat = SplitMomentStatistic(inner=inner, splits=splits_def)
        splits, plan = run(stat, [reps[k] for k in used] + [rt], check_pairing=False, **ekw)
        P = _Problem(splits, n_folds, holdout > 0, intercept)
        params = {**base, **engine_parameters(plan), "n_passes": len(passes)}
        whole = P.all_rows
        for i, j in group:
            for src, dst in ((i, j), (j, i)) if i != j else ((i, j),):
                if src in ia and dst in ib:
                    fwd = _direction(P, local[src], local[dst], t, ridge, ridge_grid, keep_maps, ("x", "y"), params, n)
                    if reverse:
                        fwd = _replace(fwd, reverse=_direction(P, local[dst], local[src], t, ridge, ridge_grid, keep_maps, ("y", "x"), params, n))
                    cells[(src, dst)] = fwd
                    cparams = {"kernel": "linear", **engine_parameters(plan), "n_passes": len(passes)}
                    for store, fn, est in ((cka_cells, cka_from_moments, cka_estimator), (ka_cells, ka_from_moments, "biased")):
                        try:
                            store[(src, dst)] = fn(whole, local[src], local[dst], est, cparams)
                        except DegenerateInputError as exc:
                            store[(src, dst)] = exc

    from ..compare import _matrix

    def layer_matrix(metric: str, vals: dict, est: str) -> Any:
        return _matrix(metric, la, lb, ia, ib, vals, len(passes), n, est)

    return StitchingMatrix(
        layers_a=list(la),
        layers_b=list(lb),
        results=[[cells[(i, j)] for j in ib] for i in ia],
        cka=layer_matrix("cka", cka_cells, cka_estimator),
        kernel_alignment=layer_matrix("kernel_alignment", ka_cells, "biased"),
        n_samples=n,
        n_passes=len(passes),
        parameters={**base, **(engine_parameters(plan) if plan is not None else {})},
    )


def _nonlinear_matrix(
    kind: str, options: Mapping[str, Any], la: list[str], lb: list[str], reps: list, ia: list[int], ib: list[int],
    targets: Any, n: int, stitch_kw: dict[str, Any], cka_estimator: str, ekw: dict[str, Any],
) -> StitchingMatrix:  # fmt: skip
    """A StitchingMatrix of non-linear stitches: one :func:`stitch` call per cell, CKA and KA from one linear pass."""
    from ..compare import compare_layers

    results = [[stitch(reps[i], reps[j], kind=kind, targets=targets, **stitch_kw, **ekw, **options) for j in ib] for i in ia]
    layers = {f"a{k}": reps[k] for k in sorted(set(ia) | set(ib))}  # the paired inputs, by index
    names_a, names_b = [f"a{i}" for i in ia], [f"a{j}" for j in ib]

    def relabel(m: Any) -> Any:
        return dataclasses.replace(m, layers_a=list(la), layers_b=list(lb))

    cka = relabel(compare_layers(layers, None, "cka", names_a, names_b, estimator=cka_estimator, **ekw))
    ka = relabel(compare_layers(layers, None, "kernel_alignment", names_a, names_b, **ekw))
    return StitchingMatrix(
        layers_a=list(la), layers_b=list(lb), results=results, cka=cka, kernel_alignment=ka, n_samples=n,
        n_passes=len(ia) * len(ib) + 2, parameters={**stitch_kw, "kind": kind, **dict(options)},
    )  # fmt: skip
