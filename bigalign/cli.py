"""The ``bigalign`` command line.

    bigalign demo [--out DIR]            build the built-in stores, compare them, write a report
    bigalign info STORE                  layers, shapes, dtypes, chunks, sample ids, size on disk
    bigalign compare A [B] --metric cka  the layer × layer matrix of any measure (JSON, optional heatmap)
    bigalign stitch A [B]                stitching risk and Theorem 1's bound for every layer pair (needs targets)
    bigalign report A [B] --out DIR      several metric families, spectra and stitching side by side (HTML + JSON)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

from typing import TYPE_CHECKING

from ._version import __version__
from .checkpoint import checkpoint
from .errors import BigalignError
from .progress import job as progress_job
from .progress import progress as progress_bar

# numpy, dask, zarr and the metric modules are imported by the commands that use
# them, so that `bigalign --help` answers in a fraction of a second
if TYPE_CHECKING:
    from .compare import LayerMatrix

#: ``bigalign report --metrics`` keys and the O(n²) sections ``--max-rows`` caps, written here so that
#: building the parser imports no metric code (tests/test_cli.py checks them against bigalign.report)
REPORT_SECTION_KEYS = ("cka", "cka_biased", "rbf_cka", "kernel_alignment", "distance_alignment", "dcor", "mutual_knn",
                       "kcc", "spectra", "stitching")  # fmt: skip
REPORT_QUADRATIC_SECTIONS = ("rbf_cka", "dcor", "mutual_knn")


class _MetricNames:
    """The names of compare.METRICS, read only when argparse checks or lists a metric."""

    def _names(self) -> list[str]:
        from .compare import METRICS

        return list(METRICS)

    def __iter__(self) -> Any:
        return iter(self._names())

    def __contains__(self, name: object) -> bool:
        return name in self._names()

EPILOG = """examples:
  bigalign demo --out demo-out
  bigalign info demo-out/stores/model_seed0.zarr
  bigalign compare demo-out/stores/model_seed0.zarr demo-out/stores/model_seed1.zarr \\
      --metric cka --out cka.json --plot cka.png
  bigalign compare A.zarr B.zarr --metric cka --kernel rbf --method nystroem --workers 4
  bigalign compare A.zarr B.zarr --metric mutual_knn --option k=20 --option n_queries=5000
  bigalign stitch A.zarr B.zarr --out stitch.json --plot stitch.png
  bigalign report A.zarr B.zarr --out report-dir --scheduler tcp://scheduler:8786

Scheduling: without --scheduler or --workers the dask threaded scheduler uses every
core of this machine. --workers N starts a local cluster of N single-threaded worker
processes; --scheduler ADDRESS connects to a running dask cluster (dask-jobqueue,
Kubernetes, `dask scheduler` ...) and prints its dashboard link.
"""


def _table(m: LayerMatrix) -> str:
    vals = m.values
    w = max(8, max(len(l) for l in m.layers_b) + 1)
    first = max(len(l) for l in m.layers_a) + 2
    lines = [" " * first + "".join(f"{l:>{w}}" for l in m.layers_b)]
    for i, la in enumerate(m.layers_a):
        cells = "".join(f"{'—':>{w}}" if vals.mask[i, j] else f"{vals[i, j]:>{w}.3f}" for j in range(len(m.layers_b)))
        lines.append(f"{la:<{first}}{cells}")
    return "\n".join(lines)


def _save_plot(m: LayerMatrix, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ax = m.plot()
    ax.figure.tight_layout()
    ax.figure.savefig(path, dpi=120)
    plt.close(ax.figure)


_METRIC_LABELS = {
    "cka": "CKA", "hsic": "HSIC", "kernel_alignment": "kernel alignment", "distance_alignment": "distance alignment",
    "coco": "COCO", "kcc": "kernel canonical correlation", "kmi": "kernel mutual information",
    "gaussian_mi": "Gaussian mutual information", "gaussian_w2": "Gaussian W2 distance", "dcor": "distance correlation",
    "dcov": "distance covariance", "rsa": "RSA", "mutual_knn": "mutual kNN", "cknna": "CKNNA", "mmd": "MMD",
}  # fmt: skip


def _metric_label(args: argparse.Namespace) -> str:
    """A reader's name for the job, e.g. 'RBF CKA'."""
    name = _METRIC_LABELS.get(args.metric, args.metric)
    kernel = getattr(args, "kernel", "linear")
    if args.metric in ("cka", "hsic", "kernel_alignment", "mmd", "coco", "kcc", "kmi") and kernel != "linear":
        return f"{kernel.upper() if kernel == 'rbf' else kernel} {name}"
    return f"linear {name}" if args.metric in ("cka", "hsic") else name


def _n_pairs(args: argparse.Namespace, sa: Any, sb: Any) -> int:
    la = len(args.layers_a or sa.layers)
    lb = len(args.layers_b or (sb or sa).layers)
    return la * lb


def _check_layers(args: argparse.Namespace, sa: Any, sb: Any) -> None:
    """Unknown layer names fail before anything is planned or printed."""
    for opt, chosen, store in (("--layers-a", args.layers_a, sa), ("--layers-b", args.layers_b, sb or sa)):
        missing = [l for l in chosen or [] if l not in store.layers]
        if missing:
            raise BigalignError(f"{opt}: {store.source!r} has no layer {missing}; its layers are {store.layers}.")


def _engine_kw(args: argparse.Namespace) -> dict[str, Any]:
    kw: dict[str, Any] = {}
    if getattr(args, "block_size", None):
        kw["block_size"] = args.block_size
    if getattr(args, "scheduler", None) in ("sync", "threads"):
        kw["scheduler"] = args.scheduler
    return kw


def _limits(args: argparse.Namespace) -> Any:
    from .engine import memory_limit

    return memory_limit(args.memory_limit) if getattr(args, "memory_limit", None) else contextlib.nullcontext()


def _metric_kw(args: argparse.Namespace) -> dict[str, Any]:
    kw: dict[str, Any] = {"estimator": args.estimator, "kernel": args.kernel, "method": args.method, "seed": args.seed}
    if args.bandwidth != "median":
        try:
            kw["bandwidth"] = float(args.bandwidth)
        except ValueError:
            raise BigalignError(f"--bandwidth must be 'median' or a positive number; got {args.bandwidth!r}.") from None
    if args.n_features:
        kw["n_features"] = args.n_features
    if args.option:
        kw["metric_options"] = _options(args.option)
    return kw


def _options(items: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings → keyword arguments; values are read as JSON (numbers, lists, true/false) or kept as text."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise BigalignError(f"--option must look like KEY=VALUE (e.g. k=20); got {item!r}.")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


@contextlib.contextmanager
def _cluster(args: argparse.Namespace):
    """Connect to --scheduler ADDRESS or start --workers N local processes; else nothing."""
    address = getattr(args, "scheduler", None)
    workers = getattr(args, "workers", None)
    if address and address not in ("sync", "threads"):
        from distributed import Client

        with Client(address) as client, contextlib.redirect_stdout(sys.stderr):  # distributed's bar: stderr
            print(f"connected to {address}; dashboard: {client.dashboard_link}", file=sys.stderr)
            yield client
    elif workers:
        from distributed import Client, LocalCluster

        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True) as lc, Client(lc) as client, \
                contextlib.redirect_stdout(sys.stderr):  # distributed's bar goes to stderr, results to stdout
            print(f"local cluster of {workers} worker processes; dashboard: {client.dashboard_link}", file=sys.stderr)
            yield client
    else:
        yield None


#: jobs planned to take longer than this many seconds say so when they start
PLANNED_NOTE_S = 10.0


def _planned_cost(args: argparse.Namespace, stores: list[Any]) -> str | None:
    """The planned cost of a long job (None for a short one), printed when its computation starts."""
    from .compare import PAIR_METRICS
    from .metrics._kernel_nonlinear import EXACT_MAX_N

    n = stores[0].n_samples
    widths = [s[l].n_features for s in stores for l in s.layers]
    la = len(args.layers_a or stores[0].layers)
    lb = len(args.layers_b or stores[-1].layers)
    if args.metric in PAIR_METRICS and (args.metric in ("mutual_knn", "cknna", "rsa", "dcor", "dcov", "mmd")):
        flops = 2.0 * n * n * (max(widths) + 10) * la * lb
        what = f"{la * lb} separate {args.metric} computations (up to O(n²) each; see the metric's method option)"
    elif args.kernel == "linear":
        flops = 2.0 * n * (sum(widths) ** 2)
        what = "exact streamed moments"
    elif args.method == "exact" or (args.method == "auto" and n <= EXACT_MAX_N):
        flops = 2.0 * n * n * (max(widths) * 2 + 20) * la * lb
        what = f"exact O(n²) tiles for {la * lb} pairs of layers"
    else:
        d_feat = args.n_features or 2048
        flops = 2.0 * n * (len(widths) * d_feat) ** 2
        what = "one pass over feature maps"
    seconds = flops / 30e9  # ~30 GFLOP/s end to end on a 2-core machine (see README benchmarks)
    if seconds > PLANNED_NOTE_S:
        return f"planned: {what}, ~{flops / 1e12:.1f} TFLOP, roughly {seconds / 60:.1f} min at 30 GFLOP/s"
    return None


def cmd_demo(args: argparse.Namespace) -> int:
    from .compare import compare_layers
    from .demo import build_demo_stores
    from .io import open_activations

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        import matplotlib  # noqa: F401

        plots = True
    except ImportError:
        plots = False
    t0 = time.perf_counter()
    print("step 1/3: two networks trained from different seeds on scikit-learn's digits", flush=True)
    a, b = build_demo_stores(out / "stores", say=lambda msg: print(f"  {msg}", flush=True))
    print(f"demo stores: {a} and {b} ({time.perf_counter() - t0:.1f} s)")
    sa, sb = open_activations(a), open_activations(b)
    print(f"  {sa.n_samples} digits images; layers {sa.layers}")
    summary: dict[str, Any] = {"bigalign_version": __version__, "stores": [str(a), str(b)], "results": {}}
    jobs = [
        ("cka_seed0_vs_seed1", sa, sb, "cka", "unbiased"),
        ("cka_biased_seed0_vs_seed1", sa, sb, "cka", "biased"),
        ("cka_seed0_layers", sa, None, "cka", "unbiased"),
    ]
    print("\nstep 2/3: linear CKA between their layers", flush=True)
    for name, x, y, metric, est in jobs:
        t0 = time.perf_counter()
        m = compare_layers(x, y, metric=metric, estimator=est)
        dt = time.perf_counter() - t0
        print(f"\n{name}: linear CKA ({est}), {m.n_samples} samples, {dt:.2f} s")
        print(_table(m))
        summary["results"][name] = m.to_dict()
        if plots:
            _save_plot(m, out / f"{name}.png")
    (out / "results.json").write_text(json.dumps(summary, indent=1))
    print(f"\nwrote {out / 'results.json'}")
    if plots:
        from .report import write_report

        print("\nstep 3/3: the full report (every metric family, spectra, stitching) ...", flush=True)
        with progress_bar(None if sys.stderr.isatty() else False):
            path = write_report(a, b, out, title="bigalign demo: two MLPs trained on digits from different seeds",
                                narrate=True)
        print(f"wrote {path} (all metric families side by side)")
    if plots:
        print(f"wrote heatmaps {', '.join(str(out / (j[0] + '.png')) for j in jobs)}")
    else:
        print("heatmaps skipped: matplotlib is not installed (pip install 'bigalign[plot]')")
    return 0


def _du(path: str) -> int | None:
    if "://" in path or not os.path.isdir(path):
        return None
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def cmd_info(args: argparse.Namespace) -> int:
    import numpy as np

    from .io import open_activations

    s = open_activations(args.store)
    ids = s.sample_ids
    print(f"store: {args.store}")
    size = _du(args.store)
    if size is not None:
        print(f"size on disk: {size / 2**20:.1f} MiB")
    print(f"samples: {s.n_samples}")
    print(f"sample ids: {'absent — pairing with other stores cannot be verified' if ids is None else f'{len(ids)} ({ids.dtype})'}")
    t = s.targets
    if t is None:
        print("targets: absent (stitching needs them: ActivationWriter.append(..., targets=labels))")
    else:
        kind = f"{len(np.unique(t))} classes" if t.ndim == 1 and t.dtype.kind in "biu" else f"shape {t.shape[1:] or '(1,)'}"
        print(f"targets: {t.shape[0]} ({t.dtype}, {kind})")
    if s.attrs:
        print(f"attributes: {json.dumps(s.attrs)}")
    print(f"{'layer':<20}{'stored shape':<22}{'features':>10}{'dtype':>10}{'chunk rows':>12}")
    for l in s.layers:
        lay = s[l]
        print(f"{l:<20}{str(tuple(lay._zarr.shape)):<22}{lay.n_features:>10}{str(lay.dtype):>10}{lay.stored_chunk_rows:>12}")
    return 0


def _fingerprint(store: Any) -> dict[str, Any]:
    import hashlib

    import numpy as np

    ids = store.sample_ids
    return {
        "path": store.source,
        "n_samples": store.n_samples,
        "layers": {l: list(store[l].shape) for l in store.layers},
        "sample_ids_sha256": None if ids is None else hashlib.sha256(np.asarray(ids).astype(str).tobytes()).hexdigest(),
    }


def cmd_compare(args: argparse.Namespace) -> int:
    from .compare import compare_layers
    from .io import open_activations

    sa = open_activations(args.a)
    sb = open_activations(args.b) if args.b else None
    # every argument is checked before anything is planned or printed: the options here, the rest by
    # compare_layers before its first pass, which is when the planned cost is printed
    _check_layers(args, sa, sb)
    metric_kw, engine_kw = _metric_kw(args), _engine_kw(args)
    note = _planned_cost(args, [sa] + ([sb] if sb is not None else []))
    per_pair = args.kernel != "linear" or args.metric in ("dcor", "dcov", "rsa", "mutual_knn", "cknna", "mmd")
    n_jobs = _n_pairs(args, sa, sb) if per_pair else 0  # else one streamed pass serves every pair
    with warnings.catch_warnings(record=True) as caught, _limits(args), _cluster(args):
        warnings.simplefilter("always")
        with progress_bar(False if args.quiet else None), progress_job(n_jobs, _metric_label(args), note=note):
            m = compare_layers(
                sa,
                sb,
                metric=args.metric,
                layers_a=args.layers_a,
                layers_b=args.layers_b,
                checkpoint=(args.out + ".ckpt") if args.out else None,
                resume=args.resume,
                **metric_kw,
                **engine_kw,
            )
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    print(_table(m))
    doc = {
        "bigalign_version": __version__,
        "a": args.a,
        "b": args.b,
        "inputs": [_fingerprint(sa)] + ([_fingerprint(sb)] if sb is not None else []),
        **m.to_dict(),
    }
    if args.out:
        Path(args.out).write_text(json.dumps(doc, indent=1))
        print(f"wrote {args.out}")
    if args.plot:
        _save_plot(m, Path(args.plot))
        print(f"wrote {args.plot}")
    return 0


def cmd_stitch(args: argparse.Namespace) -> int:
    import numpy as np

    from .io import open_activations
    from .layer_stitching import stitching_matrix

    sa = open_activations(args.a)
    sb = open_activations(args.b) if args.b else None
    if args.targets:
        try:
            targets: Any = np.load(args.targets, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise BigalignError(
                f"--targets {args.targets!r} could not be read as a .npy array ({exc}); expected a file written by "
                "numpy.save with one label or row of targets per sample."
            ) from None
        if not isinstance(targets, np.ndarray):
            raise BigalignError(f"--targets {args.targets!r} holds several arrays (.npz); save one array with numpy.save.")
    else:
        targets = sa.targets
        if targets is None:
            raise BigalignError(
                f"store {args.a!r} has no targets; stitching needs the task's labels. Write them with "
                "ActivationWriter.append(..., targets=labels), or pass --targets labels.npy (one row per sample)."
            )
        if sb is not None and sb.targets is not None and not np.array_equal(targets, sb.targets):
            raise BigalignError("the two stores carry different targets; pass the task's labels with --targets FILE.npy.")
    try:
        ridge: Any = args.ridge if args.ridge == "cv" else float(args.ridge)
    except ValueError:
        raise BigalignError(f"--ridge must be 'cv' or a number ≥ 0; got {args.ridge!r}.") from None
    with warnings.catch_warnings(record=True) as caught, _limits(args), _cluster(args):
        warnings.simplefilter("always")
        with progress_bar(False if args.quiet else None), progress_job(0, f"{args.kind} stitching"):
            sm = stitching_matrix(sa, sb, targets=targets, layers_a=args.layers_a, layers_b=args.layers_b, ridge=ridge,
                                  holdout=args.holdout, seed=args.seed, kind=args.kind, **_engine_kw(args),
                                  **_options(args.option))  # fmt: skip
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    ex, bound = sm.values("excess_risk"), sm.values("excess_bound")
    print(f"held-out excess risk of {args.kind} stitching A-layer (rows) into B-layer and B's head (columns); "
          "≤ Theorem 1's bound")  # fmt: skip
    w = max(18, max(len(l) for l in sm.layers_b) + 1)
    first = max(len(l) for l in sm.layers_a) + 2
    print(" " * first + "".join(f"{l:>{w}}" for l in sm.layers_b))
    for i, la in enumerate(sm.layers_a):
        print(f"{la:<{first}}" + "".join(f"{f'{ex[i, j]:.3g} ≤ {bound[i, j]:.3g}':>{w}}" for j in range(len(sm.layers_b))))
    doc = {
        "bigalign_version": __version__, "a": args.a, "b": args.b, "kind": args.kind,
        "inputs": [_fingerprint(sa)] + ([_fingerprint(sb)] if sb is not None else []),
        "layers_a": sm.layers_a, "layers_b": sm.layers_b, "n_samples": sm.n_samples, "n_passes": sm.n_passes,
        "excess_risk": ex.tolist(), "excess_bound": bound.tolist(), "bound": sm.values("bound").tolist(),
        "stitched_risk": sm.values("stitched_risk").tolist(), "risk_a": sm.risk_a.tolist(), "risk_b": sm.risk_b.tolist(),
        "cka": sm.cka.to_dict()["values"], "results": [[r.to_dict() for r in row] for row in sm.results],
    }  # fmt: skip
    if args.out:
        Path(args.out).write_text(json.dumps(doc, indent=1, default=float))
        print(f"wrote {args.out}")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig = sm.plot()
        fig.savefig(args.plot, dpi=120)
        plt.close(fig)
        print(f"wrote {args.plot}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import write_report

    ckpt = Path(args.out) / ".checkpoint"
    layers_a = args.layers_a or args.layers
    layers_b = args.layers_b or args.layers
    with _limits(args), _cluster(args), progress_bar(False if args.quiet else None), checkpoint(ckpt, resume=args.resume):
        path = write_report(args.a, args.b, args.out, engine_kw=_engine_kw(args), spectra=not args.no_spectra,
                            stitching=not args.no_stitching, layers_a=layers_a, layers_b=layers_b,
                            metrics=args.metrics, max_rows=args.max_rows, narrate=not args.quiet)  # fmt: skip
    print(f"wrote {path} and {Path(args.out) / 'report.json'}")
    return 0


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (rejected with the usage line, before anything runs)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {value}")
    return value


def _add_engine_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("scheduling")
    g.add_argument("--scheduler", default=None, metavar="ADDRESS|sync|threads",
                   help="a dask scheduler address (tcp://host:8786) to run on an existing cluster, "
                   "or 'sync' / 'threads' (default: threads on this machine)")  # fmt: skip
    g.add_argument("--workers", type=_positive_int, default=None, metavar="N", help="start a local cluster of N worker processes")
    g.add_argument("--block-size", type=_positive_int, default=None, help="rows per block (default: planned from memory)")
    g.add_argument("--quiet", action="store_true", help="no progress bar (and no planned-cost line)")
    g.add_argument("--memory-limit", default=None, metavar="BYTES",
                   help="plan blocks so this process stays under e.g. '4GB' (threads / sync runners)")  # fmt: skip
    g.add_argument("--resume", action="store_true",
                   help="reuse the partial states an interrupted run checkpointed next to the output "
                   "(OUT.ckpt for compare --out, DIR/.checkpoint for report); without it they are discarded")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bigalign",
        description="Measure how aligned two learned representations are (CKA, HSIC, kernel and "
        "distance alignment), streamed over Zarr activation stores.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"bigalign {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="train two small networks on digits, compare their layers, write results")
    d.add_argument("--out", default="demo-out", help="output directory (default: demo-out)")
    d.set_defaults(func=cmd_demo)

    i = sub.add_parser("info", help="describe an activation store")
    i.add_argument("store")
    i.set_defaults(func=cmd_info)

    c = sub.add_parser("compare", help="layer × layer matrix of a metric between two stores")
    c.add_argument("a", help="first store (Zarr group)")
    c.add_argument("b", nargs="?", default=None, help="second store (default: compare a's layers with each other)")
    c.add_argument("--metric", default="cka", choices=_MetricNames(), metavar="METRIC",
                   help="one of: %(choices)s (default: cka)")  # fmt: skip
    c.add_argument("--estimator", default="unbiased", choices=["unbiased", "biased"],
                   help="HSIC/CKA estimator (default: unbiased, i.e. debiased CKA)")  # fmt: skip
    c.add_argument("--kernel", default="linear", choices=["linear", "rbf", "laplacian"])
    c.add_argument("--bandwidth", default="median", help="'median' (default) or a number, for rbf/laplacian")
    c.add_argument("--method", default="auto", choices=["auto", "exact", "rff", "orf", "nystroem", "block", "projection", "sampled"],
                   help="rbf/laplacian: exact tiles or rff/orf/nystroem with error bars; dcor: block/projection; "
                   "rsa: sampled (default: auto)")  # fmt: skip
    c.add_argument("--n-features", type=_positive_int, default=None, help="random features / landmarks (default: 2048 / 1024)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="an option of the metric's own function, e.g. k=20 (mutual_knn), ridge=0.001 (kcc), "
                   "distance=cosine (rsa); repeatable")  # fmt: skip
    c.add_argument("--layers-a", nargs="+", default=None, metavar="LAYER")
    c.add_argument("--layers-b", nargs="+", default=None, metavar="LAYER")
    c.add_argument("--out", default=None, help="write the result as JSON here")
    c.add_argument("--plot", default=None, help="write a heatmap PNG here")
    _add_engine_args(c)
    c.set_defaults(func=cmd_compare)

    s = sub.add_parser("stitch", help="stitching risk and Theorem 1's bound for every layer pair (the stores' targets)")
    s.add_argument("a", help="first store: its layers are stitched into b's")
    s.add_argument("b", nargs="?", default=None, help="second store (default: a's layers into each other)")
    s.add_argument("--targets", default=None, metavar="FILE.npy",
                   help="the task's labels/targets, one row per sample (default: the stores' own targets)")  # fmt: skip
    s.add_argument("--kind", default="linear", choices=["linear", "kernel", "mlp"],
                   help="stitch class: affine maps (one shared pass), kernel ridge on random features, or an MLP on "
                   "the linear residual (one stitch per layer pair) (default: linear)")  # fmt: skip
    s.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="an option of the kind, e.g. n_features=1024 or kernel=laplacian (kernel), epochs=10 (mlp); "
                   "repeatable")  # fmt: skip
    s.add_argument("--ridge", default="0", help="ridge λ ≥ 0 for maps and heads, or 'cv' (default: 0)")
    s.add_argument("--holdout", type=float, default=0.2, help="fraction of rows held out for evaluation (default 0.2)")
    s.add_argument("--seed", type=int, default=0, help="seeds the held-out split")
    s.add_argument("--layers-a", nargs="+", default=None, metavar="LAYER")
    s.add_argument("--layers-b", nargs="+", default=None, metavar="LAYER")
    s.add_argument("--out", default=None, help="write the result as JSON here")
    s.add_argument("--plot", default=None, help="write CKA / excess risk / bound heatmaps (PNG) here")
    _add_engine_args(s)
    s.set_defaults(func=cmd_stitch)

    r = sub.add_parser("report", help="metric families, spectra and stitching side by side: DIR/report.html + report.json")
    r.add_argument("a")
    r.add_argument("b", nargs="?", default=None)
    r.add_argument("--out", required=True, help="output directory")
    r.add_argument("--no-spectra", action="store_true", help="skip the per-layer covariance spectra")
    r.add_argument("--no-stitching", action="store_true", help="skip stitching even when the stores carry targets")
    r.add_argument("--layers", nargs="+", default=None, metavar="LAYER",
                   help="only these layers (of both stores; --layers-a / --layers-b choose them per store)")  # fmt: skip
    r.add_argument("--layers-a", nargs="+", default=None, metavar="LAYER")
    r.add_argument("--layers-b", nargs="+", default=None, metavar="LAYER")
    r.add_argument("--metrics", nargs="+", default=None, metavar="SECTION",
                   help="only these sections, by key: " + ", ".join(REPORT_SECTION_KEYS) + " (default: all)")  # fmt: skip
    r.add_argument("--max-rows", type=int, default=None, metavar="N",
                   help="compute the O(n²) families (" + ", ".join(REPORT_QUADRATIC_SECTIONS) + ") on N seeded random rows "
                   "(the same rows of A and B) when the stores hold more; the report says what was capped")  # fmt: skip
    _add_engine_args(r)
    r.set_defaults(func=cmd_report)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except BigalignError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
