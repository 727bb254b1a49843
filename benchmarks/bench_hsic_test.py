"""HSIC independence test: time and peak memory of each route, against naive references.

Usage::

    python benchmarks/bench_hsic_test.py            # full table (a few minutes on 2 cores)
    python benchmarks/bench_hsic_test.py --quick    # small sizes (< 1 min)

Every timed job runs in a fresh subprocess (peak RSS = its own VmHWM, see ``_util``).
Data: x ~ N(0, I_d), y = x₁² + ε (d = 4, so the test rejects), float64 in memory.

Jobs
----
``perm-exact``
    ``hsic_test(null="permutation", method="exact", n_permutations=B)``; reference
    ``perm-numpy``: the same permuted sums by numpy fancy indexing (``permuted_traces_numpy``)
    on the same centred Grams, timed on a few permutations and reported per permutation.
``gamma-exact``
    ``hsic_test(null="gamma", method="exact")``; reference ``gamma-gretton``: K, L by
    scipy ``cdist`` and Gretton et al.'s reference computation (H K H, H L H as matrix
    products, the variance from (K_c ∘ L_c)²), i.e. the published ``hsicTestGamma.m`` in numpy.
``perm-rff``
    ``hsic_test(null="permutation", method="rff", n_features=D)`` (features in memory).
``gamma-nystroem``
    ``hsic_test(null="gamma")`` beyond ``EXACT_MAX_N``: streamed Nyström moments (default
    256 landmarks), the large-n path.

Results: ``benchmarks/results/hsic_test{_quick}.json`` and ``.md``.
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
D_IN = 4


def _data(n: int, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, D_IN))
    y = x[:, :1] ** 2 + rng.standard_normal((n, 1))
    return x, y


# --------------------------------------------------------------------------- #
# children
# --------------------------------------------------------------------------- #


def child(job: str, n: int, b: int, d: int) -> None:
    import numpy as np

    from bigalign import hsic_test

    x, y = _data(n)
    out: dict[str, Any] = {"job": job, "n": n, "B": b, "D": d}
    if job == "perm-exact":
        hsic_test(x[:20], y[:20], n_permutations=2)  # compile / load the cached loop (untimed)
        t = time.perf_counter()
        r = hsic_test(x, y, null="permutation", method="exact", n_permutations=b)
        out.update(seconds=time.perf_counter() - t, pvalue=r.pvalue, per_perm_ms=1e3 * (time.perf_counter() - t) / b)
    elif job == "perm-numpy":
        from bigalign._numba.permute import permuted_traces_numpy
        from bigalign.gram import centre_gram, gram

        kx = centre_gram(gram(x - x.mean(0), "rbf", 1.0))
        ly = centre_gram(gram(y - y.mean(0), "rbf", 1.0))
        rng = np.random.default_rng(0)
        perms = np.stack([rng.permutation(n) for _ in range(b)])
        t = time.perf_counter()
        permuted_traces_numpy(kx, ly, perms)
        out.update(seconds=time.perf_counter() - t, per_perm_ms=1e3 * (time.perf_counter() - t) / b)
    elif job == "gamma-exact":
        t = time.perf_counter()
        r = hsic_test(x, y, null="gamma", method="exact")
        out.update(seconds=time.perf_counter() - t, pvalue=r.pvalue)
    elif job == "gamma-gretton":
        from scipy.spatial.distance import cdist, pdist
        from scipy.stats import gamma

        t = time.perf_counter()
        sx, sy = np.median(pdist(x[:1000])), np.median(pdist(y[:1000]))
        K = np.exp(-cdist(x, x, "sqeuclidean") / (2 * sx * sx))
        L = np.exp(-cdist(y, y, "sqeuclidean") / (2 * sy * sy))
        H = np.eye(n) - 1.0 / n
        Kc, Lc = H @ K @ H, H @ L @ H
        stat = np.sum(Kc * Lc) / n
        V = (Kc * Lc / 6) ** 2
        v = (V.sum() - np.trace(V)) / n / (n - 1) * 72 * (n - 4) * (n - 5) / n / (n - 1) / (n - 2) / (n - 3)
        np.fill_diagonal(K, 0.0)
        np.fill_diagonal(L, 0.0)
        mx, my = K.sum() / n / (n - 1), L.sum() / n / (n - 1)
        m = (1 + mx * my - mx - my) / n
        p = float(gamma.sf(stat, m * m / v, scale=v * n / m))
        out.update(seconds=time.perf_counter() - t, pvalue=p)
    elif job == "perm-rff":
        t = time.perf_counter()
        r = hsic_test(x, y, null="permutation", method="rff", n_features=d, n_permutations=b)
        out.update(seconds=time.perf_counter() - t, pvalue=r.pvalue, per_perm_ms=1e3 * (time.perf_counter() - t) / b,
                   representation=r.parameters["representation"])  # fmt: skip
    elif job == "gamma-nystroem":
        t = time.perf_counter()
        r = hsic_test(x, y, null="gamma", method="nystroem", n_features=d)
        out.update(seconds=time.perf_counter() - t, pvalue=r.pvalue, representation=r.parameters["representation"])
    else:  # pragma: no cover
        raise SystemExit(f"unknown job {job}")
    _util.emit(out)


# --------------------------------------------------------------------------- #
# parent
# --------------------------------------------------------------------------- #


def plan(quick: bool) -> list[tuple[str, int, int, int]]:
    if quick:
        return [
            ("perm-exact", 1000, 200, 0), ("perm-numpy", 1000, 10, 0),
            ("gamma-exact", 2000, 0, 0), ("gamma-gretton", 2000, 0, 0),
            ("perm-rff", 5000, 100, 128),
            ("gamma-nystroem", 100_000, 0, 256),
        ]  # fmt: skip
    return [
        ("perm-exact", 500, 1000, 0), ("perm-numpy", 500, 50, 0),
        ("perm-exact", 1000, 1000, 0), ("perm-numpy", 1000, 20, 0),
        ("perm-exact", 2000, 1000, 0), ("perm-numpy", 2000, 10, 0),
        ("gamma-exact", 2000, 0, 0), ("gamma-gretton", 2000, 0, 0),
        ("gamma-exact", 5000, 0, 0), ("gamma-gretton", 5000, 0, 0),
        ("perm-rff", 10_000, 200, 128),
        ("gamma-nystroem", 100_000, 0, 256),
        ("gamma-nystroem", 1_000_000, 0, 256),
    ]  # fmt: skip


def render_md(res: dict[str, Any]) -> str:
    lines = [
        "# hsic_test benchmark",
        "",
        f"machine: {res['machine'].get('cpu_model')}, {res['machine'].get('logical_cpus', '?')} CPUs; "
        "times are wall seconds of the call in a fresh process (shared machine: ±20 % or worse).",
        "",
        "| job | n | B | D | seconds | ms / permutation | peak RSS MB | p-value | other CPUs busy |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        pp = f"{r['per_perm_ms']:.3g}" if r.get("per_perm_ms") is not None else ""
        pv = f"{r['pvalue']:.3g}" if r.get("pvalue") is not None else ""
        lines.append(
            f"| {r['job']} | {r['n']} | {r['B'] or ''} | {r['D'] or ''} | {r['seconds']:.3g} | {pp} | "
            f"{r['peak_rss_mb']:.0f} | {pv} | {r['other_cpus']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--child", nargs=4, metavar=("JOB", "N", "B", "D"))
    a = ap.parse_args(argv)
    if a.child:
        job, n, b, d = a.child
        child(job, int(n), int(b), int(d))
        return 0
    rows = []
    for job, n, b, d in plan(a.quick):
        r = _util.run_child([__file__, "--child", job, str(n), str(b), str(d)])
        r.pop("stderr_tail", None)
        rows.append(r)
        print(f"{job:15s} n={n:>8d} B={b:>5d} D={d:>4d}  {r['seconds']:8.3f} s  peak {r['peak_rss_mb']:7.0f} MB", flush=True)
    res = {"machine": _util.machine_info(), "quick": a.quick, "rows": rows}
    RESULTS_DIR.mkdir(exist_ok=True)
    stem = RESULTS_DIR / ("hsic_test_quick" if a.quick else "hsic_test")
    stem.with_suffix(".json").write_text(json.dumps(res, indent=1, default=_util._jsonable))
    stem.with_suffix(".md").write_text(render_md(res))
    print(render_md(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
