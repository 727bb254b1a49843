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
    args = ap.parse_args()
    pop = json.loads((OUT / "ci_coverage_tiles_population.json").read_text())
    q = population_q()
    rows = []
    for n, B in CELLS:
        cov, vals, ses, widths = [], [], [], []
        c0 = time.process_time()
        for rep in range(args.reps):
            x, y = draw(np.random.default_rng([n, rep, 7]), n, q)
            r = bigalign.dcor(x, y, method="block", block_rows=B, seed=rep, ci=0.95)
            lo, hi = r.ci
            cov.append(lo <= pop["dcor2"] <= hi)
            vals.append(r.value)
            ses.append(r.parameters["ci_se"])
            widths.append(hi - lo)
        rows.append({"n": n, "B": B, "blocks": n // B, "reps": args.reps, "coverage": float(np.mean(cov)),
                     "binomial_sd": math.sqrt(0.95 * 0.05 / args.reps), "sd_estimate": float(np.std(vals, ddof=1)),
                     "mean_se": float(np.mean(ses)), "mean_width": float(np.mean(widths)),
                     "bias": float(np.mean(vals) - pop["dcor2"]), "cpu_s_per_rep": (time.process_time() - c0) / args.reps})  # fmt: skip
        print(rows[-1], flush=True)
    (OUT / "ci_coverage_blocks.json").write_text(json.dumps({"population_dcor2": pop["dcor2"], "rows": rows}, indent=1))
    lines = [
        "# Coverage of ci=0.95 on dCor²'s block road (unbiased)",
        "",
        f"Population dCor² = {pop['dcor2']:.5f} (see ci_coverage_tiles.md).  Produced by `python benchmarks/ci_coverage_blocks.py`.",
        "",
        "| n | B | blocks | reps | coverage | binomial sd | sd of estimate | mean jackknife se | mean width | mean estimate − population |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['n']} | {r['B']} | {r['blocks']} | {r['reps']} | {r['coverage']:.3f} | {r['binomial_sd']:.3f} | "
                     f"{r['sd_estimate']:.4f} | {r['mean_se']:.4f} | {r['mean_width']:.4f} | {r['bias']:+.4f} |")  # fmt: skip
    (OUT / "ci_coverage_blocks.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
