"""Layer matrices: what the per-layer stage saves, measured against its own baselines in one process.

Usage::

    python benchmarks/bench_layers.py                       # the acceptance sizes (several minutes)
    python benchmarks/bench_layers.py --quick               # small sizes (< 1 min)
    python benchmarks/bench_layers.py --jobs knn --n 20000

Data (float32, seeded): L layers of one model on the same n inputs, layer t = tanh(z A_t) + noise of an
8-dimensional latent z, d features each (activations are low-dimensional, as in bench_knn.py).

Jobs (each timing: wall and CPU seconds of this process, the machine's other load alongside)
----
``knn``   mutual kNN (k = 10), the L × L self-comparison:
          * ``lists``   — the baseline: the L neighbour lists computed once, one search per layer
                          (``bigalign.metrics.neighbors.search`` on that layer alone);
          * ``matrix``  — ``compare_layers(store, metric="mutual_knn")`` (per-layer stage: one search of
                          all layers, then the L² cells from the lists);
          * ``ratio``   — matrix / lists (acceptance: ≤ 1.2);
          * ``pair``    — one ``bigalign.mutual_knn(layer_0, layer_1)`` call (the per-pair road searches
                          both layers for every pair: today's road before the per-layer stage needed
                          L(L+1)/2 such calls); its value must equal the matrix's cell.
          Each of lists/matrix runs ``--repeats`` times interleaved; the minimum is reported.
``rbf``   RBF CKA, L × L: ``compare_layers(kernel="rbf", method=...)`` (bandwidths and, for rff, feature
          maps once per layer) against L(L+1)/2 single-pair ``bigalign.cka`` calls (each estimating both
          bandwidths and drawing both maps again), for method rff at ``--n`` and exact at ``--exact-n``.
``dcor``  exact dCor, L × L at ``--exact-n``: compare_layers (one call per pair: nothing of a layer is
          reused on this road) against the same calls made directly — the baseline for a future
          multi-layer distance-tile pass.

Results: ``benchmarks/results/layers{_quick}.json`` and ``.md`` (``--stem`` to name them).  Recorded:
``layers.md`` (``--jobs knn``, acceptance sizes) and ``layers_rbf_dcor.md``
(``--jobs rbf,dcor --n 10000 --n-features 512 --exact-n 2000``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import _util  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"
LATENT = 8


def layers(n: int, d: int, n_layers: int, seed: int = 0) -> dict[str, Any]:
    import numpy as np

    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, LATENT))
    out = {}
    for t in range(n_layers):
        a = rng.standard_normal((LATENT, d)) / np.sqrt(LATENT)
        out[f"layer{t}"] = (np.tanh(z @ a + 0.3 * t) + (0.3 + 0.1 * t) * rng.standard_normal((n, d))).astype(np.float32)
    return out


def timed(fn: Callable[[], Any]) -> tuple[Any, dict[str, float]]:
    c0, t0 = _util.cpu_now(), time.perf_counter()
    l0 = os.getloadavg()[0]
    out = fn()
    wall, cpu = time.perf_counter() - t0, _util.cpu_now() - c0
    return out, {"wall_s": wall, "cpu_s": cpu, "load1_before": l0, "load1_after": os.getloadavg()[0]}


def job_knn(n: int, d: int, L: int, k: int, repeats: int) -> dict[str, Any]:
    import numpy as np

    import bigalign
    from bigalign.engine import prepare
    from bigalign.metrics.neighbors import search
    from bigalign.options import EngineOptions

    data = layers(n, d, L)
    small = {name: x[:60] for name, x in data.items()}
    bigalign.compare_layers(small, metric="mutual_knn", metric_options={"k": 3})  # compile the kernels (untimed)

    def lists() -> list:
        return [search(prepare([x], [name]), k, EngineOptions())[0][0] for name, x in data.items()]

    runs: dict[str, list] = {"lists": [], "matrix": []}
    matrix = None
    for _ in range(repeats):
        got, t = timed(lists)
        runs["lists"].append(t)
        print(f"  lists  {t['wall_s']:.1f}s wall, {t['cpu_s']:.1f}s CPU", flush=True)
        matrix, t = timed(lambda: bigalign.compare_layers(data, metric="mutual_knn", metric_options={"k": k}))
        runs["matrix"].append(t)
        print(f"  matrix {t['wall_s']:.1f}s wall, {t['cpu_s']:.1f}s CPU", flush=True)
    pair, tp = timed(lambda: bigalign.mutual_knn(data["layer0"], data["layer1"], k=k))
    print(f"  pair   {tp['wall_s']:.1f}s wall, {tp['cpu_s']:.1f}s CPU", flush=True)
    assert matrix is not None and matrix.results[0][1] == pair, "matrix cell differs from the single-pair call"
    lw, mw = min(r["wall_s"] for r in runs["lists"]), min(r["wall_s"] for r in runs["matrix"])
    lc, mc = min(r["cpu_s"] for r in runs["lists"]), min(r["cpu_s"] for r in runs["matrix"])
    n_calls = L * (L + 1) // 2
    return {
        "job": "knn", "n": n, "d": d, "layers": L, "k": k, "runs": runs, "pair": tp,
        "lists_wall_s": lw, "matrix_wall_s": mw, "ratio_wall": mw / lw, "ratio_cpu": mc / lc,
        "per_pair_road_estimate_wall_s": n_calls * tp["wall_s"], "speedup_vs_per_pair_road": n_calls * tp["wall_s"] / mw,
        "cell_equals_pair_call": True, "plan": dict(matrix.plan), "values": np.round(matrix.values.filled(np.nan), 4).tolist(),
    }  # fmt: skip


def _pairs_directly(fn: Callable, data: dict, **kw: Any) -> dict:
    names = list(data)
    return {(a, b): fn(data[a], data[b], **kw) for i, a in enumerate(names) for b in names[i:]}


def job_rbf(n: int, exact_n: int, d: int, L: int, n_features: int) -> list[dict[str, Any]]:
    import bigalign

    out = []
    for method, size in (("rff", n), ("exact", exact_n)):
        data = layers(size, d, L, seed=1)
        kw = {"kernel": "rbf", "method": method, **({"n_features": n_features} if method == "rff" else {})}
        m, tm = timed(lambda: bigalign.compare_layers(data, metric="cka", **kw))
        cells, tc = timed(lambda: _pairs_directly(bigalign.cka, data, **kw))
        print(f"  rbf {method} n={size}: matrix {tm['wall_s']:.1f}s, {len(cells)} calls {tc['wall_s']:.1f}s", flush=True)
        same = None
        if method == "exact":
            same = max(abs(m[a, b].value - r.value) / abs(r.value) for (a, b), r in cells.items())
        out.append({"job": f"rbf-{method}", "n": size, "d": d, "layers": L, "matrix": tm, "pair_calls": tc, "n_calls": len(cells),
                    "speedup_wall": tc["wall_s"] / tm["wall_s"], "speedup_cpu": tc["cpu_s"] / tm["cpu_s"],
                    "max_rel_diff_vs_calls": same, "plan": dict(m.plan)})  # fmt: skip
    return out


def job_dcor(exact_n: int, d: int, L: int) -> dict[str, Any]:
    import bigalign

    data = layers(exact_n, d, L, seed=2)
    m, tm = timed(lambda: bigalign.compare_layers(data, metric="dcor"))
    cells, tc = timed(lambda: _pairs_directly(bigalign.dcor, data, estimator="unbiased"))
    print(f"  dcor n={exact_n}: matrix {tm['wall_s']:.1f}s, {len(cells)} calls {tc['wall_s']:.1f}s", flush=True)
    return {"job": "dcor-exact", "n": exact_n, "d": d, "layers": L, "matrix": tm, "pair_calls": tc, "n_calls": len(cells),
            "speedup_wall": tc["wall_s"] / tm["wall_s"], "speedup_cpu": tc["cpu_s"] / tm["cpu_s"], "plan": dict(m.plan)}  # fmt: skip


def render_md(res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = [
        "# Layer matrices: per-layer reuse",
        "",
        f"machine: {m.get('cpu_model')}, {m.get('logical_cpus')} CPUs, {m.get('memory_gib')} GiB (shared with other sessions: "
        f"read times with the load columns); command: `{res['command']}`. Times in one process; CPU = user + system of all threads.",
        "",
    ]
    for r in res["jobs"]:
        if r["job"] == "knn":
            lines += [
                f"## mutual kNN, {r['layers']} × {r['layers']} layers, n = {r['n']}, d = {r['d']}, k = {r['k']}",
                "",
                "| run | wall s | CPU s | load before/after |",
                "|---|---|---|---|",
            ]
            for name in ("lists", "matrix"):
                for t in r["runs"][name]:
                    lines.append(f"| {name} | {t['wall_s']:.1f} | {t['cpu_s']:.1f} | {t['load1_before']:.1f} / {t['load1_after']:.1f} |")
            p = r["pair"]
            lines += [
                f"| one pair call (mutual_knn(layer0, layer1)) | {p['wall_s']:.1f} | {p['cpu_s']:.1f} | {p['load1_before']:.1f} / {p['load1_after']:.1f} |",
                "",
                f"**matrix / lists = {r['ratio_wall']:.3f} (wall, best of each), {r['ratio_cpu']:.3f} (CPU)** — acceptance ≤ 1.2. "
                f"The per-pair road (one call per pair, {r['layers'] * (r['layers'] + 1) // 2} calls) would take ≈ "
                f"{r['per_pair_road_estimate_wall_s']:.0f} s (calls × the measured pair call): the matrix is "
                f"{r['speedup_vs_per_pair_road']:.1f}× faster. Cell (layer0, layer1) equals the single-pair call field by field.",
                "",
                f"plan: {r['plan']}",
                "",
            ]
        else:
            lines += [
                f"## {r['job']}, {r['layers']} × {r['layers']} layers, n = {r['n']}, d = {r['d']}",
                "",
                "| road | wall s | CPU s |",
                "|---|---|---|",
                f"| compare_layers | {r['matrix']['wall_s']:.2f} | {r['matrix']['cpu_s']:.2f} |",
                f"| {r['n_calls']} single-pair calls | {r['pair_calls']['wall_s']:.2f} | {r['pair_calls']['cpu_s']:.2f} |",
                "",
                f"**speed-up of the matrix: {r['speedup_wall']:.2f}× wall, {r['speedup_cpu']:.2f}× CPU**"
                + ("" if r.get("max_rel_diff_vs_calls") is None else f"; largest relative difference to the calls {r['max_rel_diff_vs_calls']:.1e}"),
                "",
                f"plan: {r['plan']}",
                "",
            ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--jobs", default="knn,rbf,dcor")
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--exact-n", type=int, default=3000)
    ap.add_argument("--d", type=int, default=384)
    ap.add_argument("--layers", type=int, default=7)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--n-features", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--stem", default=None, help="results file stem (default layers / layers_quick)")
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.exact_n, args.d, args.repeats = 3000, 800, 64, 2
    res: dict[str, Any] = {"machine": _util.machine_info(), "command": " ".join([Path(sys.argv[0]).name] + (argv or sys.argv[1:])), "jobs": []}
    for job in args.jobs.split(","):
        print(job, flush=True)
        if job == "knn":
            res["jobs"].append(job_knn(args.n, args.d, args.layers, args.k, args.repeats))
        elif job == "rbf":
            res["jobs"] += job_rbf(args.n, args.exact_n, args.d, args.layers, args.n_features)
        elif job == "dcor":
            res["jobs"].append(job_dcor(args.exact_n, args.d, args.layers))
    RESULTS_DIR.mkdir(exist_ok=True)
    stem = args.stem or ("layers_quick" if args.quick else "layers")
    (RESULTS_DIR / f"{stem}.json").write_text(json.dumps(res, indent=1, default=str))
    (RESULTS_DIR / f"{stem}.md").write_text(render_md(res))
    print(render_md(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
