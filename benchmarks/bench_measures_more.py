"""Cost of the moment-based measures (Procrustes, SVCCA, PWCCA) beside linear CKA, and of the tile ones.

Usage::

    python benchmarks/bench_measures_more.py          # n = 100,000, d = 128 (moments); n = 4,000 (tiles)

All inputs float32 in memory, the threaded scheduler; each job is timed in this process (wall and
CPU seconds, best of 2) and reported as a ratio to linear CKA on the same data (moments) or to
``bigalign.dcor`` exact tiles (tiles).  Results: ``benchmarks/results/measures_more.{json,md}``.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import bigalign  # noqa: E402

HERE = Path(__file__).resolve().parent


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def timed(f):  # type: ignore[no-untyped-def]
    best = None
    for _ in range(2):
        t0, c0 = time.perf_counter(), cpu()
        v = f()
        w, c = time.perf_counter() - t0, cpu() - c0
        if best is None or w < best[0]:
            best = (w, c, float(v.value))
    return best


def main() -> None:
    rng = np.random.default_rng(0)
    n, d = 100_000, 128
    z = rng.normal(size=(n, 16)).astype(np.float32)
    x = (z @ rng.normal(size=(16, d)) + rng.normal(size=(n, d))).astype(np.float32)
    y = (z @ rng.normal(size=(16, d)) + rng.normal(size=(n, d))).astype(np.float32)
    jobs = {
        "cka (linear, baseline)": lambda: bigalign.cka(x, y),
        "procrustes": lambda: bigalign.procrustes(x, y),
        "procrustes angular": lambda: bigalign.procrustes(x, y, angular=True),
        "svcca (99%)": lambda: bigalign.svcca(x, y),
        "svcca randomized (k = 32)": lambda: bigalign.svcca(x, y, n_components=32, method="randomized"),
        "pwcca": lambda: bigalign.pwcca(x, y),
    }
    out: dict = {"moments": {"n": n, "d": d}, "tiles": {}}
    for name, f in jobs.items():
        w, c, v = timed(f)
        out["moments"][name] = {"wall_s": w, "cpu_s": c, "value": v}
        print(name, w, c, v, flush=True)
    m = 4000
    xs, ys = x[:m], y[:m]
    tjobs = {
        "dcor (exact tiles, baseline)": lambda: bigalign.dcor(xs, ys, method="exact"),
        "energy_distance (x vs y rows)": lambda: bigalign.energy_distance(xs[: m // 2], xs[m // 2 :]),
        "partial_dcor (3 pairs)": lambda: bigalign.partial_dcor(xs, ys, x[m : 2 * m]),
        "rsa kendall (n = 2,000)": lambda: bigalign.rsa(xs[:2000], ys[:2000], compare="kendall"),
        "permutation_test cka, B = 99": lambda: bigalign.permutation_test(xs, ys, metric="cka", n_permutations=99),
        "permutation_test dcor, n = 1,000, B = 99": lambda: bigalign.permutation_test(xs[:1000], ys[:1000], metric="dcor", n_permutations=99),
    }
    out["tiles"]["n"] = m
    for name, f in tjobs.items():
        w, c, v = timed(f)
        out["tiles"][name] = {"wall_s": w, "cpu_s": c, "value": v}
        print(name, w, c, v, flush=True)
    res = HERE / "results"
    (res / "measures_more.json").write_text(json.dumps(out, indent=2))
    base = out["moments"]["cka (linear, baseline)"]["wall_s"]
    lines = [
        "# Cost of the Procrustes, CCA, energy and permutation measures",
        "",
        f"Moment measures: n = {n:,}, d_x = d_y = {d}, float32 in memory, threaded scheduler, best of 2; shared 2-core machine.",
        "",
        "| measure | wall s | CPU s | × linear CKA (wall) | value |",
        "|---|---|---|---|---|",
    ]
    for k, v in out["moments"].items():
        if isinstance(v, dict):
            lines.append(f"| {k} | {v['wall_s']:.2f} | {v['cpu_s']:.2f} | {v['wall_s'] / base:.2f} | {v['value']:.4f} |")
    tb = out["tiles"]["dcor (exact tiles, baseline)"]["wall_s"]
    lines += ["", f"Tile measures: n = {m:,} rows (unless stated), same data.", "", "| measure | wall s | CPU s | × exact dCor (wall) |", "|---|---|---|---|"]
    for k, v in out["tiles"].items():
        if isinstance(v, dict):
            lines.append(f"| {k} | {v['wall_s']:.2f} | {v['cpu_s']:.2f} | {v['wall_s'] / tb:.2f} |")
    (res / "measures_more.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
