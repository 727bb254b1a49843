"""Coverage of the 95% sampling interval (``ci=0.95``) of the streamed moment and neighbour measures.

For each n ∈ {500, 5000}, R repetitions draw a fresh Gaussian pair from one known
population and ask whether ``result.ci`` covers the population value:

* data: x ~ N(0, I_d), y = x·B + σ·ε with ε ~ N(0, I_d), B = 1.5·G/√d (G a seeded standard normal d×d) — so Σ_xx = I, Σ_xy = B,
  Σ_yy = BᵀB + σ²I; B is a fixed seeded d×d matrix scaled so the population CKA is moderate;
* linear CKA (unbiased and biased estimators): population value in closed form,
  tr(Σ_xy Σ_yx) / √(tr Σ_xx² · tr Σ_yy²);
* Procrustes distance (Euclidean, per sample): closed form too,
  √(tr Σ_xx + tr Σ_yy − 2‖Σ_xy‖_*) (the limit of ‖X_cQ* − Y_c‖_F/√n);
* SVCCA (99% variance kept): the value on one held-out sample of N_POP rows, whose own
  error is its 95% interval (reported);
* mutual kNN (k = 10): its value depends on n (neighbourhoods of n rows), so the population
  value at size n is E[mutual_knn on n rows], estimated by the mean over R_POP further
  independent samples of n rows (its standard error is reported).

Coverage = hits / R with binomial sd √(0.95·0.05/R); accepted in [0.92, 0.98].

Usage::

    python benchmarks/ci_coverage_moments.py [--reps 200] [--d 8] [--out benchmarks/results/ci_coverage_moments]
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
N_POP = 200_000
KNN_K = 10


def population(d: int, seed: int = 7) -> dict:
    rng = np.random.default_rng(seed)
    B = 1.5 * rng.normal(size=(d, d)) / math.sqrt(d)
    Sxx = np.eye(d)
    Sxy = B
    Syy = B.T @ B + SIGMA**2 * np.eye(d)
    cka = float(np.trace(Sxy @ Sxy.T) / math.sqrt(np.trace(Sxx @ Sxx) * np.trace(Syy @ Syy)))
    nuc = float(np.linalg.svd(Sxy, compute_uv=False).sum())
    proc = math.sqrt(np.trace(Sxx) + np.trace(Syy) - 2 * nuc)
    return {"B": B, "cka": cka, "procrustes": proc}


def draw(rng: np.random.Generator, n: int, B: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(size=(n, B.shape[0]))
    y = x @ B + SIGMA * rng.normal(size=(n, B.shape[1]))
    return x, y


MEASURES = {
    "cka (unbiased)": lambda x, y: bigalign.cka(x, y, ci=LEVEL, scheduler="sync"),
    "cka (biased)": lambda x, y: bigalign.cka(x, y, estimator="biased", ci=LEVEL, scheduler="sync"),
    "procrustes": lambda x, y: bigalign.procrustes(x, y, ci=LEVEL, scheduler="sync"),
    "svcca": lambda x, y: bigalign.svcca(x, y, ci=LEVEL, scheduler="sync"),
    "mutual_knn": lambda x, y: bigalign.mutual_knn(x, y, k=KNN_K, ci=LEVEL, scheduler="sync"),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--pop-reps", type=int, default=200, help="independent samples for the kNN population mean")
    ap.add_argument("--d", type=int, default=8)
    ap.add_argument("--ns", type=int, nargs="+", default=[500, 5000])
    ap.add_argument("--out", default=str(HERE / "results" / "ci_coverage_moments"))
    a = ap.parse_args()
    pop = population(a.d)
    B = pop["B"]
    t0, c0 = time.time(), time.process_time()
    with threadpool_limits(1):
        rng = np.random.default_rng(12345)
        xp, yp = draw(rng, N_POP, B)
        sv = bigalign.svcca(xp, yp, ci=LEVEL, scheduler="sync")
        del xp, yp
        pop_values = {"cka (unbiased)": (pop["cka"], 0.0, "closed form"),
                      "cka (biased)": (pop["cka"], 0.0, "closed form"),
                      "procrustes": (pop["procrustes"], 0.0, "closed form"),
                      "svcca": (sv.value, sv.parameters["ci_se"], f"held-out sample of {N_POP:,} rows (jackknife se)")}  # fmt: skip
        rows = []
        for n in a.ns:
            prng = np.random.default_rng([99, n])
            knn_pop = np.array([bigalign.mutual_knn(*draw(prng, n, B), k=KNN_K, scheduler="sync").value for _ in range(a.pop_reps)])
            pv = dict(pop_values)
            pv["mutual_knn"] = (float(knn_pop.mean()), float(knn_pop.std(ddof=1) / math.sqrt(a.pop_reps)),
                                f"mean over {a.pop_reps} independent samples of n rows (se)")  # fmt: skip
            hits = {m: 0 for m in MEASURES}
            widths = {m: [] for m in MEASURES}
            values = {m: [] for m in MEASURES}
            rrng = np.random.default_rng([2024, n])
            for r in range(a.reps):
                x, y = draw(rrng, n, B)
                for m, f in MEASURES.items():
                    res = f(x, y)
                    lo, hi = res.ci
                    hits[m] += lo <= pv[m][0] <= hi
                    widths[m].append(hi - lo)
                    values[m].append(res.value)
            for m in MEASURES:
                cov = hits[m] / a.reps
                v = np.array(values[m])
                rows.append({
                    "measure": m, "n": n, "reps": a.reps, "coverage": cov,
                    "binomial_sd": math.sqrt(LEVEL * (1 - LEVEL) / a.reps),
                    "population": pv[m][0], "population_error": pv[m][1], "population_from": pv[m][2],
                    "mean_value": float(v.mean()), "sd_value": float(v.std(ddof=1)),
                    "mean_width": float(np.mean(widths[m])),
                    "width_over_3.92sd": float(np.mean(widths[m]) / (2 * 1.959964 * v.std(ddof=1))),
                    "accepted": 0.92 <= cov <= 0.98,
                })  # fmt: skip
                print(rows[-1], flush=True)
    wall, cpu = time.time() - t0, time.process_time() - c0
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"d": a.d, "sigma": SIGMA, "level": LEVEL, "reps": a.reps, "pop_reps": a.pop_reps, "k": KNN_K,
            "wall_s": wall, "cpu_s": cpu, "bigalign": bigalign.__version__}  # fmt: skip
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    lines = [
        "# Coverage of the 95% sampling interval (ci=0.95)",
        "",
        f"`python benchmarks/ci_coverage_moments.py --reps {a.reps} --d {a.d}`: x ~ N(0, I_{a.d}), y = xB + ε "
        f"(σ = {SIGMA}), {a.reps} repetitions per n; block jackknife over 20 contiguous row groups. "
        f"Wall {wall:.0f} s, CPU {cpu:.0f} s (one thread, shared 2-core machine).",
        "",
        "| measure | n | coverage | binomial sd | population value (how) | mean estimate | mean width / (3.92·sd of estimates) | in [0.92, 0.98] |",
        "|---|---:|---:|---:|---|---:|---:|---|",
    ]
    for r in rows:
        err = f" ± {r['population_error']:.2g}" if r["population_error"] else ""
        lines.append(
            f"| {r['measure']} | {r['n']:,} | {r['coverage']:.3f} | {r['binomial_sd']:.3f} | {r['population']:.5f}{err} "
            f"({r['population_from']}) | {r['mean_value']:.5f} | {r['width_over_3.92sd']:.2f} | {'yes' if r['accepted'] else 'NO'} |"
        )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
