"""Layer × layer comparison between two activation stores, reusing per-layer work."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .engine import run
from .errors import DegenerateInputError, InvalidInputError
from .io import ActivationStore, Layer, open_activations
from .features import KERNELS
from .metrics._common import ESTIMATORS, check_choice, check_unbiased_n, engine_parameters
from .metrics._kernel_nonlinear import METHODS
from .metrics.distance import distance_alignment_from_moments
from .metrics.independence import coco_from_moments, kcc_from_moments, kmi_from_moments
from .metrics.kernel import cka_from_moments, hsic_from_moments, ka_from_moments
from .moments import MomentStatistic
from .result import Result

__all__ = ["compare_layers", "LayerMatrix", "LINEAR_METRICS"]

#: metric name -> function(moments, i, j, estimator, parameters) -> Result
LINEAR_METRICS: dict[str, Callable[..., Result]] = {
    "cka": cka_from_moments,
    "hsic": hsic_from_moments,
    "kernel_alignment": ka_from_moments,
    "distance_alignment": distance_alignment_from_moments,
    "coco": coco_from_moments,
    "kcc": kcc_from_moments,
    "kmi": kmi_from_moments,
}

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
    """

    metric: str
    layers_a: list[str]
    layers_b: list[str]
    results: list[list[Result | None]]
    undefined: dict[tuple[int, int], str] = field(default_factory=dict)
    n_passes: int = 1
    n_samples: int = 0
    estimator: str = ""

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
    from .io import as_representation, check_pairing

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
    state_memory: int | None = None,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    block_size: int | None = None,
    scheduler: Any = None,
    client: Any = None,
    num_workers: int | None = None,
    memory_per_worker: int | None = None,
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
    metric : {"cka", "hsic", "kernel_alignment", "distance_alignment"}
    layers_a, layers_b : list of str, optional
        Subsets (and order) of layers; default all.
    estimator : {"unbiased", "biased"}
        For CKA and HSIC.
    kernel : {"linear", "rbf", "laplacian"}
    bandwidth : "median" or float
        For rbf/laplacian: the median heuristic per layer (on one seeded
        subsample of rows shared by all layers) or one σ for every layer.
    method : {"auto", "exact", "rff", "orf", "nystroem"}
        As for :func:`bigalign.cka`.  Feature maps are drawn once per layer
        and every layer is mapped once per pass; ``"exact"`` runs the O(n²)
        tiles once per pair of layers.
    n_features, seed
        As for :func:`bigalign.cka`.
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
    if checkpoint is not None:
        from .checkpoint import checkpoint as checkpointing

        kw = dict(locals())
        kw.pop("checkpointing")
        kw["checkpoint"], kw["resume"] = None, False
        with checkpointing(checkpoint, resume=resume):
            return compare_layers(**kw)
    check_choice("compare_layers", "metric", metric, tuple(LINEAR_METRICS))
    check_choice("compare_layers", "estimator", estimator, ESTIMATORS)
    check_choice("compare_layers", "kernel", kernel, KERNELS)
    check_choice("compare_layers", "method", method, METHODS)
    if kernel != "linear" and metric == "distance_alignment":
        raise InvalidInputError(
            "distance_alignment uses Euclidean distances of the representations; kernel must be 'linear' for it. "
            "Use metric='cka', 'hsic' or 'kernel_alignment' with a non-linear kernel."
        )
    if kernel != "linear" and metric in ("coco", "kcc", "kmi"):
        raise InvalidInputError(
            f"compare_layers supports {metric} with kernel='linear' only; call bigalign.{metric}(x, y, kernel=...) per pair."
        )
    if kernel == "linear" and method not in ("auto", "exact"):
        raise InvalidInputError(
            f"method={method!r} approximates non-linear kernels; linear metrics are exact at any n. Use method='auto'."
        )
    la, lb, reps, labels, ia, ib = layer_inputs(a, b, layers_a, layers_b)
    n = reps[0].n
    if metric in ("cka", "hsic"):
        check_unbiased_n("compare_layers", n, estimator)
    widths = [r.d for r in reps]

    wanted = sorted({(min(i, j), max(i, j)) for i in ia for j in ib})
    budget = int(state_memory or DEFAULT_STATE_MEMORY)
    ekw = {"block_size": block_size, "scheduler": scheduler, "client": client, "num_workers": num_workers}
    if kernel != "linear":
        values, n_passes = _nonlinear_cells(
            reps, wanted, metric, estimator, kernel, bandwidth, method, n_features, seed, budget,
            {**ekw, "memory_per_worker": memory_per_worker},
        )  # fmt: skip
        return _matrix(metric, la, lb, ia, ib, values, n_passes, n, estimator)
    passes = _plan_passes(wanted, widths, budget)
    values: dict[tuple[int, int], Any] = {}
    fn = LINEAR_METRICS[metric]
    plan = None
    for group in passes:
        used = sorted({k for pr in group for k in pr})
        local = {g: k for k, g in enumerate(used)}
        pairs = tuple((local[i], local[j]) for i, j in group if i != j)
        stat = MomentStatistic(names=tuple(labels[k] for k in used), pairs=pairs)
        m, plan = run(
            stat,
            [reps[k] for k in used],
            block_size=block_size,
            scheduler=scheduler,
            client=client,
            num_workers=num_workers,
            memory_per_worker=memory_per_worker,
            check_pairing=False,
        )
        params = {"kernel": kernel, **engine_parameters(plan), "n_passes": len(passes)}
        for i, j in group:
            try:
                values[(i, j)] = fn(m, local[i], local[j], estimator, params)
                if i != j:
                    values[(j, i)] = fn(m, local[j], local[i], estimator, params)
            except DegenerateInputError as exc:
                values[(i, j)] = values[(j, i)] = exc

    return _matrix(metric, la, lb, ia, ib, values, len(passes), n, estimator)


def _matrix(metric: str, la: list[str], lb: list[str], ia: list[int], ib: list[int], values: dict, n_passes: int, n: int, estimator: str) -> LayerMatrix:
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
    est = estimator if metric in ("cka", "hsic") else "biased"
    return LayerMatrix(
        metric=metric,
        layers_a=la,
        layers_b=lb,
        results=results,
        undefined=undefined,
        n_passes=n_passes,
        n_samples=n,
        estimator=est,
    )


def _nonlinear_cells(
    reps: list, wanted: list[tuple[int, int]], metric: str, estimator: str, kernel: str, bandwidth: Any,
    method: str, n_features: int | None, seed: int, budget: int, ekw: dict[str, Any],
) -> tuple[dict[tuple[int, int], Any], int]:  # fmt: skip
    """Cells of a non-linear-kernel layer matrix: one feature pass per group of pairs, or exact tiles per pair."""
    from .features import BANDWIDTH_SAMPLE, check_bandwidth, median_bandwidth, sample_rows
    from .metrics._kernel_nonlinear import (
        DEFAULT_LANDMARKS,
        DEFAULT_RANDOM_FEATURES,
        bandwidth_ratio,
        check_n_features,
        check_seed,
        exact_job,
        feature_job,
        feature_moments,
        resolve_method,
        self_job,
    )
    from .metrics.kernel import nonlinear_result

    n = reps[0].n
    seed = check_seed(seed)
    check_n_features(n_features)
    _, samples = sample_rows(reps, BANDWIDTH_SAMPLE, seed)
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
    ekw = {k: v for k, v in ekw.items() if v is not None}

    def record(i: int, j: int, job: Any) -> None:
        try:
            res = nonlinear_result(metric, job, estimator)
            values[(i, j)] = res
            values[(j, i)] = res
        except DegenerateInputError as exc:
            values[(i, j)] = values[(j, i)] = exc

    def params(i: int, j: int) -> dict[str, Any]:
        return {"kernel": kernel, "bandwidth_x": sigmas[i], "bandwidth_y": sigmas[j], "median_x": medians[i],
                "median_y": medians[j], "seed": int(seed), "method_reason": reason}  # fmt: skip

    if chosen == "exact":
        for i, j in wanted:
            record(i, j, exact_job([reps[i], reps[j]], kernel, [sigmas[i], sigmas[j]], [shifts[i], shifts[j]], estimator, ekw, params(i, j)))
        return values, len(wanted)
    width = int(n_features or (DEFAULT_RANDOM_FEATURES if chosen in ("rff", "orf") else DEFAULT_LANDMARKS * 3 // 2))
    passes = _plan_passes(wanted, [width] * len(reps), budget)
    for group in passes:
        used = sorted({k for pr in group for k in pr})
        local = {g: k for k, g in enumerate(used)}
        m, views, plan, fparams = feature_moments(
            [reps[k] for k in used], kernel=kernel, method=chosen, sigmas=[sigmas[k] for k in used],
            shifts=[shifts[k] for k in used], n_features=n_features, seed=int(seed),
            pairs=[(local[i], local[j]) for i, j in group if i != j], engine_kw=ekw, keys=used,
        )  # fmt: skip
        for i, j in group:
            p = {**params(i, j), **fparams, "block_size": plan.block_rows, "n_passes": len(passes)}
            if i == j:
                record(i, j, self_job(m, views, local[i], chosen, estimator, p))
            else:
                record(i, j, feature_job(m, views, local[i], local[j], chosen, estimator, p))
    return values, len(passes)
