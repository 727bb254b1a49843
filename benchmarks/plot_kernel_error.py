"""Figure: |CKA_approx − CKA_exact| and the reported stderr against n_features (log-log).

Usage::

    python benchmarks/plot_kernel_error.py                                   # results/kernels_accuracy.json
    python benchmarks/plot_kernel_error.py --json benchmarks/results/kernels_accuracy_quick.json --out /tmp/f.png

Reads the JSON written by ``bench_kernels.py --parts accuracy`` and draws, per bandwidth setting,
the mean |error| over seeds (solid, markers; the individual seeds as faint dots) and the mean
reported stderr (dashed) of rff, orf and nystroem, with a 1/√n_features guide.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
COLORS = {"rff": "#1f77b4", "orf": "#2ca02c", "nystroem": "#d62728"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=str(HERE / "results" / "kernels_accuracy.json"))
    ap.add_argument("--out", default=str(HERE.parent / "docs" / "figures" / "kernel_error_vs_features.png"))
    a = ap.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    import numpy as np

    res = json.loads(Path(a.json).read_text())
    ratios = sorted({r["ratio"] for r in res["rows"]}, reverse=True)
    exact = {s["ratio"]: s["value"] for s in res["exact"]["settings"]}
    runs = [u for c in res["children"] for u in c["runs"]]
    fig, axes = plt.subplots(1, len(ratios), figsize=(5.2 * len(ratios), 4.2), sharey=True, squeeze=False)
    for ax, ratio in zip(axes[0], ratios):
        for method, col in COLORS.items():
            rows = sorted((r for r in res["rows"] if r["ratio"] == ratio and r["method"] == method), key=lambda r: r["n_features"])
            if not rows:
                continue
            D = np.array([r["n_features"] for r in rows])
            ax.loglog(D, [r["mean_abs_error"] for r in rows], "o-", color=col, label=f"{method}: mean |error|")
            ax.loglog(D, [r["mean_stderr"] for r in rows], "--", color=col, alpha=0.8, label=f"{method}: mean stderr")
            pts = [(u["n_features"], abs(u["error"])) for u in runs if u["method"] == method and u["ratio"] == ratio and u["error"] != 0]
            if pts:
                p = np.array(pts, dtype=float)
                jitter = {"rff": 0.94, "orf": 1.0, "nystroem": 1.06}[method]
                ax.scatter(p[:, 0] * jitter, p[:, 1], s=8, color=col, alpha=0.3, linewidths=0)
        d = np.array(sorted({r["n_features"] for r in res["rows"]}), dtype=float)
        top = max(r["mean_abs_error"] for r in res["rows"] if r["ratio"] == ratio)
        ax.loglog(d, top * np.sqrt(d[0] / d), ":", color="0.5", label="∝ 1/√n_features")
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xticks(d)
        ax.set_xticklabels([f"{int(v):,}" for v in d])
        ax.set_title(f"σ = {ratio:g} × median  (exact CKA {exact[ratio]:.4f})")
        ax.set_xlabel("n_features (rff/orf: feature columns; nystroem: landmarks)")
        ax.grid(True, which="both", alpha=0.25)
    axes[0][0].set_ylabel("|CKA_approx − CKA_exact|  /  stderr")
    axes[0][-1].legend(fontsize=7, loc="lower left")
    fig.suptitle(f"rbf CKA (unbiased), n = {res['n']:,}, dx = {res['dx']}, dy = {res['dy']}, {res['seeds']} seeds per point", fontsize=10)
    fig.tight_layout()
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.out, dpi=130)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
