"""Where does ``bigalign.dcor(method="block")`` spend its time on compressed Zarr stores?

Usage::

    python benchmarks/profile_block_dcor.py [--n 1000000] [--repeats 3] [--what prepare,time,profile]
        [--variants git:a18cdeb,current] [--label ab] [--out benchmarks/results/profile_block_dcor]

Variants: ``current`` is ``bigalign.dcor`` of the working tree; ``git:<commit>`` is
bigalign/metrics/dcor.py as it was at that commit (loaded beside the current package;
a18cdeb is the last commit before the block-method fix), so one run compares both,
interleaved, under the same machine load.

Inputs: the ``hidden3`` layers (float32, d = 32) of the scale-run stores
(``benchmarks/data/scale_run/scale_seed{0,1}.zarr``, written by ``examples/scale_run.py``:
zstd level 0, 262,144 rows per chunk), first ``--n`` rows.  ``prepare`` writes from
them, under ``benchmarks/data/profile_block_dcor/``, a zstd copy (``zstd``, the
ActivationWriter's default compressor and chunking) and an uncompressed copy (``raw``,
``compressors=None``, same chunking) of those rows.

``time``
    ``bigalign.dcor(x, y, method="block", seed=0)`` with its defaults (threads, all
    CPUs, B = 1024) on three inputs — ``memory`` (the rows as numpy float32 arrays),
    ``raw`` and ``zstd`` (the store layers) — each in a fresh subprocess, ``--repeats``
    times per variant, warm page cache.  Reported: wall s and CPU s of the call, peak RSS
    (VmHWM) of the process, the chunks decoded (zarr's BytesCodec decodes, counted by
    wrapping it: one per chunk read) and the bytes they decoded to, the tasks, and the
    value — which must be identical (bitwise) across the three inputs.
``profile``
    cProfile of the same call on ``zstd`` (each variant) with ``scheduler="sync"`` (one thread, so the
    profiler sees every task), top functions by cumulative time.

``taskmem``
    The memory model behind the blocks per task (``bigalign.metrics.dcor.blocks_per_task``):
    one task's ``partial`` on random float32 inputs, sized by it, in a fresh subprocess;
    its peak RSS above the RSS before it (VmHWM reset through /proc/self/clear_refs) against
    the model's held·blocks + work.  Written to ``<out>_taskmem.json`` with ``--label taskmem``.

Timings on this machine (2 CPUs, shared with other sessions) are noisy: medians of the
repeats, with the load average at the start.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SRC = HERE / "data" / "scale_run"
DATA = HERE / "data" / "profile_block_dcor"
LAYER = "hidden3"
TAG = "@@RESULT@@ "


def store_path(kind: str, seed: int) -> Path:
    return DATA / f"{kind}_seed{seed}.zarr"


def prepare(n: int) -> None:
    import numpy as np

    import bigalign

    DATA.mkdir(parents=True, exist_ok=True)
    for seed in (0, 1):
        rows = np.asarray(bigalign.open_activations(SRC / f"scale_seed{seed}.zarr")[LAYER].read(0, n))
        for kind, comp in (("zstd", "default"), ("raw", None)):
            path = store_path(kind, seed)
            if path.exists():
                st = bigalign.open_activations(path)
                if st.n_samples == n:
                    continue
                raise SystemExit(f"{path} holds {st.n_samples} rows, not {n}: delete it first")
            with bigalign.ActivationWriter(path, mode="w", compressors=comp) as w:
                for s in range(0, n, 100_000):
                    w.append({LAYER: rows[s : s + 100_000]})
            print(f"wrote {path} ({kind}, {n} rows)", flush=True)


def _vmhwm_mib() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _inputs(kind: str) -> tuple[Any, Any]:
    import numpy as np

    import bigalign

    if kind == "memory":
        return tuple(np.asarray(bigalign.open_activations(store_path("zstd", s))[LAYER].read(0, 10**12)) for s in (0, 1))
    return tuple(bigalign.open_activations(store_path(kind, s))[LAYER] for s in (0, 1))


def _dcor_of(variant: str) -> Any:
    """``bigalign.dcor`` as in the working tree (``current``) or as bigalign/metrics/dcor.py was at a
    commit (``git:<commit>``), loaded as a sibling module of the package so its relative imports resolve."""
    import importlib.util

    import bigalign

    if variant == "current":
        return bigalign.dcor
    commit = variant.split(":", 1)[1]
    src = subprocess.run(["git", "show", f"{commit}:bigalign/metrics/dcor.py"], capture_output=True, text=True, cwd=REPO, check=True).stdout
    path = DATA / f"dcor_{commit}.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("bigalign.metrics._dcor_baseline", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod.dcor


def job(kind: str, profile: bool, variant: str) -> None:
    """One timed call (run in a fresh subprocess)."""
    import resource

    from zarr.codecs.bytes import BytesCodec

    import bigalign

    counts = {"chunks": 0, "bytes": 0}
    orig = BytesCodec._decode_single

    async def counted(self, chunk_bytes, chunk_spec):  # one call per chunk decoded
        out = await orig(self, chunk_bytes, chunk_spec)
        counts["chunks"] += 1
        counts["bytes"] += out.as_numpy_array().nbytes
        return out

    BytesCodec._decode_single = counted
    x, y = _inputs(kind)
    dcor = _dcor_of(variant)
    counts.update(chunks=0, bytes=0)  # loading the in-memory inputs decoded chunks too

    def call():
        return dcor(x, y, method="block", seed=0, **({"scheduler": "sync"} if profile else {}))

    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    if profile:
        import cProfile
        import io
        import pstats

        prof = cProfile.Profile()
        res = prof.runcall(call)
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("cumulative").print_stats(25)
        text = s.getvalue()
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(12)
        text += s.getvalue()
    else:
        res = call()
        text = None
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
    out = {
        "kind": kind, "variant": variant, "wall_s": wall, "cpu_s": cpu, "peak_rss_mib": _vmhwm_mib(), "chunks_decoded": counts["chunks"],
        "decoded_mib": counts["bytes"] / 2**20, "value": res.value, "stderr": res.stderr,
        "n_tasks": res.parameters["n_tasks"], "blocks_per_task": res.parameters["blocks_per_task"],
        "n_blocks": res.parameters["n_blocks"], "profile": text,
    }  # fmt: skip
    print(TAG + json.dumps(out), flush=True)


TASKMEM_CASES = [(200_000, 32, 64), (200_000, 32, 512), (100_000, 512, 256), (100_000, 512, 512), (50_000, 2048, 512)]


def taskmem_job(n: int, d: int, budget_mib: int) -> None:
    """Peak RSS of one ``BlockDcovStatistic.partial`` task sized by ``blocks_per_task`` (fresh subprocess)."""
    import importlib

    import numpy as np

    from bigalign.io import as_representation

    D = importlib.import_module("bigalign.metrics.dcor")
    B, budget = 1024, budget_mib * 2**20
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, d), dtype=np.float32)
    y = rng.standard_normal((n, d), dtype=np.float32)
    reps = [as_representation(x, "x"), as_representation(y, "y")]
    per_task, held, work = D.blocks_per_task(reps, B, n // B, 1, budget)
    small = [as_representation(x[:64], "x"), as_representation(y[:64], "y")]
    # JIT warm-up on tiny blocks, so that neither compilation nor a large freed heap hides in the measurement
    D.BlockDcovStatistic(D._Inputs(*small), 8, 0).partial([np.arange(2).reshape(-1, 1)], 0)
    stat = D.BlockDcovStatistic(D._Inputs(*reps), B, 0)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
    base = _status_mib("VmRSS:")
    stat.partial([np.arange(per_task, dtype=np.int64).reshape(-1, 1)], 0)
    peak = _status_mib("VmHWM:") - base
    model = (per_task * held + work) / 2**20
    out = {"n": n, "d": d, "B": B, "budget_mib": budget_mib, "blocks_per_task": per_task, "model_mib": model, "peak_mib": peak}
    print(TAG + json.dumps(out), flush=True)


def _status_mib(key: str) -> float:
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_taskmem() -> list[dict[str, Any]]:
    rows = []
    for n, d, budget in TASKMEM_CASES:
        p = subprocess.run([sys.executable, __file__, "--taskmem-job", f"{n},{d},{budget}"], capture_output=True, text=True, cwd=REPO)
        lines = [ln for ln in p.stdout.splitlines() if ln.startswith(TAG)]
        if p.returncode or not lines:
            raise RuntimeError(f"taskmem job failed:\n{p.stdout}\n{p.stderr}")
        r = json.loads(lines[-1][len(TAG) :])
        rows.append(r)
        print(f"taskmem n={n} d={d} budget {budget} MiB: {r['blocks_per_task']} blocks/task, model {r['model_mib']:.0f} MiB, "
              f"measured peak {r['peak_mib']:.0f} MiB ({r['peak_mib'] / r['model_mib']:.0%})", flush=True)  # fmt: skip
    return rows


def run_job(kind: str, variant: str, profile: bool = False) -> dict[str, Any]:
    load = os.getloadavg()[0]
    p = subprocess.run([sys.executable, __file__, "--job", kind, "--variant", variant] + (["--profile-job"] if profile else []),
                       capture_output=True, text=True, cwd=REPO)  # fmt: skip
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith(TAG)]
    if p.returncode or not lines:
        raise RuntimeError(f"job {kind} failed:\n{p.stdout}\n{p.stderr}")
    out = json.loads(lines[-1][len(TAG) :])
    out["load_avg"] = load
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--what", default="prepare,time,profile")
    ap.add_argument("--kinds", default="memory,raw,zstd")
    ap.add_argument("--variants", default="git:a18cdeb,current",
                    help="comma-separated: current (the working tree) and/or git:<commit> (bigalign/metrics/dcor.py "
                    "at that commit; a18cdeb is the last one before the fix)")
    ap.add_argument("--variant", default="current")
    ap.add_argument("--label", default="run")
    ap.add_argument("--out", default=str(HERE / "results" / "profile_block_dcor"))
    ap.add_argument("--job")
    ap.add_argument("--profile-job", action="store_true")
    ap.add_argument("--taskmem-job")
    a = ap.parse_args()
    if a.taskmem_job:
        taskmem_job(*(int(v) for v in a.taskmem_job.split(",")))
        return
    if a.job:
        job(a.job, a.profile_job, a.variant)
        return
    what = a.what.split(",")
    if "prepare" in what:
        prepare(a.n)
    variants = a.variants.split(",")
    results: dict[str, Any] = {"label": a.label, "n": a.n, "variants": variants, "jobs": [], "profile": {}}
    if "time" in what:
        for rep in range(a.repeats):  # interleaved, so that both variants see the same machine load
            for kind, variant in [(k, v) for k in a.kinds.split(",") for v in variants]:
                r = run_job(kind, variant)
                r["repeat"] = rep
                results["jobs"].append(r)
                print(f"{variant:12s} {kind:6s} rep {rep}: wall {r['wall_s']:.1f} s, CPU {r['cpu_s']:.1f} s, RSS {r['peak_rss_mib']:.0f} MiB, "
                      f"{r['chunks_decoded']} chunks ({r['decoded_mib']:.0f} MiB) decoded, {r['n_tasks']} tasks x "
                      f"{r['blocks_per_task']} blocks, value {r['value']!r}, load {r['load_avg']:.2f}", flush=True)  # fmt: skip
        summary = {}
        for kind, variant in [(k, v) for k in a.kinds.split(",") for v in variants]:
            js = [j for j in results["jobs"] if j["kind"] == kind and j["variant"] == variant]
            key = f"{variant} {kind}"
            summary[key] = {k: statistics.median(j[k] for j in js) for k in ("wall_s", "cpu_s", "peak_rss_mib", "chunks_decoded", "decoded_mib", "load_avg")}
            summary[key].update(n_tasks=js[0]["n_tasks"], blocks_per_task=js[0]["blocks_per_task"], values=sorted({j["value"] for j in js}))
        results["summary"] = summary
        print(json.dumps(summary, indent=1))
    for variant in variants if "profile" in what else ():
        r = run_job("zstd", variant, profile=True)
        results["profile"][variant] = r
        print(r["profile"])
        print(f"profile {variant} (sync): wall {r['wall_s']:.1f} s, CPU {r['cpu_s']:.1f} s, {r['chunks_decoded']} chunks decoded")
    if "taskmem" in what:
        results["taskmem"] = run_taskmem()
    Path(a.out + f"_{a.label}.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
