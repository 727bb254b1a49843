"""Two modalities of one reality: alignment between networks that see different views of the same digits.

    python examples/two_modalities.py [--out modalities-out] [--quick]

Two views of each of scikit-learn's 8×8 digits (nothing is downloaded): the left
half (columns 0–3, 32 pixels) and the right half (columns 4–7).  One MLP per
view (scikit-learn ``MLPClassifier``, ReLU, Adam, hidden layers (w, w), w = 64 by
default) is trained independently (different seeds, different inputs) on one
half of the digits; the measures are taken on the other half (n = 899), between
the two networks' **last hidden layers**, and between the two **inputs** (the
views themselves) for reference:

* kernel: linear CKA, RBF CKA (both debiased; RBF with the median bandwidth,
  exact at this n), HSIC (unbiased, RBF kernel, exact);
* distance: dCor² (bias-corrected), the paper's distance alignment
  D = (1/n²)Σᵢⱼ(‖xᵢ−xⱼ‖² − ‖yᵢ−yⱼ‖²)², raw and after scaling each
  representation so that its mean squared pairwise distance is 1;
* independence: ``bigalign.hsic_test`` (RBF kernel, permutation, p-value and
  statistic HSIC_b), mutual kNN (k = 10; cosine neighbours are undefined for
  all-zero rows — empty half-images, occluded views, a ReLU layer silent on a
  digit — so those samples are dropped for this measure only, and counted).

Three sweeps:

(a) training: both networks trained epoch by epoch with ``partial_fit``; the
    measures at epochs 0 (an untrained network with sklearn's Glorot
    initialisation), 1, 2, 4, …;
(b) degradation: the right-half view is degraded — Gaussian noise of standard
    deviation σ added to its pixels (pixels are in [0, 1]), or a random fraction
    of its pixels set to 0 (occlusion) — and its network is retrained on the
    degraded view (the left-half network is fixed);
(c) width: both networks with hidden layers (w, w), w = 8 … 256, two
    independent pairs of seeds per width.

Comparable scales: linear CKA, RBF CKA and dCor² are normalised (1 for
representations equal up to the invariances of each, about 0 for independent
ones; the debiased estimates can be slightly negative) and mutual kNN lies in
[0, 1] with chance level k/(n − 1): these four share one axis in the figures.
HSIC and raw D carry the units of the representations (they grow with the
activations' scale), so their values are comparable only within one pair of
representation spaces; the scaled D is unit-free but measures mismatch (0 =
aligned).  The hsic_test p-value is not an effect size: with n = 899 any
dependence drives it to its floor 1/(B + 1).

Writes into --out: ``modalities_training.png``, ``modalities_degradation.png``,
``modalities_width.png``, ``summary.md`` and ``results.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

import bigalign

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _studies import digits, forward_activations, glorot_network, one_blas_thread, split_halves, train_mlp  # noqa: E402

NORMALISED = ("linear CKA", "RBF CKA", "dCor²", "mutual kNN")
UNNORMALISED = ("HSIC (RBF)", "D (raw)", "D (scaled)")
ALL = NORMALISED + UNNORMALISED + ("hsic_test p", "hsic_test statistic", "hsic_test z", "kNN rows dropped")


def views(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Left half (columns 0–3) and right half (columns 4–7) of each 8×8 image, flattened to 32 pixels."""
    img = x.reshape(-1, 8, 8)
    return img[:, :, :4].reshape(-1, 32).copy(), img[:, :, 4:].reshape(-1, 32).copy()


def degrade(v: np.ndarray, kind: str, level: float, seed: int) -> np.ndarray:
    """Gaussian noise of standard deviation ``level`` or occlusion of a fraction ``level`` of the pixels (seeded)."""
    rng = np.random.default_rng(seed)
    if kind == "noise":
        return v + level * rng.standard_normal(v.shape)
    if kind == "occlusion":
        return np.where(rng.random(v.shape) < level, 0.0, v)
    raise ValueError(f"kind must be 'noise' or 'occlusion'; got {kind!r}")


def scaled(x: np.ndarray) -> np.ndarray:
    """x divided by the root mean squared pairwise distance, (1/n²)Σᵢⱼ‖xᵢ−xⱼ‖² = 2·Σ_columns var (biased)."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.sqrt(2.0 * x.var(axis=0).sum())


def measures(x: np.ndarray, y: np.ndarray, *, k: int, n_permutations: int) -> dict[str, float]:
    """Every measure of the study between two paired representations (n × d_x, n × d_y)."""
    kw = {"scheduler": "sync"}
    # Cosine neighbours are undefined for an all-zero row (an empty half-image, an occluded view, a ReLU layer
    # silent on that digit): mutual_knn raises for them, and, as its error advises, they are dropped from both
    # representations for this one measure; how many is reported beside the value.
    keep = np.any(x != 0, axis=1) & np.any(y != 0, axis=1)
    test = bigalign.hsic_test(x, y, kernel="rbf", null="permutation", n_permutations=n_permutations, seed=0)
    return {
        "linear CKA": bigalign.cka(x, y, **kw).value,
        "RBF CKA": bigalign.cka(x, y, kernel="rbf", method="exact", **kw).value,
        "dCor²": bigalign.dcor(x, y, **kw).value,
        "mutual kNN": bigalign.mutual_knn(x[keep], y[keep], k=k, **kw).value,
        "kNN rows dropped": int(np.sum(~keep)),
        "HSIC (RBF)": bigalign.hsic(x, y, kernel="rbf", method="exact", **kw).value,
        "D (raw)": bigalign.distance_alignment(x, y, **kw).value,
        "D (scaled)": bigalign.distance_alignment(scaled(x), scaled(y), **kw).value,
        "hsic_test p": test.pvalue,
        "hsic_test statistic": test.statistic,
        # how far n·HSIC_b lies above its permutation null, in null standard deviations: unlike the p-value
        # (floored at 1/(B + 1)) it keeps resolving the strength of the evidence
        "hsic_test z": (test.n_samples * test.statistic - test.null["mean"]) / np.sqrt(test.null["variance"]),
    }


def last_hidden(net, x: np.ndarray) -> np.ndarray:
    acts = forward_activations(net, x)
    return acts[[k for k in acts if k.startswith("hidden")][-1]].astype(np.float64)


def accuracy(net, x: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(forward_activations(net, x)["logits"], 1) == labels))


def plot_sweep(axrow, xs, rows: list[dict], xlabel: str, title: str, *, k: int, n: int, n_permutations: int, logx: bool = False,
               acc: dict[str, list[float]] | None = None) -> None:  # fmt: skip
    """Three panels: normalised measures (hidden solid, inputs dashed), unnormalised (log), hsic_test p-value (log)."""
    colours = dict(zip(NORMALISED + UNNORMALISED, ["C0", "C1", "C2", "C3", "C4", "C5", "C6"]))
    ax0, ax1, ax2 = axrow
    for m in NORMALISED:
        ax0.plot(xs, [r["hidden"][m] for r in rows], marker="o", color=colours[m], label=f"{m}, last hidden")
        ax0.plot(xs, [r["input"][m] for r in rows], ls="--", color=colours[m], alpha=0.6, label=f"{m}, inputs")
    ax0.axhline(k / (n - 1), color="grey", lw=0.8, ls=":", label="mutual kNN chance")
    if acc:
        for name, v in acc.items():
            ax0.plot(xs, v, color="black", lw=0.9, ls="-." if name.endswith("B") else ":", label=f"accuracy, {name}")
    ax0.set(xlabel=xlabel, ylabel="normalised measure", title=f"{title}: normalised measures", ylim=(-0.05, 1.05))
    for m in UNNORMALISED:
        ax1.plot(xs, [r["hidden"][m] for r in rows], marker="o", color=colours[m], label=f"{m}, last hidden")
        ax1.plot(xs, [r["input"][m] for r in rows], ls="--", color=colours[m], alpha=0.6, label=f"{m}, inputs")
    ax1.set(xlabel=xlabel, yscale="log", ylabel="value (units of the representations)", title=f"{title}: unnormalised")
    ax2.plot(xs, [r["hidden"]["hsic_test z"] for r in rows], marker="o", color="C7", label="z, last hidden")
    ax2.plot(xs, [r["input"]["hsic_test z"] for r in rows], ls="--", color="C7", alpha=0.6, label="z, inputs")
    for pair, va in (("hidden", "bottom"), ("input", "top")):
        for x_, r in zip(xs, rows):
            if r[pair]["hsic_test p"] > 1 / (n_permutations + 1):  # p above its floor: print it
                ax2.annotate(f"p={r[pair]['hsic_test p']:.3f}", (x_, r[pair]["hsic_test z"]), fontsize=6, va=va)
    ax2.axhline(2.33, color="red", lw=0.8, ls=":", label="z = 2.33 (normal 1% tail)")
    ax2.set(xlabel=xlabel, yscale="log", ylabel="(n·HSIC_b − null mean) / null sd",
            title=f"{title}: hsic_test z; p = 1/(B+1) unless printed")  # fmt: skip
    for a in axrow:
        if logx:
            a.set_xscale("symlog", linthresh=1) if min(xs) == 0 else a.set_xscale("log", base=2)
        a.legend(fontsize=6)


def table(xs, rows: list[dict], xname: str, extra: dict[str, list] | None = None) -> list[str]:
    cols = list(ALL)
    head = f"| {xname} | pair | " + " | ".join(cols) + (" | " + " | ".join(extra) if extra else "") + " |"
    lines = [head, "|---|---|" + "---:|" * (len(cols) + (len(extra) if extra else 0))]
    for i, (x, r) in enumerate(zip(xs, rows)):
        for pair in ("hidden", "input"):
            vals = [f"{r[pair][c]:.4f}" if c == "hsic_test p" else f"{r[pair][c]:.3g}" for c in cols]
            ext = (" | " + " | ".join(f"{v[i]:.3f}" for v in extra.values())) if extra and pair == "hidden" else (" |" * len(extra) if extra else "")
            lines.append(f"| {x} | {'last hidden' if pair == 'hidden' else 'inputs'} | " + " | ".join(vals) + ext + " |")
    return lines


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="modalities-out")
    p.add_argument("--width", type=int, default=64, help="hidden layers (w, w) for the training and degradation sweeps")
    p.add_argument("--epochs", type=int, nargs="+", default=[0, 1, 2, 4, 8, 16, 32, 64, 128])
    p.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0])
    p.add_argument("--occlusion", type=float, nargs="+", default=[0.0, 0.2, 0.4, 0.6, 0.8, 0.9])
    p.add_argument("--widths", type=int, nargs="+", default=[8, 16, 32, 64, 128, 256])
    p.add_argument("--width-seeds", type=int, nargs="+", default=[0, 2], help="seed s: networks s (left) and s+1 (right)")
    p.add_argument("--max-iter", type=int, default=200)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--permutations", type=int, default=1000)
    p.add_argument("--quick", action="store_true", help="fewer points, 200 permutations, 60 epochs (for tests)")
    cli_args = list(sys.argv[1:] if argv is None else argv)
    args = p.parse_args(cli_args)
    if args.quick:
        args.epochs, args.noise, args.occlusion = [0, 4, 32], [0.0, 0.5, 2.0], [0.0, 0.8]
        args.widths, args.width_seeds, args.max_iter, args.permutations = [8, 64], [0], 60, 200
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    kw = {"k": args.k, "n_permutations": args.permutations}

    x_all, y_all = digits()
    train, evaluate = split_halves(len(y_all))
    left, right = views(x_all)
    la_tr, la_ev, ra_tr, ra_ev = left[train], left[evaluate], right[train], right[evaluate]
    y_tr, y_ev = y_all[train], y_all[evaluate]
    n = len(evaluate)
    hidden = (args.width, args.width)
    timings = {}

    # (a) training: partial_fit epoch by epoch, measures at the checkpoints
    from sklearn.neural_network import MLPClassifier

    t0 = time.perf_counter()
    net_a = MLPClassifier(hidden_layer_sizes=hidden, random_state=0)
    net_b = MLPClassifier(hidden_layer_sizes=hidden, random_state=1)
    sizes = [32, *hidden, 10]
    train_rows, train_acc = [], {"left net A": [], "right net B": []}
    input_m = measures(la_ev, ra_ev, **kw)
    for epoch in range(0, max(args.epochs) + 1):
        if epoch > 0:
            net_a.partial_fit(la_tr, y_tr, classes=np.arange(10))
            net_b.partial_fit(ra_tr, y_tr, classes=np.arange(10))
        if epoch in args.epochs:
            a_, b_ = (glorot_network(sizes, 100), glorot_network(sizes, 101)) if epoch == 0 else (net_a, net_b)
            train_rows.append({"hidden": measures(last_hidden(a_, la_ev), last_hidden(b_, ra_ev), **kw), "input": input_m})
            train_acc["left net A"].append(accuracy(a_, la_ev, y_ev))
            train_acc["right net B"].append(accuracy(b_, ra_ev, y_ev))
    timings["(a) training"] = time.perf_counter() - t0
    print(f"(a) training: linear CKA of last hidden layers at epochs {args.epochs}: "
          + ", ".join(f"{r['hidden']['linear CKA']:.3f}" for r in train_rows))  # fmt: skip

    # (b) degradation of the right-half view; the left-half network is fixed
    t0 = time.perf_counter()
    fixed_a = train_mlp(la_tr, y_tr, hidden, 0, args.max_iter)
    ha = last_hidden(fixed_a, la_ev)
    degr = {}
    for kind, levels in (("noise", args.noise), ("occlusion", args.occlusion)):
        rows, accs = [], []
        for i, level in enumerate(levels):
            vb_tr = degrade(ra_tr, kind, level, seed=1000 + i)
            vb_ev = degrade(ra_ev, kind, level, seed=2000 + i)
            net = train_mlp(vb_tr, y_tr, hidden, 1, args.max_iter)
            rows.append({"hidden": measures(ha, last_hidden(net, vb_ev), **kw), "input": measures(la_ev, vb_ev, **kw)})
            accs.append(accuracy(net, vb_ev, y_ev))
        degr[kind] = {"levels": levels, "rows": rows, "accuracy_B": accs}
        print(f"(b) {kind}: linear CKA of last hidden layers at {levels}: " + ", ".join(f"{r['hidden']['linear CKA']:.3f}" for r in rows))
    acc_a_fixed = accuracy(fixed_a, la_ev, y_ev)
    timings["(b) degradation"] = time.perf_counter() - t0

    # (c) width
    t0 = time.perf_counter()
    width_rows = {s: [] for s in args.width_seeds}
    width_acc = {s: [] for s in args.width_seeds}
    for s in args.width_seeds:
        for w in args.widths:
            na = train_mlp(la_tr, y_tr, (w, w), s, args.max_iter)
            nb = train_mlp(ra_tr, y_tr, (w, w), s + 1, args.max_iter)
            width_rows[s].append({"hidden": measures(last_hidden(na, la_ev), last_hidden(nb, ra_ev), **kw), "input": input_m})
            width_acc[s].append((accuracy(na, la_ev, y_ev), accuracy(nb, ra_ev, y_ev)))
        print(f"(c) width, seeds {s}/{s + 1}: linear CKA at {args.widths}: " + ", ".join(f"{r['hidden']['linear CKA']:.3f}" for r in width_rows[s]))
    timings["(c) width"] = time.perf_counter() - t0

    # ------------------------------------------------------------------ figures
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pk = {"k": args.k, "n": n, "n_permutations": args.permutations}
    fig, ax = plt.subplots(1, 3, figsize=(18, 5))
    plot_sweep(ax, [max(e, 0.5) for e in args.epochs], train_rows, "epochs of training (0 drawn at 0.5: untrained)",
               "(a) training", acc=train_acc, **pk)  # fmt: skip
    for a in ax:
        a.set_xscale("log", base=2)
    fig.suptitle(f"Left-half vs right-half digit networks MLP{hidden}, trained independently; n = {n} held-out digits")
    fig.tight_layout()
    fig.savefig(out / "modalities_training.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(2, 3, figsize=(18, 9.5))
    for row, kind, xl in ((0, "noise", "σ of Gaussian noise on the right-half pixels (pixels in [0, 1])"),
                          (1, "occlusion", "fraction of right-half pixels occluded (set to 0)")):  # fmt: skip
        d = degr[kind]
        plot_sweep(ax[row], d["levels"], d["rows"], xl, f"(b) {kind}",
                   acc={"left net A (fixed)": [acc_a_fixed] * len(d["levels"]), "right net B": d["accuracy_B"]}, **pk)  # fmt: skip
    fig.suptitle(f"Degrading the second view: right-half network retrained on the degraded view; MLP{hidden}; n = {n}")
    fig.tight_layout()
    fig.savefig(out / "modalities_degradation.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(1, 3, figsize=(18, 5))
    s0 = args.width_seeds[0]
    plot_sweep(ax, args.widths, width_rows[s0], "hidden width w (layers (w, w))", "(c) width", **pk)
    for s in args.width_seeds[1:]:  # further seed pairs: the same colours, open markers, no labels
        for c, m in zip(("C0", "C1", "C2", "C3"), NORMALISED):
            ax[0].plot(args.widths, [r["hidden"][m] for r in width_rows[s]], marker="o", mfc="none", ls=":", color=c)
        for c, m in zip(("C4", "C5", "C6"), UNNORMALISED):
            ax[1].plot(args.widths, [r["hidden"][m] for r in width_rows[s]], marker="o", mfc="none", ls=":", color=c)
        ax[2].plot(args.widths, [r["hidden"]["hsic_test z"] for r in width_rows[s]], marker="o", mfc="none", ls=":", color="C7")
    for a in ax:
        a.set_xscale("log", base=2)
    fig.suptitle(f"Width: left/right networks (w, w), seed pairs {[(s, s + 1) for s in args.width_seeds]} "
                 f"(filled: first pair; open: others); n = {n}")  # fmt: skip
    fig.tight_layout()
    fig.savefig(out / "modalities_width.png", dpi=110)
    plt.close(fig)

    # ------------------------------------------------------------------ summary
    total = time.perf_counter() - t_start
    first, last = train_rows[0]["hidden"], train_rows[-1]["hidden"]
    nz = degr["noise"]["rows"]
    lines = [
        "# Two modalities of one reality: left and right halves of digits",
        "",
        "Command: `" + " ".join(["python examples/two_modalities.py", *cli_args]) + "`",
        "",
        f"Views: left half / right half of each 8×8 digit (32 pixels each). Networks MLP(w, w), ReLU, Adam, one per view, "
        f"trained independently on {len(train)} digits; measures on the other n = {n} between the two last hidden layers "
        f"(and between the two inputs). hsic_test: RBF kernel (median σ), permutation, B = {args.permutations} "
        f"(smallest p-value {1 / (args.permutations + 1):.4f}). Mutual kNN: k = {args.k} (chance {args.k / (n - 1):.4f}).",
        "",
        "Scales: linear CKA, RBF CKA, dCor² (debiased) and mutual kNN are normalised and share an axis; HSIC and raw D are "
        "in the units of the representations (not comparable across sweeps where the activations' scale changes); "
        "scaled D divides each representation by its root mean squared pairwise distance (0 = identical distances); "
        "the p-value is a test outcome, not an effect size (z = (n·HSIC_b − permutation mean)/permutation sd shows how far past "
        "the floor the evidence lies).",
        "",
        "## Headlines",
        "",
        f"- (a) training: linear CKA between the last hidden layers {first['linear CKA']:.3f} (untrained) → "
        f"{last['linear CKA']:.3f} (epoch {args.epochs[-1]}); RBF CKA {first['RBF CKA']:.3f} → {last['RBF CKA']:.3f}; "
        f"dCor² {first['dCor²']:.3f} → {last['dCor²']:.3f}; mutual kNN {first['mutual kNN']:.3f} → {last['mutual kNN']:.3f}. "
        f"Between the inputs themselves: linear CKA {input_m['linear CKA']:.3f}, RBF CKA {input_m['RBF CKA']:.3f}, "
        f"dCor² {input_m['dCor²']:.3f}, mutual kNN {input_m['mutual kNN']:.3f}. Accuracy (A, B): "
        f"{train_acc['left net A'][0]:.3f}, {train_acc['right net B'][0]:.3f} → {train_acc['left net A'][-1]:.3f}, {train_acc['right net B'][-1]:.3f}.",
        f"- (b) noise: linear CKA {nz[0]['hidden']['linear CKA']:.3f} (σ = {args.noise[0]}) → {nz[-1]['hidden']['linear CKA']:.3f} "
        f"(σ = {args.noise[-1]}); hsic_test p-value {nz[0]['hidden']['hsic_test p']:.4f} → {nz[-1]['hidden']['hsic_test p']:.4f}; "
        f"accuracy of the degraded-view network {degr['noise']['accuracy_B'][0]:.3f} → {degr['noise']['accuracy_B'][-1]:.3f}.",
        f"- (c) width {args.widths[0]} → {args.widths[-1]} (seeds {s0}/{s0 + 1}): linear CKA {width_rows[s0][0]['hidden']['linear CKA']:.3f} → "
        f"{width_rows[s0][-1]['hidden']['linear CKA']:.3f}, mutual kNN {width_rows[s0][0]['hidden']['mutual kNN']:.3f} → "
        f"{width_rows[s0][-1]['hidden']['mutual kNN']:.3f}, raw D {width_rows[s0][0]['hidden']['D (raw)']:.3g} → {width_rows[s0][-1]['hidden']['D (raw)']:.3g}.",
        "",
        "## (a) Training (epoch 0: untrained, Glorot initialisation)",
        "",
        *table(args.epochs, train_rows, "epoch", {"acc A": train_acc["left net A"], "acc B": train_acc["right net B"]}),
        "",
        f"## (b) Degradation of the right-half view (left-half network fixed, accuracy {acc_a_fixed:.3f})",
        "",
        "Noise:",
        "",
        *table(args.noise, degr["noise"]["rows"], "σ", {"acc B": degr["noise"]["accuracy_B"]}),
        "",
        "Occlusion:",
        "",
        *table(args.occlusion, degr["occlusion"]["rows"], "fraction", {"acc B": degr["occlusion"]["accuracy_B"]}),
        "",
        "## (c) Width",
        "",
    ]
    for s in args.width_seeds:
        lines += [f"Seeds {s} (left) / {s + 1} (right):", "",
                  *table(args.widths, width_rows[s], "w", {"acc A": [a for a, _ in width_acc[s]], "acc B": [b for _, b in width_acc[s]]}), ""]  # fmt: skip
    lines += ["Timings (s, this shared 2-core machine): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()) + f"; total {total:.1f}."]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    results = {
        "n": n, "width": args.width, "k": args.k, "n_permutations": args.permutations,
        "training": {"epochs": args.epochs, "rows": train_rows, "accuracy": train_acc},
        "degradation": {**degr, "accuracy_A": acc_a_fixed},
        "width": {"widths": args.widths, "rows": {str(s): r for s, r in width_rows.items()},
                  "accuracy": {str(s): a for s, a in width_acc.items()}},
        "inputs": input_m, "timings_s": timings, "total_s": total,
    }  # fmt: skip
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(f"wrote {out / 'modalities_training.png'}, modalities_degradation.png, modalities_width.png, summary.md in {total:.1f} s")
    return results


if __name__ == "__main__":
    with one_blas_thread():
        main()
