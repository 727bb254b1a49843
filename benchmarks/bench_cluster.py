"""Exact linear CKA of one n × d pair on the threaded scheduler and on LocalClusters of 1 and 2 workers.

For every run: the value (must agree to rounding), wall and CPU seconds (the client process plus
every worker process), tasks and graph size, scheduler overhead per task, bytes moved between
workers, and peak memory per worker. Then a cost model is calibrated on the 1-worker run and its
predictions are checked against the other runs (docs/cluster.md explains it).

    python benchmarks/bench_cluster.py --n 200000 --d 1024
    python benchmarks/bench_cluster.py --address tcp://scheduler:8786   # also run on a given cluster

Results: benchmarks/results/cluster.json and .md. The store is written once to benchmarks/data/.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import bigalign  # noqa: E402

RESULTS = HERE / "results"


def make_store(path: Path, n: int, d: int, chunk: int, seed: int = 0) -> None:
    if (path / "zarr.json").exists():
        st = bigalign.open_activations(path)
        if st["x"].shape == (n, d):
            return
        raise SystemExit(f"{path} holds a different size; remove it")
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((d, d)).astype(np.float32) / np.sqrt(d)
    with bigalign.ActivationWriter(path, chunk_rows=chunk) as wr:
        for s in range(0, n, chunk):
            r = min(chunk, n - s)
            x = rng.standard_normal((r, d), dtype=np.float32)
            y = x @ w + rng.standard_normal((r, d), dtype=np.float32)
            wr.append({"x": x + 1.0, "y": y}, sample_ids=np.arange(s, s + r))


def _self_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def run_threads(store, block) -> dict:
    load0 = os.getloadavg()[0]
    c0, t0 = _self_cpu(), time.perf_counter()
    r = bigalign.cka(store["x"], store["y"], block_size=block, scheduler="threads")
    wall = time.perf_counter() - t0
    n_blocks = math.ceil(store["x"].shape[0] / block)
    return {"run": "threads (2 threads)", "workers": 1, "threads": 2, "value": r.value, "wall_s": wall,
            "cpu_s": _self_cpu() - c0, "tasks": 2 * n_blocks - 1, "transfer_bytes": 0,
            "load_avg_1min_before": load0, "load_avg_1min_after": os.getloadavg()[0],
            "peak_worker_rss_gb": _peak_rss_gb()}  # fmt: skip


def _peak_rss_gb() -> float:
    # VmHWM, not ru_maxrss: a spawned worker inherits its parent's ru_maxrss across fork + exec
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    return float("nan")


def _worker_info(dask_worker):  # runs on each worker
    import psutil

    ct = psutil.Process().cpu_times()
    return {"cpu": ct.user + ct.system, "out": getattr(dask_worker, "transfer_outgoing_bytes_total", 0),
            "rss": _peak_rss_gb()}  # fmt: skip


def _spy_graph(client) -> dict:
    """Record the size of the graph that bigalign submits through ``client.compute`` (tasks, pickled bytes)."""
    import cloudpickle

    seen: dict = {}
    orig = client.compute

    def compute(x, *a, **k):
        g = dict(x.__dask_graph__())
        seen["graph_tasks"] = len(g)
        seen["graph_bytes"] = len(cloudpickle.dumps(g))
        return orig(x, *a, **k)

    client.compute = compute
    return seen


def run_client(client, store, block, label, workers, threads, state_bytes) -> dict:
    from distributed import get_task_stream

    before = client.run(_worker_info)
    graph = _spy_graph(client)
    load0 = os.getloadavg()[0]
    c0, t0 = _self_cpu(), time.perf_counter()
    with get_task_stream(client) as ts:
        r = bigalign.cka(store["x"], store["y"], block_size=block, scheduler=client)
    wall = time.perf_counter() - t0
    del client.compute
    after = client.run(_worker_info)
    recs = ts.data
    comp = {"partial": [], "combine": []}
    transfer_s = 0.0
    n_transfers = 0
    for rec in recs:
        kind = "partial" if str(rec["key"]).startswith("partial") else "combine" if "combine" in str(rec["key"]) else None
        for ss in rec["startstops"]:
            if ss["action"] == "compute" and kind:
                comp[kind].append(ss["stop"] - ss["start"])
            if ss["action"] == "transfer":
                transfer_s += ss["stop"] - ss["start"]
                n_transfers += 1
    busy = sum(comp["partial"]) + sum(comp["combine"])
    per_worker: dict[str, int] = {}
    for rec in recs:
        if str(rec["key"]).startswith("partial"):
            per_worker[rec["worker"]] = per_worker.get(rec["worker"], 0) + 1
    return {
        "run": label, "workers": workers, "threads": threads, "value": r.value, "wall_s": wall,
        "load_avg_1min_before": load0, "load_avg_1min_after": os.getloadavg()[0], **graph,
        "cpu_s": (_self_cpu() - c0) + sum(after[w]["cpu"] - before[w]["cpu"] for w in after),
        "tasks": len(recs), "partial_tasks": len(comp["partial"]), "combine_tasks": len(comp["combine"]),
        "partial_s_mean": float(np.mean(comp["partial"])) if comp["partial"] else 0.0,
        "combine_s_mean": float(np.mean(comp["combine"])) if comp["combine"] else 0.0,
        # what distributed counts (its sizeof estimate of the states) and what moved: each
        # worker-to-worker transfer carries one merged state of state_bytes
        "transfer_bytes_counted_by_dask": int(sum(after[w]["out"] - before[w]["out"] for w in after)),
        "worker_transfers": n_transfers,
        "transfer_bytes": n_transfers * state_bytes,
        "transfer_s": transfer_s,
        "overhead_s_per_task": max(0.0, wall * workers * threads - busy) / max(1, len(recs)),
        "peak_worker_rss_gb": max(after[w]["rss"] for w in after),
        "peak_rss_gb_per_worker": sorted(after[w]["rss"] for w in after),
        "partials_per_worker": sorted(per_worker.values()),
    }  # fmt: skip


def model_predict(cal: dict, n_blocks: int, workers: int, threads: int, state_bytes: float, bw: float) -> float:
    """T = T0 + ⌈B/(N·h)⌉·t_p + ⌈log₂B⌉·t_c + (transfers on the critical path)·S/bw."""
    slots = workers * threads
    waves = math.ceil(n_blocks / slots)
    depth = math.ceil(math.log2(max(n_blocks, 2)))
    # a combine level moves one state between workers when the tree spans several of them
    cross = min(depth, math.ceil(math.log2(max(workers, 1)))) if workers > 1 else 0
    return cal["T0"] + waves * cal["t_p"] + depth * cal["t_c"] + cross * state_bytes / bw


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--d", type=int, default=1024)
    ap.add_argument("--chunk", type=int, default=16384)
    ap.add_argument("--address", default=None, help="also run on the cluster at this scheduler address")
    ap.add_argument("--tag", default="", help="suffix of the result files (cluster<tag>.md/.json)")
    args = ap.parse_args()
    from distributed import Client, LocalCluster

    data = HERE / "data"
    data.mkdir(exist_ok=True)
    path = data / f"cluster_pair_{args.n}x{args.d}.zarr"
    t = time.perf_counter()
    make_store(path, args.n, args.d, args.chunk)
    store = bigalign.open_activations(path)
    print(f"store ready ({time.perf_counter() - t:.1f} s)", flush=True)
    block = args.chunk
    n_blocks = math.ceil(args.n / block)
    load = os.getloadavg()
    state_bytes = 3 * 8 * args.d * args.d + 8 * 4 * args.d  # merged moments of a pair: three d×d float64 matrices
    runs = [run_threads(store, block)]
    print(runs[-1], flush=True)
    starts = {}
    for workers in (1, 2):
        t = time.perf_counter()
        with LocalCluster(n_workers=workers, threads_per_worker=2 if workers == 1 else 1, processes=True,
                          dashboard_address=None, memory_limit="3GiB") as cluster:  # fmt: skip
            with Client(cluster) as client:
                starts[workers] = time.perf_counter() - t
                runs.append(run_client(client, store, block, f"LocalCluster({workers})", workers, 2 if workers == 1 else 1,
                                       state_bytes))
                print(runs[-1], flush=True)
    if args.address:
        with Client(args.address) as client:
            info = client.scheduler_info()["workers"]
            nw, nt = len(info), sum(w["nthreads"] for w in info.values()) // max(1, len(info))
            runs.append(run_client(client, store, block, f"cluster at {args.address}", nw, nt, state_bytes))
    ref = runs[0]["value"]
    for r in runs:
        r["rel_diff_vs_threads"] = abs(r["value"] - ref) / abs(ref)
    # calibrate the cost model on LocalCluster(1)
    lc1, lc2 = runs[1], runs[2]
    # loopback transfer bandwidth, measured where enough bytes moved; else 1 GB/s assumed
    bw = lc2["transfer_bytes"] / lc2["transfer_s"] if lc2["transfer_bytes"] > 10 * 2**20 and lc2["transfer_s"] > 0 else 1e9
    cal = {"t_p": lc1["partial_s_mean"], "t_c": lc1["combine_s_mean"]}
    cal["T0"] = max(0.0, lc1["wall_s"] - model_predict({**cal, "T0": 0.0}, n_blocks, 1, 2, state_bytes, bw))
    for r in runs:
        r["predicted_s"] = model_predict(cal, n_blocks, r["workers"], r["threads"], state_bytes, bw)
        r["prediction_error"] = (r["predicted_s"] - r["wall_s"]) / r["wall_s"]
    # dedicated cores: the work of a block in CPU seconds (threaded run, so no cluster overhead), checked
    # against the CPU seconds of the cluster runs (wall times here are set by other jobs' load)
    cpu_per_block = runs[0]["cpu_s"] / n_blocks
    for r in runs:
        r["predicted_cpu_s"] = cpu_per_block * n_blocks
        r["cpu_prediction_error"] = (r["predicted_cpu_s"] - r["cpu_s"]) / r["cpu_s"]
    # extrapolation: 1e8 rows on 64 dedicated one-thread workers reading from object storage
    big_blocks = math.ceil(1e8 / block)
    read_bw = 200e6  # bytes/s per worker from object storage (8 concurrent 64 MiB GETs)
    t_read = 2 * block * args.d * 4 / read_bw
    cal_dedicated = {"T0": 5.0, "t_p": cpu_per_block + t_read, "t_c": cal["t_c"] * runs[1]["cpu_s"] / runs[1]["wall_s"]}
    big = model_predict(cal_dedicated, big_blocks, 64, 1, state_bytes, bw)
    out = {"n": args.n, "d": args.d, "block_rows": block, "n_blocks": n_blocks, "load_avg_at_start": load,
           "cluster_start_s": starts, "runs": runs, "calibration": cal, "state_bytes": state_bytes,
           "transfer_bandwidth_Bps": bw, "prediction_1e8_rows_64_workers_s": big, "cpu_s_per_block": cpu_per_block,
           "calibration_dedicated": cal_dedicated, "assumed_read_Bps_per_worker": read_bw}  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"cluster{args.tag}.json").write_text(json.dumps(out, indent=1, default=float))
    md = [f"# Exact linear CKA of a {args.n} × {args.d} float32 pair (Zarr, {block}-row chunks): schedulers",
          "", f"load average at start {load[0]:.1f} on 2 cores shared with other jobs; clusters started in "
          + ", ".join(f"{k} worker(s): {v:.1f} s" for k, v in starts.items()) + " (not in the wall times).", "",
          "| run | CKA | rel. diff vs threads | wall s | CPU s | load avg (1 min) before/after | tasks | graph (tasks, pickled bytes) | partials per worker | bytes moved | overhead s/task | peak RSS GB per worker | model s | model error |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in runs:
        graph = f"{r['graph_tasks']}, {r['graph_bytes']:,}" if "graph_tasks" in r else "-"
        rss = r.get("peak_rss_gb_per_worker", [r["peak_worker_rss_gb"]])
        md.append(f"| {r['run']} | {r['value']:.12f} | {r['rel_diff_vs_threads']:.1e} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | "
                  f"{r['load_avg_1min_before']:.1f} / {r['load_avg_1min_after']:.1f} | "
                  f"{r['tasks']} | {graph} | {r.get('partials_per_worker', '-')} | {r['transfer_bytes']:,} | {r.get('overhead_s_per_task', float('nan')):.3f} | "
                  f"{', '.join(f'{v:.2f}' for v in rss)} | {r['predicted_s']:.1f} | {100 * r['prediction_error']:+.0f}% |")  # fmt: skip
    md += ["", "CPU-time model (work per block from the threaded run): "
           + ", ".join(f"{r['run']}: {100 * r['cpu_prediction_error']:+.0f}%" for r in runs)]
    md += ["", f"calibration (LocalCluster(1)): t_p = {cal['t_p']:.2f} s per block (2 threads), t_c = {cal['t_c']:.3f} s "
           f"per combine, T0 = {cal['T0']:.2f} s; transfer bandwidth {bw / 1e6:.0f} MB/s; state {state_bytes / 1e6:.1f} MB.",
           f"prediction for 10^8 rows on 64 dedicated one-thread workers ({cpu_per_block:.2f} CPU s per block + reads at "
           f"{read_bw / 1e6:.0f} MB/s per worker, T0 = 5 s): {big:.0f} s."]  # fmt: skip
    (RESULTS / f"cluster{args.tag}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
