"""Mutual kNN: exact blocked top-k and sampled queries vs a dense platonic-rep-style implementation.

Usage::

    python benchmarks/bench_knn.py                  # the issue's sizes (see --help for what runs)
    python benchmarks/bench_knn.py --quick          # small sizes (< 2 min)
    python benchmarks/bench_knn.py --jobs exact --sizes 20000

Every timed job runs in a fresh subprocess; peak RSS is its ``VmHWM`` (``_util``),
including the input data (``data MB``).  Data (float32, seeded): two views x = zA + ½ε, y = tanh(zB) + ½ε' of an 8-dimensional latent z,
d = 128 unless ``--d``; k = 10.

Jobs
----
``exact``    ``bigalign.mutual_knn(x, y, k=10)`` (every query; tiles of 2,048 rows, threads).
``sampled``  ``bigalign.mutual_knn(x, y, k=10, n_queries=m)`` (m = 1,000 seeded queries, exact
             neighbours among all n); where ``exact`` ran on the same data, its error and
             whether its 95% interval covers the exact value are recorded.
``dense``    platonic-rep's ``mutual_knn`` in numpy: S = X̂X̂ᵀ (float32, n×n), diagonal set to
             −1e8, a full ``argsort`` of every row, n×n float32 masks, mean of |∩|/k — the
             reference code's algorithm (``compute_nearest_neighbors``) on the CPU.  Skipped
             where its extrapolated peak memory exceeds 80% of MemAvailable.

Results: ``benchmarks/results/knn{_quick}.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _util  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"
K = 10
BASELINE_MB = 300  # peak RSS of a child before its n×n work (interpreter, numpy imports)


LATENT = 8


def _data(n: int, d: int, seed: int = 0):
    """Two views of an 8-dimensional latent z (activations are low-dimensional, unlike isotropic
    noise, whose neighbourhoods are nearly random): x = zA + 0.5ε, y = tanh(zB) + 0.5ε'."""
    import numpy as np

    rng = np.random.default_rng(seed)
    a_ = rng.standard_normal((LATENT, d)) / np.sqrt(LATENT)
    b_ = rng.standard_normal((LATENT, d)) / np.sqrt(LATENT)
    x = np.empty((n, d), dtype=np.float32)
    y = np.empty((n, d), dtype=np.float32)
    step = 65536
    for a in range(0, n, step):
        b = min(n, a + step)
        z = rng.standard_normal((b - a, LATENT))
        x[a:b] = z @ a_ + 0.5 * rng.standard_normal((b - a, d))
        y[a:b] = np.tanh(z @ b_) + 0.5 * rng.standard_normal((b - a, d))
    return x, y


def dense_mutual_knn(x, y, k: int) -> float:
    """platonic-rep's mutual_knn / compute_nearest_neighbors, transcribed to numpy (float32)."""
    import numpy as np

    def knn(f):
        f = f / np.linalg.norm(f, axis=1, keepdims=True)
        s = f @ f.T
        np.fill_diagonal(s, -1e8)
        return np.argsort(-s, axis=1)[:, :k]

    a, b = knn(x), knn(y)
    n = a.shape[0]
    rows = np.arange(n)[:, None]
    ma = np.zeros((n, n), dtype=np.float32)
    mb = np.zeros((n, n), dtype=np.float32)
    ma[rows, a] = 1.0
    mb[rows, b] = 1.0
    return float(((ma * mb).sum(axis=1) / k).mean())


def child(job: str, n: int, d: int, m: int) -> None:
    x, y = _data(n, d)
    out: dict[str, Any] = {"job": job, "n": n, "d": d, "k": K, "data_mb": (x.nbytes + y.nbytes) / 2**20}
    if job == "dense":
        t = time.perf_counter()
        v = dense_mutual_knn(x, y, K)
        out.update(seconds=time.perf_counter() - t, value=v)
    else:
        from bigalign.metrics.neighbors import mutual_knn

        mutual_knn(x[:50], y[:50], k=3)  # load the cached kernels (untimed)
        mutual_knn(x[:50], y[:50], k=3, n_queries=10)
        t = time.perf_counter()
        r = mutual_knn(x, y, k=K, n_queries=m if job == "sampled" else None)
        out.update(seconds=time.perf_counter() - t, value=r.value, stderr=r.stderr, method=r.method, parameters=dict(r.parameters))
        if job == "sampled":
            out.update(m=m, ci=list(r.ci))
    _util.emit(out)


def _mem_available() -> float:
    for line in open("/proc/meminfo"):
        if line.startswith("MemAvailable"):
            return int(line.split()[1]) * 1024 / 2**20
    return float("inf")


def plan(quick: bool, jobs: list[str], sizes: list[int] | None) -> list[tuple[str, int]]:
    if quick:
        exact, sampled, dense = sizes or [5000, 20_000], [20_000, 100_000], [2000, 5000]
    else:
        exact, sampled, dense = sizes or [10_000, 20_000, 100_000], [100_000, 1_000_000], [5000, 10_000, 20_000]
    out = []
    if "dense" in jobs:
        out += [("dense", n) for n in dense]
    if "exact" in jobs:
        out += [("exact", n) for n in exact]
    if "sampled" in jobs:
        out += [("sampled", n) for n in sampled]
    return out


def render_md(res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = [
        "# mutual kNN benchmark",
        "",
        f"machine: {m.get('cpu_model')}, {m.get('logical_cpus')} CPUs, {m.get('memory_gib')} GiB; "
        f"command: `{res['command']}`; d = {res['d']}, k = {K}. Times: wall seconds of the call in a fresh process; "
        "`other CPUs` = CPUs used by other processes meanwhile (shared machine; read times with it).",
        "",
        "| job | n | queries | seconds | peak RSS MB | data MB | value | stderr / 95% CI | vs exact | other CPUs |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    exact = {r["n"]: r["value"] for r in res["runs"] if r.get("job") == "exact" and "value" in r}
    for r in res["runs"]:
        if "skipped" in r:
            lines.append(f"| {r['job']} | {r['n']} |  | skipped: {r['skipped']} |  |  |  |  |  |  |")
            continue
        q = r.get("m", r["n"] if r["job"] != "dense" else r["n"])
        ci = f"{r['stderr']:.4f} / [{r['ci'][0]:.4f}, {r['ci'][1]:.4f}]" if r.get("ci") else ""
        vs = ""
        if r["n"] in exact and r["job"] != "exact":
            diff = r["value"] - exact[r["n"]]
            if r["job"] == "dense":
                shared = round(diff * K * r["n"])
                vs = "same counts" if shared == 0 else f"{shared:+d} shared neighbour(s) of {K * r['n']}"
            else:
                vs = f"{diff:+.4f}"
            if r.get("ci"):
                vs += " (covered)" if r["ci"][0] <= exact[r["n"]] <= r["ci"][1] else " (not covered)"
        lines.append(
            f"| {r['job']} | {r['n']} | {q} | {r['seconds']:.3g} | {r['peak_rss_mb']:.0f} | {r['data_mb']:.0f} | {r['value']:.5f} | {ci} | {vs} | {r['other_cpus']:.2f} |"
        )
    lines += [
        "",
        "dense vs exact: the difference in the total number of shared neighbours; the dense job ranks float32 "
        "similarities, so near-ties (within float32 rounding) can order differently from bigalign's float64.",
    ]
    for note in res.get("notes", []):
        lines += ["", note]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--jobs", default="dense,exact,sampled")
    ap.add_argument("--sizes", default=None, help="n for the exact job, comma separated")
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--idle-wait", type=float, default=60.0)
    ap.add_argument("--child", nargs=4, metavar=("JOB", "N", "D", "M"))
    args = ap.parse_args(argv)
    if args.child:
        job, n, d, m = args.child
        child(job, int(float(n)), int(d), int(m))
        return 0
    jobs = args.jobs.split(",")
    sizes = [int(float(s)) for s in args.sizes.split(",")] if args.sizes else None
    res: dict[str, Any] = {"machine": _util.machine_info(), "command": " ".join([Path(sys.argv[0]).name] + (argv or sys.argv[1:])), "d": args.d, "runs": [], "notes": []}
    per_n2: float | None = None
    for job, n in plan(args.quick, jobs, sizes):
        if job == "dense" and per_n2 is not None and BASELINE_MB + per_n2 * n * n > 0.8 * _mem_available():
            need = (BASELINE_MB + per_n2 * n * n) / 1024
            res["runs"].append({"job": job, "n": n, "skipped": f"needs ≈ {need:.0f} GB (> 80% of available)"})
            continue
        waited, load = _util.wait_for_idle(args.idle_wait)
        print(f"{job} n={n} (waited {waited:.0f}s, load {load:.2f})", flush=True)
        r = _util.run_child([__file__, "--child", job, str(n), str(args.d), str(args.queries)])
        r["waited_s"] = waited
        res["runs"].append(r)
        print(f"  {r['seconds']:.2f}s  peak {r['peak_rss_mb']:.0f} MB  value {r['value']:.4f}  other {r['other_cpus']:.2f}", flush=True)
        if job == "dense":  # from the largest run so far, above the interpreter's baseline
            per_n2 = max(1.0, r["peak_rss_mb"] - BASELINE_MB) / n / n
    RESULTS_DIR.mkdir(exist_ok=True)
    stem = "knn_quick" if args.quick else "knn"
    (RESULTS_DIR / f"{stem}.json").write_text(json.dumps(res, indent=1, default=str))
    (RESULTS_DIR / f"{stem}.md").write_text(render_md(res))
    print(render_md(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
