"""The cost of ci= on the exact tile roads: the same call with and without the interval, one process.

n = 20,000 rows, d = 16 (x) and 16 (y), Gaussian pairs; RBF CKA (unbiased) and dCor²
(unbiased) by exact tiles.  The with/without runs alternate (A B A B ...) so that the
load of the shared machine falls on both alike; wall seconds and process CPU seconds
are reported per run, and the ratio of the medians.

Usage:  python benchmarks/ci_cost_tiles.py [--n 20000] [--repeats 2] [--scheduler sync]
Writes benchmarks/results/ci_cost_tiles[_sync].{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

import bigalign

OUT = Path(__file__).resolve().parent / "results"


def timed(fn):  # type: ignore[no-untyped-def]
    w0, c0 = time.perf_counter(), time.process_time()
    r = fn()
    return r, time.perf_counter() - w0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--d", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--scheduler", default=None, help="engine scheduler (default: threads); 'sync' for one thread")
    args = ap.parse_args()
    sch = args.scheduler
    tag = f"_{sch}" if sch else ""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.n, args.d))
    y = 0.6 * x + 0.8 * rng.normal(size=(args.n, args.d))
    calls = {
        "cka rbf exact": lambda ci: bigalign.cka(x, y, kernel="rbf", method="exact", ci=ci, scheduler=sch),
        "dcor exact": lambda ci: bigalign.dcor(x, y, method="exact", ci=ci, scheduler=sch),
    }
    small = rng.normal(size=(200, args.d))
    for f in (lambda: bigalign.cka(small, small, kernel="rbf", method="exact", ci=0.95), lambda: bigalign.dcor(small, small, ci=0.95)):
        f()  # compile the Numba loops outside the timings
    rows = []
    for name, call in calls.items():
        runs: dict[str, list] = {"without": [], "with": []}
        for _ in range(args.repeats):
            for label, ci in (("without", None), ("with", 0.95)):
                r, wall, cpu = timed(lambda: call(ci))
                runs[label].append({"wall_s": wall, "cpu_s": cpu, "value": r.value, "ci": r.ci})
        med = {k: {m: float(np.median([v[m] for v in runs[k]])) for m in ("wall_s", "cpu_s")} for k in runs}
        rows.append({
            "measure": name, "runs": runs, "median": med,
            "cpu_ratio": med["with"]["cpu_s"] / med["without"]["cpu_s"],
            "wall_ratio": med["with"]["wall_s"] / med["without"]["wall_s"],
        })  # fmt: skip
    state = {"n": args.n, "d": args.d, "repeats": args.repeats, "cpu_count": os.cpu_count(), "rows": rows,
             "grouped_state_bytes": 8 * (3 * 20 * 20 + 2 * args.n * 20)}  # fmt: skip
    OUT.mkdir(exist_ok=True)
    (OUT / f"ci_cost_tiles{tag}.json").write_text(json.dumps(state, indent=1))
    lines = [
        f"# Cost of ci= on exact tiles (n = {args.n:,}, d = {args.d} + {args.d}, one process, scheduler {sch or 'threads'}, "
        f"{os.cpu_count()} cores, shared machine)",
        "",
        "Runs alternate without/with ci; medians of the repeats.  Produced by `python benchmarks/ci_cost_tiles.py`.",
        "",
        "| measure | wall s without | wall s with | CPU s without | CPU s with | CPU ratio | wall ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        m = r["median"]
        lines.append(
            f"| {r['measure']} | {m['without']['wall_s']:.2f} | {m['with']['wall_s']:.2f} | {m['without']['cpu_s']:.2f} | "
            f"{m['with']['cpu_s']:.2f} | {r['cpu_ratio']:.3f} | {r['wall_ratio']:.3f} |"
        )
    lines += ["", f"Extra memory of the grouped state: 3·G² + 2·n·G floats = {state['grouped_state_bytes'] / 1e6:.1f} MB (G = 20)."]
    (OUT / f"ci_cost_tiles{tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
