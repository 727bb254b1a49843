"""Coverage of the 95% sampling interval (``ci=0.95``) of the spectral views.

For each n ∈ {500, 5000}, R repetitions draw a fresh Gaussian sample from one known
population and ask whether ``result.ci`` covers the population value:

* data: x ~ N(0, Σ) with Σ = diag(s²), s = (3, 2.2, 1.6, 1.2, 1, 0.8, 0.6, 0.5) (d = 8);
  y = x·B + σ·ε (B a seeded d×d matrix, σ = 1); a regression target t = x·β + τ·ξ;
* spectrum: the effective dimension (tr Σ)²/‖Σ‖²_F (closed form);
* spectral_alignment (full rank): biased linear CKA's population value
  ‖Σ_xy‖²_F/(‖Σ_xx‖_F‖Σ_yy‖_F); at rank 2: the same sum over the leading two eigenvectors
  of Σ_xx and Σ_yy (closed form from the population covariances);
* task_alignment: ‖Σ_xt‖²/(‖Σ_xx‖_F·Var t) (closed form);
* kare (ridge 0.05, uncentred, the default): KARE is defined at a sample size n (it predicts
  the risk of a fit on n rows), so its population value at n is the formula evaluated on the
  population moments with the same n (closed form).

Coverage = hits / R with binomial sd √(0.95·0.05/R); accepted in [0.92, 0.98].

Usage::

    python benchmarks/ci_coverage_spectral.py [--reps 400] [--out benchmarks/results/ci_coverage_spectral]
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
TAU = 2.0
SCALES = np.array([3.0, 2.2, 1.6, 1.2, 1.0, 0.8, 0.6, 0.5])
RIDGE = 0.05
RANK = 2


def population() -> dict:
    d = SCALES.size
    rng = np.random.default_rng(7)
    B = rng.normal(size=(d, d)) / math.sqrt(d)
    beta = rng.normal(size=d) / math.sqrt(d)
    Sxx = np.diag(SCALES**2)
    Sxy = Sxx @ B
    Syy = B.T @ Sxx @ B + SIGMA**2 * np.eye(d)
    sxt = Sxx @ beta
    vt = float(beta @ Sxx @ beta + TAU**2)
    fro = lambda a: float(np.sqrt(np.sum(a * a)))  # noqa: E731
    ex, wx = np.linalg.eigh(Sxx)
    ey, wy = np.linalg.eigh(Syy)
    wx, wy = wx[:, ::-1][:, :RANK], wy[:, ::-1][:, :RANK]
    G = wx.T @ Sxy @ wy
    return {
        "B": B, "beta": beta,
        "spectrum": float(np.trace(Sxx) ** 2 / fro(Sxx) ** 2),
        "spectral_alignment": fro(Sxy) ** 2 / (fro(Sxx) * fro(Syy)),
        f"spectral_alignment (rank {RANK})": float(np.sum(G * G)) / (fro(Sxx) * fro(Syy)),
        "task_alignment": float(sxt @ sxt) / (fro(Sxx) * vt),
        "kare_moments": (Sxx, sxt, vt),
    }  # fmt: skip


def kare_population(Sxx: np.ndarray, sxt: np.ndarray, vt: float, n: int) -> float:
    """KARE's formula (bigalign.kare, Notes) on the population moments at sample size n."""
    eta, w = np.linalg.eigh(Sxx)
    g = w.T @ sxt
    q = g * g / eta
    lam = RIDGE * float(np.trace(Sxx))
    rho2 = vt - float(q.sum())
    num = float(np.sum(q / (eta + lam) ** 2)) + rho2 / lam**2
    tr = (float(np.sum(1.0 / (eta + lam))) + (n - eta.size) / lam) / n
    return num / (tr * tr)


def draw(rng: np.random.Generator, n: int, pop: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = rng.normal(size=(n, SCALES.size)) * SCALES
    y = x @ pop["B"] + SIGMA * rng.normal(size=(n, SCALES.size))
    t = x @ pop["beta"] + TAU * rng.normal(size=n)
    return x, y, t


MEASURES = {
    "spectrum": lambda x, y, t: bigalign.spectrum(x, ci=LEVEL, scheduler="sync"),
    "spectral_alignment": lambda x, y, t: bigalign.spectral_alignment(x, y, ci=LEVEL, scheduler="sync"),
    f"spectral_alignment (rank {RANK})": lambda x, y, t: bigalign.spectral_alignment(x, y, rank=RANK, ci=LEVEL, scheduler="sync"),
    "task_alignment": lambda x, y, t: bigalign.task_alignment(x, t, ci=LEVEL, scheduler="sync"),
    "kare": lambda x, y, t: bigalign.kare(x, t, ridge=RIDGE, ci=LEVEL, scheduler="sync"),
}
HOW = {
    "spectrum": "effective dimension (tr Σ)²/‖Σ‖²_F, closed form",
    "spectral_alignment": "‖Σ_xy‖²/(‖Σ_xx‖‖Σ_yy‖), closed form",
    f"spectral_alignment (rank {RANK})": "leading-2 eigenvector sum, closed form",
    "task_alignment": "‖Σ_xt‖²/(‖Σ_xx‖ Var t), closed form",
    "kare": "formula on population moments at this n",
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=400)
    ap.add_argument("--ns", type=int, nargs="+", default=[500, 5000])
    ap.add_argument("--out", default=str(HERE / "results" / "ci_coverage_spectral"))
    a = ap.parse_args()
    pop = population()
    t0, c0 = time.time(), time.process_time()
    rows = []
    with threadpool_limits(1):
        for n in a.ns:
            pv = {m: pop[m] for m in MEASURES if m != "kare"}
            pv["kare"] = kare_population(*pop["kare_moments"], n)
            hits = {m: 0 for m in MEASURES}
            widths: dict[str, list] = {m: [] for m in MEASURES}
            values: dict[str, list] = {m: [] for m in MEASURES}
            rng = np.random.default_rng([2025, n])
            for _ in range(a.reps):
                x, y, t = draw(rng, n, pop)
                for m, f in MEASURES.items():
                    res = f(x, y, t)
                    lo, hi = res.ci
                    hits[m] += lo <= pv[m] <= hi
                    widths[m].append(hi - lo)
                    values[m].append(res.value)
            for m in MEASURES:
                cov = hits[m] / a.reps
                v = np.array(values[m])
                rows.append({
                    "measure": m, "n": n, "reps": a.reps, "coverage": cov,
                    "binomial_sd": math.sqrt(LEVEL * (1 - LEVEL) / a.reps), "population": pv[m],
                    "population_from": HOW[m], "mean_value": float(v.mean()), "sd_value": float(v.std(ddof=1)),
                    "mean_width": float(np.mean(widths[m])),
                    "width_over_3.92sd": float(np.mean(widths[m]) / (2 * 1.959964 * v.std(ddof=1))),
                    "accepted": 0.92 <= cov <= 0.98,
                })  # fmt: skip
                print(rows[-1], flush=True)
    wall, cpu = time.time() - t0, time.process_time() - c0
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"d": int(SCALES.size), "sigma": SIGMA, "tau": TAU, "ridge": RIDGE, "level": LEVEL, "reps": a.reps,
            "wall_s": wall, "cpu_s": cpu, "bigalign": bigalign.__version__}  # fmt: skip
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    lines = [
        "# Coverage of the 95% sampling interval (ci=0.95): spectral views",
        "",
        f"`python benchmarks/ci_coverage_spectral.py --reps {a.reps}`: x ~ N(0, diag(s²)), d = {SCALES.size}; "
        f"y = xB + ε (σ = {SIGMA}); t = xβ + τξ (τ = {TAU}); {a.reps} repetitions per n; block jackknife over 20 "
        f"contiguous row groups, exact road, linear kernel. Wall {wall:.0f} s, CPU {cpu:.0f} s (one thread, shared 2-core machine).",
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
