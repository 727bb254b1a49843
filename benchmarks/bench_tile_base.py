"""Speed of the exact tile roads before and after a change of their shared tile code.

Each road (exact RBF CKA, exact dCor, exact MMD², RSA's euclidean Pearson tiles, exact
mutual kNN; each also with ``ci=`` where it has one) is timed in fresh subprocesses, alternating
between a baseline commit (extracted with ``git archive``) and the working tree, so that both
see the same load.  Each child compiles the loops on a small warm-up call, then times one call
with a single-threaded scheduler ``--calls`` times; the figure is the CPU seconds (user + system)
of its fastest call, with the wall seconds beside it, and the fastest over the repetitions (the
machine is shared: the minimum is the least disturbed run).

    python benchmarks/bench_tile_base.py --base 20c7263 --n 3000 --reps 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

CHILD = r"""
import json, sys, time, resource
import numpy as np
import bigalign

def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

road, n, d, ci = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "ci"
rng = np.random.default_rng(0)

def data(m):
    x = rng.normal(size=(m, d))
    y = x @ rng.normal(size=(d, d)) / np.sqrt(d) + rng.normal(size=(m, d))
    return x, y

kw = {"ci": 0.95} if ci else {}
calls = {
    "cka_rbf": lambda x, y: bigalign.cka(x, y, kernel="rbf", method="exact", scheduler="sync", **kw),
    "dcor": lambda x, y: bigalign.dcor(x, y, method="exact", scheduler="sync", **kw),
    "mmd_rbf": lambda x, y: bigalign.mmd(x, y, kernel="rbf", method="exact", scheduler="sync", **kw),
    "rsa_euclidean": lambda x, y: bigalign.rsa(x, y, method="exact", scheduler="sync", **kw),
    "mutual_knn": lambda x, y: bigalign.mutual_knn(x, y, k=10, scheduler="sync", **kw),
}
f = calls[road]
f(*data(300))  # compile
x, y = data(n)
best = None
for _ in range(int(sys.argv[5])):
    c0, t0 = cpu(), time.perf_counter()
    r = f(x, y)
    c1, t1 = cpu(), time.perf_counter()
    best = (c1 - c0, t1 - t0) if best is None or c1 - c0 < best[0] else best
print("@@" + json.dumps({"cpu": best[0], "wall": best[1], "value": float(r.value), "ci": list(r.ci) if r.ci else None}))
"""


def extract(commit: str, dest: Path) -> Path:
    tar = dest / "base.tar"
    with open(tar, "wb") as fh:
        subprocess.run(["git", "-C", str(REPO), "archive", commit], stdout=fh, check=True)
    out = dest / "base"
    out.mkdir()
    with tarfile.open(tar) as t:
        t.extractall(out, filter="data")
    return out


def child(tree: Path, road: str, n: int, d: int, ci: bool, calls: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               NUMBA_NUM_THREADS="1")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", CHILD, road, str(n), str(d), "ci" if ci else "plain", str(calls)], env=env, cwd=tree,
                         capture_output=True, text=True, check=True)  # fmt: skip
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("@@")][-1]
    return json.loads(line[2:])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default="20c7263")
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--d", type=int, default=32)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--calls", type=int, default=3, help="timed calls per child (its fastest counts)")
    ap.add_argument("--roads", default="cka_rbf,cka_rbf+ci,dcor,mmd_rbf,rsa_euclidean,rsa_euclidean+ci,mutual_knn")
    ap.add_argument("--out", default=str(HERE / "results" / "tile_base.md"))
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = extract(a.base, Path(tmp))
        for spec in a.roads.split(","):
            road, ci = spec.split("+")[0], spec.endswith("+ci")
            runs: dict[str, list[dict]] = {"base": [], "head": []}
            for _ in range(a.reps):
                for label, tree in (("base", base), ("head", REPO)):
                    runs[label].append(child(tree, road, a.n, a.d, ci, a.calls))
            med = {k: (min(r["cpu"] for r in v), min(r["wall"] for r in v)) for k, v in runs.items()}
            same = runs["base"][0]["value"] == runs["head"][0]["value"] and runs["base"][0]["ci"] == runs["head"][0]["ci"]
            rows.append({"road": spec, "base_cpu": med["base"][0], "head_cpu": med["head"][0], "base_wall": med["base"][1],
                         "head_wall": med["head"][1], "ratio_cpu": med["head"][0] / med["base"][0], "identical": same,
                         "value_base": runs["base"][0]["value"], "value_head": runs["head"][0]["value"]})  # fmt: skip
            print(rows[-1], flush=True)
    lines = [
        f"# Exact tile roads before ({a.base}) and after the shared tile base class",
        "",
        f"n = {a.n}, d = {a.d}, scheduler='sync', one BLAS/Numba thread, fastest of {a.reps} alternating fresh-process runs × {a.calls} calls "
        "(`python benchmarks/bench_tile_base.py`). CPU = user + system seconds of the timed call.",
        "",
        "| road | base CPU s | head CPU s | head/base CPU | base wall s | head wall s | same value and ci |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['road']} | {r['base_cpu']:.2f} | {r['head_cpu']:.2f} | {r['ratio_cpu']:.3f} | {r['base_wall']:.2f} | "
                     f"{r['head_wall']:.2f} | {'bit-identical' if r['identical'] else 'differs'} |")  # fmt: skip
    Path(a.out).write_text("\n".join(lines) + "\n")
    Path(a.out).with_suffix(".json").write_text(json.dumps({"args": vars(a), "rows": rows}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
