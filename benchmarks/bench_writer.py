"""ActivationWriter throughput at real batch sizes against Zarr written in whole chunks.

The same data (n rows of d = 768 features, float32 and bfloat16) is written

* by plain Zarr: ``zarr.create_array`` with the same chunk shape and compressor as the
  writer's store, one ``arr[a:b] = x[a:b]`` per whole chunk, no fsync (the baseline);
* by the same plain-Zarr write followed by one fsync of every file (what it costs to
  have the baseline's bytes on disk);
* by ``ActivationWriter.append`` in batches of 128 and of 1,024 rows with the default
  ``durability="process"`` (every batch is in the operating system before ``append``
  returns, so it survives SIGKILL of the writer; nothing fsynced), ``close()`` included;
* the same followed by ``flush()`` before ``close()`` (everything acknowledged on disk:
  compare with Zarr + fsync);
* by the writer with ``durability="power"`` (every batch fsynced before ``append``
  returns: it also survives a power loss or an OS crash).

Every configuration runs ``--repeats`` times in this one process, interleaved; the median
is reported with wall and CPU seconds and the load average around it.
Results: benchmarks/results/writer.{md,json}.

    python benchmarks/bench_writer.py [--n 65536] [--repeats 5] [--compressors default|none]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import ml_dtypes
import numpy as np
import zarr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import bigalign  # noqa: E402
from bigalign.io import _fsync_path  # noqa: E402

D = 768
HERE = Path(__file__).resolve().parent


def timed(fn):
    c0, w0 = time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def writer_run(path: Path, x: np.ndarray, batch: int, compressors, durability: str, flush: bool) -> None:
    with bigalign.ActivationWriter(path, mode="w", compressors=compressors, durability=durability) as w:
        for a in range(0, len(x), batch):
            w.append({"h": x[a : a + batch]}, sample_ids=np.arange(a, min(a + batch, len(x))))
        if flush:
            w.flush()


def chunk_rows_of(x: np.ndarray) -> int:
    item = 2 if x.dtype == ml_dtypes.bfloat16 else x.dtype.itemsize
    return 2 ** int(np.log2((32 * 2**20) // (x.shape[1] * item)))


def zarr_run(path: Path, x: np.ndarray, compressors, fsync: bool) -> None:
    rows = chunk_rows_of(x)
    data = x.view(np.uint16) if x.dtype == ml_dtypes.bfloat16 else x
    g = zarr.open_group(str(path), mode="w")
    arr = g.create_array("h", shape=data.shape, chunks=(rows, data.shape[1]), dtype=data.dtype,
                         compressors="auto" if compressors == "default" else compressors)  # fmt: skip
    ids = g.create_array("sample_ids", shape=(len(x),), chunks=(65536,), dtype=np.int64)
    for a in range(0, len(x), rows):
        arr[a : a + rows] = data[a : a + rows]
    ids[:] = np.arange(len(x))
    if fsync:
        for f in sorted(path.rglob("*")):
            if f.is_file():
                _fsync_path(f)


def fsync_latency(folder: Path, nbytes: int, repeats: int = 32) -> float:
    """Median seconds of one write of ``nbytes`` followed by fdatasync, on this disk, now."""
    buf = os.urandom(nbytes)
    fd = os.open(folder / "probe.bin", os.O_RDWR | os.O_CREAT | os.O_TRUNC)
    out = []
    try:
        for i in range(repeats):
            t = time.perf_counter()
            os.pwrite(fd, buf, i * nbytes)
            os.fdatasync(fd)
            out.append(time.perf_counter() - t)
    finally:
        os.close(fd)
        os.unlink(folder / "probe.bin")
    return statistics.median(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=65536)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--compressors", default="default", choices=["default", "none"])
    ap.add_argument("--out", default=str(HERE / "results" / "writer"))
    args = ap.parse_args()
    comp = None if args.compressors == "none" else "default"
    rng = np.random.default_rng(0)
    base = rng.standard_normal((args.n, D), dtype=np.float32)
    datasets = {"float32": base, "bfloat16": base.astype(ml_dtypes.bfloat16)}
    tmp = Path(tempfile.mkdtemp(prefix="bench_writer_", dir=os.environ.get("BENCH_TMP", str(HERE))))
    # (label, batch rows or None for plain Zarr, fsync for Zarr / durability for the writer, flush before close)
    configs = [("zarr whole chunks", None, False, False), ("zarr whole chunks + fsync", None, True, False),
               ("writer, batch 128 (default: process)", 128, "process", False),
               ("writer, batch 1024 (default: process)", 1024, "process", False),
               ("writer, batch 128, process + flush()", 128, "process", True),
               ("writer, batch 1024, process + flush()", 1024, "process", True),
               ("writer, batch 128, durability=power", 128, "power", False),
               ("writer, batch 1024, durability=power", 1024, "power", False)]  # fmt: skip
    times: dict[tuple[str, str], list[tuple[float, float]]] = {}
    probes = []
    load0 = os.getloadavg()
    try:
        for rep in range(args.repeats):
            probes.append(fsync_latency(tmp, 128 * D * 4))
            for dname, x in datasets.items():
                for label, batch, how, flush in configs:
                    p = tmp / f"{dname}-{batch}-{how}-{flush}.zarr"
                    shutil.rmtree(p, ignore_errors=True)
                    if batch is None:
                        t = timed(lambda: zarr_run(p, x, comp, how))
                    else:
                        t = timed(lambda: writer_run(p, x, batch, comp, how, flush))
                        got = bigalign.open_activations(p)["h"]
                        assert got.shape == (args.n, D) and np.array_equal(np.asarray(got[-5:]), x[-5:])
                    times.setdefault((dname, label), []).append(t)
                    shutil.rmtree(p, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rows = []
    for (dname, label), ts in times.items():
        wall = statistics.median(t[0] for t in ts)
        cpu = statistics.median(t[1] for t in ts)
        ref = statistics.median(t[0] for t in times[(dname, "zarr whole chunks")])
        ref_sync = statistics.median(t[0] for t in times[(dname, "zarr whole chunks + fsync")])
        mb = datasets[dname].nbytes / 1e6
        rows.append({"dtype": dname, "what": label, "wall_s": wall, "cpu_s": cpu, "MB_per_s": mb / wall,
                     "throughput_vs_zarr": ref / wall, "throughput_vs_zarr_fsync": ref_sync / wall,
                     "all_wall_s": [t[0] for t in ts]})  # fmt: skip
    probe = statistics.median(probes)
    load1 = os.getloadavg()
    doc = {"fsync_393KB_ms": 1e3 * probe, "n": args.n, "d": D, "compressors": args.compressors, "repeats": args.repeats, "cpus": os.cpu_count(),
           "load_avg_start": load0, "load_avg_end": load1, "rows": rows}  # fmt: skip
    Path(args.out + ".json").write_text(json.dumps(doc, indent=1))
    lines = [
        f"# ActivationWriter throughput (n = {args.n}, d = {D}, compressors = {args.compressors})",
        "",
        "`python benchmarks/bench_writer.py` — median of "
        f"{args.repeats} interleaved runs in one process, close() included; "
        "baseline: the same array written to Zarr one whole chunk at a time (same chunks, same compressor). "
        "Default `durability=\"process\"`: every acknowledged batch survives SIGKILL of the writer (it is in "
        "the operating system before `append` returns), nothing is fsynced; `+ flush()`: the same, then "
        "everything on disk before close (compare with Zarr + fsync); `durability=\"power\"`: one fsync per "
        "batch, every acknowledged batch also survives a power loss.",
        f"Machine: {os.cpu_count()} CPUs shared with other work, load average (1 min) {load0[0]:.1f} at the start "
        f"and {load1[0]:.1f} at the end; a 393 KB write + fdatasync took {1e3 * probe:.1f} ms (median, measured "
        "between the runs): with `durability=\"power\"` every append pays one such fsync.",
        "",
        "| dtype | what | wall s | CPU s | MB/s | throughput vs Zarr whole chunks | vs Zarr + fsync |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['dtype']} | {r['what']} | {r['wall_s']:.3f} | {r['cpu_s']:.3f} | {r['MB_per_s']:.0f} | "
                     f"{r['throughput_vs_zarr']:.2f}× | {r['throughput_vs_zarr_fsync']:.2f}× |")  # fmt: skip
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
