"""The MLP stitch: a small network trained by minibatches read in windows, with streamed held-out risks.

See :mod:`bigalign.metrics.stitching_nonlinear` for the estimator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Mapping

import numpy as np

from .._checks import finite_float64
from ..engine import run
from ..errors import InvalidInputError
from ..io import Representation
from ..moments import MomentStatistic
from ._common import engine_parameters
from ._stitch_data import HOLDOUT, SplitMomentStatistic, Splits
from ._stitch_linear import _Problem, _direction
from ._stitch_results import StitchRisks
from ._stitch_nonlinear_base import (
    WINDOW_BATCHES,
    _BOUND_NOTE,
    ErrorSums,
    MLPStitch,
    NonlinearStitchResult,
    StitchRisksSE,
    _Quantity,
    _baseline,
    _stderrs,
    _with,
)

# the MLP stitch
# ============================================================================


def _new_mlp(opts: Mapping[str, Any], random_state: int) -> Any:
    from sklearn.neural_network import MLPRegressor

    return MLPRegressor(hidden_layer_sizes=opts["hidden"], activation=opts["activation"], solver="adam",
                        alpha=opts["weight_decay"], learning_rate_init=opts["learning_rate"], batch_size=1,
                        shuffle=False, random_state=random_state)  # fmt: skip


@dataclass
class _Trainee:
    """One MLP being trained: rows of ``source`` → (target − (source @ A + a0)) / σ."""

    mlp: Any
    source: int
    target: int
    A: np.ndarray
    a0: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    sigma: float
    steps: int = 0

    def step(self, blocks: list[np.ndarray], rows: np.ndarray) -> None:
        xs = blocks[self.source][rows]
        r = (blocks[self.target][rows] - (xs @ self.A + self.a0)) / self.sigma
        self.mlp.batch_size = int(rows.size)  # exactly one optimiser step on this minibatch
        try:
            with np.errstate(all="ignore"):  # a diverging step is reported below, not as RuntimeWarnings
                self.mlp.partial_fit((xs - self.mean) / self.scale, r[:, 0] if r.shape[1] == 1 else r)
        except ValueError as exc:
            if "non-finite" not in str(exc):
                raise
            raise InvalidInputError(
                f"the MLP stitch diverged after {self.steps} minibatch steps (scikit-learn: {exc}). Expected finite "
                f"weights. Lower learning_rate (got {self.mlp.learning_rate_init:g}) or weight_decay."
            ) from exc
        self.steps += 1


def _train(raw: list[Representation], raw_names: tuple[str, ...], tf: Any, splits: Splits, trainees: list[_Trainee], opts: Mapping[str, Any], seed: int) -> None:
    """Minibatch epochs over the fitting rows in fixed row groups (independent of the engine's blocks)."""
    if not trainees:
        return
    n = raw[0].n
    B = opts["batch_size"]
    n_batches = -(-n // B)
    n_windows = -(-n_batches // WINDOW_BATCHES)
    for epoch in range(opts["epochs"]):
        rng = np.random.default_rng([seed, 0x5717C4, epoch])
        for w in rng.permutation(n_windows):
            lo, hi = int(w) * WINDOW_BATCHES * B, min(n, (int(w) + 1) * WINDOW_BATCHES * B)
            blocks = [finite_float64(r.read(lo, hi), raw_names[k], lo) for k, r in enumerate(raw)]
            if tf is not None:
                blocks[2] = tf(blocks[2])
            lab = splits.assign(lo, hi)
            for b in rng.permutation(-(-(hi - lo) // B)):
                rows = np.flatnonzero(lab[int(b) * B : (int(b) + 1) * B] >= 0) + int(b) * B
                if rows.size:
                    for tr in trainees:
                        tr.step(blocks, rows)


def _mlp(rx, ry, rt, tf, opts, ridge, intercept, holdout, seed, folds, ridge_grid, split_rows, reverse, options, common):
    n = rx.n
    n_folds = folds if ridge == "cv" else 1
    splits = Splits(holdout=holdout, folds=n_folds, seed=seed, split_rows=split_rows)
    raw = [rx, ry] + ([rt] if rt is not None else [])
    raw_names = tuple(["x", "y"] + (["targets"] if rt is not None else []))
    t = 2 if rt is not None else None
    pairs = [(0, 1)] + ([(0, 2), (1, 2)] if t is not None else [])
    transforms = (None, None, tf) if tf is not None else ()
    stat = SplitMomentStatistic(inner=MomentStatistic(names=raw_names, pairs=tuple(pairs), transforms=transforms), splits=splits)
    moments, plan = run(stat, raw, names=list(raw_names), check_pairing=False, options=options)
    P = _Problem(moments, n_folds, holdout > 0, intercept)
    params = {**common, "kind": "mlp", "hidden": list(opts["hidden"]), "epochs": opts["epochs"], "batch_size": opts["batch_size"],
              "learning_rate": opts["learning_rate"], "weight_decay": opts["weight_decay"], "activation": opts["activation"],
              "window_batches": WINDOW_BATCHES, "solver": "adam (sklearn MLPRegressor.partial_fit, one step per minibatch)",
              "bound": _BOUND_NOTE["mlp"], **engine_parameters(plan)}  # fmt: skip

    dirs = [(0, 1, ("x", "y"))] + ([(1, 0, ("y", "x"))] if reverse else [])
    plan_dirs = []
    trainees: list[_Trainee] = []
    for i, j, labels in dirs:
        base = _direction(P, i, j, t, ridge, ridge_grid, True, labels, params, n)
        side = P.fit.sides[i]
        mean = side.mean.copy()
        sd = np.sqrt(np.diag(side.M) / side.n)
        scale = np.where(sd > 0, sd, 1.0)  # a constant column centres to 0; any divisor leaves it 0
        rs = int(np.random.default_rng([seed, 0x5717C4, 1000]).integers(2**31 - 2))  # the same in both directions
        d_out = raw[j].d
        sig = math.sqrt(base.fit.residual / d_out)
        map_tr = None
        if sig > 0:
            map_tr = _Trainee(mlp=_new_mlp(opts, rs), source=i, target=j, A=base.map, a0=base.offset, mean=mean, scale=scale, sigma=sig)
            trainees.append(map_tr)
        task_tr, pinv, A_t, a0_t, sig_t = None, None, None, None, 0.0
        if t is not None:
            W2, b2 = base.head_2
            h = P.heads[(j, t)]
            pinv = (h.Q / h.s[None, :]) @ h.U.T if h.s.size else np.zeros((W2.shape[1], W2.shape[0]))  # W₂⁺ (c × d_y)
            A_t, a0_t = base.task_map @ W2, base.task_offset @ W2 + b2
            sig_t = math.sqrt(base.fit.stitched_risk / W2.shape[1])
            if sig_t > 0 and h.s.size:
                task_tr = _Trainee(mlp=_new_mlp(opts, rs + 1), source=i, target=t, A=A_t, a0=a0_t, mean=mean, scale=scale, sigma=sig_t)
                trainees.append(task_tr)
        plan_dirs.append((i, j, labels, base, mean, scale, sig, map_tr, task_tr, pinv, sig_t))
    _train(raw, raw_names, tf, splits, trainees, opts, seed)

    # one engine pass: line-search sums on the fitting rows, errors (and their squares) on both splits
    quants: list[_Quantity] = []
    models: list[MLPStitch] = []
    index = []

    def add(**kw: Any) -> int:
        quants.append(_Quantity(**kw))
        return len(quants) - 1

    for i, j, labels, base, mean, scale, sig, map_tr, task_tr, pinv, sig_t in plan_dirs:
        m_map = MLPStitch(S=base.map, b=base.offset, mlp=map_tr.mlp if map_tr else None, mean=mean, scale=scale, out_scale=sig)
        models.append(m_map)
        iq = {"residual": add(source=i, A=base.map, a0=base.offset, target=j, model=len(models) - 1, model_input=i)}
        m_task = None
        if t is not None:
            W2, b2 = base.head_2
            W1, b1 = base.head_1
            m_task = MLPStitch(S=base.task_map, b=base.task_offset, mlp=task_tr.mlp if task_tr else None, mean=mean, scale=scale,
                               out_scale=sig_t, post=pinv)  # fmt: skip
            models.append(m_task)
            iq["stitched_risk"] = add(source=i, A=base.task_map @ W2, a0=base.task_offset @ W2 + b2, target=t,
                                      model=len(models) - 1, model_input=i, post=W2)  # fmt: skip
            iq["regression_stitch_risk"] = add(source=i, A=base.map @ W2, a0=base.offset @ W2 + b2, target=t,
                                               model=len(models) - 2, model_input=i, post=W2)  # fmt: skip
            iq["risk_1"] = add(source=i, A=W1, a0=b1, target=t)
            iq["risk_2"] = add(source=j, A=W2, a0=b2, target=t)
        index.append((iq, m_map, m_task))
    es = ErrorSums(names=raw_names, splits=splits, features=tuple((k, tf if k == 2 else None) for k in range(len(raw))),
                   quantities=tuple(quants), models=tuple(models), keys=(0, HOLDOUT) if holdout > 0 else (0,))  # fmt: skip
    sums, _ = run(es, raw, names=list(raw_names), check_pairing=False, options=options)
    for key, (_, s) in sums.items():
        if not np.all(np.isfinite(s)):
            raise InvalidInputError(
                "the MLP stitch produced non-finite outputs (its training diverged). Expected finite predictions. "
                f"Lower learning_rate (got {opts['learning_rate']:g}) or rescale the inputs."
            )
    params["n_passes"] = 2
    params["n_minibatch_steps"] = max((tr.steps for tr in trainees), default=0)
    hold = sums.get(HOLDOUT)
    nfit, sfit = sums[0]

    results = []
    for (i, j, labels, base, mean, scale, sig, map_tr, task_tr, pinv, sig_t), (iq, m_map, m_task) in zip(plan_dirs, index):
        flags = set(base.flags)

        def line_search(k: int, flag: str) -> float:
            q, s = sfit[k, 1], sfit[k, 2]
            if s > 0 and q > 0:
                return float(q / s)
            flags.add(flag)  # the MLP does not lower the fitting error along its direction: α = 0, the linear stitch
            return 0.0

        alpha = line_search(iq["residual"], "mlp_alpha_zero")
        alphas = {"residual": alpha, "regression_stitch_risk": alpha}
        if t is not None:
            alphas["stitched_risk"] = line_search(iq["stitched_risk"], "mlp_task_alpha_zero")

        def risks(lin: StitchRisks, part: tuple[int, np.ndarray], m: Any, with_se: bool) -> StitchRisksSE:
            n_rows, s = part
            vals: dict[str, Any] = {}
            for name in ("residual", "stitched_risk", "regression_stitch_risk"):
                if name not in iq:
                    continue
                k, a = iq[name], alphas[name]
                drop = (2 * a * s[k, 1] - a * a * s[k, 2]) / n_rows  # improvement over the linear stitch
                v = getattr(lin, name) - drop
                if v < 0:
                    # exact value ≥ 0 (Cauchy–Schwarz); a negative one is the rounding of a perfect fit
                    if v < -1e-10 * max(getattr(lin, name), 1e-300):  # pragma: no cover - a bug
                        raise AssertionError(f"internal error: negative {name} {v!r}")
                    v = 0.0
                    flags.add("risk_zero_up_to_rounding")
                vals[name] = v
            sst = float(np.trace(m.sides[j].M))
            vals["r2"] = 1.0 - vals["residual"] * m.n / sst if sst > 0 else None
            if t is not None:
                vals["bound"] = (math.sqrt(lin.risk_2) + base.kappa * math.sqrt(vals["residual"])) ** 2
            se = _stderrs(part, iq, alphas) if with_se else None
            return _with(lin, se, **vals)

        fit = risks(base.fit, (nfit, sfit), P.fit, False)
        hld = risks(base.holdout, hold, P.hold, True) if hold is not None else None
        results.append(NonlinearStitchResult(
            direction=base.direction, map=None, offset=None, fit=fit, holdout=hld, ridge=base.ridge, intercept=intercept,
            n_samples=n, head_1=base.head_1, head_2=base.head_2, task_map=None, task_offset=None, kappa=base.kappa,
            rank=dict(base.rank), cv=base.cv,
            parameters={**params, "source": labels[0], "alpha": alpha, "alpha_task": alphas.get("stitched_risk"),
                        "mlp_trained": map_tr is not None, "task_mlp_trained": task_tr is not None,
                        "residual_scale": sig, "task_residual_scale": sig_t if t is not None else None},
            flags=tuple(sorted(flags)), method="mlp-minibatch", kind="mlp",
            model=replace(m_map, alpha=alpha), task_model=None if m_task is None else replace(m_task, alpha=alphas["stitched_risk"]),
            baseline=_baseline(base, hold, iq),
        ))  # fmt: skip
    return results


# ============================================================================
