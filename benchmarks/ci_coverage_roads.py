"""Coverage of ``ci=0.95`` on dCor²'s random-projection road and energy distance's block road.

* dCor² (unbiased), ``method="projection"`` with 50 directions: same population as
  benchmarks/ci_coverage_tiles.py (x ~ N(0, I₈), y = 0.6·xQ + 0.8·e), population dCor² from its
  cached held-out value (benchmarks/results/ci_coverage_tiles_population.json).  The interval
  leaves out row group g together with direction group g, so it is about the population value
  (rows and directions both random; a fresh direction seed per repetition).
* energy distance, ``method="block"``: x ~ N(0, I₈), y ~ N(μ, I₈) with μ = 0.25·(1, …, 1), n rows
  each.  Population value in closed form: with equal covariances, E = 2·E‖N(μ, 2I)‖ − 2·E‖N(0, 2I)‖,
  and ‖N(m, 2I)‖²/2 is non-central χ²₈(‖m‖²/2), whose E√(2t) is one numerical integral.

* energy distance, ``method="exact"`` (``--what energy-exact``): the same population, exact tiles.

Usage:  python benchmarks/ci_coverage_roads.py [--reps 200] [--ns 500 5000] [--what energy-exact]
Writes benchmarks/results/ci_coverage_roads.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
from scipy import integrate, stats
from threadpoolctl import threadpool_limits

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import bigalign  # noqa: E402
from ci_coverage_tiles import OUT, draw, population_q  # noqa: E402

D = 8
MU = 0.25
N_PROJ = 50
BLOCKS = 50  # energy block road: block_rows = n / 50 (at least the 40 blocks its interval needs)


def mean_norm(d: int, m2: float, var: float) -> float:
    """E‖Z‖ for Z ~ N(m, var·I_d) with ‖m‖² = m2."""
    nc = m2 / var
    f = lambda t: math.sqrt(var * t) * (stats.ncx2.pdf(t, d, nc) if nc > 0 else stats.chi2.pdf(t, d))  # noqa: E731
    return float(integrate.quad(f, 0, np.inf, limit=200, epsabs=1e-13, epsrel=1e-12)[0])


def energy_population() -> float:
    return 2.0 * mean_norm(D, D * MU * MU, 2.0) - 2.0 * mean_norm(D, 0.0, 2.0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--ns", type=int, nargs="+", default=[500, 5000])
    ap.add_argument("--what", nargs="+", default=["dcor-projection", "energy-block"])
    ap.add_argument("--rep-start", type=int, default=0, help="first repetition (to split one cell over processes)")
    ap.add_argument("--out", default=str(OUT / "ci_coverage_roads"))
    a = ap.parse_args()
    pops = {"dcor-projection": json.loads((OUT / "ci_coverage_tiles_population.json").read_text())["dcor2"],
            "energy-block": energy_population(), "energy-exact": energy_population()}  # fmt: skip
    q = population_q()
    rows = []
    t0, c0 = time.time(), time.process_time()
    with threadpool_limits(1):
        for what in a.what:
            for n in a.ns:
                cov, vals, ses, widths = [], [], [], []
                c1 = time.process_time()
                for rep in range(a.rep_start, a.rep_start + a.reps):
                    rng = np.random.default_rng([n, rep, 11])
                    if what == "dcor-projection":
                        x, y = draw(rng, n, q)
                        r = bigalign.dcor(x, y, method="projection", n_projections=N_PROJ, seed=rep, ci=0.95, scheduler="sync")
                    else:
                        x = rng.normal(size=(n, D))
                        y = rng.normal(size=(n, D)) + MU
                        if what == "energy-exact":
                            r = bigalign.energy_distance(x, y, method="exact", ci=0.95, scheduler="sync")
                        else:
                            r = bigalign.energy_distance(x, y, method="block", block_rows=n // BLOCKS, seed=rep, ci=0.95)
                    lo, hi = r.ci
                    cov.append(lo <= pops[what] <= hi)
                    vals.append(r.value)
                    ses.append(r.parameters["ci_se"])
                    widths.append(hi - lo)
                sd = float(np.std(vals, ddof=1))
                rows.append({"road": what, "n": n, "reps": a.reps, "rep_start": a.rep_start, "hits": int(np.sum(cov)),
                             "coverage": float(np.mean(cov)),
                             "binomial_sd": math.sqrt(0.95 * 0.05 / a.reps), "population": pops[what],
                             "mean_estimate": float(np.mean(vals)), "sd_estimate": sd, "mean_se": float(np.mean(ses)),
                             "width_over_3.92sd": float(np.mean(widths) / (2 * 1.959964 * sd)),
                             "cpu_s_per_rep": (time.process_time() - c1) / a.reps})  # fmt: skip
                print(rows[-1], flush=True)
    wall, cpu = time.time() - t0, time.process_time() - c0
    out = Path(a.out)
    out.with_suffix(".json").write_text(json.dumps({"meta": {"wall_s": wall, "cpu_s": cpu, "reps": a.reps}, "rows": rows}, indent=1))
    lines = [
        "# Coverage of ci=0.95: dCor²'s projection road and energy distance's block road",
        "",
        f"`python benchmarks/ci_coverage_roads.py --reps {a.reps} --rep-start {a.rep_start} --what {' '.join(a.what)} "
        f"--ns {' '.join(map(str, a.ns))}`; one thread; wall {wall:.0f} s, CPU {cpu:.0f} s "
        "(shared 2-core machine).  dCor² (unbiased, 50 projections, a fresh direction seed per repetition) on "
        "x ~ N(0, I₈), y = 0.6·xQ + 0.8·e, population from ci_coverage_tiles_population.json; energy distance "
        "(block road with 50 blocks, or exact tiles: see the road column) between N(0, I₈) and N(0.25·1, I₈), population in closed form.",
        "",
        "| road | n | reps | coverage | binomial sd | population | mean estimate | sd of estimate | mean jackknife se | width / (3.92·sd) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['road']} | {r['n']:,} | {r['reps']} | {r['coverage']:.3f} | {r['binomial_sd']:.3f} | {r['population']:.5f} | "
                     f"{r['mean_estimate']:.5f} | {r['sd_estimate']:.5f} | {r['mean_se']:.5f} | {r['width_over_3.92sd']:.2f} |")  # fmt: skip
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
