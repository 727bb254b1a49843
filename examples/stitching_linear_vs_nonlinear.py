"""Linear, kernel and MLP stitching between two independently trained networks (Remark 3 on data).

    python examples/stitching_linear_vs_nonlinear.py [--out stitching-nonlinear-out] [--quick]
                                                     [--figure docs/figures/stitching_linear_vs_nonlinear.png]

Two MLPs (scikit-learn ``MLPClassifier``, hidden layers 128-64-32, ReLU; the
networks of ``examples/stitching_digits.py``, whose helpers are reused) are
trained from seeds 0 and 1 on one half of scikit-learn's 8×8 digits; their
activations on the other half (input, hidden1..3, logits) are written as
activation stores.  Every layer i of network A is stitched into every layer j
of network B and B's linear head (one-hot targets, squared loss, 30 % of the
rows held out by the seeded hash of ``bigalign.stitch``), with three stitch
classes:

* linear: ``kind="linear"`` (ridge chosen by 5-fold cross-validation),
* kernel: ``kind="kernel"`` — ridge on [x, c·φ(x)], φ random Fourier features
  of an RBF kernel with the median bandwidth (ridge by cross-validation),
* MLP: ``kind="mlp"`` — the cross-validated linear stitch plus α·m(x), m a
  one-hidden-layer MLP trained on the linear residual, α ≥ 0 by line search.

Next to each: CKA (debiased, linear) of the two layers, the held-out stitched
risk R₂(g₂∘s∘f₁) with its standard error, the excess risk over B's own head and
Theorem 1's bound (√R₂ + κ₂√Ã)² (linear Ã; and with the class's Ã, Remark 3).

Checks (the numbers returned by ``main`` and asserted by tests/test_stitching_nonlinear.py):

* guaranteed — on the fitting rows the kernel stitch with ridge 0 has a residual
  ≤ the linear one at ridge 0 (up to 1e-10 relative rounding), and the MLP
  stitch's residual and stitched risk are ≤ those of its linear part (exactly);
* guaranteed — Theorem 1 (Minkowski's inequality, any stitch): the regression
  stitch's risk ≤ its bound on the held-out rows, for every kind;
* expected, not guaranteed — on held-out rows a non-linear stitch is not worse
  than the linear one by more than 2 combined standard errors (both classes
  contain the linear maps and choose their ridge by cross-validation; what is
  left is sampling noise).

Writes into --out: ``stitching_linear_vs_nonlinear.png``, ``summary.md`` and ``results.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import runpy
import sys
import time
from pathlib import Path

import numpy as np

import bigalign

HERE = Path(__file__).resolve().parent
LAYERS = ["input", "hidden1", "hidden2", "hidden3", "logits"]
KINDS = ("linear", "kernel", "mlp")
# "≤ up to rounding" for the kernel's fitting residual (normal equations of merged moments): relative to the
# total variance E‖y − ȳ‖² of the target layer, the scale of the residual's rounding (a perfect fit, e.g.
# input → input, gives 0 for one class and ~1e-15 × that variance for the other)
RTOL = 1e-10
THM_RTOL = 1e-12  # Theorem 1 (regression stitch ≤ bound), as in examples/stitching_digits.py


def spearman(a, b) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(np.ravel(a), np.ravel(b)).statistic)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="stitching-nonlinear-out")
    p.add_argument("--figure", default=None, help="also save the figure here (e.g. docs/figures/...)")
    p.add_argument("--holdout", type=float, default=0.3)
    p.add_argument("--quick", action="store_true", help="smaller networks, fewer features and MLP epochs (< 60 s, for tests)")
    cli_args = list(sys.argv[1:] if argv is None else argv)
    args = p.parse_args(cli_args)
    digits_helpers = runpy.run_path(str(HERE / "stitching_digits.py"), run_name="stitching_digits_helpers")
    train_networks, write_stores = digits_helpers["train_networks"], digits_helpers["write_stores"]
    from bigalign.demo import HIDDEN, forward_activations

    if args.quick:
        hidden, max_iter, n_features, mlp = (32, 16, 16), 40, 128, dict(hidden=(32,), epochs=6, batch_size=128, learning_rate=3e-3)
        layers = ["input", "hidden2", "logits"]  # 9 pairs: the CI-sized run
    else:
        hidden, max_iter, n_features, mlp = HIDDEN, 200, 256, dict(hidden=(128,), epochs=40, batch_size=64, learning_rate=1e-3)
        layers = LAYERS
    kernel_kw = dict(kernel="rbf", method="rff", n_features=n_features)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    from sklearn.datasets import load_digits

    digits = load_digits()
    x_all = (digits.data / 16.0).astype(np.float64)
    y_all = digits.target
    order = np.random.default_rng(0).permutation(len(y_all))
    train, evaluate = np.sort(order[: len(order) // 2]), np.sort(order[len(order) // 2 :])
    nets = train_networks(x_all[train], y_all[train], [0, 1], max_iter, hidden)
    nets.pop("untrained")
    accuracy = {k: float(np.mean(np.argmax(forward_activations(v, x_all[evaluate])["logits"], 1) == y_all[evaluate]))
                for k, v in nets.items()}  # fmt: skip
    stores = write_stores(nets, x_all[evaluate], evaluate, out / "stores")
    a, b = stores["seed0"], stores["seed1"]
    labels = y_all[evaluate]
    cka = bigalign.compare_layers(a, b, metric="cka", layers_a=layers, layers_b=layers, scheduler="sync").values.filled(np.nan)
    total_var = {lb: float(np.mean(np.sum((np.asarray(b[lb], np.float64) - np.asarray(b[lb], np.float64).mean(0)) ** 2, 1)))
                 for lb in layers}  # fmt: skip

    common = dict(targets=labels, holdout=args.holdout, seed=0, scheduler="sync")
    rows = []
    t0 = time.perf_counter()
    timing = {k: 0.0 for k in ("kernel", "kernel_ridge0", "mlp")}
    for i, la in enumerate(layers):
        for j, lb in enumerate(layers):
            t = time.perf_counter()
            ker = bigalign.stitch(a[la], b[lb], kind="kernel", ridge="cv", **kernel_kw, **common)
            timing["kernel"] += time.perf_counter() - t
            t = time.perf_counter()
            ker0 = bigalign.stitch(a[la], b[lb], kind="kernel", ridge=0.0, **kernel_kw, **common)
            timing["kernel_ridge0"] += time.perf_counter() - t
            t = time.perf_counter()
            mlpr = bigalign.stitch(a[la], b[lb], kind="mlp", ridge="cv", **mlp, **common)
            timing["mlp"] += time.perf_counter() - t
            res = {"linear": ker.baseline, "kernel": ker, "mlp": mlpr}  # linear: kind="linear", same split and ridge="cv"
            row = {"a": la, "b": lb, "cka": float(cka[i, j])}
            for kind, r in res.items():
                h, se = r.holdout, r.holdout.stderr
                row[kind] = {
                    "stitched": h.stitched_risk, "stitched_se": se["stitched_risk"], "excess": h.excess_risk,
                    "residual": h.residual, "residual_se": se["residual"], "regression": h.regression_stitch_risk,
                    "bound": h.bound, "risk_2": h.risk_2, "fit_residual": r.fit.residual, "fit_stitched": r.fit.stitched_risk,
                }  # fmt: skip
            row["kernel_ridge0"] = {"fit_residual": ker0.fit.residual, "linear_fit_residual": ker0.baseline.fit.residual,
                                    "total_variance": total_var[lb]}  # fmt: skip
            row["mlp_linear_part"] = {"fit_residual": mlpr.baseline.fit.residual, "fit_stitched": mlpr.baseline.fit.stitched_risk}
            row["mlp_alpha"] = (mlpr.parameters["alpha"], mlpr.parameters["alpha_task"])
            rows.append(row)
    t_stitch = time.perf_counter() - t0
    n = len(rows)

    # ------------------------------------------------------------------ checks
    kernel_fit_le = sum(r["kernel_ridge0"]["fit_residual"] <= r["kernel_ridge0"]["linear_fit_residual"] + RTOL * r["kernel_ridge0"]["total_variance"]
                        for r in rows)  # fmt: skip
    mlp_fit_le = sum(r["mlp"]["fit_residual"] <= r["mlp_linear_part"]["fit_residual"] for r in rows)
    mlp_fit_st_le = sum(r["mlp"]["fit_stitched"] <= r["mlp_linear_part"]["fit_stitched"] for r in rows)
    thm1 = {k: sum(r[k]["regression"] <= r[k]["bound"] * (1 + THM_RTOL) for r in rows) for k in KINDS}

    def within(kind: str) -> int:
        return sum(r[kind]["stitched"] <= r["linear"]["stitched"] + 2 * math.hypot(r[kind]["stitched_se"], r["linear"]["stitched_se"])
                   for r in rows)  # fmt: skip

    def better(kind: str) -> int:  # significantly better: lower by more than 2 combined standard errors
        return sum(r[kind]["stitched"] < r["linear"]["stitched"] - 2 * math.hypot(r[kind]["stitched_se"], r["linear"]["stitched_se"])
                   for r in rows)  # fmt: skip

    def col(kind: str, q: str) -> np.ndarray:
        return np.array([r[kind][q] for r in rows])

    cka_v = np.array([r["cka"] for r in rows])
    rho = {k: spearman(cka_v, col(k, "excess")) for k in KINDS}
    gain = {k: float(np.median(col(k, "stitched") / col("linear", "stitched"))) for k in ("kernel", "mlp")}
    res_gain = {k: float(np.median(col(k, "residual") / col("linear", "residual"))) for k in ("kernel", "mlp")}
    tight = {k: float(np.median(col(k, "bound") / col(k, "stitched"))) for k in KINDS}

    # ------------------------------------------------------------------ figure
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"linear": "#4c72b0", "kernel": "#dd8452", "mlp": "#55a868"}
    fig, ax = plt.subplots(1, 4, figsize=(20, 4.8))
    lin_st = col("linear", "stitched")
    for kind, mk in (("kernel", "o"), ("mlp", "s")):
        ax[0].errorbar(lin_st, col(kind, "stitched"), xerr=col("linear", "stitched_se"), yerr=col(kind, "stitched_se"), fmt=mk,
                       ms=4, color=colours[kind], alpha=0.7, lw=0.5, capsize=0,
                       label=f"{kind} (median ratio {gain[kind]:.2f}; {better(kind)}/{n} lower by > 2 s.e.)")  # fmt: skip
    lo, hi = lin_st.min() * 0.8, max(lin_st.max(), col("kernel", "stitched").max(), col("mlp", "stitched").max()) * 1.2
    ax[0].plot([lo, hi], [lo, hi], color="grey", lw=0.8)
    ax[0].set(xscale="log", yscale="log", xlabel="linear stitched risk (held-out, ±1 s.e.)", ylabel="non-linear stitched risk (held-out)",
              title="Stitched risk R₂(g₂∘s∘f₁): non-linear vs linear")  # fmt: skip
    ax[0].legend(fontsize=8, loc="upper left")
    for kind, mk in (("linear", "^"), ("kernel", "o"), ("mlp", "s")):
        ax[1].scatter(cka_v, col(kind, "excess"), s=18, marker=mk, color=colours[kind], label=f"{kind} (Spearman ρ = {rho[kind]:.2f})")
    ax[1].axhline(0, color="grey", lw=0.8)
    ax[1].set(xlabel="linear CKA (debiased) of layer i of A and layer j of B", ylabel="stitched risk − R₂(H₂) (held-out)",
              title="CKA vs excess stitching risk (< 0: beats B's linear head)")  # fmt: skip
    ax[1].legend(fontsize=8)
    k0 = np.array([r["kernel_ridge0"]["fit_residual"] for r in rows])
    l0 = np.array([r["kernel_ridge0"]["linear_fit_residual"] for r in rows])
    ax[2].scatter(l0, k0, s=18, color=colours["kernel"], label=f"kernel, ridge 0 ({kernel_fit_le}/{n} ≤ linear)")
    ax[2].scatter(col("mlp_linear_part", "fit_residual"), col("mlp", "fit_residual"), s=18, marker="s", color=colours["mlp"],
                  label=f"MLP vs its linear part ({mlp_fit_le}/{n} ≤)")  # fmt: skip
    hi = l0.max() * 2
    lo = min(v[v > 1e-9 * hi].min() for v in (k0, l0)) * 0.5  # perfect fits (input → input: 0 up to rounding) are off the log axes
    ax[2].plot([lo, hi], [lo, hi], color="grey", lw=0.8)
    ax[2].set(xscale="log", yscale="log", xlim=(lo, hi), ylim=(lo, hi), xlabel="linear residual E‖xS+b − y‖² (fitting rows)",
              ylabel="non-linear residual (fitting rows)", title="Never worse than linear on the fitting rows")  # fmt: skip
    ax[2].legend(fontsize=8, loc="upper left")
    for kind, mk in (("linear", "^"), ("kernel", "o"), ("mlp", "s")):
        ax[3].scatter(col(kind, "regression"), col(kind, "bound"), s=18, marker=mk, color=colours[kind],
                      label=f"{kind}: {thm1[kind]}/{n} hold, median bound/risk {tight[kind]:.1f}")  # fmt: skip
    lo = min(col(k, "regression").min() for k in KINDS) * 0.8
    hi = max(col(k, "bound").max() for k in KINDS) * 1.2
    ax[3].plot([lo, hi], [lo, hi], color="grey", lw=0.8)
    ax[3].set(xscale="log", yscale="log", xlabel="regression-stitch risk R₂(g₂∘s∘f₁) (held-out)",
              ylabel="Theorem 1 bound (√R₂ + κ₂√Ã)², Ã of the class", title="Theorem 1 with Ã over each class (Remark 3)")  # fmt: skip
    ax[3].legend(fontsize=8, loc="upper left")
    fig.suptitle(f"Stitching every layer of MLP seed 0 into every layer (and head) of MLP seed 1 — digits, n = {len(labels)} "
                 f"({rows and int(round(args.holdout * 100))} % held out), one-hot targets, squared loss")  # fmt: skip
    fig.tight_layout()
    fig.savefig(out / "stitching_linear_vs_nonlinear.png", dpi=100)
    if args.figure:
        Path(args.figure).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.figure, dpi=100)
    plt.close(fig)

    # ------------------------------------------------------------------ summary
    first = rows[0]
    lines = [
        "# Linear, kernel and MLP stitching between two digits MLPs",
        "",
        "Command: `" + " ".join(["python examples/stitching_linear_vs_nonlinear.py", *cli_args]) + "`",
        "",
        f"Networks: MLP{hidden} (ReLU) from seeds 0 and 1, trained on {len(train)} digits; accuracy on the other "
        f"{len(evaluate)}: " + ", ".join(f"{k} {v:.3f}" for k, v in accuracy.items()) + ". "
        f"Stitching on those {len(evaluate)} digits ({n} layer pairs, A → B): one-hot targets, squared loss, "
        f"ridge by 5-fold cross-validation; kernel: RBF, median bandwidth, {n_features} random Fourier features; "
        f"MLP: hidden {mlp['hidden']}, {mlp['epochs']} epochs, minibatch {mlp['batch_size']}, Adam {mlp['learning_rate']:g}.",
        "",
        "| check | result |",
        "|---|---|",
        f"| kernel (ridge 0) residual ≤ linear (ridge 0), fitting rows (guaranteed, up to {RTOL:g}) | {kernel_fit_le}/{n} |",
        f"| MLP residual ≤ its linear part, fitting rows (guaranteed, exact) | {mlp_fit_le}/{n} |",
        f"| MLP stitched risk ≤ its linear part, fitting rows (guaranteed, exact) | {mlp_fit_st_le}/{n} |",
        "| Theorem 1, regression stitch ≤ bound, held-out (guaranteed) — linear / kernel / MLP | "
        + " / ".join(f"{thm1[k]}/{n}" for k in KINDS) + " |",
        f"| held-out stitched risk ≤ linear + 2 s.e. (expected) — kernel / MLP | {within('kernel')}/{n} / {within('mlp')}/{n} |",
        f"| held-out stitched risk < linear − 2 s.e. (significantly better) — kernel / MLP | {better('kernel')}/{n} / {better('mlp')}/{n} |",
        f"| median held-out stitched risk / linear — kernel / MLP | {gain['kernel']:.3f} / {gain['mlp']:.3f} |",
        f"| median held-out residual E‖s(f₁) − f₂‖² / linear — kernel / MLP | {res_gain['kernel']:.3f} / {res_gain['mlp']:.3f} |",
        "| median Theorem 1 bound / stitched risk, held-out — linear / kernel / MLP | " + " / ".join(f"{tight[k]:.1f}" for k in KINDS) + " |",
        "| Spearman ρ(CKA, held-out excess risk) — linear / kernel / MLP | " + " / ".join(f"{rho[k]:.3f}" for k in KINDS) + " |",
        "",
        "Held-out stitched risk ± standard error per layer pair (B's own head: R₂).",
        "",
        "| A layer → B layer | CKA | R₂ | linear | kernel | MLP | linear bound |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['a']} → {r['b']} | {r['cka']:.3f} | {r['linear']['risk_2']:.4f} | "
                     + " | ".join(f"{r[k]['stitched']:.4f} ± {r[k]['stitched_se']:.4f}" for k in KINDS)
                     + f" | {r['linear']['bound']:.3f} |")  # fmt: skip
    total = time.perf_counter() - t_start
    lines += ["", f"Total time {total:.1f} s (stitching {t_stitch:.1f} s: kernel {timing['kernel']:.1f} s, kernel at ridge 0 "
              f"{timing['kernel_ridge0']:.1f} s, MLP {timing['mlp']:.1f} s; one shared machine, a single run)."]  # fmt: skip
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    (out / "results.json").write_text(json.dumps({"accuracy": accuracy, "rows": rows}))
    print(f"{n} stitches: kernel residual ≤ linear on fitting rows {kernel_fit_le}/{n}, MLP {mlp_fit_le}/{n}; held-out within "
          f"2 s.e. kernel {within('kernel')}/{n}, MLP {within('mlp')}/{n}; median stitched/linear kernel {gain['kernel']:.3f}, "
          f"MLP {gain['mlp']:.3f}")  # fmt: skip
    print(f"wrote {out / 'stitching_linear_vs_nonlinear.png'}, {out / 'summary.md'} in {total:.1f} s")
    return {
        "n_stitches": n, "kernel_fit_residual_le_linear": kernel_fit_le, "mlp_fit_residual_le_linear": mlp_fit_le,
        "mlp_fit_stitched_le_linear": mlp_fit_st_le, "theorem1_regression_holdout": thm1,
        "kernel_holdout_within_2se": within("kernel"), "mlp_holdout_within_2se": within("mlp"),
        "median_stitched_ratio": gain, "spearman_cka_excess": rho, "seconds": total, "first": first["a"],
    }  # fmt: skip


if __name__ == "__main__":
    from threadpoolctl import threadpool_limits

    # small matrices: one BLAS thread is fastest (see examples/stitching_digits.py)
    with threadpool_limits(limits=1, user_api="blas"):
        main()
