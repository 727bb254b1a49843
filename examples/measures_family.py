"""The whole family of alignment measures on the same pairs of real representations.

    python examples/measures_family.py [--out examples/out] [--quick]

Two multilayer perceptrons of ``bigalign.demo`` (scikit-learn ``MLPClassifier``,
hidden layers 128-64-32, ReLU) trained from seeds 0 and 1 on scikit-learn's 8×8
digits (``bigalign.demo.build_demo_stores``), and a third network of the same shape
that keeps scikit-learn's random (Glorot-uniform) initialisation.  On the layers
hidden1, hidden2, hidden3 and logits, every measure below is computed on the
same pairs of representations, on the same rows:

* the 16 layer pairs of network A (seed 0) × network B (seed 1): 4 matched
  (same layer) and 12 mismatched;
* a random-network control: layer k of A vs layer k of the untrained network;
* a shuffled control: layer k of A vs layer k of B with B's rows permuted
  (pairing broken — independent representations with the real marginals).

Measures (bigalign defaults unless said): linear CKA (debiased), RBF CKA (debiased,
median bandwidths, exact tiles), linear HSIC (unbiased), kernel alignment (KA,
uncentred linear), the paper's distance alignment D (a *dissimilarity*: lower =
more alike; it carries the fourth power of the representations' scale), distance
correlation (bias-corrected dCor²), COCO, KCC and KMI (linear kernel, κ = 1e-2),
the Gaussian mutual information and W₂² from the canonical correlations
(``spectral_alignment``, ridge = 0), RSA (Pearson correlation of Euclidean
distances), mutual kNN and CKNNA (k = 10) and the held-out R² of the linear stitch
A-layer → B-layer (``stitch``, 20 % held out).  All are exact computations (no
random features, no sampling) except that the stitch's held-out rows are a seeded
hash split.

Writes into --out: ``measures_family.png`` (normalised measures per pair; Spearman
rank correlation between measures across all pairs and across the 16 trained
pairs only), ``measures_family.md`` (the numbers) and ``measures_family.json``.
``--quick`` (for the tests) uses 600 seeded rows instead of all 1,797.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np

import bigalign
from bigalign.demo import HIDDEN, build_demo_stores, forward_activations

LAYERS = ["hidden1", "hidden2", "hidden3", "logits"]
SYNC = {"scheduler": "sync"}  # small n: the plain loop is the fastest runner


_SPECTRAL: dict[tuple[int, int], Any] = {}  # one spectral_alignment per pair serves the Gaussian MI and W₂²


def _spectral(x: np.ndarray, y: np.ndarray, what: str) -> float:
    key = (id(x), id(y))  # the arrays live in ``reps`` for the whole run, so their ids are not reused
    if key not in _SPECTRAL:
        _SPECTRAL.clear()
        _SPECTRAL[key] = bigalign.spectral_alignment(x, y, **SYNC)
    v = getattr(_SPECTRAL[key], what)
    return float("nan") if v is None else float(v)  # gaussian_mi is None when some ρ = 1 (reported as NaN here)


# key -> (label, function, orientation): orientation −1 marks a dissimilarity (lower = more alike)
MEASURES: dict[str, tuple[str, Callable[[np.ndarray, np.ndarray], float], int]] = {
    "cka_linear": ("linear CKA", lambda x, y: bigalign.cka(x, y, **SYNC).value, 1),
    "cka_rbf": ("RBF CKA", lambda x, y: bigalign.cka(x, y, kernel="rbf", method="exact", **SYNC).value, 1),
    "hsic": ("HSIC (linear)", lambda x, y: bigalign.hsic(x, y, **SYNC).value, 1),
    "ka": ("KA (uncentred)", lambda x, y: bigalign.kernel_alignment(x, y, **SYNC).value, 1),
    "distance_alignment": ("distance alignment D", lambda x, y: bigalign.distance_alignment(x, y, **SYNC).value, -1),
    "dcor": ("dCor² (bias-corr.)", lambda x, y: bigalign.dcor(x, y, method="exact", **SYNC).value, 1),
    "coco": ("COCO", lambda x, y: bigalign.coco(x, y, **SYNC).value, 1),
    "kcc": ("KCC (κ=1e-2)", lambda x, y: bigalign.kcc(x, y, **SYNC).value, 1),
    "kmi": ("KMI (κ=1e-2)", lambda x, y: bigalign.kmi(x, y, **SYNC).value, 1),
    "gaussian_mi": ("Gaussian MI", lambda x, y: _spectral(x, y, "gaussian_mi"), 1),
    "w2": ("Gaussian W₂²", lambda x, y: _spectral(x, y, "gaussian_wasserstein"), 1),
    "rsa": ("RSA (Pearson)", lambda x, y: bigalign.rsa(x, y, **SYNC).value, 1),
    "mutual_knn": ("mutual kNN (k=10)", lambda x, y: bigalign.mutual_knn(x, y, **SYNC).value, 1),
    "cknna": ("CKNNA (k=10)", lambda x, y: bigalign.cknna(x, y, **SYNC).value, 1),
    "stitch_r2": ("stitch R² (held-out)", lambda x, y: float(bigalign.stitch(x, y, **SYNC).r2), 1),
}
# Measures whose values carry the representations' scale (not comparable across layers of different scale).
SCALE_DEPENDENT = ("hsic", "distance_alignment", "coco")


def untrained_network(n_in: int, n_out: int, seed: int = 12345) -> SimpleNamespace:
    """An MLP of the demo's shape with scikit-learn's Glorot-uniform initialisation, never trained."""
    rng = np.random.default_rng(seed)
    sizes = [n_in, *HIDDEN, n_out]
    coefs, intercepts = [], []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        bound = np.sqrt(6.0 / (fan_in + fan_out))  # sklearn's initialisation for ReLU networks
        coefs.append(rng.uniform(-bound, bound, size=(fan_in, fan_out)))
        intercepts.append(rng.uniform(-bound, bound, size=fan_out))
    return SimpleNamespace(coefs_=coefs, intercepts_=intercepts)


def representations(store_dir: Path, n_rows: int | None, seed: int = 0) -> tuple[dict[str, dict[str, np.ndarray]], np.ndarray]:
    """{"A": {layer: (n, d)}, "B": ..., "untrained": ..., "B_shuffled": ...} (float64) and the rows used."""
    from sklearn.datasets import load_digits

    pa, pb = build_demo_stores(store_dir)
    sa, sb = bigalign.open_activations(pa), bigalign.open_activations(pb)
    n = sa.n_samples
    rows = np.arange(n) if n_rows is None or n_rows >= n else np.sort(np.random.default_rng(seed).choice(n, n_rows, replace=False))
    digits = load_digits()
    x_in = digits.data / 16.0
    for store in (sa, sb):
        if not np.array_equal(np.asarray(store.sample_ids[:]), np.arange(n)):  # the untrained net is run on digits 0..n−1
            raise RuntimeError(f"the demo store {store} does not hold every digit in order; rebuild it with build_demo_stores(force=True)")
    reps: dict[str, dict[str, np.ndarray]] = {"A": {}, "B": {}}
    for name, store in (("A", sa), ("B", sb)):
        for layer in LAYERS:
            reps[name][layer] = np.asarray(store[layer][:], dtype=np.float64)[rows]
    net = untrained_network(x_in.shape[1], 10)
    reps["untrained"] = {k: np.asarray(v, dtype=np.float64) for k, v in forward_activations(net, x_in[rows]).items() if k in LAYERS}
    perm = np.random.default_rng(seed + 1).permutation(len(rows))
    reps["B_shuffled"] = {k: v[perm] for k, v in reps["B"].items()}
    return reps, rows


def layer_pairs() -> list[dict[str, Any]]:
    pairs = []
    for la in LAYERS:
        for lb in LAYERS:
            pairs.append({"name": f"A.{la} / B.{lb}", "kind": "matched" if la == lb else "mismatched", "a": ("A", la), "b": ("B", lb)})
    for layer in LAYERS:
        pairs.append({"name": f"A.{layer} / untrained.{layer}", "kind": "random-network", "a": ("A", layer), "b": ("untrained", layer)})
    for layer in LAYERS:
        pairs.append({"name": f"A.{layer} / B.{layer} shuffled", "kind": "shuffled", "a": ("A", layer), "b": ("B_shuffled", layer)})
    return pairs


def spearman_matrix(values: np.ndarray) -> np.ndarray:
    """Spearman rank correlation between the rows of ``values`` (measures × pairs), NaN-free rows."""
    from scipy.stats import rankdata

    r = np.vstack([rankdata(v) for v in values])
    r = r - r.mean(1, keepdims=True)
    r /= np.linalg.norm(r, axis=1, keepdims=True)
    return r @ r.T


def compute(reps: dict[str, dict[str, np.ndarray]], pairs: list[dict[str, Any]]) -> tuple[np.ndarray, dict[str, float]]:
    """values[measure, pair] (raw) and the seconds spent per measure."""
    keys = list(MEASURES)
    values = np.full((len(keys), len(pairs)), np.nan)
    seconds = dict.fromkeys(keys, 0.0)
    for j, p in enumerate(pairs):
        x, y = reps[p["a"][0]][p["a"][1]], reps[p["b"][0]][p["b"][1]]
        for i, k in enumerate(keys):
            t0 = time.perf_counter()
            values[i, j] = MEASURES[k][1](x, y)
            seconds[k] += time.perf_counter() - t0
    return values, seconds


def figure(values: np.ndarray, pairs: list[dict[str, Any]], rho_all: np.ndarray, rho_trained: np.ndarray, path: Path, n: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(MEASURES)
    labels = [MEASURES[k][0] + (" (−)" if MEASURES[k][2] < 0 else "") for k in keys]
    oriented = values * np.array([MEASURES[k][2] for k in keys])[:, None]
    lo, hi = np.nanmin(oriented, 1, keepdims=True), np.nanmax(oriented, 1, keepdims=True)
    norm = (oriented - lo) / (hi - lo)
    fig = plt.figure(figsize=(15, 15))
    gs = fig.add_gridspec(2, 2, height_ratios=[1, 1.25])
    ax0 = fig.add_subplot(gs[0, :])
    im = ax0.imshow(norm, aspect="auto", cmap="viridis", vmin=0, vmax=1)
    ax0.set_yticks(range(len(keys)), labels, fontsize=8)
    ax0.set_xticks(range(len(pairs)), [p["name"].replace("hidden", "h").replace("logits", "out") for p in pairs],
                   rotation=60, ha="right", fontsize=7)  # fmt: skip
    bounds = np.cumsum([sum(p["kind"] in kinds for p in pairs) for kinds in (("matched", "mismatched"), ("random-network",))])
    for b in bounds:
        ax0.axvline(b - 0.5, color="white", lw=2)
    for j, p in enumerate(pairs):
        if p["kind"] == "matched":
            ax0.get_xticklabels()[j].set_fontweight("bold")
    ax0.set_title("each measure min–max normalised over the pairs (1 = most alike; (−): D negated)\n"
                  "A × B layer pairs (matched layers in bold)  |  A vs the untrained net  |  A vs B with B's rows shuffled",
                  fontsize=9)  # fmt: skip
    fig.colorbar(im, ax=ax0, fraction=0.02, pad=0.01)
    for ax_i, (rho, title) in enumerate(((rho_all, f"Spearman ρ between measures across all {len(pairs)} pairs"),
                                         (rho_trained, "Spearman ρ across the 16 trained A × B pairs only"))):  # fmt: skip
        ax = fig.add_subplot(gs[1, ax_i])
        im2 = ax.imshow(rho, cmap="RdBu_r", vmin=-1, vmax=1)
        ax.set_xticks(range(len(keys)), labels, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(len(keys)), labels, fontsize=7)
        ax.set_title(title, fontsize=9)
        for i in range(len(keys)):
            for j in range(len(keys)):
                ax.text(j, i, f"{rho[i, j]:.2f}", ha="center", va="center", fontsize=5.5,
                        color="white" if abs(rho[i, j]) > 0.6 else "black")  # fmt: skip
    fig.colorbar(im2, ax=ax, fraction=0.046, pad=0.02)
    fig.suptitle(f"The family of alignment measures on digits MLPs (seed 0 vs seed 1, untrained control; n = {n} images)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def checks(values: np.ndarray, pairs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per measure (oriented: higher = more alike): how matched pairs compare with the controls."""
    keys = list(MEASURES)
    kind = np.array([p["kind"] for p in pairs])
    out = {}
    for i, k in enumerate(keys):
        v = values[i] * MEASURES[k][2]
        matched, rnd, shuf = v[kind == "matched"], v[kind == "random-network"], v[kind == "shuffled"]
        out[k] = {
            "matched_above_its_random_control": int(np.sum(matched > rnd)),  # A.k/B.k vs A.k/untrained.k, same k
            "matched_above_its_shuffled_control": int(np.sum(matched > shuf)),  # A.k/B.k vs A.k/(B.k, rows shuffled)
            "matched_above_max_random_control": int(np.sum(matched > np.nanmax(rnd))),
            "matched_above_max_shuffled": int(np.sum(matched > np.nanmax(shuf))),
            "n_matched": int(matched.size),
        }
        # among the 4×4 trained pairs: is layer k of B the best match of layer k of A (rows), and vice versa (columns)?
        grid = v[: len(LAYERS) ** 2].reshape(len(LAYERS), len(LAYERS))
        out[k]["matched_is_best_for_a"] = int(sum(np.argmax(grid[i]) == i for i in range(len(LAYERS))))
        out[k]["matched_is_best_for_b"] = int(sum(np.argmax(grid[:, j]) == j for j in range(len(LAYERS))))
    return out


def summary(values, pairs, rho_all, rho_trained, chk, seconds, n, cli_args, elapsed) -> str:
    keys = list(MEASURES)
    lines = [
        "# The family of alignment measures on digits MLPs",
        "",
        "Command: `" + " ".join(["python examples/measures_family.py", *cli_args]) + "`",
        "",
        f"Representations: layers {', '.join(LAYERS)} of two `bigalign.demo` MLPs{HIDDEN} trained on scikit-learn digits "
        f"from seeds 0 (A) and 1 (B), and of an untrained network of the same shape; n = {n} images. "
        f"{len(pairs)} pairs; {len(keys)} measures; total {elapsed:.1f} s wall (training included unless the stores existed) "
        "on a shared 2-CPU machine.",
        "",
        "## Values per pair",
        "",
        "| pair | kind | " + " | ".join(MEASURES[k][0] for k in keys) + " |",
        "|---|---|" + "---:|" * len(keys),
    ]
    for j, p in enumerate(pairs):
        lines.append(f"| {p['name']} | {p['kind']} | " + " | ".join(_fmt(values[i, j]) for i in range(len(keys))) + " |")
    lines += [
        "",
        "## Agreement between measures (Spearman ρ across pairs; D negated so that higher = more alike for all)",
        "",
        "| measure | mean ρ with the others, all pairs | mean ρ, trained pairs only | least agreeing measure on trained pairs (ρ) |",
        "|---|---:|---:|---|",
    ]
    m = len(keys)
    off = ~np.eye(m, dtype=bool)
    for i, k in enumerate(keys):
        j = int(np.argmin(np.where(off[i], rho_trained[i], np.inf)))
        lines.append(f"| {MEASURES[k][0]} | {rho_all[i][off[i]].mean():.2f} | {rho_trained[i][off[i]].mean():.2f} | "
                     f"{MEASURES[keys[j]][0]} ({rho_trained[i, j]:.2f}) |")  # fmt: skip
    lines += [
        "",
        "## Matched layers against the controls (oriented: higher = more alike)",
        "",
        "Columns: (A.k, B.k) above (A.k, untrained.k); above (A.k, B.k rows shuffled); above every random-network pair;",
        "above every shuffled pair; B.k the best of B's layers for A.k; A.k the best of A's layers for B.k; seconds spent on",
        "the measure over all pairs (a shared machine: noisy; the Gaussian MI's time includes W₂², one `spectral_alignment`).",
        "",
        "| measure | > its random-net control | > its shuffled control | > every random-net pair | > every shuffled pair | best match for A.k | best match for B.k | s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for k in keys:
        c = chk[k]
        lines.append(f"| {MEASURES[k][0]} | {c['matched_above_its_random_control']}/{c['n_matched']} | "
                     f"{c['matched_above_its_shuffled_control']}/{c['n_matched']} | "
                     f"{c['matched_above_max_random_control']}/{c['n_matched']} | {c['matched_above_max_shuffled']}/{c['n_matched']} | "
                     f"{c['matched_is_best_for_a']}/{len(LAYERS)} | {c['matched_is_best_for_b']}/{len(LAYERS)} | "
                     f"{'(in Gaussian MI)' if k == 'w2' else f'{seconds[k]:.2f}'} |")  # fmt: skip
    lines += ["", f"Scale-dependent measures (values carry the representations' scale): {', '.join(MEASURES[k][0] for k in SCALE_DEPENDENT)}.", ""]
    return "\n".join(lines)


def _fmt(v: float) -> str:
    if not np.isfinite(v):
        return "—"
    a = abs(v)
    return f"{v:.3g}" if a >= 1000 or (a < 0.01 and a != 0) else f"{v:.3f}"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="examples/out")
    p.add_argument("--stores", default=None, help="directory of the demo stores (reused if present); default OUT/stores")
    p.add_argument("--n", type=int, default=None, help="rows (seeded subsample); default all 1,797")
    p.add_argument("--quick", action="store_true", help="600 rows (for the tests; < 60 s)")
    cli_args = list(sys.argv[1:] if argv is None else argv)
    args = p.parse_args(cli_args)
    n_rows = 600 if args.quick and args.n is None else args.n
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    reps, rows = representations(Path(args.stores) if args.stores else out / "stores", n_rows)
    pairs = layer_pairs()
    values, seconds = compute(reps, pairs)
    keys = list(MEASURES)
    oriented = values * np.array([MEASURES[k][2] for k in keys])[:, None]
    if np.isnan(oriented).any():
        bad = [keys[i] for i in np.unique(np.nonzero(np.isnan(oriented))[0])]
        raise RuntimeError(f"undefined values (NaN) for {bad}: the rank correlations need every value")
    trained = np.array([p["kind"] in ("matched", "mismatched") for p in pairs])
    rho_all, rho_trained = spearman_matrix(oriented), spearman_matrix(oriented[:, trained])
    chk = checks(values, pairs)
    figure(values, pairs, rho_all, rho_trained, out / "measures_family.png", len(rows))
    elapsed = time.perf_counter() - t_start
    md = summary(values, pairs, rho_all, rho_trained, chk, seconds, len(rows), cli_args, elapsed)
    (out / "measures_family.md").write_text(md)
    result = {
        "n_samples": int(len(rows)),
        "measures": {k: {"label": MEASURES[k][0], "orientation": MEASURES[k][2]} for k in keys},
        "pairs": [{"name": p["name"], "kind": p["kind"]} for p in pairs],
        "values": {k: values[i].tolist() for i, k in enumerate(keys)},
        "spearman_all": rho_all.tolist(),
        "spearman_trained": rho_trained.tolist(),
        "checks": chk,
        "seconds": seconds,
        "elapsed_s": elapsed,
    }
    (out / "measures_family.json").write_text(json.dumps(result, indent=1))
    print(md)
    print(f"wrote {out / 'measures_family.png'}, {out / 'measures_family.md'}, {out / 'measures_family.json'} in {elapsed:.1f} s")
    return result


if __name__ == "__main__":
    main()
