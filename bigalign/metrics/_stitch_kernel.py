"""The kernel stitch: ridge regression on random-feature or Nystroem maps of the source, in one streamed pass.

See :mod:`bigalign.metrics.stitching_nonlinear` for the estimator.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..engine import run
from ..grouped import grouped_statistic
from ..moments import MomentStatistic
from ._common import engine_parameters, feature_options
from ._stitch_data import HOLDOUT, SplitMomentStatistic, Splits
from ._stitch_linear import _Problem, _direction, stitch_intervals
from ._stitch_results import with_stitch_interval
from ._stitch_nonlinear_base import (
    _BOUND_NOTE,
    ErrorSums,
    KernelFeatures,
    KernelStitch,
    NonlinearStitchResult,
    _Expanded,
    _Quantity,
    _baseline,
    _stderrs,
    _with,
    kernel_features,
)

# the kernel stitch
# ============================================================================


def _kernel(rx, ry, rt, tf, opts, ridge, intercept, holdout, seed, folds, ridge_grid, split_rows, reverse, options, common,
            ci_level=None):  # fmt: skip
    n = rx.n
    n_folds = folds if ridge == "cv" else 1
    splits = Splits(holdout=holdout, folds=n_folds, seed=seed, split_rows=split_rows)
    kx, px = kernel_features(rx, splits, opts, seed)
    ky, py = kernel_features(ry, splits, opts, seed) if reverse else (None, None)
    raw = [rx, ry] + ([rt] if rt is not None else [])
    raw_names = tuple(["x", "y"] + (["targets"] if rt is not None else []))
    specs: list[tuple[str, int, Any]] = [("x features", 0, kx), ("y", 1, None), ("x", 0, None)]
    E = {"zx": 0, "y": 1, "x": 2}
    if rt is not None:
        E["t"] = len(specs)
        specs.append(("targets", 2, tf))
    if reverse:
        E["zy"] = len(specs)
        specs.append(("y features", 1, ky))
    t = E.get("t")
    pairs = [(E["zx"], E["y"]), (E["x"], E["y"])]
    if t is not None:
        pairs += [(E["zx"], t), (E["y"], t), (E["x"], t)]
    if reverse:
        pairs += [(E["zy"], E["x"])] + ([(E["zy"], t)] if t is not None else [])
    inner = MomentStatistic(names=tuple(s[0] for s in specs), pairs=tuple(pairs), transforms=tuple(s[2] for s in specs))
    stat = SplitMomentStatistic(inner=_Expanded(names=raw_names, order=tuple(s[1] for s in specs), inner=inner), splits=splits)  # type: ignore[arg-type]
    # block rows planned for the expanded width: the features, not the inputs, dominate memory
    width = sum(raw[r].d + (tr.n_features if isinstance(tr, KernelFeatures) else 0) for _, r, tr in specs)
    fopts = feature_options(options, raw, width, 0)
    states = None
    if ci_level is None:
        moments, plan = run(stat, raw, names=list(raw_names), check_pairing=False, options=fopts)
    else:  # one split-moment state per contiguous row group, in the same pass (the feature map stays the seed's)
        states, plan = run(grouped_statistic(stat, n, func="stitch"), raw, names=list(raw_names), check_pairing=False, options=fopts)
        moments = states.total()
    P = _Problem(moments, n_folds, holdout > 0, intercept)
    # the expanded input's relative ridge is scaled by x's Gram: the kernel stitch gets the linear stitch's λ
    anchor = {E["zx"]: E["x"]} | ({E["zy"]: E["y"]} if "zy" in E else {})
    P.ridge_anchor.update(anchor)
    params = {**common, "kind": "kernel", "kernel": opts["kernel"], "method_features": opts["method"],
              "n_features": opts["n_features"], "bandwidth_rule": opts["bandwidth"] if isinstance(opts["bandwidth"], str) else "given",
              "features_x": px, "features_y": py, "bound": _BOUND_NOTE["kernel"], **engine_parameters(plan)}  # fmt: skip

    dirs = [("zx", "x", "y", ("x", "y"), kx)] + ([("zy", "y", "x", ("y", "x"), ky)] if reverse else [])
    fits = []
    for zs, src, dst, labels, feat in dirs:
        k = _direction(P, E[zs], E[dst], t, ridge, ridge_grid, True, labels, params, n)
        b = _direction(P, E[src], E[dst], t, ridge, ridge_grid, True, labels, params, n)
        fits.append((zs, src, dst, labels, feat, k, b))

    # one pass over the held-out rows: per-row errors of every fitted predictor (standard errors)
    hold_sums: dict[int, tuple[int, np.ndarray]] = {}
    index: list[tuple[dict[str, int], dict[str, int]]] = []
    if holdout > 0:
        quants: list[_Quantity] = []

        def add(source: int, A: np.ndarray, a0: np.ndarray, target: int) -> int:
            quants.append(_Quantity(source=source, A=A, a0=a0, target=target))
            return len(quants) - 1

        for zs, src, dst, labels, feat, k, b in fits:
            ik = {"residual": add(E[zs], k.map, k.offset, E[dst])}
            ib = {"residual": add(E[src], b.map, b.offset, E[dst])}
            if t is not None:
                W2, b2 = b.head_2
                W1, b1 = b.head_1
                ib["risk_1"] = ik["risk_1"] = add(E[src], W1, b1, t)
                ib["risk_2"] = ik["risk_2"] = add(E[dst], W2, b2, t)
                ik["stitched_risk"] = add(E[zs], k.task_map @ W2, k.task_offset @ W2 + b2, t)
                ib["stitched_risk"] = add(E[src], b.task_map @ W2, b.task_offset @ W2 + b2, t)
                ik["regression_stitch_risk"] = add(E[zs], k.map @ W2, k.offset @ W2 + b2, t)
                ib["regression_stitch_risk"] = add(E[src], b.map @ W2, b.offset @ W2 + b2, t)
            index.append((ik, ib))
        es = ErrorSums(names=raw_names, splits=splits, features=tuple((s[1], s[2]) for s in specs), quantities=tuple(quants), keys=(HOLDOUT,))
        hold_sums, _ = run(es, raw, names=list(raw_names), check_pairing=False, options=fopts)
        params["n_passes"] = 2
    else:
        params["n_passes"] = 1
    hold = hold_sums.get(HOLDOUT)

    results = []
    for m, (zs, src, dst, labels, feat, k, b) in enumerate(fits):
        ik, ib = index[m] if index else ({}, {})
        base = _baseline(b, hold, ib)
        flags = {f.replace(f"{labels[0]}_rank_deficient", f"{labels[0]}_features_rank_deficient") for f in k.flags}
        r1 = {"fit": b.fit.risk_1, "holdout": None if b.holdout is None else b.holdout.risk_1}
        # head_1 is model 1's linear head (the kernel head on z(x) that _direction also fits is not reported)
        ridges = {**k.ridge, **({"head_1": b.ridge["head_1"]} if "head_1" in b.ridge else {})}
        cv = None if k.cv is None else {**k.cv, **({"head_1": b.cv["head_1"]} if b.cv and "head_1" in b.cv else {})}
        results.append(NonlinearStitchResult(
            direction=k.direction, map=None, offset=None,
            fit=_with(k.fit, risk_1=r1["fit"]),
            holdout=None if k.holdout is None else _with(k.holdout, _stderrs(hold, ik), risk_1=r1["holdout"]),
            ridge=ridges, intercept=intercept, n_samples=n, head_1=b.head_1, head_2=b.head_2, task_map=None,
            task_offset=None, kappa=k.kappa, rank={f"{labels[0]}_features": k.rank[labels[0]], **b.rank}, cv=cv,
            parameters={**params, "source": labels[0]}, flags=tuple(sorted(flags)), method=f"kernel-{opts['method']}-streaming",
            kind="kernel", model=KernelStitch(features=feat, coef=k.map, offset=k.offset),
            task_model=None if t is None else KernelStitch(features=feat, coef=k.task_map, offset=k.task_offset),
            baseline=base,
        ))  # fmt: skip
    if states is not None:  # the forward stitch's residual: each leave-out refits on the fitting rows that remain
        k = fits[0][5]
        iv = stitch_intervals(states, n_folds, holdout > 0, intercept, t, ridge, ridge_grid, {0: (E["zx"], E["y"], k.value)},
                              ci_level, anchor)[0]  # fmt: skip
        results[0] = with_stitch_interval(results[0], iv)
    return results


# ============================================================================
