"""Where does bigalign's linear-CKA time go?  Phase timings and end-to-end variants.

Usage::

    python benchmarks/profile_linear_cka.py --n 1e5 [--d 1024] [--what phases,pyspy,variants]

Needs the stores written by ``bench_linear_cka.py`` (same n, d).

``phases``
    Replays, one block at a time on one thread with BLAS pinned to one thread (what each
    dask worker thread does inside ``bigalign.engine.run``), every step of
    ``MomentStatistic.partial`` over bigalign's own row blocks, then the tree of
    ``moments.merge`` calls, and reports seconds per phase (summed over blocks).
``pyspy``
    Samples a real ``bigalign.cka`` run with py-spy and charges each sample (all threads) to the
    innermost bigalign source line on its stack.
``variants``
    End-to-end wall time (fresh subprocess each, warm page cache) of
    ``bigalign.cka`` with its defaults, with ``block_size`` = the stored chunk rows, and of
    prototype partials run through ``bigalign.run`` (defined here, not in bigalign/):
    ``fused``   — float64 mean taken from the float32 block, cast+centre in one pass
                  (``np.subtract(x, mean, dtype=float64)``), row norms, float64 SYRK/GEMM;
    ``fused32`` — centred block kept in float32, products in float32 BLAS, accumulated in float64.
    Each prototype reports its CKA so the accuracy cost is visible.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _util  # noqa: E402
import bench_linear_cka as B  # noqa: E402

RESULTS = B.RESULTS_DIR


# --------------------------------------------------------------------------- #
# prototype statistics (benchmark-only; they reuse bigalign.moments for the merge)
# --------------------------------------------------------------------------- #


class FusedMoments:
    """The Moments of bigalign.moments.MomentStatistic (one column group), in fewer passes.

    float64: mean taken from the float32 block, cast + centre in one pass
             (``np.subtract(x, mean, dtype=float64)``), row norms by einsum (no n×d temporary),
             float64 SYRK/GEMM — the same numbers as bigalign up to rounding.
    float32: the centred block kept in float32 (centred on the float32-rounded mean), products in
             float32 BLAS cast to float64 per block, then moved exactly onto the block mean with the
             same identities the merge uses (``_recentre_side``/``_recentre_cross``).
    """

    def __init__(self, dtype: str = "float64"):
        self.dtype = dtype

    def _side(self, x, name, start):
        import numpy as np
        from bigalign.moments import Side, _recentre_side

        lo = x.min(axis=0).astype(np.float64)
        hi = x.max(axis=0).astype(np.float64)
        if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
            raise ValueError(f"{name}: non-finite values in block {start}")
        n, d = x.shape
        bounds = np.array([0, d], dtype=np.int64)
        const = lo == hi
        mean = x.mean(axis=0, dtype=np.float64)
        mean[const] = lo[const]
        if self.dtype == "float64":
            u = np.subtract(x, mean, dtype=np.float64)  # cast + centre in one pass
            p = np.einsum("ij,ij->i", u, u)[:, None]
            side = Side(n=n, mean=mean, M=u.T @ u, T=p.T @ p, A=p.T @ u, colmin=lo, colmax=hi, bounds=bounds)
            return side, u, p, None
        m32 = mean.astype(np.float32)
        u = np.subtract(x, m32, dtype=np.float32)
        r = u.mean(axis=0, dtype=np.float64)  # the block mean relative to the float32 centre
        p = np.einsum("ij,ij->i", u, u, dtype=np.float64)[:, None]
        Mc = (u.T @ u).astype(np.float64)  # about the float32 centre
        A0 = (p.T.astype(np.float32) @ u).astype(np.float64)
        side0 = Side(n=n, mean=m32.astype(np.float64), M=Mc, T=p.T @ p, A=A0, colmin=lo, colmax=hi, bounds=bounds)
        A, T = _recentre_side(side0, -r)  # move every row by -r: centred on the exact block mean
        mean = m32.astype(np.float64) + r
        mean[const] = lo[const]
        side = Side(n=n, mean=mean, M=Mc - n * np.outer(r, r), T=T, A=A, colmin=lo, colmax=hi, bounds=bounds)
        return side, u, p, (side0, r)

    def partial(self, blocks, start):
        import numpy as np
        from bigalign.moments import Cross, Moments, _recentre_cross

        (sx, u, p, ox), (sy, v, q, oy) = (self._side(np.asarray(b), nm, start) for b, nm in zip(blocks, ("x", "y")))
        if self.dtype == "float64":
            cr = Cross(M=u.T @ v, T=p.T @ q, A=p.T @ v, B=q.T @ u)
            return Moments(sides=[sx, sy], crosses={(0, 1): cr})
        (sx0, rx), (sy0, ry) = ox, oy
        n = u.shape[0]
        M0 = (u.T @ v).astype(np.float64)
        c0 = Cross(M=M0, T=p.T @ q, A=(p.T.astype(np.float32) @ v).astype(np.float64),
                   B=(q.T.astype(np.float32) @ u).astype(np.float64))
        A, B_, T = _recentre_cross(c0, sx0, sy0, -rx, -ry)
        cr = Cross(M=M0 - n * np.outer(rx, ry), T=T, A=A, B=B_)
        return Moments(sides=[sx, sy], crosses={(0, 1): cr})

    def combine(self, a, b):
        from bigalign.moments import merge

        return merge(a, b)

    def finalize(self, state):
        return state


# --------------------------------------------------------------------------- #
# phases
# --------------------------------------------------------------------------- #


def phases(n: int, d: int, data_dir: Path) -> dict[str, Any]:
    import numpy as np
    from threadpoolctl import threadpool_limits

    import bigalign
    from bigalign import moments as mo
    from bigalign.engine import _n_workers, plan_blocks, prepare

    px, py = B.store_paths(n, d, data_dir)
    sx, sy = bigalign.open_activations(px), bigalign.open_activations(py)
    lx, ly = sx["x"], sy["y"]
    reps = prepare([lx, ly], ["x", "y"])
    rows = plan_blocks(reps, n_workers=_n_workers("threads", None, None)).block_rows
    T: dict[str, float] = {}  # CPU seconds of this process per phase (robust to other sessions' load)
    W: dict[str, float] = {}  # wall seconds per phase

    def now():
        return (_util.cpu_now(), time.perf_counter())

    def tick(name, t0):
        t = now()
        T[name] = T.get(name, 0.0) + (t[0] - t0[0])
        W[name] = W.get(name, 0.0) + (t[1] - t0[1])
        return t

    _util.warm_page_cache([px, py])
    parts = []
    t_all = now()
    with threadpool_limits(limits=1, user_api="blas"):
        for s in range(0, n, rows):
            e = min(s + rows, n)
            t = now()
            xb = lx.read(s, e)  # what bigalign.engine._read_and_partial does for this block
            yb = ly.read(s, e)
            t = tick("zarr read (bigalign blocks)", t)
            sides, us, ps = [], [], []
            for blk in (xb, yb):
                bounds = np.array([0, blk.shape[1]], dtype=np.int64)
                lo = blk.min(axis=0)
                hi = blk.max(axis=0)
                t = tick("min/max (float32)", t)
                u = np.array(blk, dtype=np.float64, order="C", copy=True)
                t = tick("float64 copy", t)
                np.isfinite(lo).all() and np.isfinite(hi).all()
                lo = lo.astype(np.float64)
                hi = hi.astype(np.float64)
                max(float(np.max(np.abs(lo))), float(np.max(np.abs(hi))))
                const = lo == hi
                mean = u.mean(axis=0)
                mean[const] = lo[const]
                t = tick("mean (float64)", t)
                u -= mean
                t = tick("centre (u -= mean)", t)
                sq = u * u
                p = sq.sum(axis=1, keepdims=True)
                del sq
                t = tick("row norms (sq = u*u; sum)", t)
                M = u.T @ u
                t = tick("SYRK uᵀu (float64)", t)
                side = mo.Side(n=u.shape[0], mean=mean, M=M, T=p.T @ p, A=p.T @ u, colmin=lo, colmax=hi, bounds=bounds)
                t = tick("GEMV pᵀu, pᵀp", t)
                sides.append(side)
                us.append(u)
                ps.append(p)
            C = us[0].T @ us[1]
            t = tick("GEMM uᵀv (float64)", t)
            cr = mo.Cross(M=C, T=ps[0].T @ ps[1], A=ps[0].T @ us[1], B=ps[1].T @ us[0])
            t = tick("GEMV cross", t)
            parts.append(mo.Moments(sides=sides, crosses={(0, 1): cr}))
            del us, ps, sides, xb, yb
        t = now()
        from bigalign.engine import tree_reduce

        state = tree_reduce(parts, mo.merge)
        tick(f"merge tree ({len(parts) - 1} merges)", t)
    t_end = now()
    total, total_wall = t_end[0] - t_all[0], t_end[1] - t_all[1]
    # reference reads aligned with the stored chunks
    t = now()
    for s in range(0, n, B.CHUNK_ROWS):
        lx.read(s, min(s + B.CHUNK_ROWS, n))
        ly.read(s, min(s + B.CHUNK_ROWS, n))
    t_aligned = now()[0] - t[0]
    # raw file read of the same bytes
    t = now()
    _util.warm_page_cache([px, py])
    t_raw = now()[0] - t[0]
    value = _cka_value(state)
    return {"n": n, "d": d, "block_rows": rows, "n_blocks": len(parts), "phases_cpu_s": T, "phases_wall_s": W,
            "total_cpu_s": total, "total_wall_s": total_wall,
            "zarr_read_aligned_16384_cpu_s": t_aligned, "raw_file_read_cpu_s": t_raw, "value": value}


# --------------------------------------------------------------------------- #
# end-to-end variants (each in a fresh subprocess)
# --------------------------------------------------------------------------- #


def _cka_value(m) -> float:
    """Unbiased CKA from merged Moments with bigalign's own formula (moments.group_hsic)."""
    import math

    from bigalign.moments import group_hsic

    hxy = float(group_hsic(m, 0, 1, "unbiased", normalized=True).sum())
    hxx = float(group_hsic(m, 0, 0, "unbiased", normalized=True).sum())
    hyy = float(group_hsic(m, 1, 1, "unbiased", normalized=True).sum())
    return hxy / math.sqrt(hxx * hyy)


def variant_child(a) -> None:
    import bigalign

    px, py = B.store_paths(a.n, a.d, Path(a.data_dir))
    lx, ly = bigalign.open_activations(px)["x"], bigalign.open_activations(py)["y"]
    kw: dict[str, Any] = {}
    if a.block_size:
        kw["block_size"] = a.block_size
    c0, t0 = _util.cpu_now(), time.perf_counter()
    if a.variant == "bigalign":
        r = bigalign.cka(lx, ly, estimator="unbiased", **kw)
        value, params = r.value, dict(r.parameters)
    else:
        stat = FusedMoments("float32" if a.variant == "fused32" else "float64")
        state, plan = bigalign.run(stat, [lx, ly], names=["x", "y"], **kw)
        value = _cka_value(state)
        params = {"block_size": plan.block_rows, "n_blocks": plan.n_blocks}
    wall, cpu = time.perf_counter() - t0, _util.cpu_now() - c0
    _util.emit({"wall_s": wall, "cpu_s": cpu, "value": value, "parameters": params})


def variants(n: int, d: int, data_dir: Path, repeats: int, idle_wait: float) -> list[dict[str, Any]]:
    px, py = B.store_paths(n, d, data_dir)
    _util.warm_page_cache([px, py])
    out = []
    plan = [("bigalign", 0), ("bigalign", B.CHUNK_ROWS), ("fused", 0), ("fused", B.CHUNK_ROWS), ("fused32", B.CHUNK_ROWS)]
    for rep in range(repeats):
        for variant, bs in plan:
            if idle_wait:
                _util.wait_for_idle(idle_wait)
            r = _util.run_child([str(Path(__file__).resolve()), "--child", variant, "--n", str(n), "--d", str(d),
                                 "--data-dir", str(data_dir), "--block-size", str(bs)])
            r.update(variant=variant, block_size_arg=bs or None, rep=rep)
            r.pop("stderr_tail", None)
            out.append(r)
            print(f"  {variant:9s} block_size={bs or 'default':>7}  wall {r['wall_s']:7.2f} s  peak RSS "
                  f"{r['peak_rss_mb']:6.0f} MB  CPU {r['cpu_s']:7.2f} s  other load {r['other_cpus']:.2f}  value {r['value']:.12f}", flush=True)
    return out


def pyspy(n: int, d: int, data_dir: Path, pyspy_bin: str, rate: int = 100) -> dict[str, Any]:
    """Sample a real ``bigalign.cka`` run (the bench's bigalign job) with py-spy; aggregate by source line.

    Counts, over all samples of non-idle threads, the innermost frame inside bigalign/ (file:line
    and code), so numpy/BLAS time is charged to the bigalign line that called it.
    """
    import collections
    import subprocess
    import tempfile

    out = Path(tempfile.mkdtemp()) / "stacks.txt"
    cmd = [pyspy_bin, "record", "-r", str(rate), "-f", "raw", "-o", str(out), "--", sys.executable,
           str(Path(B.__file__).resolve()), "--job", "bigalign", "--n", str(n), "--d", str(d), "--data-dir", str(data_dir)]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    by_line: collections.Counter = collections.Counter()
    by_leaf: collections.Counter = collections.Counter()
    total = 0
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        c = int(count)
        frames = stack.split(";")
        if not any(f.startswith(("_read_and_partial ", "partial ", "combine ", "merge ", "cka ")) for f in frames):
            continue  # imports, idle pool threads, zarr's event loop waiting
        total += c
        inner = [f for f in frames if "(bigalign/" in f or "/bigalign/" in f]  # py-spy shortens paths
        by_line[inner[-1] if inner else "(outside bigalign)"] += c
        by_leaf[frames[-1]] += c
    return {"n": n, "d": d, "rate_hz": rate, "wall_s": wall, "samples": total,
            "note": "zarr's I/O runs on its own event-loop thread, outside these stacks (see the phases' zarr read)",
            "by_bigalign_line": [(k, v, v / total) for k, v in by_line.most_common(30)],
            "by_leaf_frame": [(k, v, v / total) for k, v in by_leaf.most_common(30)]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=lambda s: int(float(s)), default=100_000)
    p.add_argument("--d", type=int, default=1024)
    p.add_argument("--what", default="phases,variants")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--idle-wait", type=float, default=0.0)
    p.add_argument("--pyspy", default="/tmp/pyspy/bin/py-spy", help="py-spy binary (pip install py-spy)")
    p.add_argument("--nice", type=int, default=-10 if __import__("os").geteuid() == 0 else 0)
    p.add_argument("--data-dir", default=str(B.DATA_DIR))
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--block-size", type=int, default=0, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        a.variant = a.child
        variant_child(a)
        return 0
    data_dir = Path(a.data_dir)
    snap, snap_hash = _util.snapshot_bigalign()
    _util.use_snapshot(snap)
    res: dict[str, Any] = {"n": a.n, "d": a.d, "bigalign_snapshot": snap_hash}
    print(f"bigalign snapshot {snap_hash}", flush=True)
    if a.nice:
        res["nice"] = B.raise_priority(a.nice)
    what = a.what.split(",")
    if "phases" in what:
        if a.idle_wait:
            _util.wait_for_idle(a.idle_wait)
        ph = phases(a.n, a.d, data_dir)
        res["phases"] = ph
        tot = ph["total_cpu_s"]
        print(f"phases, one thread, BLAS 1 thread, n={a.n}, d={a.d}, {ph['n_blocks']} blocks of {ph['block_rows']} rows "
              "(CPU s of the process; wall s):")
        for k, v in ph["phases_cpu_s"].items():
            print(f"  {k:32s} {v:8.2f} s  {100 * v / tot:5.1f} %   wall {ph['phases_wall_s'][k]:8.2f} s")
        print(f"  {'total':32s} {tot:8.2f} s   wall {ph['total_wall_s']:.2f} s;  aligned 16384-row zarr reads "
              f"{ph['zarr_read_aligned_16384_cpu_s']:.2f} CPU s; raw file read {ph['raw_file_read_cpu_s']:.2f} CPU s")
    if "pyspy" in what:
        ps = pyspy(a.n, a.d, data_dir, a.pyspy)
        res["pyspy"] = ps
        print(f"py-spy, bigalign.cka n={a.n}: {ps['samples']} samples in bigalign work (all threads)")
        for k, v, f in ps["by_bigalign_line"][:20]:
            print(f"  {100 * f:5.1f} %  {k}")
    if "variants" in what:
        res["variants"] = variants(a.n, a.d, data_dir, a.repeats, a.idle_wait)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"profile_linear_cka_n{a.n}.json" if a.d == 1024 else RESULTS / f"profile_linear_cka_n{a.n}_d{a.d}.json"
    if path.exists():  # keep the sections this run did not redo
        old = json.loads(path.read_text())
        if old.get("d", a.d) == a.d:
            res = {**old, **res}
    path.write_text(json.dumps(res, indent=1, default=str) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
