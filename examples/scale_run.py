"""A scale run: one alignment study on 10⁶ samples read from Zarr, with wall time and peak memory of each step.

    python examples/scale_run.py [--n 1000000] [--data benchmarks/data/scale_run] [--out scale-out]
                                 [--results benchmarks/results/scale_run] [--skip-dcor] [--skip-knn]

Augmented digits are made from scikit-learn's 1,797 digits (nothing is
downloaded).  Two MLPs (scikit-learn ``MLPClassifier`` 128-64-32, ReLU; the
architecture of ``bigalign.demo``) are trained from seeds 0 and 1 for 30 epochs
on 30,000 augmented digits (--train-n; their own seeded stream).  Then --n
further augmented digits are generated block by block (each block seeded by its
index, so any block can be regenerated):
a uniformly drawn source digit, a random shift of −1, 0 or +1 pixel along each
axis, an elastic jitter (a Gaussian displacement field, σ = 0.8 pixel per
coordinate, smoothed by a Gaussian filter of width 1 pixel, bilinear
resampling), additive Gaussian pixel noise (σ = 0.05) and clipping to [0, 1].
Both networks run on every block; their layers (input, hidden1..3, logits:
298 float32 columns per sample) are appended to two activation stores with
``bigalign.ActivationWriter`` (git-ignored data; --n 10⁶ writes about 2.4 GB
before compression).

Each step runs in a fresh Python process, so that its peak RSS (VmHWM, the
kernel's high-water mark) is its own:

1. write: training, generation, forward passes, writing both stores;
2. linear CKA for all 5 × 5 layer pairs with ``compare_layers`` (one pass);
3. RBF CKA (debiased, median bandwidth) between the last hidden layers with
   ``method="rff"`` (random Fourier features, jackknife standard error);
4. RBF CKA by exact tiles on the first 20,000 rows (``--exact-n``), a
   reference for the RFF value at a size where exact is affordable;
5. dCor² (bias-corrected) between the last hidden layers with
   ``method="block"`` (exact U-statistics in random blocks of 1,024 rows,
   jackknife standard error; bigalign.dcor's large-n method) — skipped with
   --skip-dcor;
6. mutual kNN (k = 10) between the logits with 1,000 sampled queries (exact
   neighbours among all n; standard error) — skipped with --skip-knn.  (The
   last hidden layer has all-zero rows on some digits — ReLU — for which cosine
   neighbours are undefined.)

Writes into --out ``scale_run.png`` (the linear CKA matrix; time and peak
RSS per step), ``summary.md`` and ``results.json`` (and, with --results PATH,
the same as PATH.md and PATH.json).  The machine is shared: the table
reports the wall time, the process's own CPU time and the 1-minute load
average seen at the start of each step.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _studies import Timer, digits, forward_activations, load_average, one_blas_thread, peak_rss_mb, train_mlp  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
HIDDEN = (128, 64, 32)
LAYERS = ["input", "hidden1", "hidden2", "hidden3", "logits"]
TAG = "@@STEP@@ "
TRAIN_STREAM, DATA_STREAM = 7, 20250  # seeds of the training and of the measured augmented digits
TRAIN_EPOCHS = 30
STEPS = ("write", "linear", "rff", "rbf_exact", "dcor", "knn")


def augment(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Shift (±1 pixel), elastic jitter, pixel noise, clip to [0, 1]: (b, 8, 8) -> (b, 64)."""
    from scipy.ndimage import gaussian_filter, map_coordinates

    b = images.shape[0]
    shift = rng.integers(-1, 2, size=(b, 2, 1, 1)).astype(np.float64)
    field = gaussian_filter(rng.normal(0.0, 0.8, size=(b, 2, 8, 8)), sigma=(0, 0, 1.0, 1.0), mode="constant")
    grid = np.stack(np.meshgrid(np.arange(8.0), np.arange(8.0), indexing="ij"))  # (2, 8, 8): row, column
    coords = grid[None] - shift + field  # where each output pixel is read from
    batch = np.broadcast_to(np.arange(b, dtype=np.float64)[:, None, None], (b, 8, 8))
    out = map_coordinates(images, [batch, coords[:, 0], coords[:, 1]], order=1, mode="constant", cval=0.0)
    out = out + rng.normal(0.0, 0.05, size=out.shape)
    return np.clip(out, 0.0, 1.0).reshape(b, 64)


# --------------------------------------------------------------------------- #
# steps (each runs in its own process)
# --------------------------------------------------------------------------- #


def step_write(args) -> dict:
    import bigalign

    x, y = digits()
    images = x.reshape(-1, 8, 8)
    with Timer() as t_train, one_blas_thread():  # small matrices: one BLAS thread (see _studies.one_blas_thread)
        # trained on augmented digits (their own seeded stream): a network trained on the 1,797 originals alone
        # classifies only ~30 % of the augmented digits (a one-pixel shift defeats an MLP on 8×8 images)
        rng = np.random.default_rng([TRAIN_STREAM, 0])
        src = rng.integers(0, len(y), size=args.train_n)
        x_train, y_train = augment(images[src], rng), y[src]
        nets = [train_mlp(x_train, y_train, HIDDEN, seed, TRAIN_EPOCHS) for seed in (0, 1)]
    data = Path(args.data)
    paths = [data / f"scale_seed{s}.zarr" for s in (0, 1)]
    correct = [0, 0]
    with Timer() as t_write:
        writers = [bigalign.ActivationWriter(p, mode="w", attrs={"model": f"MLP{HIDDEN} digits seed {s}", "n": args.n})
                   for s, p in zip((0, 1), paths)]  # fmt: skip
        try:
            for b, start in enumerate(range(0, args.n, args.block)):
                stop = min(start + args.block, args.n)
                rng = np.random.default_rng([DATA_STREAM, b])
                src = rng.integers(0, len(y), size=stop - start)
                batch = augment(images[src], rng)
                ids = np.arange(start, stop)
                for k, (net, w) in enumerate(zip(nets, writers)):
                    acts = forward_activations(net, batch)
                    correct[k] += int(np.sum(np.argmax(acts["logits"], 1) == y[src]))
                    w.append(acts, sample_ids=ids)
        finally:
            for w in writers:
                w.close()
    size = sum(f.stat().st_size for p in paths for f in p.rglob("*") if f.is_file())
    return {"train_s": t_train.wall, "generate_forward_write_s": t_write.wall, "bytes_on_disk": size,
            "accuracy_on_augmented": [c / args.n for c in correct], "paths": [str(p) for p in paths]}  # fmt: skip


def _stores(args):
    import bigalign

    data = Path(args.data)
    return bigalign.open_activations(data / "scale_seed0.zarr"), bigalign.open_activations(data / "scale_seed1.zarr")


def step_linear(args) -> dict:
    import bigalign

    a, b = _stores(args)
    m = bigalign.compare_layers(a, b, metric="cka")
    return {"matrix": m.to_dict()["values"], "n_passes": m.n_passes, "n": m.n_samples,
            "block_size": m.results[0][0].parameters.get("block_size")}  # fmt: skip


def step_rff(args) -> dict:
    import bigalign

    a, b = _stores(args)
    r = bigalign.cka(a["hidden3"], b["hidden3"], kernel="rbf", method="rff", n_features=args.rff_features, seed=0)
    return {"value": r.value, "stderr": r.stderr, "method": r.method, "n": r.n_samples,
            "n_features": r.parameters.get("n_features"), "bandwidth_x": r.parameters.get("bandwidth_x"),
            "bandwidth_y": r.parameters.get("bandwidth_y")}  # fmt: skip


def step_rbf_exact(args) -> dict:
    import bigalign

    a, b = _stores(args)
    m = min(args.exact_n, args.n)
    x, y = np.asarray(a["hidden3"][:m]), np.asarray(b["hidden3"][:m])
    r = bigalign.cka(x, y, kernel="rbf", method="exact")
    # the same subsample through RFF with the same bandwidths: the gap between the two is the RFF error alone
    rb = (r.parameters.get("bandwidth_x"), r.parameters.get("bandwidth_y"))
    f = bigalign.cka(x, y, kernel="rbf", bandwidth=rb, method="rff", n_features=args.rff_features, seed=0)
    return {"value": r.value, "n": r.n_samples, "rff_same_rows": f.value, "rff_same_rows_stderr": f.stderr,
            "bandwidth_x": rb[0], "bandwidth_y": rb[1]}  # fmt: skip


def step_dcor(args) -> dict:
    import bigalign

    a, b = _stores(args)
    r = bigalign.dcor(a["hidden3"], b["hidden3"], method="block", seed=0)
    return {"value": r.value, "stderr": r.stderr, "method": r.method, "n": r.n_samples,
            "block_rows": r.parameters.get("block_rows")}  # fmt: skip


def step_knn(args) -> dict:
    import bigalign

    a, b = _stores(args)
    r = bigalign.mutual_knn(a["logits"], b["logits"], k=10, n_queries=min(1000, args.n), seed=0)
    return {"value": r.value, "stderr": r.stderr, "ci": list(r.ci) if r.ci else None, "n": r.n_samples,
            "chance": r.terms.get("chance")}  # fmt: skip


def run_step(name: str, args) -> dict:
    """Run one step in a fresh process; return its result with wall, CPU and peak RSS."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--step", name, "--n", str(args.n), "--data", str(args.data),
           "--block", str(args.block), "--exact-n", str(args.exact_n), "--train-n", str(args.train_n)]  # fmt: skip
    if args.rff_features:
        cmd += ["--rff-features", str(args.rff_features)]
    load = load_average()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"step {name} failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    line = next(l for l in proc.stdout.splitlines() if l.startswith(TAG))
    res = json.loads(line[len(TAG):])
    res.update(process_wall_s=wall, load_average_at_start=load)
    return res


def plot(results: dict, path: Path) -> None:
    """The run on one figure: the linear CKA matrix and, per step, wall and CPU seconds with the peak RSS."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = results["steps"]
    fig, ax = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [1, 1.4]})
    lin = np.array(steps["linear"]["matrix"], dtype=float)
    im = ax[0].imshow(lin, cmap="magma", vmin=0, vmax=1)
    ax[0].set_xticks(range(len(LAYERS)), LAYERS, rotation=45, ha="right")
    ax[0].set_yticks(range(len(LAYERS)), LAYERS)
    for i in range(lin.shape[0]):
        for j in range(lin.shape[1]):
            ax[0].text(j, i, f"{lin[i, j]:.2f}", ha="center", va="center", fontsize=8, color="black" if lin[i, j] > 0.5 else "white")
    ax[0].set(xlabel="seed 1", ylabel="seed 0", title=f"linear CKA (debiased, exact), n = {results['n']:,}")
    fig.colorbar(im, ax=ax[0], fraction=0.046)
    names = list(steps)
    pos = np.arange(len(names))
    ax[1].bar(pos - 0.2, [steps[k]["wall_s"] for k in names], width=0.4, label="wall s")
    ax[1].bar(pos + 0.2, [steps[k]["cpu_s"] for k in names], width=0.4, label="CPU s (this process)")
    for x_, k in zip(pos, names):
        ax[1].text(x_, steps[k]["wall_s"], f"{steps[k]['peak_rss_mb']:.0f} MiB\nload {steps[k]['load_average_at_start']:.1f}",
                   ha="center", va="bottom", fontsize=7)  # fmt: skip
    ax[1].set_xticks(pos, names)
    ax[1].set(yscale="log", ylabel="seconds", title="each step in a fresh process: time, peak RSS (VmHWM), load average")
    ax[1].set_ylim(0.5 * min(steps[k]["cpu_s"] for k in names), 4 * max(steps[k]["wall_s"] for k in names))
    ax[1].legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--data", default=str(ROOT / "benchmarks" / "data" / "scale_run"), help="where the two stores go")
    p.add_argument("--out", default="scale-out")
    p.add_argument("--results", default=None, help="also write the summary as RESULTS.md and RESULTS.json")
    p.add_argument("--block", type=int, default=50_000, help="rows generated and appended per batch")
    p.add_argument("--train-n", type=int, default=30_000, help="augmented digits the two networks are trained on")
    p.add_argument("--exact-n", type=int, default=20_000, help="rows for the exact RBF CKA reference")
    p.add_argument("--rff-features", type=int, default=None, help="RFF feature columns (default: bigalign's, 2,048)")
    p.add_argument("--skip-dcor", action="store_true")
    p.add_argument("--skip-knn", action="store_true")
    p.add_argument("--reuse", action="store_true", help="skip the write step if the stores hold --n rows")
    p.add_argument("--clean", action="store_true", help="delete the stores at the end")
    p.add_argument("--step", choices=STEPS, help=argparse.SUPPRESS)
    cli_args = list(sys.argv[1:] if argv is None else argv)
    args = p.parse_args(cli_args)
    if args.n < 1000:
        p.error(f"--n must be at least 1000 (the sampled kNN uses 1,000 queries); got {args.n}")

    if args.step:  # child process: one step, one tagged JSON line
        fn = globals()[f"step_{args.step}"]
        with Timer() as t:
            res = fn(args)
        res.update(wall_s=t.wall, cpu_s=t.cpu, peak_rss_mb=peak_rss_mb())
        sys.stdout.write(TAG + json.dumps(res, default=float) + "\n")
        return res

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    Path(args.data).mkdir(parents=True, exist_ok=True)
    steps = {}
    reused = False
    if args.reuse:
        try:
            import bigalign

            reused = all(s.n_samples == args.n for s in _stores(args))
        except Exception:
            reused = False
    for name in STEPS:
        if (name == "write" and reused) or (name == "dcor" and args.skip_dcor) or (name == "knn" and args.skip_knn):
            continue
        steps[name] = run_step(name, args)
        s = steps[name]
        print(f"{name:10s} wall {s['wall_s']:8.1f} s  cpu {s['cpu_s']:8.1f} s  peak RSS {s['peak_rss_mb']:7.0f} MiB"
              f"  (load {s['load_average_at_start']:.2f})", flush=True)  # fmt: skip

    lin = np.array(steps["linear"]["matrix"], dtype=float)
    n_fmt = f"{args.n:,}"
    rows = [
        ("write", f"train 2 MLPs on {args.train_n:,} augmented digits; generate + augment {n_fmt}, 2 forward passes, write 2 stores"),
        ("linear", f"linear CKA, all {len(LAYERS)}×{len(LAYERS)} layer pairs (`compare_layers`, {steps['linear']['n_passes']} pass)"),
        ("rff", "RBF CKA, hidden3 vs hidden3, `method=\"rff\"`"),
        ("rbf_exact", f"RBF CKA by exact tiles, first {min(args.exact_n, args.n):,} rows (+ RFF on the same rows)"),
        ("dcor", "dCor², hidden3 vs hidden3, `method=\"block\"`"),
        ("knn", "mutual kNN (k = 10), logits vs logits, 1,000 sampled queries"),
    ]
    lines = [
        f"# Scale run: {n_fmt} augmented digits, two MLPs, stores on disk",
        "",
        "Command: `" + " ".join(["python examples/scale_run.py", *cli_args]) + "`",
        "",
        f"Machine: {os.cpu_count()} CPUs, shared with other jobs (load average at the start of each step in the table). "
        "Each step ran in a fresh process; peak RSS is that process's VmHWM. One run, not a median of repeats: "
        "timings on this machine vary with the other jobs. Wall time includes waiting for a CPU while other jobs run "
        "(a load average above the number of CPUs): CPU s is the figure comparable between runs.",
        "",
        "| step | what | wall s | CPU s | peak RSS MiB | load avg |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, what in rows:
        if name in steps:
            s = steps[name]
            lines.append(f"| {name} | {what} | {s['wall_s']:.1f} | {s['cpu_s']:.1f} | {s['peak_rss_mb']:.0f} | {s['load_average_at_start']:.2f} |")
        elif name == "write" and reused:
            lines.append(f"| {name} | {what} | reused existing stores | | | |")
        else:
            lines.append(f"| {name} | {what} | skipped | | | |")
    lines += [""]
    if "write" in steps:
        w = steps["write"]
        lines.append(f"Write: training {w['train_s']:.1f} s, generation + forward + writing {w['generate_forward_write_s']:.1f} s; "
                     f"{w['bytes_on_disk'] / 2**30:.2f} GiB on disk (zstd) for both stores; accuracy on the augmented digits: "
                     f"seed 0 {w['accuracy_on_augmented'][0]:.3f}, seed 1 {w['accuracy_on_augmented'][1]:.3f}.")  # fmt: skip
    r, e = steps["rff"], steps["rbf_exact"]
    lines += [
        "",
        "## Values",
        "",
        f"- RBF CKA (debiased), hidden3 vs hidden3, all {r['n']:,} rows, RFF ({r['n_features']} feature columns): "
        f"**{r['value']:.4f} ± {r['stderr']:.4f}** (jackknife standard error); bandwidths σ = {r['bandwidth_x']:.3g}, {r['bandwidth_y']:.3g}.",
        f"- Exact RBF CKA on the first {e['n']:,} rows: {e['value']:.4f} (bandwidths {e['bandwidth_x']:.3g}, {e['bandwidth_y']:.3g}); "
        f"RFF on the same rows and bandwidths: {e['rff_same_rows']:.4f} ± {e['rff_same_rows_stderr']:.4f} "
        f"(difference {(e['rff_same_rows'] - e['value']) / e['rff_same_rows_stderr']:+.2f} standard errors).",
    ]
    if "dcor" in steps:
        d = steps["dcor"]
        lines.append(f"- dCor² (bias-corrected), hidden3 vs hidden3, block estimator (B = {d['block_rows']}): "
                     f"**{d['value']:.4f} ± {d['stderr']:.4f}**.")  # fmt: skip
    if "knn" in steps:
        k = steps["knn"]
        lines.append(f"- Mutual kNN (k = 10), logits, 1,000 queries: **{k['value']:.4f} ± {k['stderr']:.4f}** "
                     f"(95% CI {k['ci'][0]:.4f}–{k['ci'][1]:.4f}; chance k/(n−1) = {k['chance']:.2e}).")  # fmt: skip
    lines += [
        "",
        f"Linear CKA (debiased), seed 0 (rows) vs seed 1 (columns), exact over all {steps['linear']['n']:,} rows:",
        "",
        "| | " + " | ".join(LAYERS) + " |",
        "|---|" + "---:|" * len(LAYERS),
        *[f"| {l} | " + " | ".join(f"{v:.4f}" for v in lin[i]) + " |" for i, l in enumerate(LAYERS)],
    ]
    text = "\n".join(lines) + "\n"
    (out / "summary.md").write_text(text)
    results = {"n": args.n, "steps": steps, "layers": LAYERS, "reused_stores": reused, "command": cli_args}
    (out / "results.json").write_text(json.dumps(results, indent=1, default=float))
    if args.results:
        Path(args.results).parent.mkdir(parents=True, exist_ok=True)
        Path(f"{args.results}.md").write_text(text)
        Path(f"{args.results}.json").write_text(json.dumps(results, indent=1, default=float))
    plot(results, out / "scale_run.png")
    if args.clean:
        for s in (0, 1):
            shutil.rmtree(Path(args.data) / f"scale_seed{s}.zarr", ignore_errors=True)
    print(text)
    return results


if __name__ == "__main__":
    main()
