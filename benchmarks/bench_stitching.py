"""Linear stitching at scale: ``stitch`` between two n × d float32 representations stored in Zarr.

Usage::

    python benchmarks/bench_stitching.py                    # n = 1e6, d = 1024 (8.2 GB of input); naive at 1e5
    python benchmarks/bench_stitching.py --n 1e5 --naive-n 2e4
    python benchmarks/bench_stitching.py --quick            # n = 2e4, d = 256; naive at 5e3 (< 1 min)

Data: the uncompressed float32 store pairs ``benchmarks/data/lincka_{x,y}_n{n}_d{d}.zarr``
written by ``bench_linear_cka.py`` (x = z·mix + μ with a decaying spectrum, y = tanh((x − μ)W) + noise,
16,384-row chunks, sample ids) are reused read-only when present; otherwise this script writes its own
pair ``stitch_{x,y}_n{n}_d{d}.zarr`` with ``ActivationWriter(compressors=None)`` and the same recipe.

Jobs (each a fresh subprocess; peak RSS = the child's VmHWM, see ``_util.py``):

``cka`` (baseline)
    ``bigalign.cka(x, y)``: one streaming pass accumulating the same moments (XᵀX, YᵀY, XᵀY, ...).
``stitch``
    ``stitch(x, y, ridge=0, holdout=0.2)``: one pass over both splits, then the solve (two d×d
    eigen-decompositions) and the risks on both splits.
``stitch-targets``
    ``stitch(x, y, targets=labels, reverse=True)`` with 10-class labels (an in-memory int array, drawn
    at random from a fixed seed: the cost is what is measured, the task is meaningless): heads,
    the stitch into y's head, κ₂ and Theorem 1's bound, both directions.
``stitch-cv``
    ``stitch(x, y, ridge="cv")``: 5-fold cross-validation over a 9-value ridge grid (per-fold moments
    from the same single pass).
``naive`` (reference and value check, at ``--naive-n``)
    x, y loaded into memory as float64; ``numpy.linalg.lstsq`` of y on [x, 1]; compared with
    ``stitch(..., holdout=0)`` on the first ``--naive-n`` rows of the same stores.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _util  # noqa: E402

HERE = Path(__file__).resolve().parent
DATA_DIR = HERE / "data"
RESULTS_DIR = HERE / "results"
CHUNK_ROWS = 16384
SEED = 20240607
DISTURBED = 0.3  # CPUs used by other processes above which a job is flagged as disturbed


# =========================================================================== #
# data
# =========================================================================== #


def _pair_ok(px: Path, py: Path, n: int, d: int) -> bool:
    import bigalign

    try:
        sx, sy = bigalign.open_activations(px), bigalign.open_activations(py)
        lx, ly = sx["x"], sy["y"]
        return (sx.n_samples >= n and sy.n_samples >= n and lx.shape[1] == d and ly.shape[1] == d
                and str(lx.dtype) == "float32" and str(ly.dtype) == "float32")  # fmt: skip
    except Exception:
        return False


def find_or_write(n: int, d: int, log) -> tuple[Path, Path, dict[str, Any]]:
    """A store pair with at least n rows of width d: reused (read-only) if one exists, else written."""
    for prefix in ("lincka", "stitch"):
        px, py = DATA_DIR / f"{prefix}_x_n{n}_d{d}.zarr", DATA_DIR / f"{prefix}_y_n{n}_d{d}.zarr"
        if _pair_ok(px, py, n, d):
            log(f"data n={n} d={d}: reusing {px.name}, {py.name} (read-only)")
            return px, py, {"x": px.name, "y": py.name, "reused": True, "bytes": _util.dir_bytes(px) + _util.dir_bytes(py)}
    import numpy as np

    import bigalign

    px, py = DATA_DIR / f"stitch_x_n{n}_d{d}.zarr", DATA_DIR / f"stitch_y_n{n}_d{d}.zarr"
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([SEED, 10**9])
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    spec = np.arange(1, d + 1) ** -0.5
    mix = (spec[:, None] * q).astype(np.float32)
    mu = rng.uniform(0.0, 2.0, size=d).astype(np.float32)
    w = (rng.standard_normal((d, d)) * (1.5 / math.sqrt(float(spec @ spec)))).astype(np.float32)
    log(f"data n={n} d={d}: writing {px.name}, {py.name} ...")
    t0 = time.perf_counter()
    with bigalign.ActivationWriter(px, mode="w", chunk_rows=CHUNK_ROWS, compressors=None) as wx, \
            bigalign.ActivationWriter(py, mode="w", chunk_rows=CHUNK_ROWS, compressors=None) as wy:  # fmt: skip
        for b, start in enumerate(range(0, n, CHUNK_ROWS)):
            rows = min(CHUNK_ROWS, n - start)
            r = np.random.default_rng([SEED, b])
            x = r.standard_normal((rows, d), dtype=np.float32) @ mix
            y = np.tanh(x @ w) + 0.3 * r.standard_normal((rows, d), dtype=np.float32) + 0.1
            ids = np.arange(start, start + rows, dtype=np.int64)
            wx.append({"x": x + mu}, sample_ids=ids)
            wy.append({"y": y.astype(np.float32)}, sample_ids=ids)
    dt = time.perf_counter() - t0
    log(f"  written in {dt:.1f} s")
    return px, py, {"x": px.name, "y": py.name, "reused": False, "write_s": dt, "bytes": _util.dir_bytes(px) + _util.dir_bytes(py)}


# =========================================================================== #
# child jobs
# =========================================================================== #


def _layers(a):
    import bigalign

    lx, ly = bigalign.open_activations(a.x)["x"], bigalign.open_activations(a.y)["y"]
    if lx.shape[0] > a.n:  # a larger store: its first n rows
        lx, ly = lx.to_dask()[: a.n], ly.to_dask()[: a.n]
    return lx, ly


def _timed(fn):
    c0, t0 = _util.cpu_now(), time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0, _util.cpu_now() - c0


def child(a) -> dict[str, Any]:
    import numpy as np

    import bigalign
    from bigalign.metrics.stitching import stitch

    lx, ly = _layers(a)
    if a.job == "cka":
        r, wall, cpu = _timed(lambda: bigalign.cka(lx, ly))
        return {"wall_s": wall, "cpu_s": cpu, "value": r.value, "parameters": dict(r.parameters)}
    if a.job == "naive":
        x = np.asarray(lx, dtype=np.float64)
        y = np.asarray(ly, dtype=np.float64)

        def lstsq():
            x1 = np.hstack([x, np.ones((x.shape[0], 1))])
            sol = np.linalg.lstsq(x1, y, rcond=None)[0]
            return sol, float(np.mean(np.sum((x1 @ sol - y) ** 2, axis=1)))

        (sol, res), wall, cpu = _timed(lstsq)
        r = stitch(lx, ly, holdout=0)  # untimed: the value check
        err_map = float(np.max(np.abs(r.map - sol[:-1])) / np.max(np.abs(sol[:-1])))
        return {"wall_s": wall, "cpu_s": cpu, "residual_lstsq": res, "residual_stitch": r.residual,
                "residual_rel_diff": abs(r.residual - res) / res, "map_max_rel_diff": err_map}  # fmt: skip
    kw: dict[str, Any] = {"ridge": 0.0, "holdout": 0.2}
    if a.job == "stitch-targets":
        kw.update(targets=np.random.default_rng(SEED).integers(0, 10, a.n), reverse=True)
    if a.job == "stitch-cv":
        kw.update(ridge="cv")
    r, wall, cpu = _timed(lambda: stitch(lx, ly, **kw))
    out = {"wall_s": wall, "cpu_s": cpu, "residual": r.residual, "r2": r.r2, "fit_residual": r.fit.residual,
           "n_fit": r.fit.n_samples, "n_holdout": r.holdout.n_samples, "ridge": dict(r.ridge),
           "parameters": {k: v for k, v in r.parameters.items() if k in ("block_size", "n_blocks", "scheduler")}}  # fmt: skip
    if r.has_targets:
        out.update(risk_1=r.risk_1, risk_2=r.risk_2, stitched=r.stitched_risk, bound=r.bound, kappa=r.kappa,
                   lemma2_rel=abs(r.fit.stitched_risk - r.fit.risk_1) / r.fit.risk_1)  # fmt: skip
    return out


# =========================================================================== #
# driver
# =========================================================================== #


def run_job(job: str, n: int, px: Path, py: Path, args, log) -> dict[str, Any]:
    waited, load = _util.wait_for_idle(args.idle_wait)
    argv = [str(Path(__file__).resolve()), "--child", job, "--n", str(n), "--x", str(px), "--y", str(py)]
    res = _util.run_child(argv)
    res.update(job=job, n=n, idle_wait_s=waited, load_before=load)
    res["disturbed"] = res["other_cpus"] > DISTURBED
    log(f"  {job:15s} n={n:>9,}  wall {res['wall_s']:8.2f} s  cpu {res['cpu_s']:8.2f} s  peak RSS {res['peak_rss_mb']:7.0f} MB"
        f"  other load {res['other_cpus']:.2f} CPUs")  # fmt: skip
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=float, default=1e6)
    p.add_argument("--d", type=int, default=1024)
    p.add_argument("--naive-n", type=float, default=1e5)
    p.add_argument("--jobs", default="cka,stitch,stitch-targets,naive", help="comma-separated; also: stitch-cv")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--idle-wait", type=float, default=120.0)
    p.add_argument("--out", default=None)
    p.add_argument("--child", default=None)
    p.add_argument("--x", default=None)
    p.add_argument("--y", default=None)
    p.add_argument("--render", default=None, help="rewrite the .md next to this results .json (no measuring)")
    a = p.parse_args()
    if a.render:
        rec = json.loads(Path(a.render).read_text())
        d = next(iter(rec["results"]), {}).get("d", a.d)
        write_md(Path(a.render).with_suffix(".md"), rec["command"], 0, d, rec["data"], rec["results"], rec["machine"], rec["total_s"])
        return
    if a.child:
        a.job, a.n = a.child, int(a.n)
        _util.emit(child(a))
        return
    if a.quick:
        a.n, a.d, a.naive_n = 2e4, 256, 5e3
    n, d, nn = int(a.n), a.d, int(a.naive_n)
    t_all = time.perf_counter()
    log = print
    px, py, data = find_or_write(n, d, log)
    jobs = [j.strip() for j in a.jobs.split(",") if j.strip()]
    results = []
    for job in jobs:
        if job == "naive":
            nx, ny, ndata = find_or_write(nn, d, log) if nn != n else (px, py, data)
            results.append(run_job("naive", nn, nx, ny, a, log))
        else:
            results.append(run_job(job, n, px, py, a, log))
    total = time.perf_counter() - t_all
    name = a.out or ("stitching_quick" if a.quick else "stitching")
    cmd = "python benchmarks/bench_stitching.py " + " ".join(sys.argv[1:])
    info = _util.machine_info()
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / f"{name}.json").write_text(json.dumps({"command": cmd, "data": data, "results": results, "machine": info,
                                                           "total_s": total}, indent=1, default=str))  # fmt: skip
    write_md(RESULTS_DIR / f"{name}.md", cmd, n, d, data, results, info, total)
    log(f"wrote {RESULTS_DIR / f'{name}.md'} ({total:.0f} s)")


def write_md(path: Path, cmd: str, n: int, d: int, data: dict, results: list, info: dict, total: float) -> None:
    base = {r["n"]: (r["wall_s"], r["cpu_s"]) for r in results if r["job"] == "cka"}
    lines = [f"# Linear stitching benchmark{' (quick)' if 'quick' in path.name else ''}", "",
             f"Command: `{cmd}` — total {total:.0f} s.", "",
             "| job | n | d | wall s | CPU s | ratio to one CKA pass: wall (CPU) | peak RSS MB | other load, CPUs |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    labels = {"cka": "bigalign.cka (one moment pass, baseline)", "stitch": "stitch(x, y, ridge=0, holdout=0.2)",
              "stitch-targets": "stitch(..., targets=10 classes, reverse=True)", "stitch-cv": "stitch(..., ridge='cv'), 5 folds × 9 λ",
              "naive": "numpy lstsq on [x, 1], in memory, float64"}  # fmt: skip
    for r in results:
        if r["n"] in base:
            ratio = f"{r['wall_s'] / base[r['n']][0]:.2f} ({r['cpu_s'] / base[r['n']][1]:.2f})"
        else:
            ratio = "—"
        lines.append(f"| {labels.get(r['job'], r['job'])} | {r['n']:,} | {d} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {ratio} | "
                     f"{r['peak_rss_mb']:.0f} | {r['other_cpus']:.2f}{' (disturbed)' if r['disturbed'] else ''} |")  # fmt: skip
    lines += ["", "Values:", ""]
    for r in results:
        if r["job"] == "naive":
            lines.append(f"- n = {r['n']:,}: stitch vs numpy lstsq — residual {r['residual_stitch']:.12g} vs {r['residual_lstsq']:.12g} "
                         f"(relative difference {r['residual_rel_diff']:.1e}); map max relative difference {r['map_max_rel_diff']:.1e}.")  # fmt: skip
        elif r["job"].startswith("stitch"):
            extra = ""
            if "risk_1" in r:
                extra = (f"; risk_1 {r['risk_1']:.6g}, risk_2 {r['risk_2']:.6g}, stitched {r['stitched']:.6g}, bound {r['bound']:.6g}, "
                         f"κ₂ {r['kappa']:.4g}; Lemma 2 on the fitting rows: relative difference {r['lemma2_rel']:.1e}")  # fmt: skip
            lines.append(f"- {r['job']}: held-out residual {r['residual']:.6g}, R² {r['r2']:.6f} (n_fit {r['n_fit']:,}, "
                         f"n_holdout {r['n_holdout']:,}, block {r['parameters'].get('block_size')} rows × {r['parameters'].get('n_blocks')}, "
                         f"ridge {r['ridge']}){extra}.")  # fmt: skip
    lines += ["", "## How it was measured", "",
              f"- Data: {data['x']}, {data['y']} ({data['bytes'] / 1e9:.1f} GB, uncompressed float32 Zarr, "
              f"{'reused read-only' if data['reused'] else 'written by this script'}).",
              "- Each job is a fresh subprocess; *wall s* and *CPU s* cover the call only (stores opened, modules imported before); "
              "*peak RSS* is the child's VmHWM (whole process). Default scheduler (dask threads), default block plan.",
              "- *other load*: CPUs used by other processes while the job ran (the machine is shared); before each job the driver "
              "waits (up to --idle-wait s) for the machine to go idle. Rows marked disturbed ran while others used > 0.3 CPUs: "
              "their wall times measure the contention, and the CPU-time ratio is the robust comparison.",
              "", "## Machine", "",
              f"- CPU: {info['cpu_model']}, {info['logical_cpus']} logical CPUs, {info['memory_gib']} GiB RAM",
              "- BLAS: " + ", ".join(f"{b.get('internal_api')} {b.get('version')} ({b.get('num_threads')} threads)" for b in info["blas"]),
              f"- versions: {info['versions']}; git {info['git_head']}{' + uncommitted changes in bigalign/' if info['bigalign_dirty'] else ''}"]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
