"""Calibration of the rff/orf jackknife stderr: 60 seeds at n = 5,000 against the exact tiles (prints a line per cell).

    .venv/bin/python benchmarks/rff_coverage_check.py      # ~30 s
"""
import sys
import time

import numpy as np

import bigalign
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "tests"))
import kernel_refs as kr
rng = np.random.default_rng(2025)
x, y = kr.nonlinear_pair(rng, 5000, 64, 48)
x = x.astype(np.float32); y = y.astype(np.float32)
kw = dict(kernel="rbf", scheduler="sync")
med = bigalign.cka(x, y, method="rff", n_features=256, seed=0, **kw).parameters
sx, sy = med["bandwidth_x"], med["bandwidth_y"]
ex = bigalign.cka(x, y, method="exact", bandwidth=(sx, sy), **kw).value
for method in ("rff", "orf"):
  for D in (128, 512):
    errs, ses = [], []
    t = time.time()
    for s in range(60):
        r = bigalign.cka(x, y, method=method, n_features=D, seed=s, bandwidth=(sx, sy), **kw)
        errs.append(r.value - ex); ses.append(r.stderr)
    errs, ses = np.array(errs), np.array(ses)
    print(method, D, "cov", np.mean(np.abs(errs) <= 2 * ses), "rmse", np.sqrt(np.mean(errs**2)), "mean se", ses.mean(), "bias", errs.mean(), f"{time.time()-t:.0f}s", flush=True)
