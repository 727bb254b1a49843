"""Does the random-feature pass of non-linear CKA pay for re-reading stored chunks?

Usage::

    python benchmarks/profile_feature_pass.py [--n 2e5] [--d 512] [--features 1024,2048]
                                              [--what data,phases,e2e] [--repeats 3]

``bigalign.cka(x, y, kernel="rbf", method="rff", n_features=D)`` runs one engine pass over
the random-feature maps.  Its block rows come from ``feature_options`` (the features,
not the inputs, bound the memory), so they need not be a multiple of the stored chunk rows
(16,384 here): a stored chunk overlapped by k blocks is read — and, if compressed, decoded —
k times.

``data``
    Writes two pairs of stores under ``benchmarks/data/`` (git-ignored) with
    ``bigalign.ActivationWriter``, 16,384-row chunks: ``raw`` (``compressors=None``) and
    ``zstd`` (the default compressor), the same rows as ``bench_kernels.py``'s scale stores
    (x ~ N(0, I); y a noisy non-linear function of x).
``phases``
    Replays the pass in this process, one block at a time on one thread with BLAS pinned to
    one thread (what each dask worker thread does): the statistic is the one ``cka`` builds
    (captured from ``feature_moments``), the blocks its planned ones.  Seconds per phase summed
    over blocks: ``read`` (``Representation.read`` of both inputs), ``map`` (the feature
    maps), ``moments`` (the rest of ``MomentStatistic.partial``: cast check, centring, the
    D×D products), ``merge`` (the tree of ``moments.merge``); then the same reads over
    chunk-aligned blocks (16,384 rows): ``read - read_aligned`` is what re-reading costs.
    Chunk reads are counted by wrapping ``zarr.storage.LocalStore.get``.
``e2e``
    ``bigalign.cka`` end to end in a fresh subprocess per run (warm page cache, default
    threaded scheduler): wall, CPU (user + system of all threads), peak RSS (VmHWM), chunk
    reads, and the block plan.

Results: ``benchmarks/results/profile_feature_pass.{json,md}``.  The machine is shared (2
cores): times are medians of repeats and still noisy; ``other CPUs`` says how busy it was.
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _util  # noqa: E402
import bench_kernels as BK  # noqa: E402

HERE = Path(__file__).resolve().parent
DATA_DIR = HERE / "data"
RESULTS = HERE / "results"
CHUNK_ROWS = BK.CHUNK_ROWS
KINDS = ("raw", "zstd")


def store_paths(n: int, d: int, kind: str) -> tuple[Path, Path]:
    return DATA_DIR / f"featpass_x_n{n}_d{d}_{kind}.zarr", DATA_DIR / f"featpass_y_n{n}_d{d}_{kind}.zarr"


def _attrs(d: int, kind: str) -> dict[str, Any]:
    return {"generator": "profile_feature_pass", "seed": BK.SCALE_SEED, "d": d, "chunk_rows": CHUNK_ROWS, "compressors": kind}


def _store_ok(path: Path, layer: str, n: int, d: int, kind: str) -> bool:
    import bigalign

    try:
        st = bigalign.open_activations(path)
        return st.n_samples == n and st[layer].shape == (n, d) and st.attrs.get("bench") == _attrs(d, kind)
    except Exception:
        return False


def ensure_data(n: int, d: int, kind: str, log) -> dict[str, Any]:
    import numpy

    import bigalign

    px, py = store_paths(n, d, kind)
    if not (_store_ok(px, "x", n, d, kind) and _store_ok(py, "y", n, d, kind)):
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        log(f"writing {px.name}, {py.name} ...")
        comp = None if kind == "raw" else "default"
        attrs = {"bench": _attrs(d, kind)}
        with bigalign.ActivationWriter(px, mode="w", chunk_rows=CHUNK_ROWS, compressors=comp, attrs=attrs) as wx, \
                bigalign.ActivationWriter(py, mode="w", chunk_rows=CHUNK_ROWS, compressors=comp, attrs=attrs) as wy:
            for b, start in enumerate(range(0, n, CHUNK_ROWS)):
                rows = min(CHUNK_ROWS, n - start)
                x, y = BK.gen_scale_block(b, rows, d)
                ids = numpy.arange(start, start + rows, dtype=numpy.int64)
                wx.append({"x": x}, sample_ids=ids)
                wy.append({"y": y}, sample_ids=ids)
    return {"x": px.name, "y": py.name, "bytes": _util.dir_bytes(px) + _util.dir_bytes(py), "raw_bytes": 2 * n * d * 4}  # the padded last chunk and the sample ids add to both


# --------------------------------------------------------------------------- #
# chunk-read counter
# --------------------------------------------------------------------------- #

READS: collections.Counter = collections.Counter()


def count_chunk_reads() -> None:
    """Count every stored chunk fetched (``LocalStore.get`` of a ``.../c/...`` key)."""
    from zarr.storage import LocalStore

    orig = LocalStore.get
    if getattr(orig, "_counted", False):
        return

    async def get(self, key, *args, **kwargs):  # type: ignore[no-untyped-def]
        if "/c/" in key or key.startswith("c/"):
            READS[key] += 1
        return await orig(self, key, *args, **kwargs)

    get._counted = True  # type: ignore[attr-defined]
    LocalStore.get = get  # type: ignore[method-assign]


def read_summary(n: int, d: int) -> dict[str, Any]:
    data = {k: v for k, v in READS.items() if "sample_ids" not in k}
    distinct = len(data)
    total = sum(data.values())
    return {"chunk_reads": total, "distinct_chunks": distinct, "reads_per_chunk": total / distinct if distinct else float("nan"),
            "max_reads_of_a_chunk": max(data.values()) if data else 0}


# --------------------------------------------------------------------------- #
# phases (in-process replay)
# --------------------------------------------------------------------------- #


class _Captured(Exception):
    pass


def capture_pass(x: Any, y: Any, n_features: int) -> tuple[Any, list, dict[str, Any]]:
    """The statistic, inputs and engine options ``cka(..., method='rff')`` hands to ``engine.run``."""
    import bigalign
    import bigalign.metrics._kernel_nonlinear as KN

    got: dict[str, Any] = {}
    orig = KN.run

    def fake_run(stat, inputs, **kw):  # type: ignore[no-untyped-def]
        got.update(stat=stat, inputs=list(inputs), kw=kw)
        raise _Captured

    KN.run = fake_run
    try:
        bigalign.cka(x, y, kernel="rbf", method="rff", n_features=n_features)
    except _Captured:
        pass
    finally:
        KN.run = orig
    return got["stat"], got["inputs"], got["kw"]


class _Timed:
    def __init__(self, f: Any, acc: list[float]):
        self.f, self.acc = f, acc

    def __call__(self, a: Any) -> Any:
        t0 = time.perf_counter()
        r = self.f(a)
        self.acc[0] += time.perf_counter() - t0
        return r


def phases(n: int, d: int, kind: str, n_features: int) -> dict[str, Any]:
    import dataclasses

    from threadpoolctl import threadpool_limits

    import bigalign
    from bigalign.engine import _StreamingTree

    count_chunk_reads()
    px, py = store_paths(n, d, kind)
    sx, sy = bigalign.open_activations(px), bigalign.open_activations(py)
    stat, inputs, kw = capture_pass(sx["x"], sy["y"], n_features)
    from bigalign.engine import plan_blocks, prepare

    reps = prepare(inputs, [r.name for r in inputs], check=False)
    plan = plan_blocks(reps, block_rows=kw.get("block_size"), n_workers=1, scheduler="sync")
    rows = plan.block_rows
    map_s = [0.0]
    tstat = dataclasses.replace(stat, transforms=tuple(_Timed(f, map_s) for f in stat.transforms))
    out: dict[str, Any] = {"kind": kind, "n": n, "d": d, "n_features": n_features, "block_rows": rows, "n_blocks": plan.n_blocks}
    with threadpool_limits(limits=1, user_api="blas"):
        READS.clear()
        t_read = t_partial = 0.0
        merge_s = [0.0]

        def comb(a: Any, b: Any) -> Any:
            t0 = time.perf_counter()
            r = stat.combine(a, b)
            merge_s[0] += time.perf_counter() - t0
            return r

        tree = _StreamingTree(comb)
        for s in range(0, n, rows):
            t0 = time.perf_counter()
            blocks = [r.read(s, min(s + rows, n)) for r in reps]
            t1 = time.perf_counter()
            tree.push(tstat.partial(blocks, s))
            t2 = time.perf_counter()
            t_read += t1 - t0
            t_partial += t2 - t1
            del blocks
        tree.result()
        out.update(read_summary(n, d))
        READS.clear()
        t0 = time.perf_counter()
        for s in range(0, n, CHUNK_ROWS):  # the same rows, one stored chunk per block
            for r in reps:
                r.read(s, min(s + CHUNK_ROWS, n))
        t_aligned = time.perf_counter() - t0
        out["aligned_chunk_reads"] = read_summary(n, d)["chunk_reads"]
    out.update(read_s=t_read, map_s=map_s[0], moments_s=t_partial - map_s[0], merge_s=merge_s[0], read_aligned_s=t_aligned)
    total = t_read + t_partial + merge_s[0]
    out["total_s"] = total
    out["reread_s"] = t_read - t_aligned
    out["reread_fraction"] = (t_read - t_aligned) / total
    return out


# --------------------------------------------------------------------------- #
# end to end (child)
# --------------------------------------------------------------------------- #


def child_e2e(n: int, d: int, kind: str, n_features: int, block_size: int | None = None) -> None:
    import bigalign

    px, py = store_paths(n, d, kind)
    sx, sy = bigalign.open_activations(px), bigalign.open_activations(py)
    BK._warm_numba()
    count_chunk_reads()
    READS.clear()
    import bigalign.metrics._kernel_nonlinear as KN

    orig_run, before_pass = KN.run, {}

    def marked_run(*args, **kwargs):  # type: ignore[no-untyped-def]
        before_pass.update(READS)  # what the bandwidth sample read before the feature pass
        return orig_run(*args, **kwargs)

    KN.run = marked_run
    kw = {} if block_size is None else {"block_size": block_size}
    r, t = BK._timed(lambda: bigalign.cka(sx["x"], sy["y"], kernel="rbf", method="rff", n_features=n_features, **kw))
    p = r.parameters
    total = read_summary(n, d)
    READS.subtract(before_pass)
    in_pass = read_summary(n, d)
    _util.emit({"kind": kind, "n": n, "d": d, "n_features": n_features, "value": r.value, "stderr": r.stderr,
                "block_rows": p.get("block_size"), "n_blocks": p.get("n_blocks"), **total,
                "pass_chunk_reads": in_pass["chunk_reads"], "pass_reads_per_chunk": in_pass["chunk_reads"] / total["distinct_chunks"], **t})


# --------------------------------------------------------------------------- #
# report
# --------------------------------------------------------------------------- #


def render(res: dict[str, Any]) -> str:
    lines = [
        "# Random-feature pass: chunk re-reads (profile_feature_pass.py)",
        "",
        f"`bigalign.cka(x, y, kernel='rbf', method='rff', n_features=D)`, n = {res['n']:,}, d = {res['d']} float32 both "
        f"inputs, 16,384-row Zarr chunks, *raw* = uncompressed, *zstd* = ActivationWriter's default compressor; warm page cache. "
        f"bigalign snapshot {res.get('snapshot')} (git {res.get('git')}).",
        "",
    ]
    if res.get("data"):
        lines += ["| store pair | MB on disk | of the float32 rows |", "|---|---:|---:|"]
        for k, v in res["data"].items():
            lines.append(f"| {k} | {v['bytes'] / 1e6:.0f} | {v['bytes'] / v['raw_bytes']:.2f} |")
        lines.append("")
    if res.get("phases"):
        lines += [
            "## Phases (one thread, BLAS 1 thread, seconds summed over blocks)",
            "",
            "| store | D | block rows × blocks | read | map | moments | merge | total | reads/chunk | read, chunk-aligned | re-read cost | of total |",
            "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for p in res["phases"]:
            lines.append(
                f"| {p['kind']} | {p['n_features']} | {p['block_rows']:,} × {p['n_blocks']} | {p['read_s']:.2f} | {p['map_s']:.2f} | "
                f"{p['moments_s']:.2f} | {p['merge_s']:.2f} | {p['total_s']:.1f} | {p['reads_per_chunk']:.2f} | "
                f"{p['read_aligned_s']:.2f} | {p['reread_s']:.2f} | {100 * p['reread_fraction']:.1f}% |"
            )
        lines += ["", "*re-read cost* = read − read over chunk-aligned blocks (the same rows); *reads/chunk* counts "
                  "`LocalStore.get` calls per stored data chunk.", ""]
    if res.get("e2e"):
        lines += [
            "## End to end (fresh process per run, dask threads, 2 workers)",
            "",
            "| label | store | D | block rows × blocks | runs | wall s (median) | CPU s (median) | peak RSS MB | reads/chunk: all (feature pass) | CKA | other CPUs |",
            "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for e in res["e2e"]:
            lines.append(
                f"| {e['label']} | {e['kind']} | {e['n_features']} | {e['block_rows']:,} × {e['n_blocks']} | {e['runs']} | "
                f"{e['wall_s']:.1f} | {e['cpu_s']:.1f} | {e['peak_rss_mb']:.0f} | {e['reads_per_chunk']:.2f} ({e.get('pass_reads_per_chunk', float('nan')):.2f}) | {e['value']:.6f} | "
                f"{e['other_cpus']:.2f} |"
            )
        lines += ["", "*reads/chunk*: stored data chunks fetched per distinct chunk during the call; *all* includes the "
                  "bandwidth sample (`sample_rows`, which touches every chunk once), *feature pass* only the engine pass. "
                  "*CPU s*: user + system of all the child's threads during the call; *peak RSS*: the child's VmHWM.", ""]
    if res.get("notes"):
        lines += ["## Reading", ""] + [f"- {t}" for t in res["notes"]] + [""]
    lines += ["Shared 2-core machine: other sessions ran meanwhile (*other CPUs*), so times are indicative.", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", default="2e5")
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--features", default="1024,2048")
    ap.add_argument("--kinds", default="raw,zstd")
    ap.add_argument("--what", default="data,phases,e2e")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--label", default="current")
    ap.add_argument("--out", default=str(RESULTS / "profile_feature_pass.json"))
    ap.add_argument("--block-size", type=int, default=None,
                    help="e2e: pass this block_size to cka (default: the planned one); label the runs accordingly")
    ap.add_argument("--render", action="store_true", help="only re-render the .md from the .json")
    ap.add_argument("--child", nargs=4, metavar=("N", "D", "KIND", "FEATURES"))
    a = ap.parse_args()
    if a.child:
        child_e2e(int(a.child[0]), int(a.child[1]), a.child[2], int(a.child[3]), a.block_size)
        return
    if a.render:
        save(json.loads(Path(a.out).read_text()), Path(a.out))
        return
    n, d = int(float(a.n)), a.d
    feats = [int(f) for f in a.features.split(",")]
    kinds = a.kinds.split(",")
    what = a.what.split(",")

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    snap, digest = _util.snapshot_bigalign()
    _util.use_snapshot(snap)
    out = Path(a.out)
    res: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    if res.get("n") not in (None, n) or res.get("d") not in (None, d):
        res = {}
    res.update(n=n, d=d, snapshot=digest, git=_util._git("rev-parse", "--short", "HEAD"))
    res.setdefault("data", {})
    for k in kinds:
        res["data"][k] = ensure_data(n, d, k, log)
    if "phases" in what:
        res["phases"] = [p for p in res.get("phases", []) if (p["kind"], p["n_features"]) not in {(k, f) for k in kinds for f in feats}]
        for f in feats:
            for k in kinds:
                _util.warm_page_cache(store_paths(n, d, k))
                p = phases(n, d, k, f)
                log(json.dumps(p))
                res["phases"].append(p)
                save(res, out)
    if "e2e" in what:
        keep = [e for e in res.get("e2e", []) if (e["label"], e["kind"], e["n_features"]) not in {(a.label, k, f) for k in kinds for f in feats}]
        res["e2e"] = keep
        for f in feats:
            for k in kinds:
                _util.warm_page_cache(store_paths(n, d, k))
                runs = []
                for _ in range(a.repeats):
                    extra = [] if a.block_size is None else ["--block-size", str(a.block_size)]
                    r = _util.run_child([str(Path(__file__).resolve()), "--child", str(n), str(d), k, str(f), *extra])
                    log(f"{a.label} {k} D={f}: wall {r['wall_s']:.1f} s, CPU {r['cpu_s']:.1f} s, RSS {r['peak_rss_mb']:.0f} MB, "
                        f"reads/chunk {r['reads_per_chunk']:.2f}, other CPUs {r['other_cpus']:.2f}")
                    runs.append(r)
                med = {key: statistics.median(r[key] for r in runs) for key in ("wall_s", "cpu_s", "peak_rss_mb", "other_cpus")}
                res["e2e"].append({**runs[-1], **med, "label": a.label, "runs": len(runs), "snapshot": digest,
                                   "walls": [r["wall_s"] for r in runs], "cpus": [r["cpu_s"] for r in runs]})
                save(res, out)
    save(res, out)
    log(render(res))


def save(res: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1, default=_util._jsonable))
    out.with_suffix(".md").write_text(render(res))


if __name__ == "__main__":
    main()
