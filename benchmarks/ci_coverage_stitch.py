"""Coverage of the 95% sampling interval (``ci=0.95``) of the linear stitch's residual.

Data: x ~ N(0, diag(s²)) (d_x = 8), y = x·B + σ·ε (d_y = 6, σ = 1).  The population-best
affine map is B itself, so the population residual E‖x S + b − y‖² is σ²·d_y = 6 (closed
form).  ``stitch(x, y, ci=0.95)`` reports the residual of a map fitted on the fitting rows,
on the held-out rows (holdout 0.2, the default) or in-sample (holdout 0); both are O(d/n)
off the population value (overfitting), which the jackknife's bias-corrected centre takes
out.  ``ridge="cv"`` (5 folds) is run too: its population value is the same in the limit; and the
kernel stitch (z = [x, c·φ(x)], 64 random Fourier features fixed by the seed): y's best
predictor from any function of x is xB, which z contains, so its population residual is σ²·d_y too.

Coverage = hits / R with binomial sd √(0.95·0.05/R); accepted in [0.92, 0.98].

Usage::

    python benchmarks/ci_coverage_stitch.py [--reps 400] [--out benchmarks/results/ci_coverage_stitch]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import bigalign  # noqa: E402

LEVEL = 0.95
SIGMA = 1.0
SCALES = np.array([3.0, 2.2, 1.6, 1.2, 1.0, 0.8, 0.6, 0.5])
DY = 6

MEASURES = {
    "stitch (holdout 0.2)": dict(),
    "stitch (in-sample, holdout 0)": dict(holdout=0.0),
    "stitch (ridge='cv', holdout 0.2)": dict(ridge="cv"),
    "stitch (kind='kernel', rff 64, holdout 0.2)": dict(kind="kernel", n_features=64),
    "stitch (kind='kernel', rff 16, holdout 0.2)": dict(kind="kernel", n_features=16),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=400)
    ap.add_argument("--ns", type=int, nargs="+", default=[500, 5000])
    ap.add_argument("--measures", nargs="+", default=list(MEASURES), help="names of MEASURES to run")
    ap.add_argument("--out", default=str(HERE / "results" / "ci_coverage_stitch"))
    a = ap.parse_args()
    measures = {m: MEASURES[m] for m in a.measures}
    B = np.random.default_rng(7).normal(size=(SCALES.size, DY))
    pop = SIGMA**2 * DY
    t0, c0 = time.time(), time.process_time()
    rows = []
    with threadpool_limits(1):
        for n in a.ns:
            hits = {m: 0 for m in measures}
            widths: dict[str, list] = {m: [] for m in measures}
            values: dict[str, list] = {m: [] for m in measures}
            rng = np.random.default_rng([31, n])
            for _ in range(a.reps):
                x = rng.normal(size=(n, SCALES.size)) * SCALES
                y = x @ B + SIGMA * rng.normal(size=(n, DY))
                for m, kw in measures.items():
                    res = bigalign.stitch(x, y, ci=LEVEL, scheduler="sync", **kw)
                    lo, hi = res.ci
                    hits[m] += lo <= pop <= hi
                    widths[m].append(hi - lo)
                    values[m].append(res.value)
            for m in measures:
                cov = hits[m] / a.reps
                v = np.array(values[m])
                rows.append({
                    "measure": m, "n": n, "reps": a.reps, "coverage": cov,
                    "binomial_sd": math.sqrt(LEVEL * (1 - LEVEL) / a.reps), "population": pop,
                    "population_from": "σ²·d_y, closed form", "mean_value": float(v.mean()), "sd_value": float(v.std(ddof=1)),
                    "mean_width": float(np.mean(widths[m])),
                    "width_over_3.92sd": float(np.mean(widths[m]) / (2 * 1.959964 * v.std(ddof=1))),
                    "accepted": 0.92 <= cov <= 0.98,
                })  # fmt: skip
                print(rows[-1], flush=True)
    wall, cpu = time.time() - t0, time.process_time() - c0
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"d_x": int(SCALES.size), "d_y": DY, "sigma": SIGMA, "level": LEVEL, "reps": a.reps, "wall_s": wall, "cpu_s": cpu,
            "bigalign": bigalign.__version__}  # fmt: skip
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    lines = [
        "# Coverage of the 95% sampling interval (ci=0.95): the linear stitch's residual",
        "",
        f"`python benchmarks/ci_coverage_stitch.py --reps {a.reps} --ns {' '.join(map(str, a.ns))}`: x ~ N(0, diag(s²)), d_x = {SCALES.size}; y = xB + ε "
        f"(d_y = {DY}, σ = {SIGMA}); {a.reps} repetitions per n; block jackknife over 20 contiguous row groups, each "
        f"leave-out refitting the map. Wall {wall:.0f} s, CPU {cpu:.0f} s (one thread, shared 2-core machine).",
        "",
        "| measure | n | coverage | binomial sd | population value (how) | mean estimate | mean width / (3.92·sd of estimates) | in [0.92, 0.98] |",
        "|---|---:|---:|---:|---|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['measure']} | {r['n']:,} | {r['coverage']:.3f} | {r['binomial_sd']:.3f} | {r['population']:.5f} "
            f"({r['population_from']}) | {r['mean_value']:.5f} | {r['width_over_3.92sd']:.2f} | {'yes' if r['accepted'] else 'NO'} |"
        )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
