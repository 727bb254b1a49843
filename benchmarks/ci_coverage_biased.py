"""Coverage of ``cka(..., ci=0.95)`` for both estimators of linear CKA, and three constructions of the
biased (plug-in) estimator's interval, all from the same rows and the same leave-one-group-out states:

* the rule of ``bigalign.intervals.estimator_interval`` (what ``cka(..., estimator="biased", ci=...)``
  returns): the interval of the unbiased estimator on the same moments;
* centred at the jackknife's bias-corrected estimate G·θ − (G − 1)·mean θ₍₋g₎ (the earlier rule);
* centred at the plug-in estimate itself.

Same population as ``ci_coverage_moments.py`` (x ~ N(0, I_d), y = xB + ε, population CKA in
closed form), at d = 8 and d = 64 (where the plug-in estimator's O(d/n) bias is largest),
n = 500 and 5,000, R repetitions each; coverage in [0.92, 0.98] is accepted (binomial sd 0.015
at R = 200).

Usage::

    python benchmarks/ci_coverage_biased.py [--reps 200] [--d 8 64]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import bigalign  # noqa: E402
import bigalign.metrics.kernel  # noqa: E402, F401
from bigalign.intervals import jackknife_interval  # noqa: E402
from ci_coverage_moments import draw, population  # noqa: E402

SEEN: list = []
_kernel = sys.modules["bigalign.metrics.kernel"]
_orig = _kernel.loo_interval


def _recording(func, value, states, f, level, scale="identity", *a, **k):
    SEEN.append((value, states.values(f), level, scale))  # the biased estimate's own leave-one-group-out values
    return _orig(func, value, states, f, level, scale, *a, **k)


_kernel.loo_interval = _recording
KINDS = ("unbiased", "biased (rule: unbiased form's interval)", "biased, jackknife bias-corrected centre", "biased, centred at estimate")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--d", type=int, nargs="+", default=[8, 64])
    ap.add_argument("--out", default=str(HERE / "results" / "ci_coverage_biased"))
    a = ap.parse_args()
    rows = []
    t0, c0 = time.perf_counter(), time.process_time()
    with threadpool_limits(1):
        for d in a.d:
            pop = population(d)
            rng = np.random.default_rng(123)
            p = pop["cka"]
            for n in (500, 5000):
                hits = {k: [] for k in KINDS}
                widths = {k: [] for k in KINDS}
                for _ in range(a.reps):
                    x, y = draw(rng, n, pop["B"])
                    u = bigalign.cka(x, y, ci=0.95, scheduler="sync")
                    SEEN.clear()
                    b = bigalign.cka(x, y, estimator="biased", ci=0.95, scheduler="sync")
                    value, loo, level, scale = SEEN[-1]
                    ivs = {KINDS[0]: u.ci, KINDS[1]: b.ci,
                           KINDS[2]: jackknife_interval(value, loo, level, scale=scale, bias_correct=True).bounds,
                           KINDS[3]: jackknife_interval(value, loo, level, scale=scale).bounds}  # fmt: skip
                    for k, (lo, hi) in ivs.items():
                        hits[k].append(lo <= p <= hi)
                        widths[k].append(hi - lo)
                rows.append({"d": d, "n": n, "population_cka": p, "coverage": {k: float(np.mean(v)) for k, v in hits.items()},
                             "mean_width": {k: float(np.mean(v)) for k, v in widths.items()}})  # fmt: skip
                print(rows[-1], flush=True)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    out = Path(a.out)
    out.with_suffix(".json").write_text(json.dumps({"reps": a.reps, "rows": rows, "wall_s": wall, "cpu_s": cpu}, indent=1))
    lines = [f"# Coverage of linear CKA's 95% interval, both estimators ({a.reps} repetitions per cell)", "",
             "`python benchmarks/ci_coverage_biased.py`: every construction from the same rows and leave-one-group-out states; "
             "cells: coverage (mean width); binomial sd 0.015; accepted 0.92-0.98.", "",
             "| d | n | population CKA | " + " | ".join(KINDS) + " |", "|---:|---:|---:|" + "---:|" * len(KINDS)]  # fmt: skip
    lines += [f"| {r['d']} | {r['n']:,} | {r['population_cka']:.4f} | "
              + " | ".join(f"{r['coverage'][k]:.3f} ({r['mean_width'][k]:.4f})" for k in KINDS) + " |" for r in rows]  # fmt: skip
    lines += ["", f"{wall:.0f} s wall, {cpu:.0f} CPU s."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
