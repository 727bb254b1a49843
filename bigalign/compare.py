"""Layer × layer comparison between two activation stores, reusing per-layer work."""

from __future__ import annotations

import dataclasses
import functools
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, Unpack

import numpy as np

from .checkpoint import checkpoint as checkpointing
from .engine import run, task_budget
from .errors import DegenerateInputError, InvalidInputError
from .features import (
    BANDWIDTH_SAMPLE,
    KERNELS,
    bandwidth_ratio,
    check_bandwidth,
    median_bandwidth,
    resolve_method,
    sample_rows,
)
from .io import ActivationStore, as_representation, check_pairing, open_activations
from .grouped import grouped_statistic
from .intervals import DEFAULT_CI_GROUPS, check_ci, estimator_interval, row_groups, with_interval
from .metrics._common import ESTIMATORS, check_choice, check_unbiased_n, engine_parameters
from .metrics._kernel_nonlinear import (
    DEFAULT_LANDMARKS,
    DEFAULT_RANDOM_FEATURES,
    EXACT_MAX_N,
    METHODS,
    check_n_features,
    check_seed,
    exact_job,
    feature_job,
    feature_moments,
    self_job,
)
from .metrics.distance import distance_alignment_from_moments, unbiased_distance_alignment
from .metrics import coco, cknna, cycle_knn, dcor, dcov, edit_distance_knn, kcc, kmi, lcs_knn, mutual_knn, rsa
from .metrics import neighbors as _nb
from .metrics.independence import _ridge, coco_from_moments, kcc_from_moments, kmi_from_moments
from .metrics.kernel import cka, cka_from_moments, hsic, hsic_from_moments, ka_from_moments, kernel_alignment, nonlinear_result
from .metrics.layer_sketch import SKETCH_OPTIONS, choose_layer_road, sketched_cka_cells
from .metrics.mmd import mmd
from .metrics.cca import pwcca_from_moments, svcca_from_moments
from .metrics.procrustes import procrustes_angular_from_moments, procrustes_distance_from_moments
from .metrics.spectral import gaussian_mi_from_moments, gaussian_w2_from_moments
from .moments import MomentStatistic
from .result import Result, _jsonable
from .options import EngineKwargs, EngineOptions

__all__ = ["compare_layers", "LayerMatrix", "LINEAR_METRICS", "METRICS", "PAIR_METRICS"]

#: metric name -> function(moments, i, j, estimator, parameters) -> Result.  With the
#: linear kernel these share one read of the data for every pair of layers.
LINEAR_METRICS: dict[str, Callable[..., Result]] = {
    "cka": cka_from_moments,
    "hsic": hsic_from_moments,
    "kernel_alignment": ka_from_moments,
    "distance_alignment": distance_alignment_from_moments,
    "coco": coco_from_moments,
    "kcc": kcc_from_moments,
    "kmi": kmi_from_moments,
    "gaussian_mi": gaussian_mi_from_moments,
    "gaussian_w2": gaussian_w2_from_moments,
    "procrustes": procrustes_distance_from_moments,
    "procrustes_angular": procrustes_angular_from_moments,
    "svcca": svcca_from_moments,
    "pwcca": pwcca_from_moments,
}

#: metric name -> the public function, called once per pair of layers (each call
#: reads both layers itself: one or more passes per pair).  coco/kcc/kmi go
#: here with a non-linear kernel.
PAIR_METRICS: dict[str, Callable[..., Any]] = {
    "dcor": dcor,
    "dcov": dcov,
    "rsa": rsa,
    "mutual_knn": mutual_knn,
    "cknna": cknna,
    "cycle_knn": cycle_knn,
    "lcs_knn": lcs_knn,
    "edit_distance_knn": edit_distance_knn,
    "mmd": mmd,
    "coco": coco,
    "kcc": kcc,
    "kmi": kmi,
}

#: every metric compare_layers (and ``bigalign compare --metric``) accepts
METRICS: tuple[str, ...] = tuple(LINEAR_METRICS) + tuple(m for m in PAIR_METRICS if m not in LINEAR_METRICS)

#: keyword arguments each moment metric accepts through ``metric_options`` (linear CKA's are the
#: projected road's sizes, used when that road runs)
_MOMENT_OPTIONS: dict[str, tuple[str, ...]] = {"kcc": ("ridge",), "kmi": ("ridge",), "cka": SKETCH_OPTIONS}

#: the kernel metrics whose block road, and whose cost-model ``auto`` beyond the range of the shared
#: exact tiles (n > EXACT_MAX_N), run as one call of the public function per pair of layers
_KERNEL_FUNCTIONS: dict[str, Callable[..., Result]] = {"cka": cka, "hsic": hsic, "kernel_alignment": kernel_alignment}
#: their options through ``metric_options`` on that road
_KERNEL_ROAD_OPTIONS = ("target_stderr", "block_rows")

DEFAULT_STATE_MEMORY = 1 * 2**30


@dataclass(frozen=True)
class LayerMatrix:
    """The L_a × L_b matrix of one metric between the layers of two stores.

    Attributes
    ----------
    metric : str
    layers_a, layers_b : list of str
        Row and column labels.
    results : list of list of (Result or None)
        ``results[i][j]`` compares ``layers_a[i]`` with ``layers_b[j]``; ``None``
        where the metric is undefined (see ``undefined``).
    undefined : dict
        ``{(i, j): reason}`` for undefined cells (e.g. a constant layer).
    n_passes : int
        Passes over the data that were needed (pairs are grouped so the
        accumulated state fits in ``state_memory``).
    plan : mapping
        How the matrix was computed: ``"road"`` (``"moments"``, ``"features"``,
        ``"exact-tiles"``, ``"per-layer neighbour lists"`` or ``"per pair"``) and
        ``"per_layer"``: what was computed once per layer and reused by every
        pair (e.g. neighbour lists, bandwidths, feature maps), with counts.
    """

    metric: str
    layers_a: list[str]
    layers_b: list[str]
    results: list[list[Result | None]]
    undefined: dict[tuple[int, int], str] = field(default_factory=dict)
    n_passes: int = 1
    n_samples: int = 0
    estimator: str = ""
    plan: Mapping[str, Any] = field(default_factory=dict)

    @property
    def values(self) -> np.ma.MaskedArray:
        """Values as a masked array (masked where undefined)."""
        vals = np.zeros((len(self.layers_a), len(self.layers_b)))
        mask = np.zeros_like(vals, dtype=bool)
        for i, row in enumerate(self.results):
            for j, r in enumerate(row):
                if r is None:
                    mask[i, j] = True
                else:
                    vals[i, j] = r.value
        return np.ma.MaskedArray(vals, mask=mask)

    def __getitem__(self, key: tuple[str, str]) -> Result | None:
        la, lb = key
        return self.results[self.layers_a.index(la)][self.layers_b.index(lb)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "estimator": self.estimator,
            "n_samples": self.n_samples,
            "layers_a": list(self.layers_a),
            "layers_b": list(self.layers_b),
            "values": [[None if r is None else float(r.value) for r in row] for row in self.results],
            "undefined": {f"{self.layers_a[i]}|{self.layers_b[j]}": why for (i, j), why in self.undefined.items()},
            "results": [[None if r is None else r.to_dict() for r in row] for row in self.results],
            "n_passes": self.n_passes,
            "plan": {k: _jsonable(v) for k, v in self.plan.items()},
        }

    def plot(self, ax: Any = None, *, annotate: bool | None = None, cmap: str = "magma", **imshow_kw: Any) -> Any:
        """Heatmap of the matrix (requires matplotlib: ``pip install bigalign[plot]``)."""
        try:
            import matplotlib.pyplot as plt
        except ImportError as exc:  # pragma: no cover
            raise ImportError("LayerMatrix.plot needs matplotlib: pip install 'bigalign[plot]'") from exc
        if ax is None:
            w = max(4.0, 0.5 * len(self.layers_b) + 2)
            h = max(3.5, 0.45 * len(self.layers_a) + 1.5)
            _, ax = plt.subplots(figsize=(w, h))
        vals = self.values
        im = ax.imshow(vals, cmap=cmap, aspect="auto", **imshow_kw)
        ax.set_xticks(range(len(self.layers_b)), self.layers_b, rotation=45, ha="right")
        ax.set_yticks(range(len(self.layers_a)), self.layers_a)
        ax.set_xlabel("B layers")
        ax.set_ylabel("A layers")
        label = f"{self.metric} ({self.estimator})" if self.estimator else self.metric
        ax.set_title(f"{label}, n = {self.n_samples}")
        ax.figure.colorbar(im, ax=ax, label=self.metric)
        if annotate is None:
            annotate = vals.size <= 144
        if annotate:
            finite = vals.compressed()
            mid = (finite.min() + finite.max()) / 2 if finite.size else 0
            for i in range(vals.shape[0]):
                for j in range(vals.shape[1]):
                    txt = "—" if vals.mask[i, j] else f"{vals[i, j]:.2f}"
                    color = "black" if (not vals.mask[i, j] and vals[i, j] > mid) else "white"
                    ax.text(j, i, txt, ha="center", va="center", fontsize=8, color=color)
        return ax


def _as_store(s: Any, name: str) -> tuple[list[str], dict[str, Any]]:
    if isinstance(s, (str, Path)):
        s = open_activations(s)
    if isinstance(s, ActivationStore):
        return list(s.layers), {l: s[l] for l in s.layers}
    if isinstance(s, Mapping):
        return list(s), dict(s)
    raise InvalidInputError(
        f"{name} must be an ActivationStore, a path to one, or a mapping of layer name to array; "
        f"got {type(s).__name__}. Open a store with bigalign.open_activations(path)."
    )


def _select(all_layers: list[str], chosen: Sequence[str] | None, name: str) -> list[str]:
    if chosen is None:
        return all_layers
    if isinstance(chosen, str):
        chosen = [chosen]
    missing = [l for l in chosen if l not in all_layers]
    if missing:
        raise InvalidInputError(f"{name} names layers {missing} that do not exist; available: {all_layers}.")
    return list(chosen)


def layer_inputs(
    a: Any, b: Any, layers_a: Sequence[str] | None, layers_b: Sequence[str] | None
) -> tuple[list[str], list[str], list[Any], list[str], list[int], list[int]]:
    """The distinct inputs of a layer matrix, paired and checked.

    Returns (layers_a, layers_b, representations, labels, ia, ib): a-layers then
    b-layers, shared when ``b`` is ``a`` (or None); ``ia[i]``/``ib[j]`` index
    the representation of ``layers_a[i]``/``layers_b[j]``.
    """
    names_a, arrs_a = _as_store(a, "a")
    same = b is None or b is a
    names_b, arrs_b = (names_a, arrs_a) if same else _as_store(b, "b")
    la = _select(names_a, layers_a, "layers_a")
    lb = _select(names_b, layers_b, "layers_b")
    inputs: list[Any] = []
    labels: list[str] = []
    index: dict[tuple[str, str], int] = {}
    for side, layers, arrs in (("a", la, arrs_a), ("b", lb, arrs_b)):
        for l in layers:
            key = ("a" if same else side, l)
            if key not in index:
                index[key] = len(inputs)
                inputs.append(arrs[l])
                labels.append(f"{side}:{l}")
    ia = [index[("a", l)] for l in la]
    ib = [index[("a" if same else "b", l)] for l in lb]
    reps = [as_representation(x, nm) for x, nm in zip(inputs, labels)]
    check_pairing(reps)
    return la, lb, reps, labels, ia, ib


def _plan_passes(pairs: list[tuple[int, int]], widths: list[int], budget: int) -> list[list[tuple[int, int]]]:
    """Group pairs so that each pass's cross and side states fit in ``budget`` bytes.

    The reduction tree keeps about three states alive per worker; we count
    3 copies of every accumulated matrix.
    """
    passes: list[list[tuple[int, int]]] = []
    cur: list[tuple[int, int]] = []
    cur_sides: set[int] = set()
    cur_bytes = 0
    for i, j in pairs:
        add = 3 * 8 * widths[i] * widths[j] if i != j else 0
        new_sides = {i, j} - cur_sides
        add += sum(3 * 8 * widths[k] ** 2 for k in new_sides)
        if cur and cur_bytes + add > budget:
            passes.append(cur)
            cur, cur_sides, cur_bytes = [], set(), 0
            new_sides = {i, j}
            add = (3 * 8 * widths[i] * widths[j] if i != j else 0) + sum(3 * 8 * widths[k] ** 2 for k in new_sides)
        cur.append((i, j))
        cur_sides |= new_sides
        cur_bytes += add
    if cur:
        passes.append(cur)
    return passes


def compare_layers(
    a: Any,
    b: Any = None,
    metric: str = "cka",
    layers_a: Sequence[str] | None = None,
    layers_b: Sequence[str] | None = None,
    *,
    estimator: str = "unbiased",
    kernel: str = "linear",
    bandwidth: Any = "median",
    method: str = "auto",
    n_features: int | None = None,
    seed: int = 0,
    metric_options: Mapping[str, Any] | None = None,
    ci: float | None = None,
    state_memory: int | None = None,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    **engine: Unpack[EngineKwargs],
) -> LayerMatrix:
    """The layer × layer matrix of a metric between two activation stores.

    Each pass reads every involved layer's blocks once, accumulates the
    per-layer moments once and the cross moments of every pair in the pass, so
    the cost is one read of the data per pass — not L_a·L_b separate passes.
    Pairs are grouped into passes so the accumulated state stays under
    ``state_memory`` (default 1 GiB); with few or narrow layers one pass does
    everything.

    Parameters
    ----------
    a, b : ActivationStore, path, or mapping of layer name to array
        ``b=None`` compares the layers of ``a`` with each other.
    metric : str
        Any measure of the family (``bigalign.compare.METRICS``).  With the
        linear kernel, ``"cka"``, ``"hsic"``, ``"kernel_alignment"``,
        ``"distance_alignment"``, ``"coco"``, ``"kcc"``, ``"kmi"``,
        ``"gaussian_mi"`` and ``"gaussian_w2"`` (the spectral view's Gaussian
        mutual information and squared Wasserstein-2, no ridge) come from one
        shared read of the data for all pairs; ``"cka"``, ``"hsic"`` and
        ``"kernel_alignment"`` with rbf/laplacian share one pass of feature
        maps.  ``"mutual_knn"``, ``"cknna"``, ``"cycle_knn"``, ``"lcs_knn"``
        and ``"edit_distance_knn"`` search every layer's neighbour lists once
        and score every cell from them.  ``"dcor"``, ``"dcov"``, ``"rsa"``,
        ``"mmd"`` (same-width layers only: it compares two samples of one
        space) and non-linear ``"coco"``/``"kcc"``/``"kmi"`` call the
        metric's own function once per pair of layers, so they read the data
        once (or more) per pair.  On every road each cell equals that
        function's result for (row layer, column layer) with the same options,
        field by field (``LayerMatrix.plan`` says what was reused per layer).
    layers_a, layers_b : list of str, optional
        Subsets (and order) of layers; default all.
    estimator : {"unbiased", "biased"}
        For the metrics that have one (CKA, HSIC, dCor, dCov, MMD); ignored by
        the others, which are plug-in estimates.
    kernel : {"linear", "rbf", "laplacian"}
    bandwidth : "median" or float
        For rbf/laplacian: the median heuristic per layer (on one seeded
        subsample of rows shared by all layers) or one σ for every layer.
    method : {"auto", "exact", "block", "rff", "orf", "nystroem", "sketch"}
        Non-linear kernels: as for :func:`bigalign.cka`.  Feature maps are
        drawn once per layer and every layer is mapped once per pass;
        ``"exact"`` runs the O(n²) tiles once per pair of layers with each
        layer's bandwidth computed once; ``"block"``, and ``"auto"`` beyond
        n = 20,000 rows, call the metric's function once per pair (its cost
        model picks exact tiles or the block road for ``target_stderr``,
        passed with ``block_rows`` through ``metric_options``).  Linear CKA:
        ``"sketch"`` is the projected road of wide many-layer models (each
        cell with a standard error and certified bounds; sizes ``rank``,
        ``n_probes``, ``n_power_iter`` through ``metric_options``), and
        ``"auto"`` takes it only when the exact matrix is predicted to take
        over 10 minutes and the projected road to be at least 4× faster
        (``plan["reason"]`` says which and why).
    n_features, seed
        As for :func:`bigalign.cka`.
    metric_options : mapping, optional
        Further keyword arguments of the metric's own function, e.g.
        ``{"k": 20}`` for ``"mutual_knn"``, ``{"ridge": 1e-3}`` for
        ``"kcc"``, ``{"distance": "cosine", "compare": "spearman"}`` for
        ``"rsa"``, ``{"n_projections": 256}`` for ``"dcor"``.
    ci : float in (0, 1), optional
        Every cell's Result carries its sampling interval at this level
        (``result.ci``; see :func:`bigalign.cka` and docs/intervals.md): the
        block jackknife over 20 contiguous row groups.  Moment metrics keep
        one moment state per group in the same pass — 20× the state memory,
        so passes are planned for ``state_memory`` / 20 (more passes for many
        wide layers) — and evaluate every pair at each of the 20
        leave-one-group-out states; the feature road likewise; the
        neighbourhood measures search each layer's lists 2k deep; the
        per-pair roads pass ``ci`` to the metric's function.  An error for a
        road that has no interval yet (the projected ``"sketch"`` road, metrics
        whose function takes no ``ci``); with
        ``method="auto"`` linear CKA stays on the exact moments road.
    state_memory : int, optional
        Bytes of accumulated state allowed per pass.
    checkpoint : path, optional
        Save every block's partial state there as it is computed (see
        :func:`bigalign.checkpoint`); removed when the matrix is complete.
    resume : bool, default=False
        With ``checkpoint``: reuse the parts an interrupted run saved, so only
        unfinished blocks are computed; the result is identical to an
        uninterrupted run.
    block_size, scheduler, client, num_workers, memory_per_worker
        As for :func:`bigalign.cka`.

    Returns
    -------
    LayerMatrix
    """
    engine_opts = EngineOptions.build("compare_layers", engine)
    if checkpoint is not None:
        with checkpointing(checkpoint, resume=resume):
            return compare_layers(
                a, b, metric, layers_a, layers_b, estimator=estimator, kernel=kernel, bandwidth=bandwidth, method=method,
                n_features=n_features, seed=seed, metric_options=metric_options, ci=ci, state_memory=state_memory,
                **engine_opts.given(),
            )  # fmt: skip
    check_choice("compare_layers", "metric", metric, METRICS)
    check_choice("compare_layers", "estimator", estimator, ESTIMATORS)
    level = check_ci("compare_layers", ci)
    check_choice("compare_layers", "kernel", kernel, KERNELS)
    options = _check_options(metric_options)
    per_pair = metric in PAIR_METRICS and (metric not in LINEAR_METRICS or kernel != "linear")
    if per_pair:
        pair_kw = _pair_kwargs(metric, estimator, kernel, bandwidth, method, n_features, seed, options)
        if level is not None:
            if "ci" not in inspect.signature(PAIR_METRICS[metric]).parameters:
                raise InvalidInputError(
                    f"ci= is not available for metric {metric!r} in compare_layers yet: bigalign.{metric} gives no "
                    "sampling interval. Leave ci out, or use a metric that has one (e.g. 'cka', 'mutual_knn')."
                )
            pair_kw["ci"] = level
    else:
        check_choice("compare_layers", "method", method, METHODS + ("sketch",))
        accepted = _KERNEL_ROAD_OPTIONS if kernel != "linear" and metric in _KERNEL_FUNCTIONS else _MOMENT_OPTIONS.get(metric, ())
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            raise InvalidInputError(
                f"metric_options {unknown} are not options of {metric!r} in compare_layers; it accepts "
                f"{list(accepted) or 'none'}. Remove them."
            )
        if metric in ("kcc", "kmi") and "ridge" in options:
            _ridge(metric, options["ridge"], kernel)  # checked here, not after the pass over the data
    if kernel != "linear" and metric in ("distance_alignment", "gaussian_mi", "gaussian_w2"):
        raise InvalidInputError(
            f"{metric} is defined on the representations themselves (Euclidean distances / linear covariances); "
            "kernel must be 'linear' for it. Use metric='cka', 'hsic', 'kernel_alignment', 'coco', 'kcc' or 'kmi' "
            "with a non-linear kernel."
        )
    if level is not None and method == "sketch":
        raise InvalidInputError(
            "ci= is not available on the projected road (method='sketch'): its cells are bounded approximations. "
            "Use method='auto' or 'exact' (the exact moments road, which keeps one state per row group), or leave ci out."
        )
    if method == "sketch" and (kernel != "linear" or metric != "cka"):
        raise InvalidInputError(
            f"method='sketch' (projected cross-moments) is a road of linear CKA layer matrices; got metric={metric!r}, "
            f"kernel={kernel!r}. Use metric='cka' with kernel='linear', or method='auto'."
        )
    if kernel == "linear" and not per_pair and method not in ("auto", "exact", "sketch"):
        raise InvalidInputError(
            f"method={method!r} approximates non-linear kernels; linear metrics are exact at any n. Use method='auto'."
        )
    if metric == "cka" and kernel == "linear" and method == "exact" and options:
        raise InvalidInputError(
            f"metric_options {sorted(options)} size the projected road (method='sketch' or 'auto'); with method='exact' "
            "they do not apply. Remove them."
        )
    la, lb, reps, labels, ia, ib = layer_inputs(a, b, layers_a, layers_b)
    n = reps[0].n
    if metric in ("cka", "hsic"):
        check_unbiased_n("compare_layers", n, estimator)
    widths = [r.d for r in reps]

    wanted = sorted({(min(i, j), max(i, j)) for i in ia for j in ib})
    budget = int(state_memory or DEFAULT_STATE_MEMORY)
    if per_pair:
        kw = {**pair_kw, **engine_opts.given()}
        if metric in _nb.KNN_METRICS:
            cells = [(i, j) for i in ia for j in ib]
            out = _knn_cells(metric, reps, cells, kw, engine_opts, budget, level)
            if out is not None:
                values, n_passes, plan = out
                return _matrix(metric, la, lb, ia, ib, values, n_passes, n, estimator, plan)
            why = "the neighbour lists of all layers exceed state_memory; each pair searched by its own call"
        else:
            why = "nothing depends on one layer only on this road: each pair is its own call"
        values = _pair_cells(metric, reps, wanted, kw)
        return _matrix(metric, la, lb, ia, ib, values, len(wanted), n, estimator, {"road": "per pair", "per_layer": why})
    if metric == "cka" and kernel == "linear" and method in ("auto", "sketch"):
        sketch = {k: options.pop(k) for k in SKETCH_OPTIONS if k in options}
        if method == "sketch":
            road, reason = "sketch", "method='sketch'"
        elif level is not None:
            road, reason = "moments", "ci= needs the exact moments road (one state per row group)"
        else:
            road, reason = choose_layer_road(n, widths, wanted, **sketch)
        if road == "sketch":
            values, n_passes, info = sketched_cka_cells(
                reps, wanted, estimator=estimator, seed=seed, method_reason=reason,
                options=engine_opts, **sketch,
            )  # fmt: skip
            plan = {"road": "sketch", "reason": reason, "per_layer": "a principal subspace and probes of the rest per layer "
                    "(one sketch pass, power passes), then one projection pass shared by all pairs", "reads_per_layer": n_passes}  # fmt: skip
            return _matrix(metric, la, lb, ia, ib, values, n_passes, n, estimator, plan)
        auto_reason = reason
    else:
        auto_reason = None
    if kernel != "linear" and metric in _KERNEL_FUNCTIONS and (method == "block" or (method == "auto" and n > EXACT_MAX_N)):
        kw = {"kernel": kernel, "bandwidth": bandwidth, "method": method, "seed": seed, **options,
              **({"estimator": estimator} if metric != "kernel_alignment" else {}),
              **engine_opts.given()}  # fmt: skip
        if n_features is not None:
            kw["n_features"] = n_features  # an error on these roads, said by the function itself
        if level is not None:
            kw["ci"] = level  # the function says where its road has no interval
        values = _pair_cells(metric, reps, wanted, kw, _KERNEL_FUNCTIONS[metric])
        why = ("the block road reads each pair's rows in its own random blocks" if method == "block" else
               f"beyond n = {EXACT_MAX_N} each pair's auto picks exact tiles or the block road for target_stderr")  # fmt: skip
        return _matrix(metric, la, lb, ia, ib, values, len(wanted), n, estimator, {"road": "per pair", "per_layer": why})
    if kernel != "linear":
        values, n_passes, plan = _nonlinear_cells(
            reps, wanted, metric, estimator, kernel, bandwidth, method, n_features, seed, budget,
            engine_opts, level,
        )  # fmt: skip
        return _matrix(metric, la, lb, ia, ib, values, n_passes, n, estimator, plan)
    # with ci=, one moment state per row group: passes sized for state_memory / G
    passes = _plan_passes(wanted, widths, budget if level is None else budget // DEFAULT_CI_GROUPS)
    values: dict[tuple[int, int], Any] = {}
    fn = LINEAR_METRICS[metric]
    if options:
        fn = functools.partial(fn, **options)
    plan = None
    for group in passes:
        used = sorted({k for pr in group for k in pr})
        local = {g: k for k, g in enumerate(used)}
        pairs = tuple((local[i], local[j]) for i, j in group if i != j)
        stat = MomentStatistic(names=tuple(labels[k] for k in used), pairs=pairs)
        if level is not None:
            stat = grouped_statistic(stat, n, func="compare_layers")
        m, plan = run(stat, [reps[k] for k in used], check_pairing=False, options=engine_opts)
        params = {"kernel": kernel, **engine_parameters(plan), "n_passes": len(passes)}
        states, m = (None, m) if level is None else (m, m.total())
        cells = [(i, j) for i, j in group] + [(j, i) for i, j in group if i != j]
        for i, j in cells:
            if isinstance(values.get((i, j)), DegenerateInputError):  # its mirror was undefined: so is it
                continue
            try:
                values[(i, j)] = fn(m, local[i], local[j], estimator, params)
            except DegenerateInputError as exc:
                values[(i, j)] = values[(j, i)] = exc
        if states is not None:
            live = [c for c in cells if isinstance(values[c], Result)]
            _moment_intervals(metric, states, live, {c: (local[c[0]], local[c[1]]) for c in live}, fn, estimator, level, values)

    plan = {"road": "moments", "per_layer": "each layer's moments (Σx, XᵀX) accumulated once per pass and shared by all its pairs",
            "reads_per_layer": len(passes), **({"reason": auto_reason} if auto_reason else {})}  # fmt: skip
    if level is not None:
        plan["ci"] = (f"one moment state per row group ({DEFAULT_CI_GROUPS} groups: {DEFAULT_CI_GROUPS}x the state memory, passes "
                      f"planned for state_memory / {DEFAULT_CI_GROUPS}); every cell evaluated at each leave-one-group-out state")
    return _matrix(metric, la, lb, ia, ib, values, len(passes), n, estimator, plan)


#: interval scales of the moment metrics in a layer matrix (as their functions: ratios in (0, 1) on the logit scale)
_LOGIT_METRICS = ("cka", "kernel_alignment", "svcca", "pwcca", "kcc")


#: the unbiased form, from the same moments, of a biased moment metric: its interval is the biased cell's
#: (intervals.estimator_interval); a biased cell of a metric without one is centred at the jackknife's
#: bias-corrected estimate (KA, COCO, KCC, KMI, Procrustes) or at the estimate (intervals.CENTRED_AT_ESTIMATE:
#: SVCCA, PWCCA)
_UNBIASED_FORMS: dict[str, Callable[[Any, int, int], float]] = {
    "cka": lambda st, i, j: cka_from_moments(st, i, j, "unbiased", {}).value,
    "hsic": lambda st, i, j: hsic_from_moments(st, i, j, "unbiased", {}).value,
    "distance_alignment": unbiased_distance_alignment,
}


def _moment_intervals(
    metric: str, states: Any, cells: list[tuple[int, int]], where: dict, fn: Callable[..., Result], estimator: str,
    level: float, values: dict,
) -> None:  # fmt: skip
    """Attach to every cell's Result its block-jackknife interval: each cell evaluated at each
    leave-one-group-out state (one traversal for all cells); a cell undefined with a group left
    out has no interval and becomes undefined, saying why."""
    loo: dict[tuple[int, int], list[float]] = {c: [] for c in cells}
    bad: dict[tuple[int, int], DegenerateInputError] = {}
    # a biased cell's interval is its unbiased form's, where the moments give one (intervals.estimator_interval)
    unbiased = _UNBIASED_FORMS.get(metric)
    biased = {c for c in cells if not isinstance(values[c], DegenerateInputError) and values[c].estimator == "biased"}
    full: dict[tuple[int, int], float] = {}
    if unbiased is not None:
        for c in biased:
            try:
                full[c] = unbiased(states.total(), *where[c])
            except DegenerateInputError as exc:
                bad[c] = exc
    for _, st in states.leave_one_out():
        for c in cells:
            if c in bad:
                continue
            try:
                if unbiased is not None and c in biased:
                    loo[c].append(unbiased(st, *where[c]))
                else:
                    loo[c].append(fn(st, where[c][0], where[c][1], estimator, {}).value)
            except DegenerateInputError as exc:
                bad[c] = exc
    scale = "logit" if metric in _LOGIT_METRICS else "identity"
    for c in cells:
        if c in bad:
            values[c] = DegenerateInputError(
                f"the sampling interval is undefined: the measure is undefined with one of the {states.n_groups} row groups "
                f"left out ({bad[c]}). Leave ci out.",
                reason=bad[c].reason,
            )
        else:
            # the interval each metric's own function gives
            est = values[c].estimator
            if c in full:
                iv = estimator_interval(values[c].value, None, level, scale=scale, estimator=est, unbiased=(full[c], loo[c]))  # type: ignore[arg-type]
            else:
                iv = estimator_interval(values[c].value, loo[c], level, scale=scale, estimator=est, metric=metric)  # type: ignore[arg-type]
            values[c] = with_interval(values[c], iv)


def _matrix(metric: str, la: list[str], lb: list[str], ia: list[int], ib: list[int], values: dict, n_passes: int, n: int, estimator: str,
            plan: Mapping[str, Any] | None = None) -> LayerMatrix:  # fmt: skip
    results: list[list[Result | None]] = []
    undefined: dict[tuple[int, int], str] = {}
    for r, i in enumerate(ia):
        row: list[Result | None] = []
        for c, j in enumerate(ib):
            v = values[(i, j)]
            if isinstance(v, DegenerateInputError):
                undefined[(r, c)] = str(v)
                row.append(None)
            else:
                row.append(v)
        results.append(row)
    first = next((r for row in results for r in row if r is not None), None)
    est = first.estimator if first is not None else (estimator if metric in ("cka", "hsic") else "biased")
    return LayerMatrix(
        metric=metric,
        layers_a=la,
        layers_b=lb,
        results=results,
        undefined=undefined,
        n_passes=n_passes,
        n_samples=n,
        estimator=est,
        plan=dict(plan or {}),
    )


def _nonlinear_cells(
    reps: list, wanted: list[tuple[int, int]], metric: str, estimator: str, kernel: str, bandwidth: Any,
    method: str, n_features: int | None, seed: int, budget: int, options: EngineOptions, level: float | None = None,
) -> tuple[dict[tuple[int, int], Any], int, dict[str, Any]]:  # fmt: skip
    """Cells of a non-linear-kernel layer matrix: one feature pass per group of pairs, or exact tiles per pair.
    With ``level``, the feature moments are kept per row group (passes planned for budget / G)."""
    n = reps[0].n
    seed = check_seed(seed)
    check_n_features(n_features)
    _, samples = sample_rows(reps, BANDWIDTH_SAMPLE, seed)
    n_sample = int(samples[0].shape[0])
    values: dict[tuple[int, int], Any] = {}
    medians: list[float] = []
    for s, r in zip(samples, reps):
        try:
            medians.append(median_bandwidth(s, r.name))
        except DegenerateInputError as exc:  # e.g. a constant layer: its cells are undefined, not the matrix
            medians.append(float("nan"))
            for i, j in wanted:
                if r is reps[i] or r is reps[j]:
                    values[(i, j)] = values[(j, i)] = exc
    if isinstance(bandwidth, str) and bandwidth == "median":
        sigmas = medians
    else:
        sigmas = [check_bandwidth(bandwidth, "every layer")] * len(reps)
    ok = [k for k, m in enumerate(medians) if m == m]
    wanted = [(i, j) for i, j in wanted if (i, j) not in values]
    shifts = [s.mean(axis=0) for s in samples]
    chosen, reason = resolve_method(method, n, bandwidth_ratio([sigmas[k] for k in ok], [medians[k] for k in ok]))

    def record(i: int, j: int, job: Any) -> None:
        try:
            # kernel alignment is a plug-in (biased) estimate whatever compare_layers' estimator says
            res = nonlinear_result(metric, job, "biased" if metric == "kernel_alignment" else estimator, level)
            values[(i, j)] = res
            values[(j, i)] = mirror(res)  # CKA/HSIC/KA are symmetric: the same numbers, seen from layer j
        except DegenerateInputError as exc:
            values[(i, j)] = values[(j, i)] = exc

    def params(i: int, j: int) -> dict[str, Any]:
        return {"kernel": kernel, "bandwidth_x": sigmas[i], "bandwidth_y": sigmas[j], "median_x": medians[i],
                "median_y": medians[j], "bandwidth_sample": n_sample, "seed": int(seed), "method_reason": reason}  # fmt: skip

    if chosen == "exact":
        # with ci: each pair's tile pass keeps group-pair sums and partial row sums (the leave-one-group-out terms)
        bounds = None if level is None else row_groups(n, DEFAULT_CI_GROUPS, func="compare_layers")
        for i, j in wanted:
            job = exact_job([reps[i], reps[j]], kernel, [sigmas[i], sigmas[j]], [shifts[i], shifts[j]], estimator, options, params(i, j),
                            bounds=bounds)  # fmt: skip
            record(i, j, job)
        plan = {"road": "exact-tiles", "per_layer": f"bandwidth (median heuristic on one shared sample of {n_sample} rows) and centring "
                f"shift, once per layer for its {len(wanted)} pair(s); the O(n²) tiles are per pair", "bandwidths": len(reps)}  # fmt: skip
        return values, len(wanted), plan
    if chosen in ("rff", "orf"):
        width = int(n_features or DEFAULT_RANDOM_FEATURES)
    else:  # Nyström carries its nested m/2 and m/4 levels in the same pass
        width = int(n_features or DEFAULT_LANDMARKS) * 7 // 4
    passes = _plan_passes(wanted, [width] * len(reps), budget if level is None else budget // DEFAULT_CI_GROUPS)
    for group in passes:
        used = sorted({k for pr in group for k in pr})
        local = {g: k for k, g in enumerate(used)}
        m, views, plan, fparams = feature_moments(
            [reps[k] for k in used], kernel=kernel, method=chosen, sigmas=[sigmas[k] for k in used],
            shifts=[shifts[k] for k in used], n_features=n_features, seed=int(seed),
            pairs=[(local[i], local[j]) for i, j in group if i != j], options=options, keys=used,
            ci_rows=None if level is None else n, ci_func="compare_layers",
        )  # fmt: skip
        states, m = (None, m) if level is None else (m, m.total())
        for i, j in group:
            p = {**params(i, j), **fparams, "block_size": plan.block_rows, "n_passes": len(passes)}
            if i == j:
                job = self_job(m, views, local[i], chosen, estimator, p)
                terms_of = functools.partial(_self_terms, views=views, i=local[i], method=chosen, estimator=estimator)
            else:
                job = feature_job(m, views, local[i], local[j], chosen, estimator, p)
                terms_of = functools.partial(_pair_terms, views=views, i=local[i], j=local[j], method=chosen, estimator=estimator)
            if states is not None:  # each leave-one-group-out state is merged again per cell: G·log G merges a cell
                job = dataclasses.replace(job, ci_states=(states, terms_of))
            record(i, j, job)
    plan = {"road": "features", "per_layer": f"bandwidth (median heuristic on one shared sample of {n_sample} rows), {chosen} feature "
            "map drawn once per layer; each layer mapped once per pass and its feature moments shared by all its pairs",
            "bandwidths": len(reps), "reads_per_layer": len(passes)}  # fmt: skip
    return values, len(passes), plan


def _pair_terms(mm: Any, *, views: Any, i: int, j: int, method: str, estimator: str) -> Any:
    return feature_job(mm, views, i, j, method, estimator, {}).terms


def _self_terms(mm: Any, *, views: Any, i: int, method: str, estimator: str) -> Any:
    return self_job(mm, views, i, method, estimator, {}).terms


def _check_options(options: Any) -> dict[str, Any]:
    if options is None:
        return {}
    if not isinstance(options, Mapping) or not all(isinstance(k, str) for k in options):
        raise InvalidInputError(
            f"metric_options must be a mapping of keyword name to value, e.g. {{'k': 20}}; got {options!r}."
        )
    return dict(options)


#: compare_layers' own arguments that are not the metric function's options
_RESERVED_OPTIONS = ("x", "y", "estimator", "kernel", "bandwidth", "method", "n_features", "seed", "ci", "block_size",
                     "scheduler", "client", "num_workers", "memory_per_worker")  # fmt: skip


def _pair_kwargs(
    metric: str, estimator: str, kernel: str, bandwidth: Any, method: str, n_features: Any, seed: int, options: dict
) -> dict[str, Any]:
    """The keyword arguments of ``PAIR_METRICS[metric]`` for compare_layers' arguments.

    compare_layers' kernel/bandwidth/method/n_features are passed to every
    function that takes them (so ``metric="mmd"`` is the linear-kernel MMD
    unless ``kernel`` says otherwise, as for every other metric here).  One
    the function does not take is an error when it was set to something other
    than compare_layers' default (``kernel="rbf"`` for dcor, ...), so nothing
    a user asked for is silently dropped; ``estimator`` is passed only to
    functions that have one (the others are plug-in estimates).
    """
    params = inspect.signature(PAIR_METRICS[metric]).parameters
    kw: dict[str, Any] = {}
    given = {"kernel": (kernel, "linear"), "bandwidth": (bandwidth, "median"), "method": (method, "auto"),
             "n_features": (n_features, None)}  # fmt: skip
    for name, (value, default) in given.items():
        if name in params:
            kw[name] = value
        elif not (value is default or (isinstance(value, str) and value == default)):
            raise InvalidInputError(
                f"metric {metric!r} takes no {name!r} (got {name}={value!r}); its options are "
                f"{[p for p in params if p not in ('x', 'y')]}. Remove {name}, or pass the metric's own "
                "options through metric_options."
            )
    if "estimator" in params:
        kw["estimator"] = estimator
    if "seed" in params:
        kw["seed"] = seed
    bad = sorted(k for k in options if k not in params or k in _RESERVED_OPTIONS)
    if bad:
        raise InvalidInputError(
            f"metric_options {bad} are not options of bigalign.{metric} (or are compare_layers' own arguments); "
            f"it accepts {[p for p in params if p not in _RESERVED_OPTIONS]}. Fix the names."
        )
    if metric in _nb.KNN_METRICS and not isinstance(options.get("k", 10), (int, np.integer)):
        raise InvalidInputError(
            f"compare_layers needs one k per matrix for {metric}; got k={options['k']!r}. Pass an int, "
            f"or call bigalign.knn_sweep(x, y, metric={metric!r}, k=[...]) per pair for several k from one search."
        )
    return {**kw, **options}


def _pair_cells(metric: str, reps: list, wanted: list[tuple[int, int]], kw: dict[str, Any],
                fn: Callable[..., Any] | None = None) -> dict[tuple[int, int], Any]:  # fmt: skip
    """Cells computed by calling the metric's public function (default ``PAIR_METRICS[metric]``) once per pair."""
    fn = fn or PAIR_METRICS[metric]
    values: dict[tuple[int, int], Any] = {}
    for i, j in wanted:
        if metric == "mmd" and reps[i].d != reps[j].d:
            values[(i, j)] = values[(j, i)] = DegenerateInputError(
                f"mmd compares two samples of one space; {reps[i].name} has {reps[i].d} features and "
                f"{reps[j].name} {reps[j].d}.",
                reason="different_widths",
            )
            continue
        try:
            res = values[(i, j)] = fn(reps[i], reps[j], **kw)
            if i != j:
                values[(j, i)] = mirror(res) if _mirrors(metric, res) else fn(reps[j], reps[i], **kw)
        except DegenerateInputError as exc:
            values[(i, j)] = values[(j, i)] = exc
    return values


#: per-pair metrics whose value is symmetric in (x, y): the transposed cell is the same computation
#: seen from the other side (``mirror``), unless the road draws something per side (``_mirrors``)
SYMMETRIC_PAIR_METRICS = ("dcor", "dcov", "rsa", "mmd", "coco", "kcc", "kmi", "mutual_knn", "lcs_knn", "edit_distance_knn")

_SIDE_TOKENS = {"x": "y", "y": "x", "xx": "yy", "yy": "xx", "kxx": "kyy", "kyy": "kxx"}
_SIDE_KEYS = {"norm_k": "norm_l", "norm_l": "norm_k", "C_p": "C_q", "C_q": "C_p"}
_SIDE_PAIRS = ("ranks",)  # parameters holding [x's, y's]


def _mirrors(metric: str, res: Result) -> bool:
    """Whether the (y, x) call is the (x, y) result seen from the other side (else it is computed)."""
    # the kernel metrics' block road draws its row blocks from the seed alone, not per side
    return (metric in SYMMETRIC_PAIR_METRICS or metric in _KERNEL_FUNCTIONS) and "projection" not in res.method


def _swap_key(key: str) -> str:
    if key in _SIDE_KEYS:
        return _SIDE_KEYS[key]
    head, sep, tail = key.rpartition("_")
    if sep and tail in _SIDE_TOKENS:
        return head + sep + _SIDE_TOKENS[tail]
    if key[:2] in ("x_", "y_"):
        return _SIDE_TOKENS[key[0]] + key[1:]
    return key


def mirror(res: Result) -> Result:
    """The Result of a symmetric measure for (y, x) from the one for (x, y): per-side fields swapped.

    ``bandwidth_x`` ↔ ``bandwidth_y``, ``hsic_xx`` ↔ ``hsic_yy``, ``mean_kxx`` ↔ ``mean_kyy``,
    ``norm_k`` ↔ ``norm_l``, flags ``x_constant`` ↔ ``y_constant``, per-side pairs (``ranks``)
    reversed; symmetric fields (``hsic_xy``, the value) are kept.  A new object: each cell of a
    layer matrix describes its own orientation.
    """
    params = {_swap_key(k): (list(v)[::-1] if k in _SIDE_PAIRS and isinstance(v, (list, tuple)) else v)
              for k, v in res.parameters.items()}  # fmt: skip
    return dataclasses.replace(
        res,
        terms={_swap_key(k): v for k, v in res.terms.items()},
        parameters=params,
        flags=tuple(_swap_key(f) for f in res.flags),
    )


#: a neighbour search's reduction tree holds about this many copies of the lists it builds
_LIST_COPIES = 3


def _knn_cells(
    metric: str, reps: list, cells: list[tuple[int, int]], kw: dict[str, Any], options: EngineOptions, budget: int,
    level: float | None = None,
) -> tuple[dict, int, dict] | None:  # fmt: skip
    """Cells of a neighbourhood measure from each layer's neighbour lists, searched once per layer.

    A layer's lists depend on that layer only (the search reads no other), so every layer is
    searched once — several layers per run of tiles, each block read once per tile — and every
    ordered cell (i, j) is scored from lists i and j: exactly the lists, hence the Result, of
    ``bigalign.<metric>(layer_i, layer_j, ...)``.  The finished lists of all layers must fit in
    ``state_memory`` (else ``None``: the caller falls back to one call per pair); layers are
    searched in groups whose lists in flight (``_LIST_COPIES`` copies) and tile blocks fit too.
    With ``level`` the lists are searched deeper (:func:`~bigalign.metrics.neighbors.search_depth`)
    for the leave-one-group-out values; a cell whose lists run short is computed by its own call.
    """
    n = reps[0].n
    k = _nb.check_k("compare_layers", metric, kw.get("k", 10), n)
    if metric == "cknna" and n < 4:
        raise InvalidInputError(f"cknna needs at least 4 samples (its unbiased HSIC divides by n(n-3)); got {n}.")
    seed = int(kw.get("seed", 0))
    m = _nb.check_n_queries("compare_layers", kw.get("n_queries"), n, metric)
    used = sorted({t for c in cells for t in c})
    rows = n if m is None else m
    if level is not None:
        _nb.row_groups(n, DEFAULT_CI_GROUPS, func="compare_layers")
    depth = _nb.search_depth(k, n, level)
    per = rows * depth * 16  # one layer's lists: float64 similarities and int64 indices
    if len(used) * per > budget:
        return None
    tile_rows = min(n, int(options.block_size or 2048))
    tile_budget = task_budget(1, options.memory_per_worker)
    groups: list[list[int]] = [[]]
    free = budget - len(used) * per
    for t in used:  # each group: its lists in flight and two blocks of every layer per tile (input + unit float64 rows)
        g = groups[-1]
        tile_bytes = sum(2 * tile_rows * reps[u].d * (8 + reps[u].dtype.itemsize) for u in g + [t])
        if g and (_LIST_COPIES * per * (len(g) + 1) > max(free, per) or tile_bytes > tile_budget):
            groups.append([])
        groups[-1].append(t)
    q = None if m is None else _nb.sample_queries(n, m, seed)
    lists: dict[int, Any] = {}
    params: dict[str, Any] = {}
    for g in groups:
        got, params = _nb.search([reps[t] for t in g], depth, options, None if q is None else [q] * len(g))
        lists.update(zip(g, got))
    n_passes = len(groups)
    extra: dict[int, Any] = {}
    if metric == "cycle_knn" and q is not None:  # x's lists of the queries' y-neighbours: a second, sampled pass
        need = {i: np.unique(np.concatenate([_nb.cycle_rows(lists[j], depth) for (a, j) in cells if a == i])) for i in {c[0] for c in cells}}
        rows_x = sorted(need)
        got, _ = _nb.search([reps[t] for t in rows_x], depth, options, [need[t] for t in rows_x])
        extra = dict(zip(rows_x, got))
        n_passes += 1
    values: dict[tuple[int, int], Any] = {}
    for i, j in cells:
        try:
            values[(i, j)] = _nb.knn_result(metric, lists[i], lists[j], k, n, params, extra.get(i), seed, level)
        except DegenerateInputError as exc:
            values[(i, j)] = exc
        except _nb.ListsTooShort:  # one row group holds more than depth − k of a list: the cell's own, deeper search
            values[(i, j)] = PAIR_METRICS[metric](reps[i], reps[j], **kw)
    what = f"exact top-{depth} neighbour lists of every sample" if q is None else f"exact top-{depth} neighbour lists of {m} seeded queries"
    plan = {
        "road": "per-layer neighbour lists",
        "per_layer": f"{what} (float64 cosine similarities), searched once per layer and scored for all {len(cells)} cells "
                     f"(a call per pair would search {2 * len({(min(c), max(c)) for c in cells})} times)",
        "searches": len(used),
        "search_groups": len(groups),
        "list_bytes": len(used) * per,
    }  # fmt: skip
    return values, n_passes, plan
