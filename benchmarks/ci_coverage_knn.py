"""Coverage of 95% intervals for the five kNN measures, and of candidate interval constructions.

Population: x ~ N(0, I₈), y = x·B + ε (as benchmarks/ci_coverage_moments.py), k = 10.  A kNN
measure's value depends on n (neighbourhoods of n rows), so the population value at size n is
E[measure on n rows], estimated by the mean over ``--pop-reps`` further independent samples of n
rows (its standard error is reported).  For every repetition, all constructions are computed from
the same neighbour lists (searched 2k deep), so they are compared on the same samples:

``group``      the shipped interval: block jackknife over 20 contiguous row groups, each group left
               out as queries **and** as candidate neighbours (the measure of the remaining rows).
``queries``    the same groups left out as queries only (lists fixed): the linear statistic of the
               per-query scores.
``delete1``    the grouped sums of the exact delete-one pseudo-values ψ_j = n·T − (n − 1)·T₍₋ⱼ₎
               (row j removed as query and as candidate, lists refilled from the (k+1)-th
               neighbour), jackknifed as a linear statistic over the 20 groups (mutual, LCS, edit).
``delete1-pairs``  ``delete1`` minus the Efron–Stein second-order term Σ w·Δ²/n² over the
               (query, candidate) pairs, Δ = the double difference (w = 1 across groups, 3 within).
``hoeffding``  mutual kNN only, the shipped interval of its exact road: the U-statistic form
               T = (1/nk)·Σ_{i≠j} a_ij (a_ij = 1 when j is a neighbour of i in both spaces); grouped
               influences q_j + c_j (q_j the query's own score, c_j = #queries for which j is a mutual
               neighbour / k) minus Hoeffding's second-order term Σ_{i<j} w·(a_ij + a_ji)²/(nk)² (the
               U-statistic's unbiased variance), Student t with Satterthwaite's degrees of freedom
               19·(V_corrected/V)² (benchmarks/_knn_influence.py).

Coverage = hits / R (binomial sd √(0.95·0.05/R)); accepted 0.92–0.98.  Width is reported as
mean width / (3.92·sd of the estimates) (1 = the interval's width matches the actual spread).

Usage::

    python benchmarks/ci_coverage_knn.py --n 500 [--reps 200] [--pop-reps 200] [--quick]
Writes benchmarks/results/ci_coverage_knn_n{n}.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import t as student_t
from threadpoolctl import threadpool_limits

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import bigalign  # noqa: E402
from bigalign._numba.topk import edit_distances, lcs_lengths, overlap_counts  # noqa: E402
from bigalign.engine import prepare  # noqa: E402
from bigalign.options import EngineOptions  # noqa: E402
from bigalign.intervals import jackknife_interval, row_groups  # noqa: E402
from _knn_influence import influence_interval, mutual_influence  # noqa: E402
from bigalign.metrics import neighbors as nb  # noqa: E402

K = 10
SIGMA = 1.0
D = 8
METRICS = ("mutual_knn", "lcs_knn", "edit_distance_knn", "cycle_knn", "cknna")
Q19 = float(student_t.ppf(0.975, 19))
QUICK = "--quick" in sys.argv  # only group, queries and hoeffding (the shipped constructions and the lower bound)


def draw(rng: np.random.Generator, n: int, B: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(size=(n, B.shape[0]))
    return x, x @ B + SIGMA * rng.normal(size=(n, B.shape[1]))


def pair_score(metric: str, ix: np.ndarray, iy: np.ndarray, k: int) -> np.ndarray:
    if metric == "mutual_knn":
        return overlap_counts(ix, iy, np.array([k]))[:, 0] / k
    if metric == "lcs_knn":
        return lcs_lengths(ix, iy, k) / k
    return 1.0 - edit_distances(ix, iy, k) / k


def drop(idx: np.ndarray, j: np.ndarray, k: int) -> np.ndarray:
    """Each row's first k entries other than j[row] (the list refilled from its (k+1)-th)."""
    mask = idx != j[:, None]
    order = np.argsort(~mask, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(idx, order, 1)


def delete1(metric: str, lx, ly, k: int, n: int, s: np.ndarray):
    """ψ_j = s_j + Σ_l (s_l − s_l with j removed) exactly, and the (l, j, difference) triples."""
    I = np.repeat(np.arange(n), 2 * k)
    J = np.concatenate([lx.idx[:, :k], ly.idx[:, :k]], axis=1).ravel()
    key = np.unique(I * n + J)
    I, J = key // n, key % n
    d = s[I] - pair_score(metric, drop(lx.idx[I], J, k), drop(ly.idx[I], J, k), k)
    return s + np.bincount(J, d, minlength=n), I, J, d


def pair_term(I: np.ndarray, J: np.ndarray, d: np.ndarray, n: int, bounds: np.ndarray) -> float:
    """Σ over unordered pairs of w·(summed differences / n)², w = 3 within a row group, 1 across."""
    a, b = np.minimum(I, J), np.maximum(I, J)
    key, inv = np.unique(a * n + b, return_inverse=True)
    dd = np.bincount(inv, d, minlength=key.size)
    same = np.searchsorted(bounds, key // n, side="right") == np.searchsorted(bounds, key % n, side="right")
    return float(np.sum(np.where(same, 3.0, 1.0) * dd**2)) / n**2


def linear(value: float, psi: np.ndarray, n: int, bounds: np.ndarray):
    """The 20-group jackknife of the linear statistic mean(ψ), shifted to ``value`` (logit scale)."""
    G = bounds.size - 1
    tot = psi.sum()
    loo = np.array([(tot - psi[bounds[g] : bounds[g + 1]].sum()) / (n - (bounds[g + 1] - bounds[g])) for g in range(G)])
    return jackknife_interval(value, value + (loo - psi.mean()), 0.95, scale="logit")


def corrected(value: float, se2: float) -> tuple[float, float]:
    """value ± t₁₉·se on the logit scale (se² possibly corrected; ≤ 0 gives a zero-width interval)."""
    if se2 <= 0:
        return (value, value)
    z, sz = math.log(value / (1 - value)), math.sqrt(se2) / (value * (1 - value))
    f = lambda u: 1 / (1 + math.exp(-u))  # noqa: E731
    return (f(z - Q19 * sz), f(z + Q19 * sz))


def intervals(metric: str, lx, ly, k: int, n: int) -> tuple[float, dict[str, tuple[float, float]]]:
    b = row_groups(n)
    kx = nb.NeighbourLists(lx.vals[:, :k], lx.idx[:, :k])
    ky = nb.NeighbourLists(ly.vals[:, :k], ly.idx[:, :k])
    if metric == "cknna":
        T = nb._cknna_result(kx, ky, k, n, {}).value
        return T, {"group": jackknife_interval(T, nb.leave_group_out(metric, lx, ly, k, n, None), 0.95, scale="logit").bounds}
    s, _ = nb.per_query_scores(metric, kx, ky, k)
    T = float(s.mean())
    out = {"group": jackknife_interval(T, nb.leave_group_out(metric, lx, ly, k, n, None), 0.95, scale="logit").bounds,
           "queries": linear(T, s, n, b).bounds}  # fmt: skip
    if metric in ("mutual_knn", "lcs_knn", "edit_distance_knn") and not QUICK:
        psi, I, J, d = delete1(metric, lx, ly, k, n, s)
        iv = linear(T, psi, n, b)
        out["delete1"] = iv.bounds
        out["delete1-pairs"] = corrected(T, iv.se**2 - pair_term(I, J, d, n, b))
    if metric == "mutual_knn":  # the shipped interval of mutual_knn's exact road (bigalign's own functions)
        _, loo, corr = mutual_influence(kx, ky, k, n, b)
        made = influence_interval(T, loo, corr, 0.95, scale="logit")
        out["hoeffding"] = made[0].bounds if made is not None else out["group"]
    return T, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--pop-reps", type=int, default=200)
    ap.add_argument("--metrics", default=",".join(METRICS))
    ap.add_argument("--out", default=None)
    ap.add_argument("--quick", action="store_true", help="skip the delete-one constructions")
    a = ap.parse_args()
    n, metrics = a.n, a.metrics.split(",")
    B = 1.5 * np.random.default_rng(7).normal(size=(D, D)) / math.sqrt(D)
    t0, c0 = time.time(), time.process_time()
    with threadpool_limits(1):

        def lists(x: np.ndarray, y: np.ndarray, depth: int):
            (lx, ly), _ = nb.search(prepare([x, y], ["x", "y"]), depth, EngineOptions(scheduler="sync"))
            return lx, ly

        prng = np.random.default_rng([99, n])
        pop: dict[str, list[float]] = {m: [] for m in metrics}
        for _ in range(a.pop_reps):
            lx, ly = lists(*draw(prng, n, B), K)
            for m in metrics:
                pop[m].append(nb._cknna_result(lx, ly, K, n, {}).value if m == "cknna" else float(nb.per_query_scores(m, lx, ly, K)[0].mean()))
        popv = {m: (float(np.mean(v)), float(np.std(v, ddof=1) / math.sqrt(len(v)))) for m, v in pop.items()}
        rrng = np.random.default_rng([2024, n])
        hits: dict[tuple[str, str], list[bool]] = {}
        widths: dict[tuple[str, str], list[float]] = {}
        vals: dict[str, list[float]] = {m: [] for m in metrics}
        for _ in range(a.reps):
            lx, ly = lists(*draw(rrng, n, B), 2 * K)
            for m in metrics:
                T, ivs = intervals(m, lx, ly, K, n)
                vals[m].append(T)
                for e, (lo, hi) in ivs.items():
                    hits.setdefault((m, e), []).append(bool(lo <= popv[m][0] <= hi))
                    widths.setdefault((m, e), []).append(hi - lo)
    wall, cpu = time.time() - t0, time.process_time() - c0
    rows = []
    for (m, e), h in hits.items():
        sd = float(np.std(vals[m], ddof=1))
        rows.append({"measure": m, "construction": e, "n": n, "k": K, "reps": a.reps, "coverage": float(np.mean(h)),
                     "binomial_sd": math.sqrt(0.95 * 0.05 / a.reps), "population": popv[m][0], "population_se": popv[m][1],
                     "mean_estimate": float(np.mean(vals[m])), "sd_estimate": sd,
                     "width_over_3.92sd": float(np.mean(widths[(m, e)]) / (2 * 1.959964 * sd))})  # fmt: skip
    out = Path(a.out or HERE / "results" / f"ci_coverage_knn_n{n}")
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"n": n, "k": K, "d": D, "reps": a.reps, "pop_reps": a.pop_reps, "wall_s": wall, "cpu_s": cpu}
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    lines = [
        f"# Coverage of 95% kNN intervals, n = {n:,}, k = {K}",
        "",
        f"`python benchmarks/ci_coverage_knn.py --n {n} --reps {a.reps} --pop-reps {a.pop_reps}{' --quick' if a.quick else ''}`: x ~ N(0, I₈), y = xB + ε; "
        f"population value = mean over {a.pop_reps} independent samples of n rows.  Wall {wall:.0f} s, CPU {cpu:.0f} s "
        "(one thread, shared 2-core machine).  Shipped: `hoeffding` for mutual kNN (exact road), `group` for the "
        "others; the rest are the candidates described in the script's docstring.",
        "",
        "| measure | construction | coverage | binomial sd | width / (3.92·sd) | population (± se) | mean estimate |",
        "|---|---|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['measure']} | {r['construction']} | {r['coverage']:.3f} | {r['binomial_sd']:.3f} | "
                     f"{r['width_over_3.92sd']:.2f} | {r['population']:.5f} ± {r['population_se']:.1g} | {r['mean_estimate']:.5f} |")  # fmt: skip
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
