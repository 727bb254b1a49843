"""Layers of one model: which layers of a network resemble which, by four alignment measures.

    python examples/layers_one_model.py [--out layers-out] [--seeds 0 1 2] [--quick]

Several MLPs (scikit-learn ``MLPClassifier``, ReLU, default hidden layers
128-128-64-64-32-32, so eight layers with input and logits) are trained from
different seeds on one half of scikit-learn's 8×8 digits (nothing is
downloaded).  Their activations on the other half are written as activation
stores.  For the network of the first seed, the layer × layer matrices of

* linear CKA (debiased) — ``bigalign.compare_layers(store, metric="cka")``, one pass;
* RBF CKA (debiased, median bandwidth per layer, ``method="exact"``: n ≈ 900) —
  ``compare_layers(store, metric="cka", kernel="rbf", method="exact")``;
* distance correlation (bias-corrected dCor²) — ``compare_layers(store, metric="dcor")``
  (one ``bigalign.dcor`` call per pair);
* mutual kNN (k = 10, cosine) — ``compare_layers(store, metric="mutual_knn",
  metric_options={"k": 10})`` (one ``bigalign.mutual_knn`` call per pair);

and the cross-seed matrix of linear CKA (layer i of seed 0 against layer j of
seed 1).  Every compare_layers cell is checked against the per-pair façade
``bigalign.cka`` (the largest difference is reported).

Questions answered in ``summary.md``: does each measure show the
"nearby layers are similar" structure (similarity falling with the layer
distance |i − j|; quantified by the Spearman correlation between off-diagonal
entries and |i − j|), and where do the measures disagree (Spearman correlation
between the off-diagonal entries of every two matrices; the cells whose ranks
differ most).

Writes into --out: ``layers_matrices.png`` (a row of heatmaps),
``layers_profile.png`` (mean similarity against layer distance),
``summary.md`` and ``results.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from itertools import combinations
from pathlib import Path

import numpy as np

import bigalign

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _studies import (  # noqa: E402
    digits,
    forward_activations,
    layer_names,
    offdiag,
    one_blas_thread,
    spearman,
    split_halves,
    train_mlp,
)

HIDDEN = (128, 128, 64, 64, 32, 32)
MEASURES = ("linear CKA", "RBF CKA", "dCor²", "mutual kNN")


def distance_profile(m: np.ndarray) -> list[float]:
    """Mean of the entries at each layer distance δ = |i − j| = 1 .. L − 1."""
    m = np.asarray(m)
    size = m.shape[0]
    return [float(np.mean([m[i, i + d] for i in range(size - d)] + [m[i + d, i] for i in range(size - d)]))
            for d in range(1, size)]  # fmt: skip


def nearby_structure(m: np.ndarray) -> dict[str, float]:
    """How strongly similarity falls with layer distance: Spearman ρ(m_ij, |i − j|) over i < j,
    the mean of adjacent entries (|i − j| = 1) and the input-vs-last-layer entry."""
    m = np.asarray(m)
    size = m.shape[0]
    dist = offdiag(np.abs(np.subtract.outer(np.arange(size), np.arange(size))))
    return {
        "rho_vs_distance": spearman(offdiag(m), dist),
        "adjacent_mean": float(np.mean([m[i, i + 1] for i in range(size - 1)])),
        "first_vs_last": float(m[0, -1]),
    }


def matrix_and_undefined(m: bigalign.LayerMatrix) -> tuple[np.ndarray, dict[str, str]]:
    """Values (NaN where undefined) and the reasons for undefined cells, keyed "layerA|layerB"."""
    undefined = {f"{m.layers_a[i]}|{m.layers_b[j]}": why for (i, j), why in m.undefined.items()}
    return m.values.filled(np.nan), undefined


def heatmap(ax, m: np.ndarray, labels_r: list[str], labels_c: list[str], title: str, vmin=None, vmax=None) -> None:
    im = ax.imshow(m, cmap="magma", vmin=vmin, vmax=vmax)
    ax.set_xticks(range(len(labels_c)), labels_c, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(labels_r)), labels_r, fontsize=7)
    ax.set_title(title, fontsize=9)
    lo, hi = np.nanmin(m), np.nanmax(m)
    mid = (lo + hi) / 2
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            txt = "—" if not np.isfinite(m[i, j]) else f"{m[i, j]:.2f}"
            ax.text(j, i, txt, ha="center", va="center", fontsize=5.5, color="black" if m[i, j] > mid else "white")
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.03)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="layers-out")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--hidden", type=int, nargs="+", default=list(HIDDEN))
    p.add_argument("--max-iter", type=int, default=200)
    p.add_argument("--k", type=int, default=10, help="neighbours for mutual kNN")
    p.add_argument("--quick", action="store_true", help="2 seeds, hidden 64-64-32-32, 60 epochs (for tests)")
    cli_args = list(sys.argv[1:] if argv is None else argv)
    args = p.parse_args(cli_args)
    hidden = tuple(args.hidden)
    if args.quick:
        args.seeds, args.max_iter, hidden = args.seeds[:2], 60, (64, 64, 32, 32)
    if len(args.seeds) < 2:
        p.error(f"--seeds needs at least two seeds for the cross-seed matrix; got {args.seeds}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    x_all, y_all = digits()
    train, evaluate = split_halves(len(y_all))
    layers = layer_names(len(hidden))
    nets, accuracy, stores = {}, {}, {}
    for seed in args.seeds:
        nets[seed] = train_mlp(x_all[train], y_all[train], hidden, seed, args.max_iter)
        acts = forward_activations(nets[seed], x_all[evaluate])
        accuracy[seed] = float(np.mean(np.argmax(acts["logits"], 1) == y_all[evaluate]))
        path = out / "stores" / f"seed{seed}.zarr"
        with bigalign.ActivationWriter(path, mode="w", attrs={"model": f"MLP{hidden}", "seed": seed}) as w:
            w.append(acts, sample_ids=evaluate)
        stores[seed] = bigalign.open_activations(path)
    n = len(evaluate)
    print(f"trained {len(args.seeds)} MLP{hidden} on {len(train)} digits; accuracy on the other {n}: "
          + ", ".join(f"seed {s} {a:.3f}" for s, a in accuracy.items()))  # fmt: skip

    s0, s1 = stores[args.seeds[0]], stores[args.seeds[1]]
    timings = {}
    t0 = time.perf_counter()
    lin = bigalign.compare_layers(s0, metric="cka", scheduler="sync")
    timings["linear CKA (compare_layers)"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    rbf = bigalign.compare_layers(s0, metric="cka", kernel="rbf", method="exact", scheduler="sync")
    timings["RBF CKA (compare_layers, exact)"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    dc, und_dc = matrix_and_undefined(bigalign.compare_layers(s0, metric="dcor", scheduler="sync"))
    timings["dCor² (per pair)"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    knn, und_knn = matrix_and_undefined(
        bigalign.compare_layers(s0, metric="mutual_knn", metric_options={"k": args.k}, scheduler="sync")
    )
    timings["mutual kNN (per pair)"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    cross = bigalign.compare_layers(s0, s1, metric="cka", scheduler="sync")
    timings["cross-seed linear CKA"] = time.perf_counter() - t0

    # compare_layers against the per-pair façade (both exact: equal up to float rounding)
    facade_diff = {"linear": 0.0, "rbf": 0.0, "cross": 0.0}
    for i, li in enumerate(layers):
        for j, lj in enumerate(layers):
            facade_diff["linear"] = max(facade_diff["linear"], abs(lin.values[i, j] - bigalign.cka(s0[li], s0[lj], scheduler="sync").value))
            facade_diff["rbf"] = max(facade_diff["rbf"], abs(rbf.values[i, j] - bigalign.cka(
                s0[li], s0[lj], kernel="rbf", method="exact", scheduler="sync").value))  # fmt: skip
            facade_diff["cross"] = max(facade_diff["cross"], abs(cross.values[i, j] - bigalign.cka(s0[li], s1[lj], scheduler="sync").value))

    assert lin.layers_a == layers, (lin.layers_a, layers)  # every matrix below is in the stores' layer order
    mats = {"linear CKA": lin.values.filled(np.nan), "RBF CKA": rbf.values.filled(np.nan), "dCor²": dc, "mutual kNN": knn}
    structure = {name: nearby_structure(m) for name, m in mats.items()}
    profiles = {name: distance_profile(m) for name, m in mats.items()}
    disagreement = {f"{a} vs {b}": spearman(offdiag(mats[a]), offdiag(mats[b])) for a, b in combinations(MEASURES, 2)}
    # where the two most different measures disagree: the largest rank differences over i < j
    from scipy.stats import rankdata

    worst_pair = min(disagreement, key=disagreement.get)
    ma, mb = worst_pair.split(" vs ")
    iu = np.triu_indices(len(layers), k=1)
    ra, rb = rankdata(offdiag(mats[ma])), rankdata(offdiag(mats[mb]))
    order = np.argsort(-np.abs(ra - rb))[:3]
    worst_cells = [{"cell": f"{layers[iu[0][k]]}–{layers[iu[1][k]]}", ma: float(offdiag(mats[ma])[k]), mb: float(offdiag(mats[mb])[k]),
                    f"rank in {ma}": int(ra[k]), f"rank in {mb}": int(rb[k])} for k in order]  # fmt: skip

    # every seed's linear CKA self-matrix and every pair of seeds (is the structure a property of one seed?)
    per_seed = {}
    for seed in args.seeds:
        m = bigalign.compare_layers(stores[seed], metric="cka", scheduler="sync").values.filled(np.nan)
        per_seed[seed] = {**nearby_structure(m), "matrix": m.tolist()}
    cross_pairs = {}
    for sa, sb in combinations(args.seeds, 2):
        m = bigalign.compare_layers(stores[sa], stores[sb], metric="cka", scheduler="sync").values.filled(np.nan)
        cross_pairs[f"{sa}|{sb}"] = {"same_layer": np.diag(m).tolist(),
                                     "max_other_in_row": [float(np.max(np.delete(m[i], i))) for i in range(len(layers))],
                                     "same_is_best": int(sum(m[i, i] >= np.max(np.delete(m[i], i)) for i in range(len(layers))))}  # fmt: skip
    cross_m = cross.values.filled(np.nan)
    sym = (cross_m + cross_m.T) / 2
    rho_cross_self = spearman(offdiag(sym), offdiag(mats["linear CKA"]))

    # ------------------------------------------------------------------ figures
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 5, figsize=(24, 4.9))
    titles = {
        "linear CKA": "linear CKA (debiased)",
        "RBF CKA": "RBF CKA (debiased, median σ, exact)",
        "dCor²": "dCor² (bias-corrected)",
        "mutual kNN": f"mutual kNN (k = {args.k}; chance {args.k / (n - 1):.3f})",
    }
    for a_, name in zip(ax, MEASURES):
        heatmap(a_, mats[name], layers, layers, f"{titles[name]}\nρ(value, |i−j|) = {structure[name]['rho_vs_distance']:.2f}")
    heatmap(ax[4], cross_m, [f"{l}" for l in layers], layers,
            f"linear CKA, seed {args.seeds[0]} (rows) vs seed {args.seeds[1]} (cols)")  # fmt: skip
    ax[4].set_xlabel(f"seed {args.seeds[1]}", fontsize=8)
    ax[4].set_ylabel(f"seed {args.seeds[0]}", fontsize=8)
    fig.suptitle(f"Layers of one MLP{hidden} (seed {args.seeds[0]}) on sklearn digits, n = {n} held-out images")
    fig.tight_layout()
    fig.savefig(out / "layers_matrices.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(1, 2, figsize=(11, 4.2))
    deltas = np.arange(1, len(layers))
    for name in MEASURES:
        ax[0].plot(deltas, profiles[name], marker="o", label=name)
    ax[0].axhline(args.k / (n - 1), color="grey", lw=0.8, ls=":", label="mutual kNN chance k/(n−1)")
    ax[0].set(xlabel="layer distance |i − j|", ylabel="mean similarity at that distance",
              title=f"seed {args.seeds[0]}: similarity falls with layer distance?")  # fmt: skip
    ax[0].legend(fontsize=8)
    for k, (key, v) in enumerate(cross_pairs.items()):
        c = plt.rcParams["axes.prop_cycle"].by_key()["color"][k]
        sa, sb = key.split("|")
        ax[1].plot(layers, v["same_layer"], marker="o", color=c, label=f"seeds {sa} vs {sb}: same layer")
        ax[1].plot(layers, v["max_other_in_row"], marker="x", ls="--", color=c, label=f"seeds {sa} vs {sb}: best other layer of {sb}")
    ax[1].tick_params(axis="x", labelrotation=45)
    ax[1].set(xlabel="layer of the first seed", ylabel="linear CKA across seeds",
              title="is a layer's best match in another seed the same layer?")  # fmt: skip
    ax[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "layers_profile.png", dpi=110)
    plt.close(fig)

    # ------------------------------------------------------------------ summary
    total = time.perf_counter() - t_start
    lines = [
        "# Layers of one model: linear CKA, RBF CKA, dCor², mutual kNN",
        "",
        "Command: `" + " ".join(["python examples/layers_one_model.py", *cli_args]) + "`",
        "",
        f"Networks: MLP{hidden} (ReLU, Adam, ≤ {args.max_iter} epochs) trained on {len(train)} digits from seeds "
        f"{args.seeds}; activations of the other n = {n} digits. Accuracy there: "
        + ", ".join(f"seed {s} {a:.3f}" for s, a in accuracy.items()) + ".",
        f"Matrices below: seed {args.seeds[0]}. Mutual kNN: k = {args.k}, chance level k/(n−1) = {args.k / (n - 1):.4f}.",
        "",
        "## Nearby layers are similar?",
        "",
        "ρ = Spearman correlation between the off-diagonal entries and the layer distance |i − j| "
        "(−1: similarity falls strictly with distance).",
        "",
        "| measure | ρ(value, \\|i−j\\|) | mean adjacent (\\|i−j\\| = 1) | input vs logits | mean at \\|i−j\\| = 1, 2, … |",
        "|---|---:|---:|---:|---|",
    ]
    for name in MEASURES:
        s = structure[name]
        lines.append(f"| {name} | {s['rho_vs_distance']:.3f} | {s['adjacent_mean']:.3f} | {s['first_vs_last']:.3f} | "
                     + ", ".join(f"{v:.2f}" for v in profiles[name]) + " |")  # fmt: skip
    lines += [
        "",
        "Linear CKA for every seed: ρ(value, |i−j|) = "
        + ", ".join(f"seed {s} {v['rho_vs_distance']:.3f}" for s, v in per_seed.items())
        + "; mean adjacent = " + ", ".join(f"{v['adjacent_mean']:.3f}" for v in per_seed.values())
        + "; input vs logits = " + ", ".join(f"{v['first_vs_last']:.3f}" for v in per_seed.values()) + ".",
        "",
        "## Where the measures disagree",
        "",
        "Spearman correlation between the off-diagonal entries (i < j) of two matrices "
        f"({len(offdiag(mats['linear CKA']))} entries each):",
        "",
        "| pair | Spearman ρ |",
        "|---|---:|",
        *[f"| {k} | {v:.3f} |" for k, v in disagreement.items()],
        "",
        f"Cells ranked most differently by the least concordant pair ({worst_pair}):",
        "",
        f"| cell | {ma} | {mb} | rank in {ma} | rank in {mb} |",
        "|---|---:|---:|---:|---:|",
        *[f"| {c['cell']} | {c[ma]:.3f} | {c[mb]:.3f} | {c[f'rank in {ma}']} | {c[f'rank in {mb}']} |" for c in worst_cells],
        "",
        "## Across seeds (linear CKA)",
        "",
        f"Seed {args.seeds[0]} vs seed {args.seeds[1]}, layer × layer: Spearman ρ between its symmetrised off-diagonal "
        f"entries and those of seed {args.seeds[0]}'s self-matrix = {rho_cross_self:.3f}.",
        "",
        "| seeds | same layer: " + ", ".join(layers) + " | largest other entry in the row | rows where the same layer is the best match |",
        "|---|---|---|---:|",
        *[f"| {k.replace('|', ' vs ')} | " + ", ".join(f"{x:.3f}" for x in v["same_layer"]) + " | "
          + ", ".join(f"{x:.3f}" for x in v["max_other_in_row"]) + f" | {v['same_is_best']}/{len(layers)} |"
          for k, v in cross_pairs.items()],  # fmt: skip
        "",
        "## Checks",
        "",
        f"- compare_layers vs per-pair `bigalign.cka`: max |difference| linear {facade_diff['linear']:.1e}, "
        f"RBF (exact) {facade_diff['rbf']:.1e}, cross-seed {facade_diff['cross']:.1e}.",
        f"- Diagonals: linear CKA {np.diag(mats['linear CKA']).min():.12f}–{np.diag(mats['linear CKA']).max():.12f}, "
        f"RBF CKA {np.diag(mats['RBF CKA']).min():.12f}–{np.diag(mats['RBF CKA']).max():.12f}, "
        f"dCor² {np.nanmin(np.diag(dc)):.12f}–{np.nanmax(np.diag(dc)):.12f}, mutual kNN {np.nanmin(np.diag(knn)):.3f}–{np.nanmax(np.diag(knn)):.3f}.",
        f"- Undefined cells: dCor {und_dc or 'none'}, mutual kNN {und_knn or 'none'}.",
        "",
        "## Matrices (seed " + str(args.seeds[0]) + ")",
        "",
    ]
    for name in MEASURES + ("cross-seed linear CKA",):
        m = cross_m if name == "cross-seed linear CKA" else mats[name]
        lines += [f"{name}:", "", "| | " + " | ".join(layers) + " |", "|---|" + "---:|" * len(layers)]
        lines += [f"| {l} | " + " | ".join(f"{v:.3f}" for v in m[i]) + " |" for i, l in enumerate(layers)]
        lines.append("")
    lines += ["Timings (s, this shared 2-core machine): " + ", ".join(f"{k} {v:.2f}" for k, v in timings.items())
              + f"; total {total:.1f}."]  # fmt: skip
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    results = {
        "n": n, "hidden": list(hidden), "seeds": args.seeds, "layers": layers, "accuracy": {str(k): v for k, v in accuracy.items()},
        "k": args.k, "matrices": {k: v.tolist() for k, v in mats.items()}, "cross_seed": cross_m.tolist(),
        "structure": structure, "profiles": profiles, "disagreement": disagreement, "worst_cells": worst_cells,
        "per_seed": {str(k): v for k, v in per_seed.items()}, "cross_pairs": cross_pairs, "rho_cross_self": rho_cross_self,
        "facade_max_abs_diff": facade_diff, "undefined": {"dcor": und_dc, "mutual_knn": und_knn}, "timings_s": timings,
        "total_s": total,
    }  # fmt: skip
    (out / "results.json").write_text(json.dumps(results, indent=1))
    for name in MEASURES:
        s = structure[name]
        print(f"{name:12s} ρ(value,|i−j|) {s['rho_vs_distance']:+.3f}  adjacent {s['adjacent_mean']:.3f}  input–logits {s['first_vs_last']:.3f}")
    print("disagreement (Spearman of off-diagonal entries): " + ", ".join(f"{k} {v:.2f}" for k, v in disagreement.items()))
    print(f"compare_layers vs façade: {facade_diff}")
    print(f"wrote {out / 'layers_matrices.png'}, {out / 'layers_profile.png'}, {out / 'summary.md'} in {total:.1f} s")
    return results


if __name__ == "__main__":
    with one_blas_thread():
        main()
