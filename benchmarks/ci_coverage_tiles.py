"""Coverage of ``ci=0.95`` on the exact O(n²) tile roads.

Gaussian pairs with a chosen cross-covariance: x ~ N(0, I_d), y = ρ·x·Q + √(1 − ρ²)·e
(Q a fixed random orthogonal matrix, e ~ N(0, I_d)), d = 8, ρ = 0.6.  For each
repetition a fresh sample of n rows is drawn and every measure is computed with
``ci=0.95``; the interval covers the population value or not.

Population values, computed once from a large held-out sample of N_POP rows:

* RBF CKA (fixed bandwidth σ = the population median distance, so the estimand
  does not move with the sample) and dCor² (its population value is the same for
  both estimators): the block road of bigalign at N_POP rows (an unbiased estimate
  of the population terms; its stderr is stated beside the value);
* RBF CKA with ``bandwidth="median"`` (the per-sample median): estimand = the
  fixed-bandwidth population CKA at the population median;
* RSA (Pearson of the Euclidean distances): the correlation of (‖x − x'‖, ‖y − y'‖)
  over RSA_PAIRS random pairs of distinct held-out rows (error ≈ 1/√RSA_PAIRS).

Usage:  python benchmarks/ci_coverage_tiles.py [--n 500 5000] [--reps 200]
Writes benchmarks/results/ci_coverage_tiles.{json,md} after every 10 repetitions.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import time
from pathlib import Path

import numpy as np

import bigalign

HERE = Path(__file__).resolve().parent
OUT = Path(os.environ.get("CI_COVERAGE_OUT", HERE / "results"))
D, RHO = 8, 0.6
N_POP = 1_000_000
POP_BLOCK = 1024
RSA_PAIRS = 20_000_000
SEED_POP = 12345


def population_q() -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(7).normal(size=(D, D)))
    return q


def draw(rng: np.random.Generator, n: int, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(size=(n, D))
    y = RHO * x @ q + math.sqrt(1 - RHO * RHO) * rng.normal(size=(n, D))
    return x, y


def populations(q: np.ndarray) -> dict:
    rng = np.random.default_rng(SEED_POP)
    x, y = draw(rng, N_POP, q)
    i = rng.integers(0, N_POP, size=RSA_PAIRS)
    j = rng.integers(0, N_POP, size=RSA_PAIRS)
    keep = i != j
    i, j = i[keep], j[keep]
    dx = np.concatenate([np.sqrt(((x[i[k : k + 10**6]] - x[j[k : k + 10**6]]) ** 2).sum(axis=1)) for k in range(0, i.size, 10**6)])
    dy = np.concatenate([np.sqrt(((y[i[k : k + 10**6]] - y[j[k : k + 10**6]]) ** 2).sum(axis=1)) for k in range(0, i.size, 10**6)])
    sig_x, sig_y = float(np.median(dx)), float(np.median(dy))
    rsa_pop = float(np.corrcoef(dx, dy)[0, 1])
    # jackknife-free error of a Pearson correlation of ~2e7 pairs (the pairs share rows: 1/√pairs is a floor)
    rsa_err = (1 - rsa_pop**2) / math.sqrt(keep.sum())
    del dx, dy, i, j
    t = time.time()
    cka = bigalign.cka(x, y, kernel="rbf", bandwidth=(sig_x, sig_y), method="block", block_rows=POP_BLOCK)
    dc = bigalign.dcor(x, y, method="block", block_rows=POP_BLOCK)
    return {
        "n_pop": N_POP,
        "block_rows": POP_BLOCK,
        "bandwidth": [sig_x, sig_y],
        "cka_rbf": cka.value,
        "cka_rbf_stderr_vs_exact": cka.stderr,
        "dcor2": dc.value,
        "dcor2_stderr_population": dc.stderr,
        "rsa_pearson": rsa_pop,
        "rsa_pearson_err": rsa_err,
        "seconds": time.time() - t,
    }


MEASURES = {
    "cka_rbf_unbiased": ("cka_rbf", lambda x, y, s: bigalign.cka(x, y, kernel="rbf", bandwidth=s, method="exact", ci=0.95)),
    "cka_rbf_biased": ("cka_rbf", lambda x, y, s: bigalign.cka(x, y, kernel="rbf", bandwidth=s, method="exact", estimator="biased", ci=0.95)),
    "cka_rbf_median_unbiased": ("cka_rbf", lambda x, y, s: bigalign.cka(x, y, kernel="rbf", method="exact", ci=0.95)),
    "dcor2_unbiased": ("dcor2", lambda x, y, s: bigalign.dcor(x, y, method="exact", ci=0.95)),
    "dcor2_biased": ("dcor2", lambda x, y, s: bigalign.dcor(x, y, method="exact", estimator="biased", ci=0.95)),
    "rsa_pearson": ("rsa_pearson", lambda x, y, s: bigalign.rsa(x, y, method="exact", ci=0.95)),
}


def write(state: dict, tag: str = "") -> None:
    OUT.mkdir(exist_ok=True)
    (OUT / f"ci_coverage_tiles{tag}.json").write_text(json.dumps(state, indent=1))
    if tag:
        return  # a shard: merged into the table by --merge
    pop = state["population"]
    lines = [
        "# Coverage of ci=0.95 on the exact tile roads",
        "",
        f"Gaussian pairs x ~ N(0, I_{D}), y = {RHO}·xQ + {math.sqrt(1 - RHO * RHO):.1f}·e (d = {D}); "
        f"20 contiguous row groups, Student t(19). Produced by `python benchmarks/ci_coverage_tiles.py`.",
        "",
        f"Population values from one held-out sample of {pop['n_pop']:,} rows: RBF CKA (fixed bandwidth = population "
        f"median distance {pop['bandwidth'][0]:.4f}, {pop['bandwidth'][1]:.4f}) = {pop['cka_rbf']:.5f} "
        f"(block road, B = {pop['block_rows']}, stderr vs exact {pop['cka_rbf_stderr_vs_exact']:.1e}); "
        f"dCor² = {pop['dcor2']:.5f} (block road, stderr about the population {pop['dcor2_stderr_population']:.1e}); "
        f"RSA Pearson = {pop['rsa_pearson']:.5f} (2·10⁷ random pairs, error ≈ {pop['rsa_pearson_err']:.1e}).",
        "",
        "| measure | n | reps | coverage | binomial sd | mean width | sd of estimate | mean jackknife se | mean estimate − population | CPU s/rep |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, cell in state["cells"].items():
        name, n = key.rsplit("@", 1)
        r = len(cell["covered"])
        if r == 0:
            continue
        cov = float(np.mean(cell["covered"]))
        sd = math.sqrt(0.95 * 0.05 / r)
        est = np.array(cell["value"])
        lines.append(
            f"| {name} | {n} | {r} | {cov:.3f} | {sd:.3f} | {np.mean(cell['width']):.4f} | {est.std(ddof=1) if r > 1 else float('nan'):.4f} "
            f"| {np.mean(cell['se']):.4f} | {est.mean() - cell['population']:+.4f} | {np.mean(cell['cpu']):.2f} |"
        )
    lines += ["", f"Acceptance: coverage in [0.92, 0.98]. Status: {state['status']}."]
    (OUT / "ci_coverage_tiles.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, nargs="+", default=[500, 5000])
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--rep-start", type=int, default=0, help="first repetition (seed) of this shard")
    ap.add_argument("--tag", default="", help="shard suffix of the json (merged by --merge)")
    ap.add_argument("--measures", nargs="*", default=None, help="only these measures (default: all)")
    ap.add_argument("--merge", nargs="*", help="merge these shard json files into ci_coverage_tiles.{json,md}")
    args = ap.parse_args()
    if args.merge is not None:
        merge([Path(p) for p in args.merge])
        return
    q = population_q()
    cache = OUT / "ci_coverage_tiles_population.json"
    if cache.exists():
        pop = json.loads(cache.read_text())
    else:
        pop = populations(q)
        OUT.mkdir(exist_ok=True)
        cache.write_text(json.dumps(pop, indent=1))
    state: dict = {"population": pop, "d": D, "rho": RHO, "cells": {}, "status": "running", "cpu_count": os.cpu_count()}
    sig = tuple(pop["bandwidth"])
    measures = {k: v for k, v in MEASURES.items() if not args.measures or k in args.measures}
    for n in args.n:
        for name, (target, _) in measures.items():
            state["cells"][f"{name}@{n}"] = {"population": pop[target], "covered": [], "value": [], "width": [], "se": [], "cpu": []}
        for rep in range(args.rep_start, args.rep_start + args.reps):
            rng = np.random.default_rng([n, rep])
            x, y = draw(rng, n, q)
            for name, (target, fn) in measures.items():
                c0 = resource.getrusage(resource.RUSAGE_SELF)
                r = fn(x, y, sig)
                c1 = resource.getrusage(resource.RUSAGE_SELF)
                lo, hi = r.ci
                cell = state["cells"][f"{name}@{n}"]
                cell["covered"].append(bool(lo <= pop[target] <= hi))
                cell["value"].append(r.value)
                cell["width"].append(hi - lo)
                cell["se"].append(r.parameters["ci_se"])
                cell["cpu"].append((c1.ru_utime + c1.ru_stime) - (c0.ru_utime + c0.ru_stime))
            if (rep + 1) % 10 == 0:
                write(state, args.tag)
    state["status"] = "finished"
    write(state, args.tag)


def merge(paths: list[Path]) -> None:
    """One table from shards that ran disjoint repetitions (seeds) of the same cells."""
    states = [json.loads(p.read_text()) for p in paths]
    out = dict(states[0], cells={}, status=" + ".join(f"{p.name}: {s['status']}" for p, s in zip(paths, states)))
    for st in states:
        for key, cell in st["cells"].items():
            tgt = out["cells"].setdefault(key, {"population": cell["population"], "covered": [], "value": [], "width": [], "se": [], "cpu": []})
            for k in ("covered", "value", "width", "se", "cpu"):
                tgt[k] += cell[k]
    write(out)


if __name__ == "__main__":
    main()
