"""Linear stitching in closed form on merged moments: the map, the heads, their risks and the bounds.

See :mod:`bigalign.metrics.stitching` for the formulas.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from ..engine import tree_reduce
from ..errors import InvalidInputError
from ..grouped import GroupedStates
from ..intervals import Interval, estimator_interval
from ..moments import Moments, merge
from ._stitch_data import DEFAULT_GRID_FACTORS, HOLDOUT, RANK_RTOL_FACTOR, _EPS
from ._stitch_results import StitchResult, StitchRisks

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


def stitch_intervals(
    states: GroupedStates, n_folds: int, holdout: bool, intercept: bool, t: int | None, ridge: Any, grid: Any,
    cells: Mapping[Any, tuple[int, int, float]], level: float, anchor: Mapping[int, int] | None = None,
) -> dict[Any, Interval]:  # fmt: skip
    """Block-jackknife intervals of the residuals of stitching input i into j, for every cell
    key → (i, j, value): each leave-one-group-out state (one traversal for all cells) refits
    the maps on the split moments of the other groups (``anchor``: the kernel stitch's
    :attr:`_Problem.ridge_anchor`)."""
    loo: dict[Any, list[float]] = {key: [] for key in cells}
    for _, splits in states.leave_one_out():
        P = _Problem(splits, n_folds, holdout, intercept)
        P.ridge_anchor.update(anchor or {})
        m = sum(mm.n for mm in splits.values())
        for key, (i, j, _) in cells.items():
            loo[key].append(_direction(P, i, j, t, ridge, grid, False, ("x", "y"), {}, m).value)
    # a residual ≥ 0, far from 0 unless the fit is exact: identity scale; O(1/n) biased: the corrected centre
    return {key: estimator_interval(v, loo[key], level, estimator="biased", metric="stitch") for key, (_, _, v) in cells.items()}
