"""Rounding and speed of the float32 random-feature pass against the float64 one, same features.

``feature_moments(..., precision="float64" | "float32")`` on the same rows with the same seed (so the
same frequencies): the difference of the two CKA / HSIC values is the rounding the float32 maps and
per-block products add; the jackknife stderr is the approximation error it must stay far below
(the acceptance: >= 100x).  Wall and CPU seconds of each pass (engine default: dask threads, 2 cores,
shared machine: wall includes waiting for other sessions' processes).

Usage::

    python benchmarks/rff_float32.py [--out benchmarks/results/rff_float32.md]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from bigalign.engine import prepare  # noqa: E402
from bigalign.features import median_bandwidth, sample_rows  # noqa: E402
from bigalign.metrics._kernel_approx import jackknife_stderr  # noqa: E402
from bigalign.metrics._kernel_nonlinear import METRIC_FNS, feature_job, feature_moments  # noqa: E402
from bigalign.options import EngineOptions  # noqa: E402


def measure() -> list[dict]:
    import kernel_refs as kr
    from block_coverage import latent_pair

    rows = []
    sets = (
        ("nonlinear_pair d=64/48 n=20000", kr.nonlinear_pair(np.random.default_rng(2025), 20000, 64, 48)),
        ("latent d=768 n=10000", latent_pair(10000, 768)),
    )
    for name, (x, y) in sets:
        x, y = x.astype(np.float32), y.astype(np.float32)
        reps = prepare([x, y], ["x", "y"])
        _, (xs, ys) = sample_rows(reps, 1000, 0)
        sig, sh = [median_bandwidth(xs, "x"), median_bandwidth(ys, "y")], [xs.mean(0), ys.mean(0)]
        for seed in range(3):
            out = {}
            for prec in ("float64", "float32"):
                c, t = time.process_time(), time.time()
                m, views, plan, fp = feature_moments(
                    reps, kernel="rbf", method="rff", sigmas=sig, shifts=sh, n_features=2048, seed=seed, pairs=[(0, 1)],
                    options=EngineOptions(), precision=prec,
                )  # fmt: skip
                out[(prec, "time")] = (time.time() - t, time.process_time() - c)
                job = feature_job(m, views, 0, 1, "rff", "unbiased", {})
                for met in ("cka", "hsic"):
                    f = METRIC_FNS[met]
                    out[(prec, met)] = (float(f(job.terms)), jackknife_stderr(job.terms, f))
            for met in ("cka", "hsic"):
                (v64, se), (v32, _) = out[("float64", met)], out[("float32", met)]
                rows.append({
                    "data": name, "seed": seed, "metric": met, "value64": v64, "value32": v32, "abs_diff": abs(v32 - v64),
                    "rel_diff": abs(v32 - v64) / abs(v64), "stderr": se, "stderr_over_diff": se / max(abs(v32 - v64), 1e-300),
                    "wall64": out[("float64", "time")][0], "cpu64": out[("float64", "time")][1],
                    "wall32": out[("float32", "time")][0], "cpu32": out[("float32", "time")][1],
                })  # fmt: skip
                print(json.dumps(rows[-1]), flush=True)
    return rows


def render(rows: list[dict], load: float) -> str:
    lines = [
        "# Random features in float32: rounding and speed",
        "",
        "`python benchmarks/rff_float32.py` — rbf, unbiased, rff with 2,048 feature columns, median bandwidth; "
        f"the same frequencies in both precisions. Load average at the end: {load:.1f} (2 shared cores: wall ≫ CPU).",
        "",
        "| data | seed | metric | float64 value | float32 − float64 (rel.) | stderr | stderr / rounding | CPU s f64 → f32 | wall s f64 → f32 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['data']} | {r['seed']} | {r['metric']} | {r['value64']:.6g} | {r['rel_diff']:.1e} | {r['stderr']:.1e} | "
            f"{r['stderr_over_diff']:.1e} | {r['cpu64']:.1f} → {r['cpu32']:.1f} | {r['wall64']:.0f} → {r['wall32']:.0f} |"
        )
    worst = max(r["rel_diff"] for r in rows)
    ratio = min(r["stderr_over_diff"] for r in rows)
    sp = [r["cpu64"] / r["cpu32"] for r in rows]
    lines += ["", f"Worst relative rounding {worst:.1e}; the approximation error (stderr) is at least {ratio:.1e}× larger. "
              f"CPU speed-up of the whole pass {min(sp):.2f}–{max(sp):.2f}×.", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(HERE / "results" / "rff_float32.md"))
    ap.add_argument("--from-json")
    a = ap.parse_args()
    rows = json.loads(Path(a.from_json).read_text()) if a.from_json else measure()
    out = Path(a.out)
    out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    out.write_text(render(rows, os.getloadavg()[0]))
    print(out.read_text())


if __name__ == "__main__":
    main()
