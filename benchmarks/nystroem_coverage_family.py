"""Coverage of Nyström's error bar for COCO, KCC, KMI and MMD: does the exact value lie within 2·stderr?

The companion of ``benchmarks/nystroem_coverage.py`` (CKA, HSIC) for the rest of the kernel
family.  For each data set, bandwidth (1 and 0.3 × the median heuristic) and number of
landmarks m (32, 128), the exact value (``method="exact"``, rbf) is compared with
``method="nystroem"`` over S seeds (the seed draws the landmarks).  Per cell it reports

* coverage: the fraction of seeds with |θ̂ − θ| ≤ 2·stderr (the target is ≥ 0.9);
* rmse = √mean (θ̂ − θ)², and bias = mean(θ̂ − θ);
* width = mean(stderr) / rmse (≈ 1 for a calibrated sd; ≫ 1 is honest but loose);
* the same coverage and width for the former error bar |θ(m) − θ(m/2)| ("old");
* the fraction of seeds flagged ``nystroem_not_converged`` and the median ρ(m)
  (missed fraction of the kernel trace).

Each seed is one call of the public function (``bigalign.coco`` / ``kcc`` / ``kmi`` /
``mmd``).  The old error bar is computed from the same call: the benchmark wraps
``nystroem_stderr`` in the two modules to record the level values θ(m), θ(m/2), θ(m/4)
it receives (the wrapper returns the library's own value unchanged).  Only statistical
properties are measured (no timings).

Data sets (all small, so that the exact values are cheap):

* ``pair`` (COCO/KCC/KMI) — x ~ N(0, I₁₀), y = tanh/sin/square of 6 random projections
  + noise, n = 500 (``tests/kernel_refs.py::nonlinear_pair``);
* ``clusters`` (COCO/KCC/KMI) — 6 Gaussian clusters in 20 dimensions, y = tanh of 8
  random projections + noise, n = 500;
* ``shift`` (MMD) — x ~ N(0, I₁₀) (n_x = 250), y ~ N(0.15, 1.1²·I₁₀) (n_y = 250);
* ``mixture`` (MMD) — 6 Gaussian clusters in 20 dimensions, x and y with different
  cluster weights (n_x = 300, n_y = 260);
* ``null`` (MMD) — x and y from the same N(0, I₁₀) (n_x = n_y = 250): MMD² ≈ 0.

KCC and KMI use the default regularization (10⁻²); MMD the unbiased estimator.

Usage::

    python benchmarks/nystroem_coverage_family.py [--seeds 80] [--out benchmarks/results/nystroem_coverage_family.md]
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import bigalign  # noqa: E402
import bigalign.metrics.independence as ind  # noqa: E402
import bigalign.metrics._mmd_estimate as mmd_mod  # noqa: E402  (where MMD calls nystroem_stderr)
import kernel_refs as kr  # noqa: E402

LANDMARKS = (32, 128)
RATIOS = (1.0, 0.3)
PAIRED = {"pair": ("coco", "kcc", "kmi"), "clusters": ("coco", "kcc", "kmi")}
TWO_SAMPLE = {"shift": ("mmd",), "mixture": ("mmd",), "null": ("mmd",)}
SYNC = {"scheduler": "sync"}


def data(name: str) -> tuple[np.ndarray, np.ndarray]:
    if name == "pair":
        return kr.nonlinear_pair(np.random.default_rng(11), 500, 10, 6, noise=0.3)
    if name == "clusters":
        rng = np.random.default_rng(5)
        centres = 2.0 * rng.normal(size=(6, 20))
        x = centres[rng.integers(0, 6, 500)] + rng.normal(size=(500, 20))
        y = np.tanh(x @ (rng.normal(size=(20, 8)) / np.sqrt(20))) + 0.5 * rng.normal(size=(500, 8))
        return x, y
    if name == "shift":
        rng = np.random.default_rng(12)
        return rng.normal(size=(250, 10)), 0.15 + 1.1 * rng.normal(size=(250, 10))
    if name == "mixture":
        rng = np.random.default_rng(6)
        centres = 2.0 * rng.normal(size=(6, 20))
        wx, wy = np.full(6, 1 / 6), np.array([0.3, 0.2, 0.2, 0.1, 0.1, 0.1])
        x = centres[rng.choice(6, 300, p=wx)] + rng.normal(size=(300, 20))
        y = centres[rng.choice(6, 260, p=wy)] + rng.normal(size=(260, 20))
        return x, y
    if name == "null":
        rng = np.random.default_rng(13)
        return rng.normal(size=(250, 10)), rng.normal(size=(250, 10))
    raise SystemExit(f"unknown data set {name!r}; expected one of {sorted({**PAIRED, **TWO_SAMPLE})}")


@contextmanager
def recording():
    """Record the level values θ(m), θ(m/2), θ(m/4) each call passes to nystroem_stderr."""
    seen: list[list[float | None]] = []
    original = ind.nystroem_stderr

    def wrapped(values, residuals, zero=None):
        seen.append(list(values))
        return original(values, residuals, zero=zero)

    ind.nystroem_stderr = mmd_mod.nystroem_stderr = wrapped
    try:
        yield seen
    finally:
        ind.nystroem_stderr = mmd_mod.nystroem_stderr = original


def func(metric: str):
    return getattr(bigalign, metric)


def cell(x, y, metric: str, bw, exact: float, m: int, seeds: int) -> dict[str, float]:
    rows = []
    f = func(metric)
    with recording() as seen:
        for s in range(seeds):
            r = f(x, y, kernel="rbf", bandwidth=bw, method="nystroem", n_features=m, seed=s, **SYNC)
            levels = seen[-1]
            assert levels[0] == r.value, (levels, r.value)  # the recorded call is this result's
            old = abs(levels[0] - levels[1]) if levels[1] is not None else np.nan
            rows.append((r.value, r.stderr, old, "nystroem_not_converged" in r.flags, r.parameters["residual_trace_fraction"]))
    v, se, old, flag, rho = (np.array(c, dtype=float) for c in zip(*rows))
    err = v - exact
    rmse = float(np.sqrt(np.mean(err**2)))
    return {
        "exact": exact, "coverage": float(np.mean(np.abs(err) <= 2 * se)), "rmse": rmse,
        "bias": float(np.mean(err)), "mean_stderr": float(np.mean(se)), "width": float(np.mean(se) / rmse),
        "old_coverage": float(np.mean(np.abs(err) <= 2 * old)), "old_width": float(np.mean(old) / rmse),
        "flagged": float(np.mean(flag)), "rho": float(np.median(rho)),
    }  # fmt: skip


def exact_value(metric: str, x, y, bw) -> tuple[float, dict]:
    r = func(metric)(x, y, kernel="rbf", bandwidth=bw, method="exact", **SYNC)
    return r.value, r.parameters


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=80)
    ap.add_argument("--data", nargs="+", default=[*PAIRED, *TWO_SAMPLE])
    ap.add_argument("--out", default=str(HERE / "results" / "nystroem_coverage_family.md"))
    a = ap.parse_args()
    results = []
    t0 = time.time()
    with threadpool_limits(limits=1, user_api="blas"):
        for name in a.data:
            x, y = data(name)
            metrics = {**PAIRED, **TWO_SAMPLE}[name]
            _, p = exact_value(metrics[0], x, y, "median")
            for ratio in RATIOS:
                if name in PAIRED:
                    bw = "median" if ratio == 1.0 else (ratio * p["median_x"], ratio * p["median_y"])
                else:
                    bw = "median" if ratio == 1.0 else ratio * p["median"]
                for metric in metrics:
                    exact, _ = exact_value(metric, x, y, bw)
                    for m in LANDMARKS:
                        st = cell(x, y, metric, bw, exact, m, a.seeds)
                        results.append({"data": name, "n": f"{len(x)}" if name in PAIRED else f"{len(x)}+{len(y)}",
                                        "ratio": ratio, "m": m, "metric": metric, **st})  # fmt: skip
                        print(f"{name} {ratio:>4} x median  m={m:<4d} {metric:5s} coverage {st['coverage']:.3f} "
                              f"width {st['width']:6.1f}  (old {st['old_coverage']:.3f} / {st['old_width']:.1f})  "
                              f"rho {st['rho']:.3f} flagged {st['flagged']:.2f}", flush=True)  # fmt: skip
    write(results, a.seeds, a.data, Path(a.out), time.time() - t0)


def write(results: list[dict], seeds: int, names: list[str], out: Path, elapsed: float) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    data_arg = "" if names == [*PAIRED, *TWO_SAMPLE] else " --data " + " ".join(names)
    lines = [
        "# Nyström error bar for COCO, KCC, KMI and MMD: coverage over seeds",
        "",
        f"`python benchmarks/nystroem_coverage_family.py --seeds {seeds}{data_arg}` ({elapsed / 60:.0f} min on the shared "
        "2-core machine; no timings are reported).",
        "rbf kernel; KCC/KMI with the default regularization 10⁻²; MMD² unbiased; exact value from `method=\"exact\"`;",
        "one public call per seed (the seed draws the landmarks).  coverage = fraction of seeds with |θ̂ − θ| ≤ 2·stderr;",
        "width = mean(stderr)/rmse; old = the former error bar |θ(m) − θ(m/2)| (from the same calls); flagged = fraction",
        "of seeds with `nystroem_not_converged` (ρ(m) > 0.5); ρ = median missed fraction of the kernel trace.",
        f"With {seeds} seeds the binomial sd of a coverage near 0.95 is {np.sqrt(0.95 * 0.05 / seeds):.3f}.",
        "",
        "| data | bandwidth | m | metric | exact | rmse | bias | mean stderr | coverage | width | old coverage | old width | ρ(m) | flagged |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['data']} (n={r['n']}) | {r['ratio']} × median | {r['m']} | {r['metric']} | {r['exact']:.4g} | {r['rmse']:.3g} | "
            f"{r['bias']:+.2g} | {r['mean_stderr']:.3g} | **{r['coverage']:.3f}** | {r['width']:.1f} | {r['old_coverage']:.3f} | "
            f"{r['old_width']:.1f} | {r['rho']:.3f} | {r['flagged']:.2f} |"
        )
    cov = [r["coverage"] for r in results]
    old = [r["old_coverage"] for r in results]
    low = [r for r in results if r["coverage"] < 0.9]
    widths = [r["width"] for r in results]
    lines += [
        "",
        f"Cells: {len(results)}; coverage ≥ 0.9 in {len(results) - len(low)} (old error bar: "
        f"{sum(c >= 0.9 for c in old)}); minimum {min(cov):.3f} (old: {min(old):.3f}); width "
        f"{min(widths):.1f}-{max(widths):.1f}.",
    ]
    for r in low:
        lines.append(f"Below 0.9: {r['data']} {r['ratio']} × median, m = {r['m']}, {r['metric']}: {r['coverage']:.3f} (ρ(m) = {r['rho']:.3f}).")
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
