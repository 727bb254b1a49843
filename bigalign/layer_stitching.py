"""Stitching between every layer of two stores: the layer × layer orchestration of :func:`bigalign.stitch`.

Cell (i, j) of a :class:`StitchingMatrix` is :func:`bigalign.stitch` of a-layer
i into b-layer j; the linear kind groups the pairs into passes under a state
budget (as :func:`bigalign.compare_layers`) and reads the data once per pass,
with linear CKA and KA beside every cell.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Sequence

import numpy as np

from .compare import DEFAULT_STATE_MEMORY, LayerMatrix, _matrix, _plan_passes, compare_layers, layer_inputs
from .engine import run
from .grouped import grouped_statistic
from .intervals import DEFAULT_CI_GROUPS, check_ci
from .errors import DegenerateInputError, InvalidInputError
from .metrics._common import ESTIMATORS, check_choice, check_unbiased_n, engine_parameters
from .metrics.kernel import cka_from_moments, ka_from_moments
from .metrics.stitching import (
    KINDS,
    METHOD,
    QUANTITIES,
    SplitMomentStatistic,
    Splits,
    StitchResult,
    _check_options,
    _direction,
    _no_options_for_linear,
    _Problem,
    _replace,
    _targets_input,
    _targets_rep,
    stitch,
    stitch_intervals,
    with_stitch_interval,
)
from .moments import MomentStatistic
from .options import ENGINE_KEYWORDS, EngineOptions
from .result import Result, _jsonable

__all__ = ["StitchingMatrix", "stitching_matrix"]


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
    ci: float | None = None,
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
    ci : float in (0, 1), optional
        A sampling interval on every stitching cell's ``value`` (the
        residual), as :func:`stitch` gives it (each leave-one-group-out value
        refits the maps from the moments each row group keeps in the same
        pass; passes are then planned for state_memory / 20).  The CKA and KA
        matrices beside it carry none: use
        ``bigalign.compare_layers(..., ci=...)`` for theirs.  ``kind="linear"`` and
        ``"kernel"`` (each cell is then that ``stitch`` call with ``ci``); ``"mlp"``: an error.
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
    func = "stitching_matrix"
    # the engine keywords share the ``**`` catch-all with the options of the non-linear kinds
    engine_opts = EngineOptions.build(func, {k: options.pop(k) for k in ENGINE_KEYWORDS if k in options})
    level = check_ci(func, ci)
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
        return _nonlinear_matrix(  # stitch() says where its kind has no interval
            kind, options, la, lb, reps, ia, ib, targets, n,
            dict(ridge=ridge, intercept=intercept, holdout=holdout, seed=seed, folds=folds, ridge_grid=ridge_grid,
                 split_rows=split_rows, reverse=reverse, **({"ci": level} if level is not None else {})),
            cka_estimator, engine_opts,
        )  # fmt: skip

    n_folds = folds if ridge == "cv" else 1
    splits_def = Splits(holdout=holdout, folds=n_folds, seed=seed, split_rows=split_rows)
    budget = int(state_memory or DEFAULT_STATE_MEMORY) // (n_folds + (1 if holdout > 0 else 0))
    if level is not None:
        budget //= DEFAULT_CI_GROUPS  # one state per row group
    widths = [r.d for r in reps]
    wanted = sorted({(min(i, j), max(i, j)) for i in ia for j in ib})
    passes = _plan_passes(wanted, widths, budget)
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
        states = None
        if level is None:
            splits, plan = run(stat, [reps[k] for k in used] + [rt], check_pairing=False, options=engine_opts)
        else:  # one split-moment state per contiguous row group, in the same pass
            states, plan = run(grouped_statistic(stat, n, func=func), [reps[k] for k in used] + [rt], check_pairing=False, options=engine_opts)
            splits = states.total()
        P = _Problem(splits, n_folds, holdout > 0, intercept)
        todo: dict[tuple[int, int], tuple[int, int, float]] = {}
        params = {**base, **engine_parameters(plan), "n_passes": len(passes)}
        whole = P.all_rows
        for i, j in group:
            for src, dst in ((i, j), (j, i)) if i != j else ((i, j),):
                if src in ia and dst in ib:
                    fwd = _direction(P, local[src], local[dst], t, ridge, ridge_grid, keep_maps, ("x", "y"), params, n)
                    if reverse:
                        fwd = _replace(fwd, reverse=_direction(P, local[dst], local[src], t, ridge, ridge_grid, keep_maps, ("y", "x"), params, n))
                    cells[(src, dst)] = fwd
                    todo[(src, dst)] = (local[src], local[dst], fwd.value)
                    cparams = {"kernel": "linear", **engine_parameters(plan), "n_passes": len(passes)}
                    for store, fn, est in ((cka_cells, cka_from_moments, cka_estimator), (ka_cells, ka_from_moments, "biased")):
                        try:
                            store[(src, dst)] = fn(whole, local[src], local[dst], est, cparams)
                        except DegenerateInputError as exc:
                            store[(src, dst)] = exc
        if states is not None:
            for key, iv in stitch_intervals(states, n_folds, holdout > 0, intercept, t, ridge, ridge_grid, todo, level).items():  # type: ignore[arg-type]
                cells[key] = with_stitch_interval(cells[key], iv)

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
    targets: Any, n: int, stitch_kw: dict[str, Any], cka_estimator: str, engine: EngineOptions,
) -> StitchingMatrix:  # fmt: skip
    """A StitchingMatrix of non-linear stitches: one :func:`stitch` call per cell, CKA and KA from one linear pass."""
    ekw = engine.given()  # the public calls below take the engine keywords as such
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
