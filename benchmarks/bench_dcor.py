"""Distance correlation: exact tiles vs the ``dcor`` package, and block U-statistics at large n.

Usage::

    python benchmarks/bench_dcor.py                 # the issue's sizes (see --help for what runs)
    python benchmarks/bench_dcor.py --quick         # small sizes (< 2 min)
    python benchmarks/bench_dcor.py --jobs exact,dcor --sizes 5000,10000

Every timed job runs in a fresh subprocess; peak RSS is that process's ``VmHWM``
(see ``_util``), *including* its input data (reported separately as ``data MB``).
Data: two views x = zA + ½ε, y = tanh(zB) + ½ε' of an 8-dimensional latent z (float64 for
n ≤ 10⁵, float32 for larger n to keep the inputs in memory), seeded; d = 128 unless ``--d``.

Jobs
----
``exact``   ``bigalign.dcor(x, y, method="exact")`` (unbiased dCor², default threads scheduler).
``dcor``    ``dcor.u_distance_correlation_sqr(x, y)`` (dcor 0.7's default, in-memory n×n method), as
            installed.  With array-api-compat ≥ 1.1x its check ``array_namespace(x) != np`` is true for
            numpy arrays, so it never takes its scipy ``cdist`` route and broadcasts an n×n×d array
            (peak ≈ 8·n²·d bytes: 4.2 GB at n = 2,000, d = 128).
``dcor-cdist`` the same call with that check restored (benchmark-local patch of
            ``dcor.distances._can_be_numpy_double``): distances by ``scipy.spatial.distance.cdist``,
            the route dcor intends for float64 numpy input; a few n×n float64 matrices.
Both dcor jobs are skipped where their extrapolated peak memory exceeds 80% of MemAvailable.
``block``   ``bigalign.dcor(x, y, method="block")`` (default B = 1024), one seed per size; its
            error is measured against ``exact`` where both ran (same data) and, at n = 20,000,
            over ``--seeds`` seeds.
The dcor package's numba functions are compiled before the timer starts (an untimed call on
20 rows); bigalign's kernels are loaded from numba's cache the same way.

Results: ``benchmarks/results/dcor{_quick}.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _util  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"
BASELINE_MB = 300  # peak RSS of a child before its n×n work (interpreter, numpy, dcor/bigalign imports)


LATENT = 8


def _data(n: int, d: int, seed: int = 0):
    """Two views of an 8-dimensional latent z: x = zA + ½ε, y = tanh(zB) + ½ε' (as bench_knn)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    dtype = np.float64 if n <= 100_000 else np.float32
    a_ = rng.standard_normal((LATENT, d)) / np.sqrt(LATENT)
    b_ = rng.standard_normal((LATENT, d)) / np.sqrt(LATENT)
    x = np.empty((n, d), dtype=dtype)
    y = np.empty((n, d), dtype=dtype)
    step = 65536
    for a in range(0, n, step):
        b = min(n, a + step)
        z = rng.standard_normal((b - a, LATENT))
        x[a:b] = z @ a_ + 0.5 * rng.standard_normal((b - a, d))
        y[a:b] = np.tanh(z @ b_) + 0.5 * rng.standard_normal((b - a, d))
    return x, y


def child(job: str, n: int, d: int, seed: int) -> None:
    import numpy as np

    x, y = _data(n, d)
    out: dict[str, Any] = {"job": job, "n": n, "d": d, "seed": seed, "data_mb": (x.nbytes + y.nbytes) / 2**20}
    if job in ("dcor", "dcor-cdist"):
        import dcor

        if job == "dcor-cdist":
            import dcor.distances as dd

            dd._can_be_numpy_double = lambda a: isinstance(a, np.ndarray) and a.dtype == np.float64
        dcor.u_distance_correlation_sqr(x[:20], y[:20])  # compile (untimed)
        t = time.perf_counter()
        v = dcor.u_distance_correlation_sqr(x, y)
        out.update(seconds=time.perf_counter() - t, value=float(v))
    else:
        import bigalign.metrics.dcor as bd

        bd.dcor(x[:40], y[:40], method="exact")  # load the cached kernels (untimed)
        bd.dcor(x[:40], y[:40], method="block", block_rows=10)
        t = time.perf_counter()
        if job == "exact":
            r = bd.dcor(x, y, method="exact")
        else:
            r = bd.dcor(x, y, method="block", seed=seed)
        out.update(seconds=time.perf_counter() - t, value=r.value, stderr=r.stderr, method=r.method, parameters=dict(r.parameters))
    _util.emit(out)


def _mem_available() -> float:
    for line in open("/proc/meminfo"):
        if line.startswith("MemAvailable"):
            return int(line.split()[1]) * 1024 / 2**20
    return float("inf")


def plan(quick: bool, jobs: list[str], sizes: list[int] | None, seeds: int) -> list[tuple[str, int, int]]:
    if quick:
        sizes_exact = sizes or [2000, 5000]
        block_sizes = [5000, 100_000]
        err_n = 5000
    else:
        sizes_exact = sizes or [2000, 5000, 10_000, 20_000]
        block_sizes = [20_000, 1_000_000]
        err_n = 20_000
    out: list[tuple[str, int, int]] = []
    for n in sizes_exact:
        for job in ("exact", "dcor-cdist", "dcor"):
            if job in jobs:
                out.append((job, n, 0))
    if "block" in jobs:
        for n in block_sizes:
            out.append(("block", n, 0))
        out += [("block", err_n, s) for s in range(1, seeds)]
    return out


def render_md(res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = [
        "# dcor benchmark",
        "",
        f"machine: {m.get('cpu_model')}, {m.get('logical_cpus')} CPUs, {m.get('memory_gib')} GiB; "
        f"command: `{res['command']}`; d = {res['d']}. Times: wall seconds of the call in a fresh process; "
        "`other CPUs` = CPUs used by other processes meanwhile (shared machine; read times with it).",
        "",
        "| job | n | seed | seconds | peak RSS MB | data MB | value (unbiased dCor²) | stderr | error vs exact | other CPUs |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    exact = {r["n"]: r["value"] for r in res["runs"] if r.get("job") == "exact" and "value" in r}
    for r in res["runs"]:
        if "skipped" in r:
            lines.append(f"| {r['job']} | {r['n']} |  | skipped: {r['skipped']} |  |  |  |  |  |  |")
            continue
        err = f"{r['value'] - exact[r['n']]:+.2e}" if r["n"] in exact and r["job"] != "exact" else ""
        se = f"{r['stderr']:.2e}" if r.get("stderr") else ""
        lines.append(
            f"| {r['job']} | {r['n']} | {r.get('seed', 0)} | {r['seconds']:.3g} | {r['peak_rss_mb']:.0f} | {r['data_mb']:.0f} | "
            f"{r['value']:.6f} | {se} | {err} | {r['other_cpus']:.2f} |"
        )
    for note in res.get("notes", []):
        lines += ["", note]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--jobs", default="exact,dcor-cdist,dcor,block")
    ap.add_argument("--sizes", default=None, help="n for the exact/dcor jobs, comma separated")
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--seeds", type=int, default=5, help="seeds of the block job at n = 20,000 (error spread)")
    ap.add_argument("--idle-wait", type=float, default=60.0)
    ap.add_argument("--child", nargs=4, metavar=("JOB", "N", "D", "SEED"))
    args = ap.parse_args(argv)
    if args.child:
        job, n, d, seed = args.child
        child(job, int(float(n)), int(d), int(seed))
        return 0
    jobs = args.jobs.split(",")
    sizes = [int(float(s)) for s in args.sizes.split(",")] if args.sizes else None
    res: dict[str, Any] = {"machine": _util.machine_info(), "command": " ".join([Path(sys.argv[0]).name] + (argv or sys.argv[1:])), "d": args.d, "runs": [], "notes": []}
    per_n2: dict[str, float] = {}  # MB per n² measured on the first run of each dcor job, to extrapolate
    for job, n, seed in plan(args.quick, jobs, sizes, args.seeds):
        if job in per_n2 and BASELINE_MB + per_n2[job] * n * n > 0.8 * _mem_available():
            need = (BASELINE_MB + per_n2[job] * n * n) / 1024
            res["runs"].append({"job": job, "n": n, "skipped": f"needs ≈ {need:.0f} GB (> 80% of available)"})
            continue
        waited, load = _util.wait_for_idle(args.idle_wait)
        print(f"{job} n={n} seed={seed} (waited {waited:.0f}s, load {load:.2f})", flush=True)
        r = _util.run_child([__file__, "--child", job, str(n), str(args.d), str(seed)])
        r["waited_s"] = waited
        res["runs"].append(r)
        print(f"  {r['seconds']:.2f}s  peak {r['peak_rss_mb']:.0f} MB  value {r['value']:.6f}  other {r['other_cpus']:.2f}", flush=True)
        if job.startswith("dcor"):  # from the largest run so far, above the interpreter's baseline
            per_n2[job] = max(1.0, r["peak_rss_mb"] - BASELINE_MB) / n / n
    errs = [r["value"] for r in res["runs"] if r.get("job") == "block" and r.get("n") == (5000 if args.quick else 20_000) and "value" in r]
    ex = [r["value"] for r in res["runs"] if r.get("job") == "exact" and r.get("n") == (5000 if args.quick else 20_000) and "value" in r]
    if errs and ex:
        import numpy as np

        e = np.array(errs) - ex[0]
        res["notes"].append(
            f"block (B = 1024) at n = {5000 if args.quick else 20_000} over {len(e)} seeds: error vs exact mean {e.mean():+.2e}, "
            f"max |error| {np.abs(e).max():.2e}, sd {e.std(ddof=1) if len(e) > 1 else float('nan'):.2e}."
        )
    RESULTS_DIR.mkdir(exist_ok=True)
    stem = "dcor_quick" if args.quick else "dcor"
    (RESULTS_DIR / f"{stem}.json").write_text(json.dumps(res, indent=1, default=str))
    (RESULTS_DIR / f"{stem}.md").write_text(render_md(res))
    print(render_md(res))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    raise SystemExit(main())
