"""Layer × layer linear CKA of a wide, many-layer synthetic model: projected road vs exact.

Two parts, run side by side in one invocation (each road in its own subprocess so that its
peak RSS and CPU time are its own):

``wide``   d = 4,096 (bfloat16), L = 33: the projected road on the whole matrix (wall, CPU,
           peak RSS, every cell's standard error and certified interval), and an exact
           reference on every pair of ``--check-layers`` layers (float32 block products,
           float64 sums: ≈1e-6 relative, far below the 1e-3 being checked; the exact road
           of compare_layers computes the same sums in float64 products at half the rate).
``narrow`` d = 1,024: the projected road against compare_layers' exact road on every cell.

Usage::

    python benchmarks/bench_layer_matrix_wide.py --part narrow --n 8192
    python benchmarks/bench_layer_matrix_wide.py --part wide --n 100000 --check-layers 9
    # the target run as measured: road and exact cells in two runs, then merged (per-cell table)
    python benchmarks/bench_layer_matrix_wide.py --part wide --n 100000 --road-only --tag _road_n100000_lazy
    python benchmarks/bench_layer_matrix_wide.py --part wide --n 100000 --check-list 0,1,4,8,12,16,17,24,32 \
        --reuse-road benchmarks/results/layer_matrix_wide_wide_road_n100000.json --tag _check_n100000
    python benchmarks/bench_layer_matrix_wide.py --part wide --n 100000 \
        --reuse-road benchmarks/results/layer_matrix_wide_wide_road_n100000_lazy.json \
        --reuse-exact benchmarks/results/layer_matrix_wide_wide_check_n100000.json --tag _n100000

Results go to benchmarks/results/layer_matrix_wide_<part>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from _synthetic_model import Model, block, model_layers  # noqa: E402

RESULTS = HERE / "results"


def _usage() -> dict:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"cpu_s": ru.ru_utime + ru.ru_stime, "peak_rss_gb": ru.ru_maxrss / 2**20}


def _model(args: argparse.Namespace) -> Model:
    return Model(n=args.n, d=args.d, layers=args.layers, chunk=args.chunk, seed=args.seed)


# --------------------------------------------------------------------------- #
# roads (each runs in a child process)
# --------------------------------------------------------------------------- #


def road_sketch(args: argparse.Namespace) -> dict:
    from bigalign.metrics.layer_sketch import cka_matrix_sketched

    m = _model(args)
    layers = model_layers(m)
    t0, c0 = time.perf_counter(), _usage()["cpu_s"]
    res = cka_matrix_sketched(
        layers, rank=args.rank, n_probes=args.probes, n_power_iter=args.power, block_size=m.chunk, seed=args.seed
    )
    wall, cpu = time.perf_counter() - t0, _usage()["cpu_s"] - c0
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "peak_rss_gb": _usage()["peak_rss_gb"],
        "values": res.values.tolist(),
        "stderr": res.stderr.tolist(),
        "lower": res.lower.tolist(),
        "upper": res.upper.tolist(),
        "n_passes": res.n_passes,
        "tail_share": [res.results[k][(k + 1) % len(res.layers)].terms["tail_share_x"] for k in range(len(res.layers))],
    }


def road_exact_library(args: argparse.Namespace) -> dict:
    """compare_layers' exact road (float64 moments) on every cell."""
    import bigalign

    m = _model(args)
    layers = model_layers(m)
    t0, c0 = time.perf_counter(), _usage()["cpu_s"]
    res = bigalign.compare_layers(layers, metric="cka", block_size=m.chunk, state_memory=args.state_memory)
    wall, cpu = time.perf_counter() - t0, _usage()["cpu_s"] - c0
    return {"wall_s": wall, "cpu_s": cpu, "peak_rss_gb": _usage()["peak_rss_gb"], "values": np.asarray(res.values).tolist(),
            "n_passes": res.n_passes}  # fmt: skip


def _check_layers(args: argparse.Namespace, L: int) -> list[int]:
    if args.check_list:
        return sorted({int(k) for k in args.check_list.split(",")})
    return sorted({int(round(k)) for k in np.linspace(0, L - 1, args.check_layers)})


def road_exact_check(args: argparse.Namespace) -> dict:
    """Exact unbiased CKA on every pair of the check layers: one pass for the means, one per row layer."""
    from threadpoolctl import threadpool_limits

    m = _model(args)
    L = m.layers
    check = _check_layers(args, L)
    n_chunks = -(-m.n // m.chunk)
    t0, c0 = time.perf_counter(), _usage()["cpu_s"]
    means = {l: np.zeros(m.d) for l in check}
    for c in range(n_chunks):
        for l in check:
            means[l] += block(m, l, c).astype(np.float32).sum(axis=0, dtype=np.float64)
    means = {l: (v / m.n).astype(np.float32) for l, v in means.items()}
    frob = {}
    pp = {}
    psum = {l: 0.0 for l in check}
    prow = {l: [] for l in check}
    with threadpool_limits(args.blas_threads):
        for a, la in enumerate(check):
            acc = {lb: np.zeros((m.d, m.d)) for lb in check[a:]}
            for c in range(n_chunks):
                ua = block(m, la, c).astype(np.float32) - means[la]
                if a == 0:
                    for lb in check:
                        ub = ua if lb == la else block(m, lb, c).astype(np.float32) - means[lb]
                        prow[lb].append(np.einsum("ij,ij->i", ub, ub).astype(np.float64))
                for lb in check[a:]:
                    ub = ua if lb == la else block(m, lb, c).astype(np.float32) - means[lb]
                    acc[lb] += ua.T @ ub
            for lb, M in acc.items():
                frob[(la, lb)] = float(np.vdot(M, M))
            del acc
    p = {l: np.concatenate(v) for l, v in prow.items()}
    n = m.n
    def hsic(i, j):
        return (frob[(min(i, j), max(i, j))] - n / (n - 2) * float(p[i] @ p[j])
                + float(p[i].sum()) * float(p[j].sum()) / ((n - 1) * (n - 2))) / (n * (n - 3))  # fmt: skip
    cells = {}
    for a, i in enumerate(check):
        for j in check[a + 1 :]:
            cells[f"{i},{j}"] = hsic(i, j) / np.sqrt(hsic(i, i) * hsic(j, j))
    wall, cpu = time.perf_counter() - t0, _usage()["cpu_s"] - c0
    return {"wall_s": wall, "cpu_s": cpu, "peak_rss_gb": _usage()["peak_rss_gb"], "cells": cells, "check_layers": check}


ROADS = {"sketch": road_sketch, "exact_library": road_exact_library, "exact_check": road_exact_check}


def _child(road: str, argv: list[str]) -> dict:
    out = RESULTS / f".child_{road}_{os.getpid()}.json"
    cmd = [sys.executable, __file__, *argv, "--child", road, "--child-out", str(out)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")]))
    subprocess.run(cmd, check=True, env=env)
    data = json.loads(out.read_text())
    out.unlink()
    return data


# --------------------------------------------------------------------------- #
# driver
# --------------------------------------------------------------------------- #


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["wide", "narrow"], default="narrow")
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--d", type=int, default=None)
    ap.add_argument("--layers", type=int, default=33)
    ap.add_argument("--chunk", type=int, default=2048)
    ap.add_argument("--rank", type=int, default=128)
    ap.add_argument("--probes", type=int, default=32)
    ap.add_argument("--power", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--check-layers", type=int, default=9)
    ap.add_argument("--check-list", default="", help="comma-separated check layers (overrides --check-layers)")
    ap.add_argument("--blas-threads", type=int, default=2)
    ap.add_argument("--state-memory", type=int, default=4 * 2**30)
    ap.add_argument("--tag", default="")
    ap.add_argument("--road-only", action="store_true", help="wide part: time the projected road only (no exact cells)")
    ap.add_argument("--reuse-road", default=None, help="JSON of an earlier run of the same model: check its road's cells")
    ap.add_argument("--reuse-exact", default=None, help="JSON of an earlier wide run of the same model: take its exact cells")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--child-out", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.d is None:
        args.d = 4096 if args.part == "wide" else 1024
    if args.n is None:
        args.n = 100_000 if args.part == "wide" else 8192
    if args.child:
        Path(args.child_out).write_text(json.dumps(ROADS[args.child](args)))
        return
    RESULTS.mkdir(exist_ok=True)
    argv = [a for a in sys.argv[1:]]
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    load = os.getloadavg()
    fast = json.loads(Path(args.reuse_road).read_text())["sketch"] if args.reuse_road else _child("sketch", argv)
    vals = np.array(fast["values"])
    se = np.array(fast["stderr"])
    lo, hi = np.array(fast["lower"]), np.array(fast["upper"])
    L = vals.shape[0]
    off = ~np.eye(L, dtype=bool)
    out = {"part": args.part, "started": started, "load_avg_at_start": load, "model": vars(_model(args)),
           "rank": args.rank, "probes": args.probes, "n_power_iter": args.power, "sketch": fast}  # fmt: skip
    if args.part == "narrow":
        ex = _child("exact_library", argv)
        ref = np.array(ex["values"])
        err = np.abs(vals - ref)[off]
        out["exact"] = ex
        out["summary"] = {
            "cells_compared": int(off.sum()),
            "max_abs_error": float(err.max()),
            "median_abs_error": float(np.median(err)),
            "max_error_over_stderr": float(np.max(err / se[off])),
            "cells_outside_3_stderr": int(np.sum(err > 3 * se[off])),
            "cells_outside_bounds": int(np.sum((ref < lo - 1e-12) | (ref > hi + 1e-12))),
            "speedup_wall": ex["wall_s"] / fast["wall_s"],
            "speedup_cpu": ex["cpu_s"] / fast["cpu_s"],
            "cka_range": [float(ref[off].min()), float(ref[off].max())],
        }
    elif args.road_only:
        out["summary"] = {"max_stderr_all_cells": float(se[off].max()), "median_stderr": float(np.median(se[off])),
                          "median_bound_width": float(np.median((hi - lo)[off])),
                          "cka_range": [float(vals[off].min()), float(vals[off].max())]}  # fmt: skip
    else:
        if args.reuse_exact:
            prev = json.loads(Path(args.reuse_exact).read_text())
            if prev["model"] != out["model"]:
                raise SystemExit(f"{args.reuse_exact} checked another model: {prev['model']}")
            ex = prev["exact_check"]
            out["exact_check_from"] = {"file": str(args.reuse_exact), "started": prev["started"]}
        else:
            ex = _child("exact_check", argv)
        out["exact_check"] = ex
        errs, zs, inside, rows = [], [], [], []
        for key, v in ex["cells"].items():
            i, j = map(int, key.split(","))
            errs.append(abs(vals[i, j] - v))
            zs.append(errs[-1] / se[i, j])
            inside.append(lo[i, j] - 1e-12 <= v <= hi[i, j] + 1e-12)
            rows.append({"cell": key, "exact": v, "road": float(vals[i, j]), "abs_error": errs[-1], "stderr": float(se[i, j]),
                         "error_over_stderr": zs[-1], "lower": float(lo[i, j]), "upper": float(hi[i, j]),
                         "inside_bound": bool(inside[-1])})  # fmt: skip
        out["cells"] = rows
        errs = np.array(errs)
        out["summary"] = {
            "cells_checked": len(errs),
            "max_abs_error": float(errs.max()),
            "median_abs_error": float(np.median(errs)),
            "max_error_over_stderr": float(np.max(zs)),
            "cells_outside_3_stderr": int(np.sum(np.array(zs) > 3)),
            "cells_outside_bounds": int(len(inside) - sum(inside)),
            "cells_over_1e-3": int(np.sum(errs > 1e-3)),
            "checked_cka_range": [float(min(ex["cells"].values())), float(max(ex["cells"].values()))],
            "max_stderr_all_cells": float(se[off].max()),
            "median_bound_width": float(np.median((hi - lo)[off])),
            "cka_range": [float(vals[off].min()), float(vals[off].max())],
        }
    name = f"layer_matrix_wide_{args.part}{args.tag}"
    (RESULTS / f"{name}.json").write_text(json.dumps(out, indent=1))
    s = out["summary"]
    md = [f"# Layer matrix, {args.part}: n = {args.n}, d = {args.d}, L = {args.layers} (bfloat16), started {started}",
          f"", f"load average at start: {load[0]:.1f} (2-core machine shared with other jobs)", "",
          "| road | wall s | CPU s | peak RSS GB | passes |", "|---|---|---|---|---|",
          f"| projected (rank {args.rank}, {args.probes} probes, {args.power} power pass) | {fast['wall_s']:.1f} | "
          f"{fast['cpu_s']:.1f} | {fast['peak_rss_gb']:.2f} | {fast['n_passes']} |"]  # fmt: skip
    if args.part == "narrow":
        md.append(f"| exact (compare_layers, float64) | {ex['wall_s']:.1f} | {ex['cpu_s']:.1f} | {ex['peak_rss_gb']:.2f} | {ex['n_passes']} |")
    elif not args.road_only:
        md.append(f"| exact check of {s['cells_checked']} cells (float32 products, float64 sums) | {ex['wall_s']:.1f} | "
                  f"{ex['cpu_s']:.1f} | {ex['peak_rss_gb']:.2f} | {len(ex['check_layers']) + 1} |")  # fmt: skip
    md += ["", "| quantity | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in s.items()]
    if "exact_check_from" in out:
        md += ["", f"exact cells from {out['exact_check_from']['file']} (run started {out['exact_check_from']['started']})"]
    if out.get("cells"):
        md += ["", "| cell | exact | projected | abs error | stderr | error / stderr | certified bound | inside |",
               "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        md += [f"| {r['cell']} | {r['exact']:.6f} | {r['road']:.6f} | {r['abs_error']:.2e} | {r['stderr']:.2e} | "
               f"{r['error_over_stderr']:.2f} | [{r['lower']:.3f}, {r['upper']:.3f}] | {'yes' if r['inside_bound'] else 'NO'} |"
               for r in sorted(out["cells"], key=lambda r: r["exact"])]  # fmt: skip
    (RESULTS / f"{name}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
