"""MMD and the kernel independence measures: time of each route against a naive baseline.

Usage::

    python benchmarks/bench_mmd.py            # n up to 10,000 exact, 200,000 with features (minutes)
    python benchmarks/bench_mmd.py --quick    # small sizes (< 1 min)
    python benchmarks/bench_mmd.py --out benchmarks/results/mmd.json

Jobs (in process; each timing is the best of ``--repeat`` runs):

``mmd-exact``      ``bigalign.mmd(method="exact")``: pooled kernel tiles (GEMM + compiled loop);
``mmd-naive``      the same value from the explicit pooled Gram in numpy (``scipy.spatial.distance.cdist``);
``mmd-rff``        ``bigalign.mmd(method="rff")``, 2,048 feature columns, one streamed pass;
``mmd-perm``       ``bigalign.mmd_test(null="permutation", n_permutations=B)`` on exact tiles;
``kcc-exact``      ``bigalign.kcc(kernel="rbf", method="exact")`` (Grams + pivoted Cholesky);
``kcc-naive``      R_x = K̃(K̃ + κ tr K̃)⁻¹, eig(R_xR_y) in numpy (the definition);
``kmi-nystroem``   ``bigalign.kmi(kernel="rbf", method="nystroem")`` (512 landmarks).

Data: x ~ N(0, I_8), y ~ N(0.1, I_8) (MMD), and y = tanh(x) + noise (KCC), float64 in memory.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from typing import Any, Callable

import numpy as np


def best(f: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    out, t = None, float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = f()
        t = min(t, time.perf_counter() - t0)
    return t, out


def naive_mmd(x: np.ndarray, y: np.ndarray, sigma: float) -> float:
    from scipy.spatial.distance import cdist

    z = np.vstack([x, y])
    K = np.exp(-cdist(z, z, "sqeuclidean") / (2 * sigma**2))
    nx, ny = len(x), len(y)
    kxx, kyy, kxy = K[:nx, :nx], K[nx:, nx:], K[:nx, nx:]
    return (kxx.sum() - nx) / (nx * (nx - 1)) + (kyy.sum() - ny) / (ny * (ny - 1)) - 2 * kxy.mean()


def naive_kcc(x: np.ndarray, y: np.ndarray, sx: float, sy: float, kappa: float) -> float:
    from scipy.spatial.distance import cdist

    n = len(x)
    H = np.eye(n) - 1.0 / n
    Kc = H @ np.exp(-cdist(x, x, "sqeuclidean") / (2 * sx**2)) @ H
    Lc = H @ np.exp(-cdist(y, y, "sqeuclidean") / (2 * sy**2)) @ H
    Rx = Kc @ np.linalg.inv(Kc + kappa * np.trace(Kc) * np.eye(n))
    Ry = Lc @ np.linalg.inv(Lc + kappa * np.trace(Lc) * np.eye(n))
    return float(np.sqrt(np.max(np.linalg.eigvals(Rx @ Ry).real)))


def main() -> None:
    import bigalign  # noqa: F401  (numba caches, dask)
    from bigalign.metrics.independence import kcc, kmi
    from bigalign.metrics.mmd import mmd, mmd_test

    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    exact_ns = [1000, 2000] if a.quick else [2000, 5000, 10000]
    feature_ns = [20000] if a.quick else [50000, 200000]
    kcc_ns = [300, 600] if a.quick else [500, 1000, 2000]
    perm = 200 if a.quick else 1000
    rows: list[dict[str, Any]] = []
    rng = np.random.default_rng(0)
    mmd(rng.normal(size=(20, 8)), rng.normal(size=(20, 8)))  # compile
    for n in exact_ns:
        x, y = rng.normal(size=(n // 2, 8)), rng.normal(size=(n - n // 2, 8)) + 0.1
        t, r = best(lambda: mmd(x, y, method="exact"), a.repeat)
        tn, v = best(lambda: naive_mmd(x, y, r.parameters["bandwidth"]), a.repeat)
        rows.append({"job": "mmd-exact", "n": n, "s": t, "baseline": "mmd-naive", "baseline_s": tn,
                     "agree": abs(r.value - v) / max(abs(v), 1e-300)})  # fmt: skip
        if n <= 5000:
            tp, _ = best(lambda: mmd_test(x, y, null="permutation", n_permutations=perm), a.repeat)
            rows.append({"job": f"mmd-perm (B={perm})", "n": n, "s": tp})
    for n in feature_ns:
        x, y = rng.normal(size=(n // 2, 8)), rng.normal(size=(n - n // 2, 8)) + 0.1
        t, r = best(lambda: mmd(x, y, method="rff"), a.repeat)
        rows.append({"job": "mmd-rff (2048 cols)", "n": n, "s": t, "stderr": r.stderr})
        t, r = best(lambda: kmi(x, np.tanh(x) + rng.normal(size=x.shape), kernel="rbf", method="nystroem"), a.repeat)
        rows.append({"job": "kmi-nystroem (512)", "n": n // 2, "s": t, "stderr": r.stderr})
    for n in kcc_ns:
        x = rng.normal(size=(n, 4))
        y = np.tanh(x) + 0.5 * rng.normal(size=(n, 4))
        t, r = best(lambda: kcc(x, y, kernel="rbf", method="exact"), a.repeat)
        tn, v = best(lambda: naive_kcc(x, y, r.parameters["bandwidth_x"], r.parameters["bandwidth_y"], 1e-2), a.repeat)
        rows.append({"job": "kcc-exact", "n": n, "s": t, "baseline": "kcc-naive", "baseline_s": tn, "agree": abs(r.value - v) / v})
    print(f"{'job':24s} {'n':>8s} {'time s':>9s} {'baseline s':>11s} {'speed-up':>9s} {'rel. diff':>10s}")
    for row in rows:
        b = row.get("baseline_s")
        print(f"{row['job']:24s} {row['n']:8d} {row['s']:9.3f} " + (f"{b:11.3f} {b / row['s']:9.1f} {row['agree']:10.1e}" if b else ""))
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"machine": platform.platform(), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
