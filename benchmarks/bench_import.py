"""Start-up cost: ``import bigalign`` and ``bigalign --help``, in fresh interpreters.

Each command runs ``--repeat`` times in a new Python process; the table keeps
the best (least disturbed) run and the median, as CPU seconds (user + system of
the child, from ``os.wait4``) beside wall seconds.  CPU is the figure to
compare on a shared machine: wall time also counts waiting for a core.

``--baseline REV`` measures a git revision of this repository in the same run
(extracted with ``git archive`` into a temporary directory and put first on
``PYTHONPATH``), so before/after figures share the machine's load.

    python benchmarks/bench_import.py --baseline 3907d92 --repeat 7
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

COMMANDS = {
    "import bigalign": ["-c", "import bigalign"],
    "bigalign --help": ["-c", "import sys; from bigalign.cli import main; sys.exit(main())", "--help"],
    "import bigalign; bigalign.cka": ["-c", "import bigalign; bigalign.cka"],
}


def time_child(argv: list[str], pythonpath: Path) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one fresh interpreter running ``argv`` on the tree at ``pythonpath``.

    It runs in that directory too: ``python -c`` puts the working directory first on ``sys.path``.
    """
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, *argv], env=env, cwd=pythonpath, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"{argv} failed ({proc.returncode}): {err}")
    return usage.ru_utime + usage.ru_stime, wall


def checkout(rev: str, into: Path) -> Path:
    data = subprocess.run(["git", "-C", str(REPO), "archive", rev], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(into, filter="data")
    return into


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", default=None, help="a git revision to measure in the same run")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--out", default=str(HERE / "results" / "import_time"))
    args = ap.parse_args()

    trees = {"this tree": REPO}
    with tempfile.TemporaryDirectory() as tmp:
        if args.baseline:
            trees[f"baseline {args.baseline}"] = checkout(args.baseline, Path(tmp))
        rows = []
        for label, argv in COMMANDS.items():
            for tree, path in trees.items():
                # interleave the repeats of both trees: a change in load hits both alike
                runs = [time_child(argv, path) for _ in range(args.repeat)]
                cpu = [c for c, _ in runs]
                wall = [w for _, w in runs]
                rows.append({
                    "command": label, "tree": tree, "repeat": args.repeat,
                    "cpu_best_s": min(cpu), "cpu_median_s": statistics.median(cpu),
                    "wall_best_s": min(wall), "wall_median_s": statistics.median(wall),
                })  # fmt: skip
                print(f"{label:<34}{tree:<22} CPU best {min(cpu):.3f} s  median {statistics.median(cpu):.3f} s   "
                      f"wall best {min(wall):.3f} s", flush=True)  # fmt: skip
    meta = {"python": sys.version.split()[0], "cpus": os.cpu_count(), "load_avg_1min": os.getloadavg()[0],
            "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime())}  # fmt: skip
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    lines = [
        "# Start-up cost (`benchmarks/bench_import.py`)",
        "",
        f"Python {meta['python']}, {meta['cpus']} CPUs, 1-min load average {meta['load_avg_1min']:.1f} at start, "
        f"{meta['date_utc']} UTC; best and median of {args.repeat} fresh interpreters each.",
        "",
        "| command | tree | CPU best (s) | CPU median (s) | wall best (s) | wall median (s) |",
        "|---|---|---:|---:|---:|---:|",
        *(f"| `{r['command']}` | {r['tree']} | {r['cpu_best_s']:.3f} | {r['cpu_median_s']:.3f} | "
          f"{r['wall_best_s']:.3f} | {r['wall_median_s']:.3f} |" for r in rows),  # fmt: skip
        "",
    ]
    out.with_suffix(".md").write_text("\n".join(lines))
    print(f"wrote {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
