"""Coverage of dependency-graph (HAC) variance estimators for the five kNN measures (experiment).

Same population and seeds as benchmarks/ci_coverage_knn.py (x ~ N(0, I₈), y = xB + ε, k = 10,
population value = mean over ``--pop-reps`` independent samples of n rows).  Each measure is
linearised as T − E[T] ≈ Σ_a (φ_a − φ̄):

``q``       φ_a = q_a/n, the per-query score (mutual, lcs, edit, cycle).
``row``     CKNNA: as ``hajek`` with each sum split by its first (query) index only, so
            Σ_a φ_a is the linearised CKNNA itself (the analogue of ``q``).
``hajek``   φ_a = the row's first-order (Hájek) influence: for mutual kNN (q_a + c_a)/n (own score
            plus score as a candidate); for CKNNA the delta-method influence of the ratio of the three
            unbiased HSICs, each term (Σ K̃∘L̃ᵀ, ΣK̃, ΣL̃, 1ᵀK̃L̃1) by the sum over the tuples holding row a.

and V = Σ_a Σ_{b∈D(a)} (φ_a − φ̄)(φ_b − φ̄) with D(a) = {a} (``iid``), {a} ∪ N_x(a) ∪ N_y(a)
symmetrised (``hac1``), its 2-hop closure (``hac2``), or ``hac1`` plus every row of a's contiguous
row group (20 groups; ``hac1g``: keeps dependence in storage order, as the block jackknife does;
Student t₁₉ quantile, its noise being that of 20 group sums; ``hac1g-z``: the same V with the normal
quantile; ``hac1g-satt``: Student t with Satterthwaite's ν = 19·(V/Σ_g S_g²)², S_g the group sums of
the centred scores — only the group-sum part of V carries the 19-degree noise).  Interval T ± 1.96·√V (``hac1g``:
t₁₉) on the logit scale.
Neighbour lists by brute-force cosine search in numpy (similarity desc, then index asc; checked
against bigalign's search on the first sample).

    python benchmarks/ci_coverage_knn_hac.py --n 500 [--reps 200] [--pop-reps 200]
Writes benchmarks/results/ci_coverage_knn_hac_n{n}.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy.stats import t as student_t

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bigalign._numba.topk import cknna_sums  # noqa: E402
from bigalign.engine import prepare  # noqa: E402
from bigalign.options import EngineOptions  # noqa: E402
from bigalign.intervals import row_groups  # noqa: E402
from bigalign.metrics import neighbors as nb  # noqa: E402
from _knn_influence import mutual_pairs  # noqa: E402

K = 10
D = 8
SIGMA = 1.0
Z = 1.959964
Q19 = 2.093024  # Student t, 19 degrees of freedom, 0.975
METRICS = ("mutual_knn", "lcs_knn", "edit_distance_knn", "cycle_knn", "cknna")


def draw(rng, n, B):
    x = rng.normal(size=(n, B.shape[0]))
    return x, x @ B + SIGMA * rng.normal(size=(n, B.shape[1]))


def knn(x: np.ndarray, k: int) -> nb.NeighbourLists:
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    n = u.shape[0]
    vals = np.empty((n, k))
    idx = np.empty((n, k), dtype=np.int64)
    for a in range(0, n, 1000):
        s = u[a : a + 1000] @ u.T
        r = np.arange(s.shape[0])
        s[r, a + r] = -np.inf
        part = np.argpartition(-s, k, axis=1)[:, : k + 1]
        ps = np.take_along_axis(s, part, 1)
        o = np.lexsort((part, -ps), axis=1)[:, :k]
        idx[a : a + 1000] = np.take_along_axis(part, o, 1)
        vals[a : a + 1000] = np.take_along_axis(ps, o, 1)
    return nb.NeighbourLists(vals, idx)


def csr(n, idx, vals=None):
    rows = np.repeat(np.arange(n), idx.shape[1])
    v = np.ones(idx.size) if vals is None else vals.ravel()
    return sp.csr_matrix((v, (rows, idx.ravel())), shape=(n, n))


def graphs(lx, ly, n):
    A = csr(n, lx.idx) + csr(n, ly.idx)
    A = ((A + A.T + sp.identity(n, format="csr")) > 0).astype(np.float64)
    A2 = ((A @ A) > 0).astype(np.float64)
    g = np.searchsorted(row_groups(n), np.arange(n), side="right") - 1
    same = sp.csr_matrix((g[:, None] == g[None, :]).astype(np.float64)) if n <= 5000 else None
    out = {"iid": None, "hac1": A, "hac2": A2}
    if same is not None:
        out["hac1g"] = ((A + same) > 0).astype(np.float64)
    return out


def hsic_parts(Kt, Lt, n, rows_only=False):
    """(h, φ) — Song's unbiased HSIC of the masked K̃, L̃ and each row's linearised influence
    (``rows_only``: each sum split by its first index only, so Σ_a φ_a is the linearised HSIC)."""
    P = Kt.multiply(Lt.T)
    t1 = P.sum()
    rk, ck = np.asarray(Kt.sum(1)).ravel(), np.asarray(Kt.sum(0)).ravel()
    rl, cl = np.asarray(Lt.sum(1)).ravel(), np.asarray(Lt.sum(0)).ravel()
    sk, sl = rk.sum(), rl.sum()
    t3 = float(ck @ rl)
    N = n * (n - 3)
    h = (t1 + sk * sl / ((n - 1) * (n - 2)) - 2 * t3 / (n - 2)) / N
    if rows_only:
        p1, p3, ck, cl = np.asarray(P.sum(1)).ravel(), Kt @ rl, 0 * ck, 0 * cl
    else:
        p1 = np.asarray(P.sum(1)).ravel() + np.asarray(P.sum(0)).ravel()
        p3 = Kt @ rl + ck * rl + Lt.T @ ck
    phi = (p1 + (sl * (rk + ck) + sk * (rl + cl)) / ((n - 1) * (n - 2)) - 2 * p3 / (n - 2)) / N
    return h, phi, (t1, sk, sl, t3)


def cknna_phi(lx, ly, n, rows_only=False):
    Kx, Ky = csr(n, lx.idx, lx.vals), csr(n, ly.idx, ly.vals)
    Px, Py = csr(n, lx.idx), csr(n, ly.idx)
    hxy, fxy, sums = hsic_parts(Kx.multiply(Py).tocsr(), Ky.multiply(Px).tocsr(), n, rows_only)
    hxx, fxx, _ = hsic_parts(Kx, Kx, n, rows_only)
    hyy, fyy, _ = hsic_parts(Ky, Ky, n, rows_only)
    T = hxy / math.sqrt(hxx * hyy)
    return T, T * (fxy / hxy - 0.5 * fxx / hxx - 0.5 * fyy / hyy), sums


def mutual_hajek(lx, ly, n, k):
    qi, cj = mutual_pairs(lx.idx, ly.idx)
    return (np.bincount(qi, minlength=n) + np.bincount(cj, minlength=n)) / (k * n)


def logit_interval(T, V, q=Z):
    if not (0 < T < 1) or V <= 0:
        return (T, T)
    z, s = math.log(T / (1 - T)), math.sqrt(V) / (T * (1 - T))
    f = lambda u: 1 / (1 + math.exp(-u))  # noqa: E731
    return (f(z - q * s), f(z + q * s))


def constructions(m, lx, ly, n, g):
    out = {}
    if m == "cknna":
        T, phi, _ = cknna_phi(lx, ly, n)
        phis = {"hajek": phi, "row": cknna_phi(lx, ly, n, True)[1]}
    else:
        q, _ = nb.per_query_scores(m, lx, ly, K)
        T = float(q.mean())
        phis = {"q": q / n}
        if m == "mutual_knn":
            phis["hajek"] = mutual_hajek(lx, ly, n, K)
    for pn, phi in phis.items():
        e = phi - phi.mean()
        for gn, A in g.items():
            V = float(e @ e) if A is None else float(e @ (A @ e))
            out[f"{pn}-{gn}"] = logit_interval(T, V, Q19 if gn == "hac1g" else Z)
            if gn == "hac1g":  # the same V, normal quantile / Satterthwaite's ν = 19·(V/Σ_g S_g²)²
                gs = np.add.reduceat(e, row_groups(n)[:-1])
                nu = max(1.0, 19 * (V / float(gs @ gs)) ** 2)
                out[f"{pn}-hac1g-z"] = logit_interval(T, V, Z)
                out[f"{pn}-hac1g-satt"] = logit_interval(T, V, float(student_t.ppf(0.975, nu)))
    return T, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--pop-reps", type=int, default=200)
    a = ap.parse_args()
    n = a.n
    B = 1.5 * np.random.default_rng(7).normal(size=(D, D)) / math.sqrt(D)
    t0, c0 = time.time(), time.process_time()
    prng = np.random.default_rng([99, n])
    # check: the numpy lists equal bigalign's search, and the sparse CKNNA sums its own
    x, y = draw(np.random.default_rng(1), min(n, 500), B)
    (bx, by), _ = nb.search(prepare([x, y], ["x", "y"]), K, EngineOptions(scheduler="sync"))
    mx, my = knn(x, K), knn(y, K)
    assert (bx.idx == mx.idx).all() and (by.idx == my.idx).all()
    _, _, sums = cknna_phi(mx, my, x.shape[0])
    ref = cknna_sums(mx.idx, mx.vals, my.idx, my.vals, K)
    assert np.allclose(sums, ref, rtol=1e-10), (sums, ref)
    assert abs(cknna_phi(mx, my, x.shape[0])[0] - nb._cknna_result(mx, my, K, x.shape[0], {}).value) < 1e-10
    pop = {m: [] for m in METRICS}
    for _ in range(a.pop_reps):
        x, y = draw(prng, n, B)
        lx, ly = knn(x, K), knn(y, K)
        for m in METRICS:
            pop[m].append(cknna_phi(lx, ly, n)[0] if m == "cknna" else float(nb.per_query_scores(m, lx, ly, K)[0].mean()))
    popv = {m: (float(np.mean(v)), float(np.std(v, ddof=1) / math.sqrt(len(v)))) for m, v in pop.items()}
    rrng = np.random.default_rng([2024, n])
    hits, widths, vals = {}, {}, {m: [] for m in METRICS}
    for _ in range(a.reps):
        x, y = draw(rrng, n, B)
        lx, ly = knn(x, K), knn(y, K)
        g = graphs(lx, ly, n)
        for m in METRICS:
            T, ivs = constructions(m, lx, ly, n, g)
            vals[m].append(T)
            for e, (lo, hi) in ivs.items():
                hits.setdefault((m, e), []).append(bool(lo <= popv[m][0] <= hi))
                widths.setdefault((m, e), []).append(hi - lo)
    wall, cpu = time.time() - t0, time.process_time() - c0
    rows = []
    for (m, e), h in hits.items():
        sd = float(np.std(vals[m], ddof=1))
        rows.append({"measure": m, "construction": e, "n": n, "k": K, "reps": a.reps, "coverage": float(np.mean(h)),
                     "population": popv[m][0], "population_se": popv[m][1], "mean_estimate": float(np.mean(vals[m])),
                     "sd_estimate": sd, "width_over_3.92sd": float(np.mean(widths[(m, e)]) / (2 * Z * sd))})  # fmt: skip
    out = HERE / "results" / f"ci_coverage_knn_hac_n{n}"
    meta = {"n": n, "k": K, "d": D, "reps": a.reps, "pop_reps": a.pop_reps, "wall_s": wall, "cpu_s": cpu}
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    lines = [f"# Dependency-graph (HAC) kNN intervals, n = {n:,}, k = {K} (experiment)", "",
             f"`python benchmarks/ci_coverage_knn_hac.py --n {n} --reps {a.reps} --pop-reps {a.pop_reps}` "
             f"(constructions: the script's docstring).  Wall {wall:.0f} s, CPU {cpu:.0f} s (one thread, shared 2-core "
             f"machine).  Binomial sd {math.sqrt(0.95 * 0.05 / a.reps):.3f}; accepted 0.92–0.98.", "",
             "| measure | construction | coverage | width / (3.92·sd) | population (± se) | mean estimate |",
             "|---|---|---:|---:|---|---:|"]  # fmt: skip
    for r in rows:
        lines.append(f"| {r['measure']} | {r['construction']} | {r['coverage']:.3f} | {r['width_over_3.92sd']:.2f} | "
                     f"{r['population']:.5f} ± {r['population_se']:.1g} | {r['mean_estimate']:.5f} |")  # fmt: skip
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
