"""Where each road of the rbf kernel metrics wins: exact tiles, the block road (auto), rff, orf, Nyström.

Usage::

    python benchmarks/bench_kernel_roads.py --parts mid            # n = 5·10⁴, d = 768: auto vs exact tiles (+ rff/orf/nystroem)
    python benchmarks/bench_kernel_roads.py --parts table          # method × n × accuracy × time (n = 5,000 and 20,000)
    python benchmarks/bench_kernel_roads.py --parts scale          # n = 10⁶, d = 512 from Zarr (default zstd compression): auto
    python benchmarks/bench_kernel_roads.py --parts rff20k         # rff at its default size: max error over 8 seeds at n = 20,000

Every job runs in a fresh subprocess (``_util.run_child``): *peak RSS* is that child's VmHWM; wall and
CPU seconds are of the call only (data generated or the store opened beforehand, numba kernels loaded);
``runq wait`` is the time its threads were runnable but other processes had the CPU (the machine is
shared by several sessions: 2 cores).  All jobs of a part use the same rows and the same kernel (the
median bandwidth of bigalign's seeded 1,000-row sample, seed 0), so "error" is against the exact value
on the same rows, computed by exact tiles in the same run.

Data (``mid``, ``table``): a latent-factor float32 pair like real embeddings: z ~ N(0, I₁₆),
x = zA + 0.5ε, y = tanh(zB) + 0.5ε' (``block_coverage.latent_pair``).  ``scale``: the generator of
``bench_kernels.py``'s scale part, written with ``bigalign.ActivationWriter`` at its default
compression (zstd), 16,384-row chunks, under ``benchmarks/data/`` (git-ignored).
``rff20k``: the n = 20,000 pair of ``tests/test_kernels.py`` (dx = 64, dy = 48).
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
REPO = HERE.parent
DATA_DIR = HERE / "data"
RESULTS = HERE / "results"


def _timed(f):
    s0 = _util.sched_times()
    c0, t0 = _util.cpu_now(), time.perf_counter()
    r = f()
    wall, cpu = time.perf_counter() - t0, _util.cpu_now() - c0
    return r, {"wall_s": wall, "cpu_s": cpu, "runq_wait_s": _util.sched_times()[1] - s0[1]}


def _warm() -> None:
    import numpy as np

    import bigalign

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(64, 3)), rng.normal(size=(64, 2))
    bigalign.cka(a, b, kernel="rbf", method="exact")
    bigalign.cka(a, b, kernel="rbf", method="block", block_rows=16)
    for m in ("rff", "nystroem"):
        bigalign.cka(a, b, kernel="rbf", method=m, n_features=12)


def _kw(job: str) -> dict[str, Any]:
    if job == "auto":
        return {}
    if job.startswith("block:"):
        return {"method": "block", "block_rows": int(job.split(":")[1])}
    if ":" in job:
        m, k = job.split(":")
        return {"method": m, "n_features": int(k)}
    return {"method": job}


def child_mem(n: int, d: int, job: str, seed: int = 0) -> None:
    import bigalign
    from block_coverage import latent_pair

    x, y = latent_pair(n, d)
    _warm()
    r, t = _timed(lambda: bigalign.cka(x, y, kernel="rbf", seed=seed, **_kw(job)))
    _util.emit({"job": job, "n": n, "d": d, "seed": seed, "value": r.value, "stderr": r.stderr, "method": r.method,
                "parameters": dict(r.parameters), **t})  # fmt: skip


def child_acc(n: int, job: str, seed: int) -> None:
    import numpy as np

    import bigalign

    sys.path.insert(0, str(REPO / "tests"))
    import kernel_refs

    x, y = kernel_refs.nonlinear_pair(np.random.default_rng(2025), n, 64, 48)
    x, y = x.astype(np.float32), y.astype(np.float32)
    _warm()
    # the bandwidth of seed 0 for every seed: the same kernel, only the random draws change
    from bigalign.engine import prepare
    from bigalign.features import median_bandwidth, sample_rows

    _, (xs, ys) = sample_rows(prepare([x, y], ["x", "y"]), 1000, 0)
    bw = (median_bandwidth(xs, "x"), median_bandwidth(ys, "y"))
    r, t = _timed(lambda: bigalign.cka(x, y, kernel="rbf", bandwidth=bw, seed=seed, **_kw(job)))
    _util.emit({"job": job, "n": n, "seed": seed, "value": r.value, "stderr": r.stderr, "method": r.method,
                "parameters": dict(r.parameters), **t})  # fmt: skip


# --------------------------------------------------------------------------- scale data


def scale_paths(n: int, d: int) -> tuple[Path, Path]:
    return DATA_DIR / f"roads_x_n{n}_d{d}_zstd.zarr", DATA_DIR / f"roads_y_n{n}_d{d}_zstd.zarr"


def ensure_scale(n: int, d: int, log) -> dict[str, Any]:
    import numpy

    import bigalign
    from bench_kernels import CHUNK_ROWS, gen_scale_block

    px, py = scale_paths(n, d)
    try:
        ok = all(bigalign.open_activations(p).n_samples == n for p in (px, py))
    except Exception:
        ok = False
    if ok:
        return {"reused": True, "bytes": _util.dir_bytes(px) + _util.dir_bytes(py)}
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with bigalign.ActivationWriter(px, mode="w", chunk_rows=CHUNK_ROWS) as wx, bigalign.ActivationWriter(py, mode="w", chunk_rows=CHUNK_ROWS) as wy:
        for b, start in enumerate(range(0, n, CHUNK_ROWS)):
            rows = min(CHUNK_ROWS, n - start)
            x, y = gen_scale_block(b, rows, d)
            ids = numpy.arange(start, start + rows, dtype=numpy.int64)
            wx.append({"x": x}, sample_ids=ids)
            wy.append({"y": y}, sample_ids=ids)
    log(f"scale data n={n} written in {time.perf_counter() - t0:.0f} s")
    return {"reused": False, "write_s": time.perf_counter() - t0, "bytes": _util.dir_bytes(px) + _util.dir_bytes(py)}


def child_scale(n: int, d: int, job: str) -> None:
    import bigalign

    px, py = scale_paths(n, d)
    sx, sy = bigalign.open_activations(px), bigalign.open_activations(py)
    _warm()
    r, t = _timed(lambda: bigalign.cka(sx["x"], sy["y"], kernel="rbf", **_kw(job)))
    _util.emit({"job": job, "n": n, "d": d, "value": r.value, "stderr": r.stderr, "method": r.method,
                "parameters": dict(r.parameters), **t})  # fmt: skip


# --------------------------------------------------------------------------- parts


def run(kind: str, args: dict[str, Any], log) -> dict[str, Any]:
    r = _util.run_child([__file__, "--child", kind, json.dumps(args)])
    log(f"{kind} {args}: {r['method']} {r['value']:.5f} ± {r['stderr'] if r['stderr'] is None else format(r['stderr'], '.1e')}, "
        f"wall {r['wall_s']:.1f} s, CPU {r['cpu_s']:.1f} s, runq wait {r['runq_wait_s']:.1f} s, peak {r['peak_rss_mb']:.0f} MB")
    return r


def part_mid(a, log) -> dict[str, Any]:
    n, d = a.mid_n, a.mid_d
    rows = [run("mem", {"n": n, "d": d, "job": j}, log) for j in ["exact", "auto"] + a.mid_extra]
    return {"part": "mid", "n": n, "d": d, "runs": rows}


def part_table(a, log) -> dict[str, Any]:
    rows = []
    for n in a.table_n:
        for j in ["exact", "auto", "rff:2048", "orf:2048", "nystroem:1024"]:
            rows.append(run("mem", {"n": n, "d": a.table_d, "job": j}, log))
    return {"part": "table", "d": a.table_d, "runs": rows}


def part_scale(a, log) -> dict[str, Any]:
    d = a.scale_d
    info = ensure_scale(a.scale_n, d, log)
    info["warm_s"] = _util.warm_page_cache(list(scale_paths(a.scale_n, d)))
    rows = [run("scale", {"n": a.scale_n, "d": d, "job": j}, log) for j in ["auto"] + a.scale_extra]
    return {"part": "scale", "n": a.scale_n, "d": d, "data": info, "runs": rows}


def part_rff20k(a, log) -> dict[str, Any]:
    n = 20_000
    exact = run("acc", {"n": n, "job": "exact", "seed": 0}, log)
    rows = [run("acc", {"n": n, "job": j, "seed": s}, log) for j in a.rff_jobs for s in range(8)]
    return {"part": "rff20k", "n": n, "exact": exact, "runs": rows}


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        kind, kw = sys.argv[2], json.loads(sys.argv[3])
        {"mem": child_mem, "scale": child_scale, "acc": child_acc}[kind](**kw)
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--parts", nargs="+", default=["mid", "table", "scale", "rff20k"])
    ap.add_argument("--mid-n", type=int, default=50_000)
    ap.add_argument("--mid-d", type=int, default=768)
    ap.add_argument("--mid-extra", nargs="*", default=[])
    ap.add_argument("--table-n", type=int, nargs="+", default=[5_000, 20_000])
    ap.add_argument("--table-d", type=int, default=768)
    ap.add_argument("--scale-n", type=int, default=1_000_000)
    ap.add_argument("--scale-d", type=int, default=512)
    ap.add_argument("--scale-extra", nargs="*", default=[])
    ap.add_argument("--rff-jobs", nargs="+", default=["rff:2048", "rff:4096", "orf:2048"])
    ap.add_argument("--tag", default="")
    a = ap.parse_args()

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    RESULTS.mkdir(exist_ok=True)
    for part in a.parts:
        load0 = os.getloadavg()[0]
        res = {"mid": part_mid, "table": part_table, "scale": part_scale, "rff20k": part_rff20k}[part](a, log)
        res.update(load_before=load0, load_after=os.getloadavg()[0], machine=_util.machine_info())
        out = RESULTS / f"kernel_roads_{part}{a.tag}.json"
        out.write_text(json.dumps(res, indent=1, default=str))
        log(f"wrote {out}")


if __name__ == "__main__":
    main()
