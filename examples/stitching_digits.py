"""Stitching vs alignment on real networks: the experiment the paper (arXiv:2502.14047) does not run.

    python examples/stitching_digits.py [--out stitching-out] [--seeds 0 1 2] [--quick]

Several small MLPs (scikit-learn ``MLPClassifier``, hidden layers 128-64-32, ReLU;
the architecture of ``bigalign.demo``) are trained from different seeds on one
half of scikit-learn's 8×8 digits; a fourth network of the same shape keeps its
random initialisation (a control).  Their activations on the *other* half
(input, hidden1..3, logits) are written as activation stores with sample ids.
For every pair of networks and every pair of layers, ``stitching_matrix``
measures in one streaming pass per pair of networks:

* linear CKA and uncentred kernel alignment (KA),
* the linear head (probe) of every layer and its risk R,
* the best linear stitch of layer i of network A into layer j of network B and
  B's head, its risk and excess risk, on the fitting rows and on held-out rows,
* Theorem 1's bound (√R₂ + κ₂√Ã₂)², κ₂ = ‖W₂‖₂ (linear head).

Targets: one-hot labels, squared loss (R = mean over samples of ‖ŷ − onehot‖²),
the paper's setting (squared-loss risks, linear heads).  Logits would make the
task depend on network B; one-hot labels are one task shared by all networks.
Stitches and heads use ridge = 0 with an intercept; 30 % of the evaluation
half is held out (stitches and heads are fitted on the other 70 %).

Writes into --out: ``stitching_digits.png`` (CKA/KA vs measured stitching risk,
Lemma 2 on data, Theorem 1's bound vs the measured risk), ``stitching_matrices.png``
(layer × layer heatmaps for one pair), ``summary.md`` and ``results.json``.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from itertools import combinations
from pathlib import Path
from types import SimpleNamespace

import numpy as np

import bigalign
from bigalign.demo import HIDDEN, forward_activations
from bigalign import stitching_matrix

LAYERS = ["input", "hidden1", "hidden2", "hidden3", "logits"]
RTOL = 1e-12  # inequalities are checked up to this relative rounding


def train_networks(x: np.ndarray, labels: np.ndarray, seeds: list[int], max_iter: int, hidden: tuple[int, ...]):
    """One MLPClassifier per seed, plus an untrained network of the same shape (sklearn's Glorot init)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    nets = {}
    for seed in seeds:
        mlp = MLPClassifier(hidden_layer_sizes=hidden, max_iter=max_iter, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            mlp.fit(x, labels)
        nets[f"seed{seed}"] = mlp
    rng = np.random.default_rng(12345)
    sizes = [x.shape[1], *hidden, len(np.unique(labels))]
    coefs, intercepts = [], []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        bound = np.sqrt(6.0 / (fan_in + fan_out))  # sklearn's initialisation for ReLU networks
        coefs.append(rng.uniform(-bound, bound, size=(fan_in, fan_out)))
        intercepts.append(rng.uniform(-bound, bound, size=fan_out))
    nets["untrained"] = SimpleNamespace(coefs_=coefs, intercepts_=intercepts)
    return nets


def write_stores(nets: dict, x: np.ndarray, ids: np.ndarray, directory: Path) -> dict[str, bigalign.ActivationStore]:
    stores = {}
    for name, net in nets.items():
        path = directory / f"{name}.zarr"
        acts = forward_activations(net, x)
        with bigalign.ActivationWriter(path, mode="w", attrs={"model": f"MLP{HIDDEN} {name}"}) as w:
            w.append(acts, sample_ids=ids)
        stores[name] = bigalign.open_activations(path)
    return stores


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(np.ravel(a), np.ravel(b)).statistic)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="stitching-out")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--max-iter", type=int, default=200)
    p.add_argument("--holdout", type=float, default=0.3)
    p.add_argument("--quick", action="store_true", help="2 seeds, smaller networks, 40 epochs (for tests)")
    import sys

    cli_args = list(sys.argv[1:] if argv is None else argv)
    args = p.parse_args(cli_args)
    hidden = HIDDEN
    if args.quick:
        args.seeds, args.max_iter, hidden = args.seeds[:2], 40, (32, 16, 16)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    from sklearn.datasets import load_digits

    digits = load_digits()
    x_all = (digits.data / 16.0).astype(np.float64)
    y_all = digits.target
    order = np.random.default_rng(0).permutation(len(y_all))
    train, evaluate = np.sort(order[: len(order) // 2]), np.sort(order[len(order) // 2 :])
    t0 = time.perf_counter()
    nets = train_networks(x_all[train], y_all[train], args.seeds, args.max_iter, hidden)
    accuracy = {k: float(np.mean(np.argmax(forward_activations(v, x_all[evaluate])["logits"], 1) == y_all[evaluate]))
                for k, v in nets.items()}  # fmt: skip
    print(f"trained {len(args.seeds)} networks in {time.perf_counter() - t0:.1f} s; accuracy on the evaluation half: "
          + ", ".join(f"{k} {v:.3f}" for k, v in accuracy.items()))  # fmt: skip
    stores = write_stores(nets, x_all[evaluate], evaluate, out / "stores")
    labels = y_all[evaluate]  # plain array in the stores' row order; 1-D integers -> one-hot targets

    names = list(stores)
    pairs = [(a, b) for a, b in combinations(names, 2)]
    matrices = {}
    t0 = time.perf_counter()
    for a, b in pairs:
        matrices[(a, b)] = stitching_matrix(stores[a], stores[b], targets=labels, ridge=0.0, holdout=args.holdout,
                                            seed=0, reverse=True, scheduler="sync")  # fmt: skip
    # the same first pair with ridge chosen by 5-fold cross-validation: smaller head norms κ₂, tighter bound
    a0, b0 = pairs[0]
    cv_matrix = stitching_matrix(stores[a0], stores[b0], targets=labels, ridge="cv", holdout=args.holdout, seed=0,
                                 reverse=False, scheduler="sync")  # fmt: skip
    t_stitch = time.perf_counter() - t0
    print(f"{len(pairs)} stitching matrices ({len(LAYERS)}×{len(LAYERS)}, both directions) in {t_stitch:.1f} s")

    # ------------------------------------------------------------------ checks
    rows = []
    lemma2_rel, thm1_fit, thm1_hold, thm1_reg_hold = [], [], [], []
    for (a, b), sm in matrices.items():
        cka, ka = sm.cka.values.filled(np.nan), sm.kernel_alignment.values.filled(np.nan)
        for direction in ("forward", "reverse"):
            st_fit = sm.values("stitched_risk", "fit", direction)
            r1_fit = sm.values("risk_1", "fit", direction)
            lemma2_rel.append(np.abs(st_fit - r1_fit) / r1_fit)
            # "≤ up to rounding": where Ã₂ = 0 (a layer stitched into an identical one) the bound is R₂ itself
            thm1_fit.append(st_fit <= sm.values("bound", "fit", direction) * (1 + RTOL))
            thm1_hold.append(sm.values("stitched_risk", "holdout", direction) <= sm.values("bound", "holdout", direction) * (1 + RTOL))
            thm1_reg_hold.append(sm.values("regression_stitch_risk", "holdout", direction) <= sm.values("bound", "holdout", direction) * (1 + RTOL))
        rows.append({
            "pair": f"{a} → {b}",
            "cka": cka, "ka": ka,
            "excess_holdout": sm.values("excess_risk", "holdout"),
            "excess_fit": sm.values("excess_risk", "fit"),
            "stitched_fit": sm.values("stitched_risk", "fit"), "stitched_holdout": sm.values("stitched_risk", "holdout"),
            "bound_fit": sm.values("bound", "fit"), "bound_holdout": sm.values("bound", "holdout"),
            "risk_1_fit": sm.values("risk_1", "fit"),
        })  # fmt: skip
    lemma2_max = float(np.max(np.concatenate([v.ravel() for v in lemma2_rel])))
    n_cells = sum(v.size for v in thm1_fit)
    ok_fit = int(sum(v.sum() for v in thm1_fit))
    ok_hold = int(sum(v.sum() for v in thm1_hold))
    ok_reg_hold = int(sum(v.sum() for v in thm1_reg_hold))

    # ------------------------------------------------------------------ figures
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 4, figsize=(19, 4.6))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    corr = {}
    for k, row in enumerate(rows):
        c = colours[k % len(colours)]
        trained = "untrained" not in row["pair"]
        mk = "o" if trained else "x"
        ax[0].scatter(row["cka"], row["excess_holdout"], s=22, color=c, marker=mk, label=row["pair"])
        ax[1].scatter(row["ka"], row["excess_holdout"], s=22, color=c, marker=mk, label=row["pair"])
        ax[2].scatter(row["risk_1_fit"], row["stitched_fit"], s=22, color=c, marker=mk, label=row["pair"])
        ax[3].scatter(row["stitched_fit"], row["bound_fit"], s=22, color=c, marker=mk, label=f"{row['pair']} (fit)")
        ax[3].scatter(row["stitched_holdout"], row["bound_holdout"], s=22, facecolors="none", edgecolors=c, marker="s")
        corr[row["pair"]] = (spearman(row["cka"], row["excess_holdout"]), spearman(row["ka"], row["excess_holdout"]))
    all_cka = np.concatenate([r["cka"].ravel() for r in rows])
    all_ka = np.concatenate([r["ka"].ravel() for r in rows])
    all_ex = np.concatenate([r["excess_holdout"].ravel() for r in rows])
    rho_cka, rho_ka = spearman(all_cka, all_ex), spearman(all_ka, all_ex)
    ax[0].set(xlabel="linear CKA (debiased)", ylabel="excess stitching risk (held-out)",
              title=f"CKA vs stitching (Spearman ρ = {rho_cka:.2f})")  # fmt: skip
    ax[1].set(xlabel="kernel alignment (KA)", ylabel="excess stitching risk (held-out)",
              title=f"KA vs stitching (Spearman ρ = {rho_ka:.2f})")  # fmt: skip
    for a_ in ax[:2]:
        a_.axhline(0, color="grey", lw=0.8)
    lo = min(min(r["risk_1_fit"].min(), r["stitched_fit"].min()) for r in rows)
    hi = max(max(r["risk_1_fit"].max(), r["stitched_fit"].max()) for r in rows)
    ax[2].plot([lo, hi], [lo, hi], color="grey", lw=0.8)
    ax[2].set(xscale="log", yscale="log", xlabel="R₁(H₁): head risk of layer i of A (fit)",
              ylabel="stitched risk R₂(g₂∘S∘f₁) (fit)", title=f"Lemma 2: equal (max rel. diff {lemma2_max:.1e})")  # fmt: skip
    cv_st, cv_bd = cv_matrix.values("stitched_risk", "holdout"), cv_matrix.values("bound", "holdout")
    cv_reg = cv_matrix.values("regression_stitch_risk", "holdout")
    ax[3].scatter(cv_st, cv_bd, s=26, color="black", marker="^", label=f"{a0} → {b0}, ridge = cv (held-out)")
    ax[3].legend(fontsize=7, loc="upper left")
    hi = max(max(r["stitched_fit"].max(), r["stitched_holdout"].max(), cv_st.max()) for r in rows) * 1.08
    diag = np.linspace(hi / 50, hi, 50)
    ax[3].plot(diag, diag, color="grey", lw=1.0)
    ax[3].text(hi * 0.97, hi * 0.75, "bound = risk", ha="right", va="top", fontsize=7, color="grey")
    ax[3].set(xlim=(0, hi), yscale="log", xlabel="measured stitched risk", ylabel="Theorem 1 bound (√R₂ + κ₂√Ã₂)²",
              title=f"Theorem 1: bound ≥ risk in {ok_fit}/{n_cells} (fit)")  # fmt: skip
    ax[0].legend(fontsize=7, loc="lower right")
    ax[3].text(0.02, 0.03, "filled: fit rows; squares: held-out rows", transform=ax[3].transAxes, ha="left", fontsize=7)
    fig.suptitle(f"Linear stitching between MLPs on sklearn digits (n = {len(labels)} images, one-hot targets, squared loss)")
    fig.tight_layout()
    fig.savefig(out / "stitching_digits.png", dpi=110)
    plt.close(fig)

    first = matrices[pairs[0]]
    fig = first.plot(("cka", "kernel_alignment", "excess_risk", "excess_bound"), split="holdout")
    fig.suptitle(f"{pairs[0][0]} (rows) into {pairs[0][1]} (columns), held-out rows")
    fig.tight_layout()
    fig.savefig(out / "stitching_matrices.png", dpi=110)
    plt.close(fig)

    # ------------------------------------------------------------------ summary
    r6 = first.remark6("fit")
    lines = [
        "# Linear stitching between MLPs on scikit-learn digits",
        "",
        "Command: `" + " ".join(["python examples/stitching_digits.py", *cli_args]) + "`",
        "",
        f"Networks: MLP{hidden} (ReLU), trained on {len(train)} digits ({args.max_iter} epochs max) from seeds "
        f"{args.seeds}, plus one untrained network; accuracy on the other {len(evaluate)} digits: "
        + ", ".join(f"{k} {v:.3f}" for k, v in accuracy.items()) + ".",
        f"Stitching on those {len(evaluate)} digits: targets one-hot labels, squared loss, ridge = 0, intercept; "
        f"{first.results[0][0].holdout.n_samples} rows held out, {first.results[0][0].fit.n_samples} fitting rows.",
        "",
        "| check | result |",
        "|---|---|",
        f"| Lemma 2: stitched risk = R₁(H₁) on the fitting rows | max relative difference {lemma2_max:.1e} over {n_cells} stitches |",
        f"| Theorem 1: stitched risk ≤ (√R₂ + κ₂√Ã₂)² (up to {RTOL:g} relative), fitting rows | {ok_fit}/{n_cells} |",
        f"| Theorem 1 with the regression stitch, held-out rows (guaranteed) | {ok_reg_hold}/{n_cells} |",
        f"| Theorem 1 with the best task stitch, held-out rows (not guaranteed) | {ok_hold}/{n_cells} |",
        f"| median bound / stitched risk, held-out rows, ridge = 0 ({a0} → {b0}) | {np.median(rows[0]['bound_holdout'] / rows[0]['stitched_holdout']):.1f} |",
        f"| median bound / stitched risk, held-out rows, ridge = cv ({a0} → {b0}) | {np.median(cv_bd / cv_st):.1f} |",
        f"| Theorem 1 with ridge = cv, held-out rows: regression stitch (guaranteed) / task stitch | {int((cv_reg <= cv_bd * (1 + RTOL)).sum())}/{cv_st.size} / {int((cv_st <= cv_bd * (1 + RTOL)).sum())}/{cv_st.size} |",
        f"| Spearman ρ(CKA, held-out excess stitching risk), all layer pairs | {rho_cka:.3f} |",
        f"| Spearman ρ(KA, held-out excess stitching risk), all layer pairs | {rho_ka:.3f} |",
        "",
        "| pair (A → B) | ρ(CKA, excess) | ρ(KA, excess) | mean CKA | mean held-out excess risk |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        rc, rk = corr[row["pair"]]
        lines.append(f"| {row['pair']} | {rc:.3f} | {rk:.3f} | {np.nanmean(row['cka']):.3f} | {np.mean(row['excess_holdout']):.4f} |")
    lines += [
        "",
        f"Remark 6 for {pairs[0][0]} → {pairs[0][1]} (fitting rows): each layer's head risk and the best Theorem 1 bound "
        "through any layer of the other network.",
        "",
        "| layer of A | R(H) | min over B-layers of the bound | attained at |",
        "|---|---:|---:|---|",
    ]
    for i, layer in enumerate(first.layers_a):
        lines.append(f"| {layer} | {r6['risk_a'][i]:.4f} | {r6['bound_a'][i]:.4f} | {first.layers_b[int(r6['argmin_a'][i])]} |")
    lines += [
        "",
        f"Layer × layer values for {pairs[0][0]} → {pairs[0][1]} (held-out rows): CKA / excess stitching risk / Theorem 1 excess bound.",
        "",
        "| A \\ B | " + " | ".join(first.layers_b) + " |",
        "|---|" + "---:|" * len(first.layers_b),
    ]
    cka0, ex0, eb0 = first.cka.values, first.values("excess_risk", "holdout"), first.values("excess_bound", "holdout")
    for i, layer in enumerate(first.layers_a):
        lines.append(f"| {layer} | " + " | ".join(f"{cka0[i, j]:.2f} / {ex0[i, j]:+.3f} / {eb0[i, j]:.3f}" for j in range(len(first.layers_b))) + " |")
    total = time.perf_counter() - t_start
    lines += ["", f"Total time {total:.1f} s (stitching {t_stitch:.1f} s)."]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    results = {f"{a}|{b}": sm.to_dict() for (a, b), sm in matrices.items()}
    (out / "results.json").write_text(json.dumps({"accuracy": accuracy, "matrices": results}))
    print(f"Lemma 2 max relative difference {lemma2_max:.2e}; Theorem 1 holds in {ok_fit}/{n_cells} (fit), "
          f"regression stitch {ok_reg_hold}/{n_cells} (held-out); Spearman CKA {rho_cka:.3f}, KA {rho_ka:.3f}")  # fmt: skip
    print(f"wrote {out / 'stitching_digits.png'}, {out / 'stitching_matrices.png'}, {out / 'summary.md'} in {total:.1f} s")
    return {"lemma2_max": lemma2_max, "theorem1_fit": (ok_fit, n_cells), "theorem1_regression_holdout": (ok_reg_hold, n_cells)}


if __name__ == "__main__":
    from threadpoolctl import threadpool_limits

    # The matrices here are small (≤ 128 columns): one BLAS thread is fastest, and on a busy
    # machine OpenBLAS's spinning helper threads made training ~70× slower (measured).
    with threadpool_limits(limits=1, user_api="blas"):
        main()
