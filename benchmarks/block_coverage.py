"""Coverage of the block road's error bar: does the exact value lie within 2·stderr?

``method="auto"`` picks exact tiles or the block road (random features and Nyström
are never auto's choice), so the block road is the one approximation whose error bar
auto reports.  For each regime — input dimension d ∈ {32, 768}, bandwidth 0.3, 1
and 3 × the median heuristic — the exact unbiased CKA and HSIC (rbf, exact tiles)
are compared with ``method="block"`` over S seeds (the seed draws the random
partition; the bandwidth is fixed so the kernel does not change with the seed), at
block sizes B giving 10 and 30 blocks (auto never uses fewer than 10).  Per cell:

* coverage: the fraction of seeds with |θ̂ − θ| ≤ 2·stderr (asked: 0.90–0.98);
* rmse = √mean (θ̂ − θ)², bias = mean(θ̂ − θ);
* width = mean(stderr) / rmse (≈ 1 for a calibrated sd; asked: within 3×).

Data: a latent-factor pair like real embeddings: z ~ N(0, I₁₆), x = zA + 0.5ε
(d columns), y = tanh(zB) + 0.5ε' (d columns), n rows, float32.

Usage::

    python benchmarks/block_coverage.py [--n 3000] [--seeds 60] [--out benchmarks/results/block_coverage.md]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import bigalign  # noqa: E402

RATIOS = (0.3, 1.0, 3.0)
DIMS = (32, 768)
METRICS = {"cka": bigalign.cka, "hsic": bigalign.hsic}


def latent_pair(n: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, d])
    z = rng.normal(size=(n, 16))
    a, b = rng.normal(size=(16, d)) / 4, rng.normal(size=(16, d)) / 4
    x = z @ a + 0.5 * rng.normal(size=(n, d))
    y = np.tanh(z @ b) + 0.5 * rng.normal(size=(n, d))
    return x.astype(np.float32), y.astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--seeds", type=int, default=60)
    ap.add_argument("--blocks", type=int, nargs="+", default=[10, 30])
    ap.add_argument("--out", default=str(HERE / "results" / "block_coverage.md"))
    a = ap.parse_args()
    rows = []
    t0, c0 = time.time(), time.process_time()
    with threadpool_limits(limits=1, user_api="blas"):
        for d in DIMS:
            x, y = latent_pair(a.n, d)
            med = bigalign.cka(x[:1000], y[:1000], kernel="rbf", method="exact").parameters
            mx, my = med["median_x"], med["median_y"]
            for ratio in RATIOS:
                bw = (ratio * mx, ratio * my)
                exact = {m: f(x, y, kernel="rbf", bandwidth=bw, method="exact", scheduler="sync").value for m, f in METRICS.items()}
                for m_blocks in a.blocks:
                    B = a.n // m_blocks
                    for metric, f in METRICS.items():
                        errs, ses = [], []
                        for s in range(a.seeds):
                            r = f(x, y, kernel="rbf", bandwidth=bw, method="block", block_rows=B, seed=s, scheduler="sync")
                            errs.append(r.value - exact[metric])
                            ses.append(r.stderr)
                        e, se = np.array(errs), np.array(ses)
                        rmse = float(np.sqrt(np.mean(e**2)))
                        row = {
                            "d": d, "ratio": ratio, "B": B, "n_blocks": m_blocks, "metric": metric, "exact": exact[metric],
                            "coverage": float(np.mean(np.abs(e) <= 2 * se)), "rmse": rmse, "bias": float(e.mean()),
                            "mean_stderr": float(se.mean()), "width": float(se.mean() / rmse) if rmse > 0 else float("nan"),
                        }  # fmt: skip
                        rows.append(row)
                        print(json.dumps(row), flush=True)
    wall, cpu = time.time() - t0, time.process_time() - c0
    out = Path(a.out)
    lines = [
        "# Block road: coverage of the error bar",
        "",
        f"`python benchmarks/block_coverage.py --n {a.n} --seeds {a.seeds}` — rbf, unbiased CKA and HSIC, {a.seeds} seeds "
        f"(random partitions) per cell, n = {a.n}, latent-factor float32 pair; bandwidth fixed at ratio × the median "
        f"heuristic. Wall {wall:.0f} s, CPU {cpu:.0f} s, load average at the end {os.getloadavg()[0]:.1f} (2 cores, shared).",
        "",
        "coverage = share of seeds with |block − exact| ≤ 2·stderr; width = mean(stderr)/rmse.",
        "",
        "| d | bandwidth / median | B (blocks) | metric | exact | coverage | rmse | mean stderr | width | bias |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['d']} | {r['ratio']} | {r['B']} ({r['n_blocks']}) | {r['metric']} | {r['exact']:.4g} | {r['coverage']:.2f} | "
            f"{r['rmse']:.2e} | {r['mean_stderr']:.2e} | {r['width']:.2f} | {r['bias']:+.1e} |"
        )
    cov = [r["coverage"] for r in rows]
    wid = [r["width"] for r in rows]
    lines += ["", f"Coverage {min(cov):.2f}–{max(cov):.2f} over {len(rows)} cells; width {min(wid):.2f}–{max(wid):.2f}.", ""]
    out.write_text("\n".join(lines))
    out.with_suffix(".json").write_text(json.dumps({"n": a.n, "seeds": a.seeds, "wall_s": wall, "cpu_s": cpu, "rows": rows}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
