"""Cost of ``ci=0.95`` on a streamed exact linear CKA from a Zarr store (both in one process).

The store pair is bench_linear_cka.py's (x = z·mix + μ, y = tanh((x − μ)W) + 0.3ε + 0.1,
float32, uncompressed, 16,384-row chunks).  In one process, alternately, ``cka(x, y)`` and
``cka(x, y, ci=0.95)`` (unbiased) are timed ``--repeats`` times each (the first run of each
pair warms the page cache for both); wall and CPU seconds (all threads) and the run-queue
wait (time runnable but waiting for a core held by another process) are recorded.  The
overhead is the ratio of the medians, of wall and of CPU.

Usage::

    python benchmarks/ci_cost_linear_cka.py --n 250000 --d 1024 [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import _util  # noqa: E402
import bench_linear_cka as blc  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=250_000)
    ap.add_argument("--d", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    import numpy as np

    import bigalign

    info = blc.ensure_data(a.n, a.d, blc.DATA_DIR, lambda s: print(s, flush=True))
    sx, sy = blc._open(a.n, a.d, blc.DATA_DIR)
    runs = []
    for rep in range(a.repeats):
        for ci in (None, 0.95):
            s0 = _util.sched_times()
            c0, t0 = _util.cpu_now(), time.perf_counter()
            r = bigalign.cka(sx["x"], sy["y"], ci=ci)
            wall, cpu = time.perf_counter() - t0, _util.cpu_now() - c0
            s1 = _util.sched_times()
            row = {"ci": ci, "repeat": rep, "wall_s": wall, "cpu_s": cpu, "runq_wait_s": s1[1] - s0[1],
                   "value": r.value, "interval": r.ci, "block_size": r.parameters["block_size"]}  # fmt: skip
            runs.append(row)
            print(row, flush=True)
            write(a, info, runs)


def write(a, info, runs) -> None:
    """Write the results so far (after every run: a cut-off job keeps what it measured)."""
    import numpy as np

    med = {}
    for ci in (None, 0.95):
        rs = [r for r in runs if r["ci"] == ci] or [{"wall_s": np.nan, "cpu_s": np.nan, "runq_wait_s": np.nan}]
        med[str(ci)] = {k: float(np.median([r[k] for r in rs])) for k in ("wall_s", "cpu_s", "runq_wait_s")}
    ratio = {k: med["0.95"][k] / med["None"][k] for k in ("wall_s", "cpu_s")}
    out = Path(a.out or HERE / "results" / f"ci_cost_linear_cka_n{a.n}_d{a.d}")
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"n": a.n, "d": a.d, "data": info, "runs": runs, "median": med, "ratio_ci_over_plain": ratio,
           "machine": _util.machine_info() if hasattr(_util, "machine_info") else None}  # fmt: skip
    out.with_suffix(".json").write_text(json.dumps(doc, indent=1, default=str))
    lines = [
        f"# Cost of ci=0.95 on streamed exact linear CKA, n = {a.n:,}, d_x = d_y = {a.d:,} (Zarr, float32)",
        "",
        f"`python benchmarks/ci_cost_linear_cka.py --n {a.n} --d {a.d} --repeats {a.repeats}` (one process, alternating; "
        "threads scheduler on the shared 2-core machine).",
        "",
        "| run | ci | wall s | CPU s | run-queue wait s | value | interval |",
        "|---:|---|---:|---:|---:|---:|---|",
    ]
    for r in runs:
        iv = "" if r["interval"] is None else f"({r['interval'][0]:.6f}, {r['interval'][1]:.6f})"
        lines.append(f"| {r['repeat']} | {r['ci']} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['runq_wait_s']:.1f} | {r['value']:.8f} | {iv} |")
    lines += ["", f"Median ratio with/without ci: wall {ratio['wall_s']:.3f}, CPU {ratio['cpu_s']:.3f} (acceptance: <= 1.15)."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    if len(runs) == 2 * a.repeats:
        print("\n".join(lines))




if __name__ == "__main__":
    main()
