"""Coverage of ``ci=0.95`` on dCor²'s block road (jackknife over 20 groups of the random blocks).

Same population as benchmarks/ci_coverage_tiles.py (x ~ N(0, I₈), y = 0.6·xQ + 0.8·e;
population dCor² from its cached held-out value).  Cells (n, B) keep at least 40 blocks.

Usage:  python benchmarks/ci_coverage_blocks.py [--reps 200]
Writes benchmarks/results/ci_coverage_blocks.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

import bigalign

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ci_coverage_tiles import OUT, draw, population_q  # noqa: E402

CELLS = [(500, 10), (5000, 100), (20000, 400)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--metric", choices=["dcor", "cka"], default="dcor")
    args = ap.parse_args()
    target = "dcor2" if args.metric == "dcor" else "cka_rbf"
    tag = "" if args.metric == "dcor" else "_cka"
    pop = json.loads((OUT / "ci_coverage_tiles_population.json").read_text())
    q = population_q()
    rows = []
    for n, B in CELLS:
        cov, vals, ses, widths = [], [], [], []
        c0 = time.process_time()
        for rep in range(args.reps):
            x, y = draw(np.random.default_rng([n, rep, 7]), n, q)
            if args.metric == "dcor":
                r = bigalign.dcor(x, y, method="block", block_rows=B, seed=rep, ci=0.95)
            else:
                r = bigalign.cka(x, y, kernel="rbf", bandwidth=tuple(pop["bandwidth"]), method="block", block_rows=B, seed=rep, ci=0.95)
            lo, hi = r.ci
            cov.append(lo <= pop[target] <= hi)
            vals.append(r.value)
            ses.append(r.parameters["ci_se"])
            widths.append(hi - lo)
        rows.append({"n": n, "B": B, "blocks": n // B, "reps": args.reps, "coverage": float(np.mean(cov)),
                     "binomial_sd": math.sqrt(0.95 * 0.05 / args.reps), "sd_estimate": float(np.std(vals, ddof=1)),
                     "mean_se": float(np.mean(ses)), "mean_width": float(np.mean(widths)),
                     "bias": float(np.mean(vals) - pop[target]), "cpu_s_per_rep": (time.process_time() - c0) / args.reps})  # fmt: skip
        print(rows[-1], flush=True)
    (OUT / f"ci_coverage_blocks{tag}.json").write_text(json.dumps({"population": pop[target], "metric": args.metric, "rows": rows}, indent=1))
    what = "dCor²'s block road (unbiased)" if args.metric == "dcor" else "RBF CKA's block road (unbiased, bandwidth fixed at the population median)"
    lines = [
        f"# Coverage of ci=0.95 on {what}",
        "",
        f"Population value {pop[target]:.5f} (see ci_coverage_tiles.md).  Produced by `python benchmarks/ci_coverage_blocks.py --metric {args.metric}`.",
        "",
        "| n | B | blocks | reps | coverage | binomial sd | sd of estimate | mean jackknife se | mean width | mean estimate − population |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['n']} | {r['B']} | {r['blocks']} | {r['reps']} | {r['coverage']:.3f} | {r['binomial_sd']:.3f} | "
                     f"{r['sd_estimate']:.4f} | {r['mean_se']:.4f} | {r['mean_width']:.4f} | {r['bias']:+.4f} |")  # fmt: skip
    (OUT / f"ci_coverage_blocks{tag}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
