"""Coverage of ``ci=0.95`` on roads whose coverage had not been measured: CKA's random-feature
roads (``method="rff"``/``"orf"``) and PWCCA.

* rff / orf CKA (RBF kernel, bandwidth fixed at the population median distance): the
  population of benchmarks/ci_coverage_tiles.py (x ~ N(0, I₈), y = 0.6·xQ + 0.8·e) and its
  held-out population value of the exact RBF CKA.  Each repetition draws new rows *and* new
  features (``seed=rep``), so the estimate varies with both; the interval is judged against
  the exact measure's population value.  The interval returned (``result.ci``: the row
  jackknife of the feature moments with the feature draw's error, ``stderr``, added in
  quadrature) is scored, and for reference the row-only interval value ± t₁₉·ci_se (identity
  scale) that leaves the feature error out.
* PWCCA (weights from x): the population of benchmarks/ci_coverage_moments.py (d = 8,
  y = xB + ε), population value from one held-out sample of 200,000 rows.

Usage:  python benchmarks/ci_coverage_approx.py [--reps 200] [--ns 500 5000] [--n-features 256] [--measures cka_rbf_rff256] [--tag _n5000] [--rep-start 100]
Writes benchmarks/results/ci_coverage_approx.{json,md} after every 10 repetitions.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import t as student_t

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bigalign  # noqa: E402
import ci_coverage_moments as moments_pop  # noqa: E402
from ci_coverage_tiles import OUT, draw, population_q  # noqa: E402

Q19 = float(student_t.ppf(0.975, 19))


def cells(args: argparse.Namespace, pop: dict) -> dict:
    bw = tuple(pop["bandwidth"])
    out = {}
    for road in ("rff", "orf"):
        out[f"cka_rbf_{road}{args.n_features}"] = (
            "tiles",
            pop["cka_rbf"],
            lambda x, y, rep, road=road: bigalign.cka(x, y, kernel="rbf", bandwidth=bw, method=road, n_features=args.n_features,
                                                      seed=rep, ci=0.95, scheduler="sync"),
        )  # fmt: skip
    out["pwcca"] = ("moments", None, lambda x, y, rep: bigalign.pwcca(x, y, ci=0.95, scheduler="sync"))
    return out


def write(state: dict) -> None:
    tag = state.get("tag", "")
    (OUT / f"ci_coverage_approx{tag}.json").write_text(json.dumps(state, indent=1))
    lines = [
        "# Coverage of ci=0.95: random-feature CKA roads and PWCCA",
        "",
        f"`python benchmarks/ci_coverage_approx.py --n-features {state['n_features']}` (module docstring: populations). "
        "Binomial sd of a 0.95 coverage over 200 repetitions: 0.015; accepted 0.92-0.98.",
        "",
        "| measure | n | reps | coverage | mean width | sd of estimate | mean jackknife se | mean stderr | coverage, row-only reference (± t·ci_se) | "
        "mean estimate − population | population | CPU s/rep |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, c in state["cells"].items():
        r = len(c["covered"])
        if r < 2:
            continue
        name, n = key.rsplit("@", 1)
        v = np.array(c["value"])
        st = "" if not c["stderr"] else f"{np.mean(c['stderr']):.4f}"
        wide = "" if not c["covered_wide"] else f"{np.mean(c['covered_wide']):.3f}"
        lines.append(
            f"| {name} | {int(n):,} | {r} | {np.mean(c['covered']):.3f} | {np.mean(c['width']):.4f} | {v.std(ddof=1):.4f} | "
            f"{np.mean(c['se']):.4f} | {st} | {wide} | {v.mean() - c['population']:+.4f} | {c['population']:.5f} | {np.mean(c['cpu']):.2f} |"
        )
    lines += ["", f"Status: {state['status']}; wall {state['wall_s']:.0f} s, CPU {state['cpu_s']:.0f} s."]
    (OUT / f"ci_coverage_approx{tag}.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--ns", type=int, nargs="+", default=[500, 5000])
    ap.add_argument("--n-features", type=int, default=256)
    ap.add_argument("--measures", nargs="*", default=None)
    ap.add_argument("--tag", default="", help="suffix of the output files (a shard, e.g. one n)")
    ap.add_argument("--rep-start", type=int, default=0, help="first repetition (seed) of this shard")
    args = ap.parse_args()
    t0, c0 = time.time(), time.process_time()
    tiles_pop = json.loads((OUT / "ci_coverage_tiles_population.json").read_text())
    q = population_q()
    mp = moments_pop.population(8)
    xp, yp = moments_pop.draw(np.random.default_rng(12345), moments_pop.N_POP, mp["B"])
    pw = bigalign.pwcca(xp, yp, ci=0.95, scheduler="sync")
    del xp, yp
    todo = {k: v for k, v in cells(args, tiles_pop).items() if not args.measures or k in args.measures}
    state: dict = {"n_features": args.n_features, "pwcca_population": {"value": pw.value, "ci_se": pw.parameters["ci_se"],
                   "how": f"held-out sample of {moments_pop.N_POP:,} rows"}, "cells": {}, "status": "running", "tag": args.tag,
                   "rep_start": args.rep_start}  # fmt: skip
    for n in args.ns:
        for name, (which, target, _) in todo.items():
            state["cells"][f"{name}@{n}"] = {"population": pw.value if target is None else target, "covered": [], "covered_wide": [],
                                             "value": [], "width": [], "se": [], "stderr": [], "cpu": []}  # fmt: skip
        for rep in range(args.rep_start, args.rep_start + args.reps):
            for name, (which, _, fn) in todo.items():
                if which == "tiles":
                    x, y = draw(np.random.default_rng([n, rep, 11]), n, q)
                else:
                    x, y = moments_pop.draw(np.random.default_rng([n, rep, 11]), n, mp["B"])
                cell = state["cells"][f"{name}@{n}"]
                a = time.process_time()
                r = fn(x, y, rep)
                cell["cpu"].append(time.process_time() - a)
                lo, hi = r.ci
                p = cell["population"]
                cell["covered"].append(bool(lo <= p <= hi))
                cell["value"].append(r.value)
                cell["width"].append(hi - lo)
                cell["se"].append(r.parameters["ci_se"])
                if r.stderr is not None:
                    cell["stderr"].append(r.stderr)
                    # reference: the row-only interval, without the feature draw's error
                    cell["covered_wide"].append(bool(abs(r.value - p) <= Q19 * r.parameters["ci_se"]))
            if (rep + 1) % 10 == 0:
                state.update(wall_s=time.time() - t0, cpu_s=time.process_time() - c0)
                write(state)
    state.update(status="finished", wall_s=time.time() - t0, cpu_s=time.process_time() - c0)
    write(state)


if __name__ == "__main__":
    main()
