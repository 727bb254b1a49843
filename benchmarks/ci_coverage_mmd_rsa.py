"""Coverage of ``ci=0.95`` on MMD² (two samples) and on RSA's rank, non-Euclidean and sampled forms.

MMD²: x ~ N(0, I_d), y ~ N(δ·1, s²·I_d) with d = 2, δ = 0.3, s = 1.2; n = n_x + n_y with
n_x = n_y = n/2.  Population values in closed form:

* rbf with a fixed bandwidth σ = 1.5 (so the estimand does not move with the sample):
  for z ~ N(m, C), E exp(−‖z‖²/(2σ²)) = det(I + C/σ²)^(−1/2)·exp(−½ mᵀ(σ²I + C)⁻¹m), hence
  E k(x, x') = det(I + 2I/σ²)^(−1/2), E k(y, y') = det(I + 2s²I/σ²)^(−1/2),
  E k(x, y) = det(I + (1 + s²)I/σ²)^(−1/2)·exp(−½ δ²d/(σ² + 1 + s²)), and
  MMD² = E k(x, x') + E k(y, y') − 2 E k(x, y);
* linear: MMD² = ‖E x − E y‖² = δ²·d.

RSA: x ~ N(0, I_5), y = x·W + e (W a fixed 5 × 4 Gaussian matrix, e ~ N(0, I_4)).  A pair of
distinct rows is a pair of independent draws, so the population value of each comparison is
that of (d(x, x'), d(y, y')) over independent pairs: estimated once by Monte Carlo from
POP_PAIRS = 4·10⁶ independent pairs (Spearman: Pearson of the mid-ranks; Kendall: τ_a over
10⁶ pairs; Pearson of correlation distances).  Its Monte Carlo error is written
beside it (≈ 1/√pairs, far below the intervals' widths).

Cases (each with ``ci=0.95``, 200 repetitions by default, fresh samples each time):
mmd-rbf (exact tiles), mmd-linear, mmd-rff (2,048 random Fourier features, a fresh map per repetition:
the population value is the exact rbf MMD²; the interval is about rows only), rsa-correlation-pearson (streamed moments), rsa-spearman and
rsa-kendall (Euclidean distances: exact in memory at n = 500, sampled pairs at n = 5,000 where
``auto`` samples), rsa-euclidean-sampled (Pearson, ``method="sampled"``); the sampled road with
SAMPLED_PAIRS = 20,000 pairs.

Usage:  python benchmarks/ci_coverage_mmd_rsa.py --n 500 5000 --reps 200 [--cases mmd-rbf,...] [--tag _x]
Writes benchmarks/results/ci_coverage_mmd_rsa_n{n}{tag}.json after every 10 repetitions;
``--table`` merges the JSON files into benchmarks/results/ci_coverage_mmd_rsa.md.
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
from bigalign.metrics.rsa import tau_a

HERE = Path(__file__).resolve().parent
OUT = Path(os.environ.get("CI_COVERAGE_OUT", HERE / "results"))
D_MMD, DELTA, S_Y, SIGMA = 2, 0.3, 1.2, 1.5
DX, DY = 5, 4
POP_PAIRS = 4_000_000
POP_PAIRS_TAU = 1_000_000
#: pairs of the sampled road in the coverage runs (its default is 100,000; fewer keep 200 repetitions affordable
#: on a shared machine, and make the pair-sampling part of the error larger than it would be by default)
SAMPLED_PAIRS = 20_000
CASES = ("mmd-rbf", "mmd-linear", "rsa-correlation-pearson", "rsa-spearman", "rsa-kendall", "rsa-euclidean-sampled", "mmd-rff")


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def mmd_population(kernel: str) -> float:
    d, s2, sig2 = D_MMD, S_Y * S_Y, SIGMA * SIGMA
    if kernel == "linear":
        return DELTA * DELTA * d
    kxx = (1 + 2 / sig2) ** (-d / 2)
    kyy = (1 + 2 * s2 / sig2) ** (-d / 2)
    kxy = (1 + (1 + s2) / sig2) ** (-d / 2) * math.exp(-0.5 * DELTA * DELTA * d / (sig2 + 1 + s2))
    return kxx + kyy - 2 * kxy


def draw_mmd(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    h = n // 2
    return rng.normal(size=(h, D_MMD)), DELTA + S_Y * rng.normal(size=(n - h, D_MMD))


W = np.random.default_rng(11).normal(size=(DX, DY)) / math.sqrt(DX)


def draw_rsa(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(size=(n, DX))
    return x, x @ W + rng.normal(size=(n, DY))


def _dist(a: np.ndarray, b: np.ndarray, distance: str) -> np.ndarray:
    if distance == "correlation":
        a = a - a.mean(axis=1, keepdims=True)
        b = b - b.mean(axis=1, keepdims=True)
        return 1.0 - np.einsum("ij,ij->i", a, b) / np.sqrt(np.einsum("ij,ij->i", a, a) * np.einsum("ij,ij->i", b, b))
    return np.sqrt(((a - b) ** 2).sum(axis=1))


def rsa_population(compare: str, distance: str) -> tuple[float, float]:
    """(value, Monte Carlo standard error) over independent pairs of draws."""
    from scipy.stats import rankdata

    m = POP_PAIRS_TAU if compare == "kendall" else POP_PAIRS
    rng = np.random.default_rng(99)
    parts = []
    for a in range(0, m, 1_000_000):  # in chunks: the distances only are held
        k = min(m, a + 1_000_000) - a
        x1, y1 = draw_rsa(rng, k)
        x2, y2 = draw_rsa(rng, k)
        parts.append((_dist(x1, x2, distance), _dist(y1, y2, distance)))
    dx, dy = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    if compare == "kendall":
        v = tau_a(dx, dy)
    else:
        if compare == "spearman":
            dx, dy = rankdata(dx), rankdata(dy)
        v = float(np.corrcoef(dx, dy)[0, 1])
    return float(v), float((1 - v * v) / math.sqrt(m))


def run_case(case: str, n: int, rng: np.random.Generator) -> tuple[float, tuple[float, float], str]:
    if case.startswith("mmd"):
        x, y = draw_mmd(rng, n)
        if case == "mmd-rff":  # a fresh map each repetition: the estimand is the exact MMD², the map's error is stderr's
            r = bigalign.mmd(x, y, kernel="rbf", bandwidth=SIGMA, method="rff", seed=int(rng.integers(1 << 30)), ci=0.95, scheduler="sync")
            return r.value, r.ci, r.method
        kernel = case.split("-")[1]
        kw = {"bandwidth": SIGMA, "method": "exact"} if kernel == "rbf" else {}
        r = bigalign.mmd(x, y, kernel=kernel, ci=0.95, scheduler="sync", **kw)
        return r.value, r.ci, r.method
    x, y = draw_rsa(rng, n)
    # Spearman and Kendall: exact in memory up to n = 4,096, sampled pairs beyond (as method="auto")
    sampled = {"method": "sampled", "n_pairs": SAMPLED_PAIRS, "seed": int(rng.integers(1 << 30))} if n > 4096 else {"scheduler": "sync"}
    if case == "rsa-spearman":
        r = bigalign.rsa(x, y, compare="spearman", ci=0.95, **sampled)
    elif case == "rsa-kendall":
        r = bigalign.rsa(x, y, compare="kendall", ci=0.95, **sampled)
    elif case == "rsa-correlation-pearson":
        r = bigalign.rsa(x, y, distance="correlation", ci=0.95, scheduler="sync")
    else:
        r = bigalign.rsa(x, y, method="sampled", n_pairs=SAMPLED_PAIRS, seed=int(rng.integers(1 << 30)), ci=0.95)
    return r.value, r.ci, r.method


def population(case: str) -> tuple[float, float]:
    if case.startswith("mmd"):
        return mmd_population("linear" if case == "mmd-linear" else "rbf"), 0.0
    if case in _POP:
        return _POP[case]
    _POP[case] = _rsa_case_population(case)
    return _POP[case]


_POP: dict[str, tuple[float, float]] = {}


def _rsa_case_population(case: str) -> tuple[float, float]:
    if case == "rsa-spearman":
        return rsa_population("spearman", "euclidean")
    if case == "rsa-kendall":
        return rsa_population("kendall", "euclidean")
    if case == "rsa-correlation-pearson":
        return rsa_population("pearson", "correlation")
    return rsa_population("pearson", "euclidean")


def table() -> None:
    rows = []
    for f in sorted(OUT.glob("ci_coverage_mmd_rsa_n*.json")):
        data = json.loads(f.read_text())
        for case, c in data["cases"].items():
            rows.append((case, data["n"], c))
    lines = [
        "# Coverage of ci=0.95: MMD² and RSA's rank, correlation-distance and sampled forms",
        "",
        "`python benchmarks/ci_coverage_mmd_rsa.py --n 500 5000 --reps 200` then `--table`. Population values in the script's",
        "docstring (closed form for MMD²; Monte Carlo over independent pairs for RSA, error in the last column).",
        "Target band 0.92–0.98.",
        "",
        "| case | n | method | reps | coverage | mean width | mean value | population | pop. MC error | CPU s/rep |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for case, n, c in sorted(rows, key=lambda r: (CASES.index(r[0]) if r[0] in CASES else 99, r[1])):
        lines.append(
            f"| {case} | {n} | {c['method']} | {c['reps']} | {c['coverage']:.3f} | {c['mean_width']:.4g} | {c['mean_value']:.4g} | "
            f"{c['population']:.5g} | {c['population_se']:.1g} | {c['cpu_per_rep']:.2f} |"
        )
    (OUT / "ci_coverage_mmd_rsa.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, nargs="+", default=[500, 5000])
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--table", action="store_true")
    ap.add_argument("--tag", default="", help="suffix of the JSON file (parallel runs of different cases)")
    a = ap.parse_args()
    if a.table:
        table()
        return
    for case in a.cases.split(","):
        pop, pop_se = population(case)  # once per case for every n
        for n in a.n:
            path = OUT / f"ci_coverage_mmd_rsa_n{n}{a.tag}.json"
            data = json.loads(path.read_text()) if path.exists() else {"n": n, "cases": {}}
            rng = np.random.default_rng([n, CASES.index(case)])
            hits, widths, values, method = [], [], [], ""
            c0 = cpu()
            for rep in range(a.reps):
                v, (lo, hi), method = run_case(case, n, rng)
                hits.append(lo <= pop <= hi)
                widths.append(hi - lo)
                values.append(v)
                if (rep + 1) % 10 == 0 or rep + 1 == a.reps:
                    data["cases"][case] = {
                        "method": method, "reps": rep + 1, "coverage": float(np.mean(hits)), "mean_width": float(np.mean(widths)),
                        "mean_value": float(np.mean(values)), "population": pop, "population_se": pop_se,
                        "cpu_per_rep": (cpu() - c0) / (rep + 1), "time": time.strftime("%Y-%m-%d %H:%M:%S"),
                    }  # fmt: skip
                    path.write_text(json.dumps(data, indent=1))
            print(case, n, data["cases"][case], flush=True)


if __name__ == "__main__":
    main()
