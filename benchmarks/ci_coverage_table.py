"""One table of the measured coverage of ``ci=0.95``: one row per measure and road, coverage and mean
width at n = 500 and n = 5,000, and the command that produced it.

Reads the result files of the coverage scripts (benchmarks/results/ci_coverage_*.json) and writes
benchmarks/results/ci_coverage_table.{md,json}; docs/intervals.md carries the same rows.  A new
coverage script adds its rows to ROWS (a source file and a function returning
{n: (coverage, mean width, repetitions)}); rows whose file is missing are listed as not measured.

Usage:  python benchmarks/ci_coverage_table.py
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

RES = Path(__file__).resolve().parent / "results"
Q19 = 2.093024054408263  # Student t, 19 degrees of freedom, 0.975
Cells = dict[int, tuple[float, float, int]]


def _load(name: str) -> Any:
    p = RES / name
    return json.loads(p.read_text()) if p.exists() else None


def tiles(file: str, cell: str) -> Callable[[], Cells]:
    def f() -> Cells:
        d = _load(file)
        out = {}
        for key, c in (d or {}).get("cells", {}).items():
            name, n = key.rsplit("@", 1)
            if name == cell and c["covered"]:
                out[int(n)] = (float(np.mean(c["covered"])), float(np.mean(c["width"])), len(c["covered"]))
        return out

    return f


def rows_of(file: str, measure: str | None = None, key: str = "coverage", width: str = "mean_width", **match: Any) -> Callable[[], Cells]:
    def f() -> Cells:
        d = _load(file)
        out = {}
        for r in (d or {}).get("rows", []):
            if (measure is None or r.get("measure") == measure) and all(r.get(k) == v for k, v in match.items()):
                cov = r[key][measure] if isinstance(r[key], dict) else r[key]
                w = r[width][measure] if isinstance(r[width], dict) else r[width]
                out[int(r["n"])] = (float(cov), float(w), int(r.get("reps", d.get("reps", 0))))
        return out

    return f


def biased_linear(d: int, kind: str) -> Callable[[], Cells]:
    def f() -> Cells:
        data = _load("ci_coverage_biased.json")
        return {int(r["n"]): (r["coverage"][kind], r["mean_width"][kind], data["reps"]) for r in (data or {}).get("rows", []) if r["d"] == d and "coverage" in r}

    return f


def biased_rule(cell: str, unbiased: str) -> Callable[[], Cells]:
    """A biased estimator's tile cell under the one rule.  Its intervals are the unbiased estimator's (tested); where
    the rerun stopped early and every interval it made equals the unbiased run's on the same seeds, the unbiased
    run's 200 repetitions stand for it."""

    def f() -> Cells:
        rule = (_load("ci_coverage_tiles_biased_rule.json") or {}).get("cells", {})
        base = (_load("ci_coverage_tiles.json") or {}).get("cells", {})
        out: Cells = {}
        for n in (500, 5000):
            r, u = rule.get(f"{cell}@{n}"), base.get(f"{unbiased}@{n}")
            if not r or not r["covered"]:
                continue
            k = len(r["covered"])
            same = u is not None and r["covered"] == u["covered"][:k] and np.allclose(r["width"], u["width"][:k], rtol=1e-12, atol=0)
            src = u if same and len(u["covered"]) > k else r
            out[n] = (float(np.mean(src["covered"])), float(np.mean(src["width"])), len(src["covered"]))
        return out

    return f


def approx(cell: str, key: str = "covered", pattern: str = "ci_coverage_approx_*.json") -> Callable[[], Cells]:
    """The cell from every shard of ci_coverage_approx.py (``pattern``), each repetition (seed) once."""

    def f() -> Cells:
        seen: dict[int, dict[int, tuple[bool, float]]] = {}
        for file in sorted(RES.glob(pattern)):
            d = json.loads(file.read_text())
            for name_n, c in d.get("cells", {}).items():
                name, n = name_n.rsplit("@", 1)
                if name != cell:
                    continue
                # the row-only reference (covered_wide) is value ± t₁₉·ci_se: its width from the jackknife se
                widths = c["width"] if key == "covered" else [2 * Q19 * se for se in c["se"]]
                for i, (hit, w) in enumerate(zip(c[key], widths)):
                    seen.setdefault(int(n), {}).setdefault(d.get("rep_start", 0) + i, (bool(hit), float(w)))
        return {n: (float(np.mean([h for h, _ in v.values()])), float(np.mean([w for _, w in v.values()])), len(v)) for n, v in seen.items()}

    return f


RULE = "biased (rule: unbiased form's interval)"
#: (measure, road, command, cells)
ROWS: list[tuple[str, str, str, Callable[[], Cells]]] = [
    ("linear CKA, unbiased (d = 8)", "moments", "ci_coverage_biased.py", biased_linear(8, "unbiased")),
    ("linear CKA, biased (d = 8)", "moments", "ci_coverage_biased.py", biased_linear(8, RULE)),
    ("linear CKA, unbiased (d = 64)", "moments", "ci_coverage_biased.py", biased_linear(64, "unbiased")),
    ("linear CKA, biased (d = 64)", "moments", "ci_coverage_biased.py", biased_linear(64, RULE)),
    ("Procrustes distance (bias-corrected centre)", "moments", "ci_coverage_plugin.py", rows_of("ci_coverage_plugin.json", "procrustes", "coverage_corrected", "width_corrected")),
    ("SVCCA (99% variance)", "moments", "ci_coverage_plugin.py", rows_of("ci_coverage_plugin.json", "svcca", "coverage_plain", "width_plain")),
    ("PWCCA", "moments", "ci_coverage_plugin.py", rows_of("ci_coverage_plugin.json", "pwcca", "coverage_plain", "width_plain")),
    ("RBF CKA, unbiased", "exact tiles", "ci_coverage_tiles.py", tiles("ci_coverage_tiles.json", "cka_rbf_unbiased")),
    ("RBF CKA, unbiased, bandwidth = median", "exact tiles", "ci_coverage_tiles.py", tiles("ci_coverage_tiles.json", "cka_rbf_median_unbiased")),
    ("RBF CKA, biased", "exact tiles", "ci_coverage_tiles.py --measures cka_rbf_biased dcor2_biased",
     biased_rule("cka_rbf_biased", "cka_rbf_unbiased")),
    ("dCor², unbiased", "exact tiles", "ci_coverage_tiles.py", tiles("ci_coverage_tiles.json", "dcor2_unbiased")),
    ("dCor², biased", "exact tiles", "ci_coverage_tiles.py --measures cka_rbf_biased dcor2_biased",
     biased_rule("dcor2_biased", "dcor2_unbiased")),
    ("RSA (Pearson, Euclidean)", "exact tiles", "ci_coverage_tiles.py", tiles("ci_coverage_tiles.json", "rsa_pearson")),
    ("RBF CKA, unbiased (B = n/50)", "block", "ci_coverage_blocks.py --metric cka", rows_of("ci_coverage_blocks_cka.json")),
    ("dCor² (B = n/50)", "block", "ci_coverage_blocks.py", rows_of("ci_coverage_blocks.json")),
    ("RBF CKA, unbiased, 256 features", "rff", "ci_coverage_approx.py --measures cka_rbf_rff256 --ns N --tag _rff_nN", approx("cka_rbf_rff256")),
    ("RBF CKA, unbiased, 256 features", "orf", "ci_coverage_approx.py --measures cka_rbf_orf256 --ns N --tag _orf_nN", approx("cka_rbf_orf256")),
    ("RBF CKA, 256 features, row-only reference (no stderr)", "rff", "ci_coverage_approx.py", approx("cka_rbf_rff256", "covered_wide")),
    ("RBF CKA, 256 features, row-only reference (no stderr)", "orf", "ci_coverage_approx.py", approx("cka_rbf_orf256", "covered_wide")),
    ("RBF CKA, 512 features, row-only interval (earlier construction)", "rff", "ci_coverage_approx.py --n-features 512 (stopped)",
     approx("cka_rbf_rff512", pattern="ci_coverage_approx_rows512*.json")),
    ("RBF CKA, 512 features, row-only interval (earlier construction)", "orf", "ci_coverage_approx.py --n-features 512 (stopped)",
     approx("cka_rbf_orf512", pattern="ci_coverage_approx_rows512*.json")),
    ("mutual kNN (k = 10)", "exact", "ci_coverage_moments.py", rows_of("ci_coverage_moments.json", measure="mutual_knn")),
]


def cell(c: Cells, n: int) -> str:
    if n not in c:
        return "not measured"
    cov, w, reps = c[n]
    mark = "" if 0.92 <= cov <= 0.98 else "**"
    return f"{mark}{cov:.3f}{mark} ({w:.4f})" + ("" if reps >= 200 else f" [{reps} reps]")


def main() -> None:
    out, lines = [], [
        "# Coverage of ci=0.95, every measure and road measured so far",
        "",
        "`python benchmarks/ci_coverage_table.py` (from the result files of the scripts named per row, run as "
        "`python benchmarks/<script>`).  Cells: coverage (mean width) over 200 repetitions unless said; "
        "accepted 0.92-0.98 (binomial sd 0.015); bold: outside.",
        "",
        "| measure | road | n = 500 | n = 5,000 | script |",
        "|---|---|---|---|---|",
    ]
    for measure, road, cmd, f in ROWS:
        c = f()
        out.append({"measure": measure, "road": road, "script": cmd, "cells": {str(n): v for n, v in c.items()}})
        lines.append(f"| {measure} | {road} | {cell(c, 500)} | {cell(c, 5000)} | `{cmd}` |")
    (RES / "ci_coverage_table.json").write_text(json.dumps(out, indent=1))
    (RES / "ci_coverage_table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
