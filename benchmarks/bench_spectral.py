"""Spectral views: out-of-core spectra and spectral alignment — time, passes, peak memory, accuracy.

Usage::

    python benchmarks/bench_spectral.py                 # the issue's sizes (10⁶ × 1,024 and 10⁵; dense up to 5,000)
    python benchmarks/bench_spectral.py --quick         # 10⁵ only, dense up to 2,000 (~2 min)
    python benchmarks/bench_spectral.py --figures       # only the README figures (docs/figures/*.png)

Data: the float32, uncompressed Zarr stores of ``bench_linear_cka.py``
(``benchmarks/data/lincka_{x,y}_n{n}_d1024.zarr``, 16,384-row chunks; reused read-only
when present and matching, written by its generator otherwise).  x = z·diag(j^-1/2)·Q + μ,
so the population covariance has eigenvalues 1/j (a slow, activation-like decay);
y = tanh((x − μ)W) + 0.3ε + 0.1.

Jobs (each in a fresh subprocess; peak RSS = its own VmHWM, see ``_util``)
------------------------------------------------------------------------
``spectrum-randomized``
    ``bigalign.spectrum(store_x["x"], rank=100, method="randomized")`` (default n_power_iter=2,
    n_oversamples=10: 4 passes), default scheduler (dask threads), warm page cache.
``spectrum-exact``
    the same with ``method="exact"`` (one pass of merged d×d moments + ``eigh``); the
    accuracy reference at 10⁵: relative error of the randomized eigenvalues, per index.
``sa-bigalign``
    ``spectral_alignment(x, y)`` (exact road, full rank) on the first n rows, in memory (float32).
``sa-dense``
    the n×n way: K = X_cX_cᵀ, L = Y_cY_cᵀ (float64), ``numpy.linalg.eigh`` of both,
    C = UᵀV and Σᵢⱼ η̂ᵢμ̂ⱼCᵢⱼ² — data loading untimed.

Results: ``benchmarks/results/spectral{_quick}.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _util  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"
DATA_DIR = HERE / "data"
FIG_DIR = _util.REPO / "docs" / "figures"
D = 1024
RANK = 100


def _store(n: int, which: str = "x"):
    import bigalign

    return bigalign.open_activations(DATA_DIR / f"lincka_{which}_n{n}_d{D}.zarr")[which]


# --------------------------------------------------------------------------- #
# children
# --------------------------------------------------------------------------- #


def child(job: str, n: int, q: int) -> None:
    import numpy as np

    import bigalign  # noqa: F401
    from bigalign.metrics.spectral import spectral_alignment, spectrum

    out: dict[str, Any] = {"job": job, "n": n, "q": q}
    if job in ("spectrum-randomized", "spectrum-exact"):
        x = _store(n)
        method = "randomized" if job == "spectrum-randomized" else "exact"
        t, c = time.perf_counter(), time.process_time()
        s = spectrum(x, rank=RANK, method=method, n_power_iter=q)
        out.update(
            seconds=time.perf_counter() - t, cpu_s=time.process_time() - c, n_passes=s.n_passes, eigenvalues=s.eigenvalues.tolist(),
            residuals=s.residuals.tolist(), block_size=s.parameters["block_size"], n_blocks=s.parameters["n_blocks"],
            scheduler=s.parameters["scheduler"], effective_dimension=s.effective_dimension,
            effective_dimension_bounds=list(s.effective_dimension_bounds),
        )  # fmt: skip
        if method == "exact":
            out["all_eigenvalues_available"] = True
    elif job in ("sa-bigalign", "sa-dense"):
        x = np.asarray(_store(10_000, "x").read(0, n))
        y = np.asarray(_store(10_000, "y").read(0, n))
        if job == "sa-bigalign":
            t, c = time.perf_counter(), time.process_time()
            r = spectral_alignment(x, y)
            out.update(seconds=time.perf_counter() - t, cpu_s=time.process_time() - c, value=r.value, rank_x=r.rank_x, rank_y=r.rank_y)
        else:
            xc = x.astype(np.float64)
            yc = y.astype(np.float64)
            xc -= xc.mean(axis=0)
            yc -= yc.mean(axis=0)
            t, c0 = time.perf_counter(), time.process_time()
            k = xc @ xc.T
            eta, u = np.linalg.eigh(k / n)
            del k
            l_ = yc @ yc.T
            mu, v = np.linalg.eigh(l_ / n)
            del l_
            c = u.T @ v
            value = float(eta @ (c * c) @ mu / (np.linalg.norm(eta) * np.linalg.norm(mu)))
            out.update(seconds=time.perf_counter() - t, cpu_s=time.process_time() - c0, value=value)
    else:  # pragma: no cover
        raise SystemExit(f"unknown job {job}")
    _util.emit(out)


# --------------------------------------------------------------------------- #
# figures for the README
# --------------------------------------------------------------------------- #


def figures() -> list[str]:
    """The README figures, from the built-in digits demo stores (two MLPs, different seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from sklearn.datasets import load_digits

    import bigalign
    from bigalign.demo import build_demo_stores
    from bigalign.metrics.spectral import kare, spectral_alignment, spectrum, task_alignment

    FIG_DIR.mkdir(parents=True, exist_ok=True)
    pa, pb = build_demo_stores(DATA_DIR / "demo")
    a, b = bigalign.open_activations(pa), bigalign.open_activations(pb)
    labels = load_digits().target
    written = []

    fig, ax = plt.subplots(figsize=(5.8, 4))
    for layer in ("input", "hidden1", "hidden2", "hidden3"):
        s = spectrum(a[layer])
        lam = s.eigenvalues[: s.numerical_rank]  # drop rounding-level eigenvalues (dead units, constant pixels)
        ax.loglog(np.arange(1, lam.size + 1), lam, marker="o", ms=2, lw=1.2, label=f"{layer} (eff. dim {s.effective_dimension:.1f})")
    ax.set_xlabel("eigenvalue index i")
    ax.set_ylabel("eigenvalue λᵢ of (1/n)X_cᵀX_c")
    ax.set_title("bigalign.spectrum: digits MLP (seed 0), every layer", fontsize=9)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(FIG_DIR / "spectrum.png", dpi=110)
    written.append("docs/figures/spectrum.png")
    plt.close(fig)

    r = spectral_alignment(a["hidden2"], b["hidden2"])
    r.plot(max_components=30)
    plt.gcf().savefig(FIG_DIR / "spectral_alignment.png", dpi=110, bbox_inches="tight")
    written.append("docs/figures/spectral_alignment.png")
    plt.close("all")

    fig, ax = plt.subplots(figsize=(5.8, 4))
    for layer in ("input", "hidden1", "hidden3", "logits"):
        t = task_alignment(a[layer], labels)
        ax.semilogx(np.arange(1, t.cumulative_power.size + 1), t.cumulative_power, lw=1.6, label=f"{layer}: KA(K, YYᵀ) = {t.value:.2f}")
    ax.set_xlabel("number of leading eigenfunctions m")
    ax.set_ylabel("cumulative target power C(m)")
    ax.set_ylim(0, 1.02)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("bigalign.task_alignment: digit labels vs each layer (seed 0)", fontsize=9)
    fig.tight_layout()
    fig.savefig(FIG_DIR / "task_alignment.png", dpi=110)
    written.append("docs/figures/task_alignment.png")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5.8, 4))
    ridges = np.logspace(-5, 1, 25)
    for layer in ("input", "hidden1", "hidden3"):
        k = kare(a[layer], labels, ridge=ridges)
        ax.loglog(k.ridge, k.risk, lw=1.4, label=f"{layer} (best λ = {k.best_ridge:.2g})")
    ax.set_xlabel("ridge λ")
    ax.set_ylabel("KARE(λ), one-hot labels")
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=8)
    ax.set_title("bigalign.kare: predicted ridge-regression risk (seed 0)", fontsize=9)
    fig.tight_layout()
    fig.savefig(FIG_DIR / "kare.png", dpi=110)
    written.append("docs/figures/kare.png")
    plt.close(fig)
    return written


# --------------------------------------------------------------------------- #
# driver
# --------------------------------------------------------------------------- #


def _run(job: str, n: int, q: int, log, idle_wait: float) -> dict[str, Any]:
    waited, load = _util.wait_for_idle(idle_wait)
    log(f"  {job} n={n} q={q} (waited {waited:.0f} s for idle, load then {load:.2f}) ...")
    r = _util.run_child([str(Path(__file__).resolve()), "--job", job, "--n", str(n), "--q", str(q)])
    log(f"    {r.get('seconds', float('nan')):.2f} s, peak RSS {r['peak_rss_mb']:.0f} MB, other CPUs busy {r['other_cpus']:.2f}")
    return r


def _accuracy(rand: dict[str, Any], exact: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    lr, le = np.array(rand["eigenvalues"]), np.array(exact["eigenvalues"])
    rel = np.abs(lr - le) / le
    out = {f"max_rel_err_top{k}": float(rel[:k].max()) for k in (10, 50, 100)}
    out["rel_err_at_100"] = float(rel[99])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--job")
    ap.add_argument("--n", type=int)
    ap.add_argument("--q", type=int, default=2)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--figures", action="store_true")
    ap.add_argument("--idle-wait", type=float, default=120.0)
    ap.add_argument("--render", action="store_true", help="only rewrite the .md from the .json")
    ap.add_argument("--rerun", help="comma-separated job:n:q to measure again (e.g. after a disturbed run); "
                    "replaces those rows of the existing .json, then rewrites the .md")
    args = ap.parse_args()
    if args.render:
        render("spectral_quick" if args.quick else "spectral")
        return
    if args.rerun:
        rerun(args)
        return
    if args.job:
        child(args.job, args.n, args.q)
        return
    if args.figures:
        for f in figures():
            print("wrote", f)
        return
    import bench_linear_cka as lc

    t_all = time.perf_counter()
    lines: list[str] = []

    def log(s: str) -> None:
        print(s, flush=True)
        lines.append(s)

    sizes = [100_000] if args.quick else [100_000, 1_000_000]
    dense_sizes = [1000, 2000] if args.quick else [1000, 2000, 5000]
    data = {n: lc.ensure_data(n, D, DATA_DIR, log) for n in sorted(set(sizes + [10_000]))}
    rows: list[dict[str, Any]] = []
    for n in sizes:
        _util.warm_page_cache([DATA_DIR / f"lincka_x_n{n}_d{D}.zarr"])
        rows.append(_run("spectrum-randomized", n, 2, log, args.idle_wait))
        if n == 100_000:
            rows.append(_run("spectrum-randomized", n, 4, log, args.idle_wait))
        rows.append(_run("spectrum-exact", n, 0, log, args.idle_wait))
    acc = {}
    for n in sizes:
        ex = next(r for r in rows if r["job"] == "spectrum-exact" and r["n"] == n)
        for r in rows:
            if r["job"] == "spectrum-randomized" and r["n"] == n:
                r["accuracy"] = _accuracy(r, ex)
                acc[(n, r["q"])] = r["accuracy"]
    _util.warm_page_cache([DATA_DIR / f"lincka_{w}_n10000_d{D}.zarr" for w in "xy"])
    for n in dense_sizes:
        rows.append(_run("sa-bigalign", n, 0, log, args.idle_wait))
        rows.append(_run("sa-dense", n, 0, log, args.idle_wait))
    for n in ([10_000] if not args.quick else []):
        rows.append(_run("sa-bigalign", n, 0, log, args.idle_wait))
    total = time.perf_counter() - t_all
    tag = "spectral_quick" if args.quick else "spectral"
    cmd = "python benchmarks/bench_spectral.py" + (" --quick" if args.quick else "") + f" --idle-wait {args.idle_wait:g}"
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    payload = {"rows": rows, "data": {str(k): v for k, v in data.items()}, "machine": _util.machine_info(), "total_s": total,
               "command": cmd}
    (RESULTS_DIR / f"{tag}.json").write_text(json.dumps(payload, indent=1, default=str))
    render(tag)


def rerun(args: Any) -> None:
    tag = "spectral_quick" if args.quick else "spectral"
    path = RESULTS_DIR / f"{tag}.json"
    payload = json.loads(path.read_text())
    rows = payload["rows"]
    for spec in args.rerun.split(","):
        job, n, q = spec.split(":")
        if job.startswith("spectrum"):
            _util.warm_page_cache([DATA_DIR / f"lincka_x_n{int(n)}_d{D}.zarr"])
        new = _run(job, int(n), int(q), print, args.idle_wait)
        new["rerun"] = True
        for i, r in enumerate(rows):
            if r["job"] == job and r["n"] == int(n) and r["q"] == int(q):
                rows[i] = new
                break
        else:
            rows.append(new)
    for r in rows:  # accuracy against the exact row of the same n
        if r["job"] == "spectrum-randomized":
            ex = next((e for e in rows if e["job"] == "spectrum-exact" and e["n"] == r["n"]), None)
            if ex is not None:
                r["accuracy"] = _accuracy(r, ex)
    payload["command"] = payload.get("command", "") + f"; then --rerun {args.rerun} --idle-wait {args.idle_wait:g}"
    path.write_text(json.dumps(payload, indent=1, default=str))
    render(tag)


def render(tag: str) -> None:
    """Write ``results/{tag}.md`` from ``results/{tag}.json``."""
    payload = json.loads((RESULTS_DIR / f"{tag}.json").read_text())
    rows, machine, total = payload["rows"], payload["machine"], payload["total_s"]
    cmd = payload.get("command", "python benchmarks/bench_spectral.py")
    md = [f"# Spectral views benchmark{' (quick)' if tag.endswith('quick') else ''}", ""]
    md += [f"Command: `{cmd}` — total {total:.0f} s. Machine: {machine.get('cpu_model')}, {machine.get('logical_cpus')} CPUs, "
           f"{machine.get('memory_gib')} GiB, shared with other sessions while measured: *other CPUs* is how many of the 2 CPUs "
           "other processes kept busy during the job (rows with other CPUs > 0.3 were disturbed), *CPU s* the job's own "
           "user + system time over all threads (OpenBLAS threads spin while they wait, so it too rises under contention).", ""]
    md += ["## Spectrum (rank 100) of 1,024-feature float32 activations from Zarr", "",
           "| job | n | power iters q | passes | wall s | CPU s | peak RSS MB | block rows × blocks | max rel. err top-10 / 50 / 100 | other CPUs |",
           "|---|---:|---:|---:|---:|---:|---:|---|---|---:|"]
    for r in rows:
        if not r["job"].startswith("spectrum"):
            continue
        a = r.get("accuracy")
        err = f"{a['max_rel_err_top10']:.1e} / {a['max_rel_err_top50']:.1e} / {a['max_rel_err_top100']:.1e}" if a else "(reference)"
        md.append(f"| {r['job']} | {r['n']:,} | {r['q'] if r['job'].endswith('randomized') else '—'} | {r['n_passes']} | "
                  f"{r['seconds']:.1f} | {r.get('cpu_s', r['child_cpu_s']):.1f} | {r['peak_rss_mb']:.0f} | {r['block_size']:,} × {r['n_blocks']} | "
                  f"{err} | {r['other_cpus']:.2f} |")
    md += ["", "- Relative error of eigenvalue i: |λ̂ᵢ − λᵢ|/λᵢ against `method=\"exact\"` on the same store (the d×d "
           "covariance from merged moments, `numpy.linalg.eigh`). The population spectrum is 1/j: slow decay, the hard case.",
           "- *CPU s*: CPU time (user + system, all threads) of the timed call, `time.process_time()` in the job process.", ""]
    md += ["## Spectral alignment: bigalign (d×d, streamed) vs the dense n×n eigendecomposition", "",
           "| job | n | d | wall s | CPU s | peak RSS MB | value (= biased CKA) | other CPUs |", "|---|---:|---:|---:|---:|---:|---|---:|"]
    for r in rows:
        if r["job"].startswith("sa-"):
            md.append(f"| {r['job']} | {r['n']:,} | {D} | {r['seconds']:.2f} | {r.get('cpu_s', r['child_cpu_s']):.1f} | {r['peak_rss_mb']:.0f} | "
                      f"{r['value']:.15f} | {r['other_cpus']:.2f} |")
    md += ["", "- `sa-bigalign`: `spectral_alignment(x, y)` (exact road, full rank) on the first n rows in memory (float32).",
           "- `sa-dense`: K = X_cX_cᵀ, L = Y_cY_cᵀ in float64, `numpy.linalg.eigh` of both, C = UᵀV, "
           "Σᵢⱼ η̂ᵢμ̂ⱼCᵢⱼ²; loading untimed. Its O(n³) eigensolvers and 8n² bytes per matrix limit it; "
           "bigalign's cost is O(n·d²) + O(d³), independent of n in memory.",
           "- Peak RSS: the job process's VmHWM (whole process, interpreter and imports included).", ""]
    (RESULTS_DIR / f"{tag}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
