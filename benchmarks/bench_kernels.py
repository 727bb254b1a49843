"""Non-linear (rbf) CKA: accuracy of the feature maps, scale from Zarr, exact tiles against n×n baselines.

Usage::

    python benchmarks/bench_kernels.py                         # all three parts, the issue's sizes
    python benchmarks/bench_kernels.py --parts accuracy        # one part (accuracy, scale, exact)
    python benchmarks/bench_kernels.py --quick                 # small sizes, all parts (< 1 min)
    python benchmarks/bench_kernels.py --render benchmarks/results/kernels_accuracy.json

Every job runs in a fresh subprocess (``_util.run_child``); *peak RSS* is that child's ``VmHWM``
(whole process: interpreter, imports, its input data).  Times are wall seconds of the call only
(data generated or stores opened and numba kernels loaded beforehand), plus the process CPU time
(user + system, all threads) of the same section.  The machine is shared with other sessions:
each job also records the machine-wide CPU use of other processes while it ran (``other CPUs``).

Parts
-----
``accuracy``  (→ ``results/kernels_accuracy{_quick}.{md,json}``)
    The data of ``tests/test_kernels.py``'s n = 20,000 accuracy test: ``kernel_refs.nonlinear_pair``
    with ``default_rng(2025)``, dx = 64, dy = 48, cast to float32.  Unbiased rbf CKA at the median
    bandwidth (bigalign's heuristic with seed 0, per input) and at 0.3 × that median.  The exact
    value (tiles) is computed once per setting; then rff, orf and nystroem at each ``n_features``
    for several seeds.  The bandwidths are passed to the approximations as numbers, so every seed
    approximates the *same* kernel (with ``bandwidth="median"`` each seed would draw its own
    1,000-row subsample and thus a slightly different σ).  Reported: mean |CKA_approx − CKA_exact|,
    mean reported ``stderr``, and the fraction of seeds with |error| ≤ 2·stderr.
``scale``  (→ ``results/kernels_scale{_quick}.{md,json}``)
    Two Zarr stores of n × 512 float32 (uncompressed, 16,384-row chunks, written here with
    ``bigalign.ActivationWriter`` under ``benchmarks/data/``, git-ignored): x ~ N(0, I),
    y = [tanh(2z), sin(2z), z²] + 0.3·ε with z = xW/√512 (the construction of
    ``kernel_refs.nonlinear_pair``, generated one chunk at a time).  Timed:
    ``bigalign.cka(store_x["x"], store_y["y"], kernel="rbf", method="rff", n_features=2048)``
    with warm page cache.  Also reported: the memory one n×n float64 kernel matrix would take.
``exact``  (→ ``results/kernels_exact{_quick}.{md,json}``)
    Same generator as ``accuracy`` (dx = 64, dy = 48, float64 in memory), one common bandwidth
    σ = bigalign's median heuristic of x (seed 0) for both inputs — hyppo's ``Hsic`` applies one
    ``gamma`` to both inputs, so this is the setting where all three compute the same number.
    Jobs: ``bigalign`` (``cka(..., method="exact")``, unbiased, timed; the biased estimator timed
    separately), ``naive`` (K and L as n×n float64 from the GEMM distance identity, diagonals
    zeroed, Song et al.'s U-statistic → unbiased CKA; then, untimed, K and L double-centred in place
    → biased CKA), ``hyppo`` (``hyppo.independence.Hsic(gamma=1/(2σ²)).statistic(x, y)``; with
    ``bias=False`` hyppo U-centres 1 − K, which equals −(U-centred K), so its statistic is the
    unbiased CKA).  A baseline is skipped where its predicted peak RSS exceeds ``--max-gb``
    (default 12) or 80 % of MemAvailable.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _util  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA_DIR = HERE / "data"
RESULTS_DIR = HERE / "results"
CHUNK_ROWS = 16384
SCALE_D = 512
SCALE_SEED = 20250301
GEN_VERSION = 1
ACC_SEED = 2025  # tests/test_kernels.py::big_exact
ACC_DX, ACC_DY = 64, 48
BASELINE_MB = 300  # a child's RSS before its n×n work (interpreter, numpy, imports), for the skip rule


def _refs():
    sys.path.insert(0, str(REPO / "tests"))
    import kernel_refs

    return kernel_refs


def acc_data(n: int, dtype: str = "float32"):
    """The pair of tests/test_kernels.py (``pair(2025, n, 64, 48)``), cast to ``dtype``."""
    import numpy as np

    x, y = _refs().nonlinear_pair(np.random.default_rng(ACC_SEED), n, ACC_DX, ACC_DY)
    return x.astype(dtype), y.astype(dtype)


def _timed(f):
    s0 = _util.sched_times()
    c0, t0 = _util.cpu_now(), time.perf_counter()
    r = f()
    wall, cpu = time.perf_counter() - t0, _util.cpu_now() - c0
    return r, {"wall_s": wall, "cpu_s": cpu, "runq_wait_s": _util.sched_times()[1] - s0[1]}


def _warm_numba() -> None:
    """Load bigalign's cached numba kernels and the feature code paths (untimed)."""
    import numpy as np

    import bigalign

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(64, 3)), rng.normal(size=(64, 2))
    for m in ("exact", "rff", "nystroem"):
        bigalign.cka(a, b, kernel="rbf", method=m, n_features=12 if m != "exact" else None)


# =========================================================================== #
# part 1: accuracy vs n_features
# =========================================================================== #


def child_acc_exact(n: int, ratio: float) -> None:
    import bigalign

    x, y = acc_data(n)
    _warm_numba()
    r0, t = _timed(lambda: bigalign.cka(x, y, kernel="rbf", method="exact", bandwidth="median", seed=0))
    mx, my = r0.parameters["bandwidth_x"], r0.parameters["bandwidth_y"]
    out: dict[str, Any] = {"job": "exact", "n": n, "median_x": mx, "median_y": my, "settings": []}
    for rr in sorted({1.0, ratio}):
        bw = (rr * mx, rr * my)
        if rr == 1.0:
            r, tt = r0, t
        else:
            r, tt = _timed(lambda: bigalign.cka(x, y, kernel="rbf", method="exact", bandwidth=bw, seed=0))
        out["settings"].append({"ratio": rr, "bandwidth": bw, "value": r.value, "method": r.method, "terms": dict(r.terms), **tt})
    _util.emit(out)


def child_acc_approx(n: int, cells: list[dict[str, Any]], seeds: int) -> None:
    """Each cell: {method, ratio, bw, feats}; every n_features × seed of every cell, one call each."""
    import bigalign

    x, y = acc_data(n)
    _warm_numba()
    runs = []
    for c in cells:
        bw = tuple(c["bw"])
        for D in c["feats"]:
            for s in range(seeds):
                r, t = _timed(lambda: bigalign.cka(x, y, kernel="rbf", method=c["method"], bandwidth=bw, n_features=D, seed=s))
                runs.append({"method": c["method"], "ratio": c["ratio"], "n_features": D, "seed": s, "value": r.value,
                             "stderr": r.stderr, "result_method": r.method, "n_groups": r.parameters.get("n_groups"),
                             "ranks": r.parameters.get("ranks"), **t})
    _util.emit({"job": "approx", "n": n, "cells": cells, "runs": runs})


def _kernel_code_hash() -> str:
    """sha256[:12] of the bigalign sources the kernel approximations run (the cell cache's version key)."""
    import bigalign

    pkg = Path(bigalign.__file__).resolve().parent
    h = hashlib.sha256()
    io_files = tuple(sorted(str(p.relative_to(pkg)) for p in (pkg / "io").glob("*.py")))  # the io package
    for rel in ("features.py", "moments.py", "engine.py", *io_files, "linalg.py", "_numba/tiles.py", "metrics/kernel.py",
                "metrics/_kernel_nonlinear.py", "metrics/_kernel_approx.py", "metrics/_kernel_exact.py"):
        f = pkg / rel
        h.update(rel.encode() + b"\0" + (f.read_bytes() if f.exists() else b"") + b"\0")
    return h.hexdigest()[:12]


def part_accuracy(args, log) -> dict[str, Any]:
    import numpy as np

    n = 2000 if args.quick else 20_000
    feats = [64, 256] if args.quick else [int(v) for v in args.features.split(",")]
    seeds = 2 if args.quick else args.seeds
    ratios = [1.0, 0.3]
    log(f"accuracy: n={n}: exact ...")
    ex = _util.run_child([__file__, "--child", "acc-exact", json.dumps({"n": n, "ratio": 0.3})])
    log("  " + ", ".join(f"{s['ratio']}: {s['value']:.6f} ({s['wall_s']:.1f} s)" for s in ex["settings"]))
    exact = {s["ratio"]: s["value"] for s in ex["settings"]}
    cells = [{"method": m, "ratio": s["ratio"], "bw": s["bandwidth"], "feats": [D]}
             for D in feats for s in ex["settings"] for m in ("rff", "orf", "nystroem")]  # cheap cells first
    # full: one process per (bandwidth, method, n_features); quick: one process for all of them
    groups = [cells] if args.quick else [[c] for c in cells]
    children = []
    cache_dir = HERE / "out" / "kernels_accuracy_cells"  # git-ignored; lets an interrupted run resume
    cache_dir.mkdir(parents=True, exist_ok=True)
    for g in groups:
        spec = {"n": n, "cells": g, "seeds": seeds}
        key = hashlib.sha256(json.dumps([spec, _kernel_code_hash()], sort_keys=True).encode()).hexdigest()[:16]
        cached = cache_dir / f"{key}.json"
        if cached.exists() and not args.quick:
            r = json.loads(cached.read_text())
            r["from_cache"] = str(cached.relative_to(REPO))
        else:
            r = _util.run_child([__file__, "--child", "acc-approx", json.dumps(spec)])
            if not args.quick:
                cached.write_text(json.dumps(r, default=str))
        for u in r["runs"]:
            u["error"] = u["value"] - exact[u["ratio"]]
            u["covered"] = bool(abs(u["error"]) <= 2 * u["stderr"])
        log(f"  {len(r['runs'])} runs ({', '.join(sorted({c['method'] for c in g}))}, D {sorted({D for c in g for D in c['feats']})}, "
            f"ratio {sorted({c['ratio'] for c in g})}): |err| " + ", ".join(f"{abs(u['error']):.1e}" for u in r["runs"][:10])
            + f"  ({r['process_s']:.0f} s, {r['peak_rss_mb']:.0f} MB)")
        children.append(r)
    rows = []
    for s in ex["settings"]:
        for method in ("rff", "orf", "nystroem"):
            for D in feats:
                key = (method, s["ratio"], D)
                mine = [c for c in children if any((u["method"], u["ratio"], u["n_features"]) == key for u in c["runs"])]
                runs = [u for c in mine for u in c["runs"] if (u["method"], u["ratio"], u["n_features"]) == key]
                err = np.array([abs(u["error"]) for u in runs])
                se = np.array([u["stderr"] for u in runs])
                rows.append({"ratio": s["ratio"], "method": method, "n_features": D, "seeds": len(runs),
                             "exact": s["value"], "mean_abs_error": float(err.mean()), "max_abs_error": float(err.max()),
                             "rmse": float(np.sqrt((err**2).mean())), "mean_stderr": float(se.mean()),
                             "coverage_2se": float(np.mean([u["covered"] for u in runs])),
                             "mean_signed_error": float(np.mean([u["error"] for u in runs])),
                             "median_wall_s": statistics.median(u["wall_s"] for u in runs),
                             "peak_rss_mb": max(c["peak_rss_mb"] for c in mine)})
    return {"part": "accuracy", "kernel_code_sha256_12": _kernel_code_hash(), "n": n, "dx": ACC_DX, "dy": ACC_DY, "n_features": feats, "seeds": seeds,
            "exact": ex, "children": children, "rows": rows}


def render_accuracy(res: dict[str, Any]) -> str:
    ex = res["exact"]
    lines = [f"# rbf CKA: error vs n_features{' (quick)' if res['quick'] else ''}", "",
             f"Command: `{res['command']}`. n = {res['n']:,} samples, dx = {res['dx']}, dy = {res['dy']} "
             "(`kernel_refs.nonlinear_pair`, `default_rng(2025)`, float32 — the data of tests/test_kernels.py's "
             f"n = 20,000 accuracy test), unbiased CKA, {res['seeds']} seeds (0..{res['seeds'] - 1}) per cell.", "",
             f"Median heuristic (seed 0, 1,000-row subsample): σx = {ex['median_x']:.4f}, σy = {ex['median_y']:.4f}. "
             "Exact (tiles): " + "; ".join(f"{s['ratio']:g}×median: CKA = {s['value']:.6f} ({s['wall_s']:.1f} s)" for s in ex["settings"]) + ".", "",
             "| bandwidth | method | n_features | mean \\|error\\| | max \\|error\\| | mean stderr | coverage (\\|err\\| ≤ 2·stderr) | mean signed error | median s/call | peak RSS MB |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in res["rows"]:
        lines.append(f"| {r['ratio']:g}×median | {r['method']} | {r['n_features']:,} | {r['mean_abs_error']:.2e} | {r['max_abs_error']:.2e} | "
                     f"{r['mean_stderr']:.2e} | {r['coverage_2se']:.2f} | {r['mean_signed_error']:+.1e} | {r['median_wall_s']:.2f} | {r['peak_rss_mb']:.0f} |")
    lines += ["", "Overall coverage per method and bandwidth (all n_features × seeds): " + "; ".join(
        f"{m} {rt:g}×median {_mean([r['coverage_2se'] for r in res['rows'] if r['method'] == m and r['ratio'] == rt]):.2f}"
        for rt in sorted({r['ratio'] for r in res['rows']}, reverse=True) for m in ("rff", "orf", "nystroem")) + ".", "",
              "- n_features = feature columns for rff/orf (n_features/2 frequencies × cos, sin; stderr = delete-one-group "
              "jackknife over ≤ 64 groups of frequencies) and landmarks for nystroem (stderr = |θ(m) − θ(m/2)|).",
              "- The approximations get the bandwidths as numbers (the seed-0 median, or 0.3× it), so each seed approximates "
              "the same exact value; the seed changes the frequencies / landmarks only.",
              "- Times: one call (median over the seeds); each (bandwidth, method, n_features) cell ran in its own process "
              "(--quick: all cells in one process), whose VmHWM is the peak RSS (including the input data). Shared 2-core "
              "machine: times are indicative.",
              "", _machine_line(res), ""]
    return "\n".join(lines)


def _mean(v: list[float]) -> float:
    return sum(v) / len(v) if v else float("nan")


# =========================================================================== #
# part 2: scale (Zarr, rff)
# =========================================================================== #


def scale_paths(n: int, d: int) -> tuple[Path, Path]:
    return DATA_DIR / f"kernels_x_n{n}_d{d}.zarr", DATA_DIR / f"kernels_y_n{n}_d{d}.zarr"


def _gen_attrs(d: int) -> dict[str, Any]:
    return {"generator": "bench_kernels", "version": GEN_VERSION, "seed": SCALE_SEED, "d": d, "chunk_rows": CHUNK_ROWS, "compressors": None}


def _store_ok(path: Path, layer: str, n: int, d: int) -> bool:
    import bigalign

    try:
        st = bigalign.open_activations(path)
        ly = st[layer]
        return st.n_samples == n and ly.shape == (n, d) and str(ly.dtype) == "float32" and st.attrs.get("bench") == _gen_attrs(d)
    except Exception:
        return False


def gen_scale_block(b: int, rows: int, d: int):
    """Chunk b: x ~ N(0, I_d); z = xW; y = [tanh(2z), sin(2z), z²][: d] + 0.3·ε (as kernel_refs.nonlinear_pair)."""
    import numpy

    w = (numpy.random.default_rng([SCALE_SEED, 10**9]).standard_normal((d, d)) / math.sqrt(d)).astype(numpy.float32)
    rng = numpy.random.default_rng([SCALE_SEED, b])
    x = rng.standard_normal((rows, d), dtype=numpy.float32)
    z = x @ w
    k = d // 3
    y = numpy.concatenate([numpy.tanh(2 * z[:, :k]), numpy.sin(2 * z[:, k:2 * k]), z[:, 2 * k:] ** 2], axis=1)
    y += 0.3 * rng.standard_normal(y.shape, dtype=numpy.float32)
    return x, y


def ensure_scale_data(n: int, d: int, log) -> dict[str, Any]:
    import numpy

    import bigalign

    px, py = scale_paths(n, d)
    info = {"x": str(px.relative_to(REPO)), "y": str(py.relative_to(REPO)), "chunk_rows": CHUNK_ROWS, "compressors": None}
    if _store_ok(px, "x", n, d) and _store_ok(py, "y", n, d):
        log(f"scale data n={n}: reusing {px.name}, {py.name}")
        return {**info, "reused": True, "bytes": _util.dir_bytes(px) + _util.dir_bytes(py)}
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    log(f"scale data n={n}: writing {px.name}, {py.name} ...")
    t0 = time.perf_counter()
    attrs = {"bench": _gen_attrs(d)}
    with bigalign.ActivationWriter(px, mode="w", chunk_rows=CHUNK_ROWS, compressors=None, attrs=attrs) as wx, \
            bigalign.ActivationWriter(py, mode="w", chunk_rows=CHUNK_ROWS, compressors=None, attrs=attrs) as wy:
        for b, start in enumerate(range(0, n, CHUNK_ROWS)):
            rows = min(CHUNK_ROWS, n - start)
            x, y = gen_scale_block(b, rows, d)
            ids = numpy.arange(start, start + rows, dtype=numpy.int64)
            wx.append({"x": x}, sample_ids=ids)
            wy.append({"y": y}, sample_ids=ids)
    dt = time.perf_counter() - t0
    log(f"  written in {dt:.0f} s")
    return {**info, "reused": False, "write_s": dt, "bytes": _util.dir_bytes(px) + _util.dir_bytes(py)}


def child_scale(n: int, d: int, n_features: int) -> None:
    import bigalign

    px, py = scale_paths(n, d)
    sx, sy = bigalign.open_activations(px), bigalign.open_activations(py)
    _warm_numba()
    r, t = _timed(lambda: bigalign.cka(sx["x"], sy["y"], kernel="rbf", method="rff", n_features=n_features))
    _util.emit({"job": "rff", "n": n, "d": d, "n_features": n_features, "value": r.value, "stderr": r.stderr,
                "method": r.method, "parameters": dict(r.parameters), **t})


def part_scale(args, log) -> dict[str, Any]:
    sizes = [20_000] if args.quick else [int(float(s)) for s in args.scale_sizes.split(",")]
    d = 64 if args.quick else SCALE_D
    D = 256 if args.quick else 2048
    out: dict[str, Any] = {"part": "scale", "d": d, "n_features": D, "data": {}, "runs": []}
    for n in sizes:
        out["data"][n] = ensure_scale_data(n, d, log)
    for n in sizes:
        px, py = scale_paths(n, d)
        out["data"][n]["warm_s"] = _util.warm_page_cache([px, py])
        reps = 1 if args.quick else (args.scale_repeats if n <= 100_000 else 1)
        for k in range(reps):
            r = _util.run_child([__file__, "--child", "scale", json.dumps({"n": n, "d": d, "D": D})])
            log(f"scale n={n} run {k + 1}/{reps}: {r['wall_s']:.1f} s wall, {r['cpu_s']:.1f} s CPU, peak {r['peak_rss_mb']:.0f} MB, "
                f"CKA {r['value']:.5f} ± {r['stderr']:.1e}, other CPUs {r['other_cpus']:.2f}")
            out["runs"].append(r)
            _save_partial("scale", out, args)  # n = 10⁶ is long: keep what is measured so far
    return out


def _save_partial(part: str, res: dict[str, Any], args) -> None:
    res = dict(res, quick=args.quick, command=args.command, machine=args.machine, partial=True)
    stem = f"kernels_{part}{'_quick' if args.quick else ''}"
    (RESULTS_DIR / f"{stem}.json").write_text(json.dumps(res, indent=1, default=str))
    (RESULTS_DIR / f"{stem}.md").write_text(RENDER[part](json.loads(json.dumps(res, default=str))))


def render_scale(res: dict[str, Any]) -> str:
    lines = [f"# rbf CKA at scale (rff from Zarr){' (quick)' if res['quick'] else ''}", "",
             f"Command: `{res['command']}`. `bigalign.cka(store_x['x'], store_y['y'], kernel='rbf', method='rff', "
             f"n_features={res['n_features']})` (unbiased, median bandwidth, default scheduler: dask threads), "
             f"d = {res['d']} for both inputs, float32 Zarr stores, warm page cache.", "",
             "| n | runs | wall s (median) | CPU s (median) | peak RSS MB | CKA | stderr | block rows × blocks | store GB | one n×n float64 kernel | K and L | other CPUs |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    by_n: dict[int, list] = {}
    for r in res["runs"]:
        by_n.setdefault(r["n"], []).append(r)
    for n, rs in by_n.items():
        p = rs[0]["parameters"]
        one = 8 * n * n
        lines.append(f"| {n:,} | {len(rs)} | {statistics.median(r['wall_s'] for r in rs):.1f} | {statistics.median(r['cpu_s'] for r in rs):.1f} | "
                     f"{max(r['peak_rss_mb'] for r in rs):.0f} | {rs[0]['value']:.5f} | {rs[0]['stderr']:.1e} | "
                     f"{p.get('block_size'):,} × {p.get('n_blocks')} | {res['data'][str(n)]['bytes'] / 1e9:.2f} | {_bytes(one)} | {_bytes(2 * one)} | "
                     f"{statistics.median(r['other_cpus'] for r in rs):.2f} |")
    lines += ["", "- *peak RSS*: the child process's VmHWM (interpreter, imports and everything the call held); the stores are read "
              "chunk by chunk, never loaded whole.",
              "- *one n×n float64 kernel*: 8·n² bytes, what a naive implementation would hold for K alone (and the same again "
              "for L); bigalign's state is the D×D feature moments per input and pair.",
              "- *CPU s*: user + system time of all the child's threads during the call; *other CPUs*: CPUs used by other "
              "processes meanwhile (the machine is shared; with 2 cores, other CPUs ≈ 1 means the job had about half the "
              "machine).", ""]
    for note in res.get("notes", []):
        lines += [note, ""]
    lines += [_machine_line(res), ""]
    return "\n".join(lines)


def _bytes(b: float) -> str:
    for unit, f in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if b >= f:
            return f"{b / f:.1f} {unit}"
    return f"{b:.0f} B"


# =========================================================================== #
# part 3: exact tiles vs naive n×n vs hyppo
# =========================================================================== #


def naive_cka(x, y, sigma: float, cdist: bool = False) -> dict[str, float]:
    """Unbiased CKA from explicit n×n K, L (rbf, σ for both), Song et al.'s U-statistic; biased from HKH, HLH.

    Two n×n float64 matrices are alive at the peak; every step is in place.
    """
    import numpy

    def gram(a):
        if cdist:  # scipy: each squared distance from explicit differences (no cancellation)
            from scipy.spatial.distance import cdist as _cdist

            return numpy.exp(-_cdist(a, a, "sqeuclidean") / (2.0 * sigma * sigma))
        sq = numpy.einsum("ij,ij->i", a, a)
        k = numpy.dot(a, numpy.ascontiguousarray(a.T))  # GEMM (numpy's SYRK path for a @ a.T crashes at large n)
        k *= -2.0
        k += sq[:, None]
        k += sq[None, :]
        numpy.maximum(k, 0.0, out=k)
        k *= -1.0 / (2.0 * sigma * sigma)
        numpy.exp(k, out=k)
        return k

    n = x.shape[0]
    K, L = gram(numpy.asarray(x, dtype=numpy.float64)), gram(numpy.asarray(y, dtype=numpy.float64))

    def hsic_u(A, B):  # A, B with zeroed diagonals
        ra, rb = A.sum(axis=1), B.sum(axis=1)
        return (numpy.vdot(A, B) + ra.sum() * rb.sum() / ((n - 1) * (n - 2)) - 2.0 * float(ra @ rb) / (n - 2)) / (n * (n - 3))

    t0 = time.perf_counter()
    numpy.fill_diagonal(K, 0.0)
    numpy.fill_diagonal(L, 0.0)
    hxy, hxx, hyy = hsic_u(K, L), hsic_u(K, K), hsic_u(L, L)
    out = {"unbiased": hxy / math.sqrt(hxx * hyy), "hsic_xy": hxy, "hsic_xx": hxx, "hsic_yy": hyy, "stat_s": time.perf_counter() - t0}
    return out, K, L


def naive_biased(K, L) -> float:
    """Biased CKA ⟨HKH, HLH⟩/(‖HKH‖‖HLH‖) after restoring the unit diagonals; centres in place."""
    import numpy

    for A in (K, L):
        numpy.fill_diagonal(A, 1.0)
        A -= A.mean(axis=0)[None, :]
        A -= A.mean(axis=1)[:, None]
    return float(numpy.vdot(K, L) / math.sqrt(numpy.vdot(K, K) * numpy.vdot(L, L)))


def child_exact(job: str, n: int, sigma: float) -> None:
    x, y = acc_data(n, "float64")
    out: dict[str, Any] = {"job": job, "n": n, "sigma": sigma, "data_mb": (x.nbytes + y.nbytes) / 2**20}
    if job == "bigalign":
        import bigalign

        _warm_numba()
        r, t = _timed(lambda: bigalign.cka(x, y, kernel="rbf", method="exact", bandwidth=sigma))
        rb, tb = _timed(lambda: bigalign.cka(x, y, kernel="rbf", method="exact", bandwidth=sigma, estimator="biased"))
        out.update(value=r.value, terms=dict(r.terms), biased=rb.value, biased_wall_s=tb["wall_s"], biased_cpu_s=tb["cpu_s"],
                   parameters=dict(r.parameters), **t)
    elif job == "naive":
        (res, K, L), t = _timed(lambda: naive_cka(x, y, sigma))
        out.update(value=res["unbiased"], terms={k: res[k] for k in ("hsic_xy", "hsic_xx", "hsic_yy")}, **t)
        out["biased"] = naive_biased(K, L)  # untimed
        del K, L
    elif job == "naive-cdist":  # the value check's reference: distances from explicit differences
        (res, K, L), t = _timed(lambda: naive_cka(x, y, sigma, cdist=True))
        out.update(value=res["unbiased"], terms={k: res[k] for k in ("hsic_xy", "hsic_xx", "hsic_yy")}, **t)
        del K, L
    elif job == "hyppo":
        from hyppo.independence import Hsic

        gamma = 1.0 / (2.0 * sigma * sigma)
        Hsic(gamma=gamma).statistic(x[:20], y[:20])  # compile hyppo's numba functions (untimed)
        v, t = _timed(lambda: Hsic(gamma=gamma).statistic(x, y))
        import hyppo

        out.update(value=float(v), hyppo_version=hyppo.__version__, **t)
    _util.emit(out)


def _mem_available_mb() -> float:
    for line in open("/proc/meminfo"):
        if line.startswith("MemAvailable"):
            return int(line.split()[1]) / 1024
    return float("inf")


# predicted bytes per n² before a job has been measured: naive holds K and L (2 × 8 B);
# hyppo holds K, L, 1 − K, 1 − L, their expected-distance and centred matrices (~8 × 8 B).
PRIOR_BYTES_PER_N2 = {"naive": 16, "hyppo": 64}


def part_exact(args, log) -> dict[str, Any]:
    from bigalign.engine import prepare
    from bigalign.features import median_bandwidth, sample_rows

    sizes = [1000, 2000] if args.quick else [int(float(s)) for s in args.exact_sizes.split(",")]
    x, y = acc_data(max(sizes), "float64")
    out: dict[str, Any] = {"part": "exact", "sizes": sizes, "max_gb": args.max_gb, "runs": [], "sigma": {}}
    per_n2: dict[str, float] = {}
    for n in sizes:
        _, (xs,) = sample_rows(prepare([x[:n]], ["x"]), 1000, 0)
        sigma = median_bandwidth(xs, "x")  # bigalign's heuristic for x (seed 0), used for both inputs
        out["sigma"][n] = sigma
        for job in ("bigalign", "naive", "hyppo"):
            if job in args.exact_jobs.split(","):
                if job != "bigalign":
                    bpn2 = per_n2.get(job, PRIOR_BYTES_PER_N2[job])
                    need_mb = BASELINE_MB + bpn2 * n * n / 2**20
                    if need_mb > args.max_gb * 1024 or need_mb > 0.8 * _mem_available_mb():
                        out["runs"].append({"job": job, "n": n, "skipped": f"would need ≈ {need_mb / 1024:.1f} GB "
                                            f"({bpn2:.0f} B per n², {'measured at smaller n' if job in per_n2 else 'predicted'})"})
                        log(f"exact n={n} {job}: skipped ({need_mb / 1024:.1f} GB)")
                        continue
                r = _util.run_child([__file__, "--child", "exact", json.dumps({"job": job, "n": n, "sigma": sigma})])
                if job != "bigalign":
                    per_n2[job] = max(per_n2.get(job, 0.0), (r["peak_rss_mb"] - BASELINE_MB) * 2**20 / (n * n))
                log(f"exact n={n} {job}: {r['wall_s']:.2f} s wall, {r['cpu_s']:.1f} s CPU, peak {r['peak_rss_mb']:.0f} MB, "
                    f"value {r['value']:.12f}, other CPUs {r['other_cpus']:.2f}")
                out["runs"].append(r)
    ref = {r["n"]: r for r in out["runs"] if r.get("job") == "naive" and "value" in r}
    for r in out["runs"]:
        if "value" in r and r["job"] != "naive" and r["n"] in ref:
            r["rel_diff_vs_naive"] = abs(r["value"] - ref[r["n"]]["value"]) / abs(ref[r["n"]]["value"])
            if "biased" in r:
                r["rel_diff_biased_vs_naive"] = abs(r["biased"] - ref[r["n"]]["biased"]) / abs(ref[r["n"]]["biased"])
            if "terms" in r:
                r["rel_diff_terms"] = {k: abs(r["terms"][k] - ref[r["n"]]["terms"][k]) / abs(ref[r["n"]]["terms"][k])
                                       for k in ("hsic_xy", "hsic_xx", "hsic_yy")}
    if "naive" in args.exact_jobs.split(","):
        exact_check(out, log)
    ba = {r["n"]: r for r in out["runs"] if r.get("job") == "bigalign"}
    for r in out["runs"]:
        if r.get("job") == "hyppo" and "value" in r and r["n"] in ba:
            r["rel_diff_vs_bigalign"] = abs(r["value"] - ba[r["n"]]["value"]) / abs(ba[r["n"]]["value"])
    return out


def exact_check(out: dict[str, Any], log) -> None:
    """Value check at the smallest n: every job against the naive U-statistic on cdist distances."""
    n = min(int(k) for k in out["sigma"])
    sigma = out["sigma"][n] if n in out["sigma"] else out["sigma"][str(n)]
    r = _util.run_child([__file__, "--child", "exact", json.dumps({"job": "naive-cdist", "n": n, "sigma": sigma})])
    ref = r["value"]
    out["check"] = {"n": n, "naive_cdist": ref, "naive_cdist_terms": r["terms"], "naive_cdist_wall_s": r["wall_s"],
                    "rel_diff": {u["job"]: abs(u["value"] - ref) / abs(ref) for u in out["runs"] if u["n"] == n and "value" in u},
                    "rel_diff_terms": {u["job"]: {k: abs(u["terms"][k] - r["terms"][k]) / abs(r["terms"][k]) for k in r["terms"]}
                                       for u in out["runs"] if u["n"] == n and "terms" in u}}
    log(f"check n={n}: naive (cdist) {ref:.15f}; rel. diff " + ", ".join(f"{k} {v:.1e}" for k, v in out["check"]["rel_diff"].items()))


def part_exact_check(args, log) -> dict[str, Any]:
    path = RESULTS_DIR / f"kernels_exact{'_quick' if args.quick else ''}.json"
    out = json.loads(path.read_text())
    exact_check(out, log)
    out["command"] = out["command"] + " && " + " ".join(["bench_kernels.py"] + sys.argv[1:])
    return out


def render_exact(res: dict[str, Any]) -> str:
    lines = [f"# rbf CKA, exact: bigalign tiles vs naive n×n numpy vs hyppo{' (quick)' if res['quick'] else ''}", "",
             f"Command: `{res['command']}`. Data: `kernel_refs.nonlinear_pair(default_rng(2025), n, 64, 48)` (float64 in "
             "memory). One common bandwidth σ for both inputs = bigalign's median heuristic of x (seed 0); "
             "σ per n: " + ", ".join(f"{int(n):,}: {s:.4f}" for n, s in res["sigma"].items()) + ".", "",
             "| n | job | wall s | CPU s | peak RSS MB | unbiased CKA | rel. diff vs naive | biased CKA rel. diff vs naive | other CPUs |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in res["runs"]:
        if "skipped" in r:
            lines.append(f"| {r['n']:,} | {r['job']} | skipped: {r['skipped']} |  |  |  |  |  |  |")
            continue
        rd = f"{r['rel_diff_vs_naive']:.1e}" if "rel_diff_vs_naive" in r else ("(reference)" if r["job"] == "naive" else "—")
        if r["job"] == "hyppo" and "rel_diff_vs_naive" not in r and "rel_diff_vs_bigalign" in r:
            rd = f"— (vs bigalign {r['rel_diff_vs_bigalign']:.1e})"
        rb = f"{r['rel_diff_biased_vs_naive']:.1e}" if "rel_diff_biased_vs_naive" in r else ""
        extra = f" (biased: {r['biased_wall_s']:.2f} s)" if r["job"] == "bigalign" else ""
        lines.append(f"| {r['n']:,} | {r['job']} | {r['wall_s']:.2f}{extra} | {r['cpu_s']:.1f} | {r['peak_rss_mb']:.0f} | {r['value']:.12f} | {rd} | {rb} | {r['other_cpus']:.2f} |")
    lines += ["",
              "- *bigalign*: `bigalign.cka(x, y, kernel='rbf', method='exact', bandwidth=σ)` (unbiased; default scheduler, dask "
              "threads); the biased estimator is a second, separately timed pass.",
              "- *naive*: K, L as n×n float64 (GEMM identity, `exp` in place), zeroed diagonals, Song et al.'s unbiased "
              "U-statistic for HSIC(x,y), HSIC(x,x), HSIC(y,y) → CKA (timed); then, untimed, unit diagonals restored, K and L "
              "double-centred in place → biased CKA. At most two n×n matrices alive.",
              "- *hyppo*: `hyppo.independence.Hsic(gamma=1/(2σ²)).statistic(x, y)` (default `bias=False`). hyppo builds the "
              "kernels with scikit-learn's `pairwise_kernels` and hands 1 − K, 1 − L to its Dcorr statistic; U-centring "
              "removes the constant, so the result is the unbiased CKA — the same number as bigalign's when both use the same "
              "σ for x and y (hyppo applies one `gamma` to both inputs; its default `gamma` is 1/(2·median²) of x's full n×n "
              "distance matrix, applied to y as well). hyppo's `bias=True` returns √(biased CKA). Its numba functions were "
              "compiled before the timer (an untimed call on 20 rows).",
              *([f"- Value check at n = {res['check']['n']:,}: the naive U-statistic with K, L from `scipy.spatial.distance.cdist` "
                 f"(explicit differences, no cancellation; untimed reference) gives {res['check']['naive_cdist']:.15f}; relative "
                 "differences to it: " + ", ".join(f"{k} {v:.1e}" for k, v in res["check"]["rel_diff"].items())
                 + " (HSIC terms, bigalign: " + ", ".join(f"{k} {v:.1e}" for k, v in res["check"]["rel_diff_terms"].get("bigalign", {}).items())
                 + f"). So the differences between bigalign and the naive column above (up to "
                 f"{max([u.get('rel_diff_vs_naive', 0) for u in res['runs'] if u.get('job') == 'bigalign'] or [0]):.1e}) are "
                 "bigalign's rounding, not the reference's (the unbiased HSIC is a small difference of large sums); the "
                 "contract is 1e-10."] if res.get("check") else []),
              f"- Skipped: a baseline whose predicted peak RSS (from the bytes per n² measured at a smaller n, or a prior: "
              f"naive 16 B, hyppo 64 B) exceeds {res['max_gb']} GB or 80 % of MemAvailable.",
              "- Peak RSS: the child's VmHWM, including the float64 inputs (≤ 27 MB). CPU s: user + system of all threads "
              "in the timed section. The machine is shared (other CPUs = other processes' CPU use meanwhile): times are "
              "indicative; run the part again for repeats.", "", _machine_line(res), ""]
    return "\n".join(lines)


# =========================================================================== #
# driver
# =========================================================================== #


def _machine_line(res: dict[str, Any]) -> str:
    m = res["machine"]
    blas = "; ".join(f"{b.get('internal_api')} {b.get('version')} ({b.get('num_threads')} threads)" for b in m["blas"])
    return (f"Machine: {m['cpu_model']}, {m['logical_cpus']} logical CPUs, {m['memory_gib']} GiB RAM, "
            f"hypervisor {m['hypervisor']}; BLAS {blas}; Python {m['python']}; "
            + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + f"; bigalign git {m['git_head']}"
            + (" + uncommitted changes in bigalign/" if m["bigalign_dirty"] else "")
            + (f", measured from snapshot {m['bigalign_snapshot']}" if m.get("bigalign_snapshot") else "")
            + (f"; jobs ran at nice {m['nice']}" if m.get("nice") else "")
            + ". **Shared machine**: other sessions' tests and benchmarks ran concurrently, so times are noisy.")


RENDER = {"accuracy": render_accuracy, "scale": render_scale, "exact": render_exact}
PARTS = {"accuracy": part_accuracy, "scale": part_scale, "exact": part_exact, "exact-check": part_exact_check}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, all parts, < 1 min")
    ap.add_argument("--parts", default="accuracy,scale,exact")
    ap.add_argument("--features", default="128,256,512,1024,2048,4096", help="accuracy: n_features grid")
    ap.add_argument("--seeds", type=int, default=5, help="accuracy: seeds per cell")
    ap.add_argument("--scale-sizes", default="1e5,1e6")
    ap.add_argument("--scale-repeats", type=int, default=3, help="scale: runs per n ≤ 1e5 (one above)")
    ap.add_argument("--exact-sizes", default="5000,10000,20000,30000")
    ap.add_argument("--exact-jobs", default="bigalign,naive,hyppo")
    ap.add_argument("--max-gb", type=float, default=12.0, help="exact: skip a baseline predicted to need more")
    ap.add_argument("--nice", type=int, default=None, help="niceness for the driver and its jobs, in an autogroup of "
                    "their own (default -10 as root, 0 with --quick), as bench_linear_cka.py")
    ap.add_argument("--no-snapshot", action="store_true", help="measure the working tree's bigalign, not a frozen copy")
    ap.add_argument("--render", metavar="JSON", help="rewrite the Markdown of a results JSON")
    ap.add_argument("--child", nargs=2, metavar=("KIND", "SPEC"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        kind, spec = args.child[0], json.loads(args.child[1])
        if kind == "acc-exact":
            child_acc_exact(spec["n"], spec["ratio"])
        elif kind == "acc-approx":
            child_acc_approx(spec["n"], spec["cells"], spec["seeds"])
        elif kind == "scale":
            child_scale(spec["n"], spec["d"], spec["D"])
        else:
            child_exact(spec["job"], spec["n"], spec["sigma"])
        return 0
    if args.render:
        res = json.loads(Path(args.render).read_text())
        Path(args.render).with_suffix(".md").write_text(RENDER[res["part"]](res))
        return 0
    snap = None
    if not args.no_snapshot:
        path, snap = _util.snapshot_bigalign()
        _util.use_snapshot(path)
    if args.nice is None:
        args.nice = 0 if args.quick else (-10 if os.geteuid() == 0 else 0)
    from bench_linear_cka import raise_priority

    niced = raise_priority(args.nice) if args.nice else None
    machine = _util.machine_info()
    machine["nice"] = niced
    machine["bigalign_snapshot"] = snap
    args.snapshot = snap
    command = " ".join(["bench_kernels.py"] + (argv if argv is not None else sys.argv[1:]))
    args.machine, args.command = machine, command
    t_all = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_all:6.0f} s] {msg}", flush=True)

    RESULTS_DIR.mkdir(exist_ok=True)
    for part in args.parts.split(","):
        t0 = time.perf_counter()
        res = PARTS[part](args, log)
        if part != "exact-check":
            res.update(quick=args.quick, command=command, machine=machine, total_s=time.perf_counter() - t0)
        part = res.get("part", part)
        stem = f"kernels_{part}{'_quick' if args.quick else ''}"
        (RESULTS_DIR / f"{stem}.json").write_text(json.dumps(res, indent=1, default=str))
        md = RENDER[part](json.loads(json.dumps(res, default=str)))
        (RESULTS_DIR / f"{stem}.md").write_text(md)
        log(f"{part}: wrote benchmarks/results/{stem}.md and .json")
        print(md, flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    raise SystemExit(main())
