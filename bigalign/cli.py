"""The ``bigalign`` command line.

    bigalign demo [--out DIR]            build the built-in stores, compare them, write results
    bigalign info STORE                  layers, shapes, dtypes, chunks, sample ids
    bigalign compare A [B] --metric cka  the layer × layer matrix (JSON, optional heatmap)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

from . import __version__
from .compare import LINEAR_METRICS, LayerMatrix, compare_layers
from .errors import BigalignError
from .io import open_activations

EPILOG = """examples:
  bigalign demo --out demo-out
  bigalign info demo-out/stores/model_seed0.zarr
  bigalign compare demo-out/stores/model_seed0.zarr demo-out/stores/model_seed1.zarr \\
      --metric cka --out cka.json --plot cka.png
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


def _engine_kw(args: argparse.Namespace) -> dict[str, Any]:
    kw: dict[str, Any] = {}
    if getattr(args, "block_size", None):
        kw["block_size"] = args.block_size
    if getattr(args, "scheduler", None):
        kw["scheduler"] = args.scheduler
    return kw


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import build_demo_stores

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        import matplotlib  # noqa: F401

        plots = True
    except ImportError:
        plots = False
    t0 = time.perf_counter()
    a, b = build_demo_stores(out / "stores")
    print(f"demo stores: {a} and {b} ({time.perf_counter() - t0:.1f} s)")
    sa, sb = open_activations(a), open_activations(b)
    print(f"  {sa.n_samples} digits images; layers {sa.layers}")
    summary: dict[str, Any] = {"bigalign_version": __version__, "stores": [str(a), str(b)], "results": {}}
    jobs = [
        ("cka_seed0_vs_seed1", sa, sb, "cka", "unbiased"),
        ("cka_biased_seed0_vs_seed1", sa, sb, "cka", "biased"),
        ("cka_seed0_layers", sa, None, "cka", "unbiased"),
    ]
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
        print(f"wrote heatmaps {', '.join(str(out / (j[0] + '.png')) for j in jobs)}")
    else:
        print("heatmaps skipped: matplotlib is not installed (pip install 'bigalign[plot]')")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    s = open_activations(args.store)
    ids = s.sample_ids
    print(f"store: {args.store}")
    print(f"samples: {s.n_samples}")
    print(f"sample ids: {'absent — pairing with other stores cannot be verified' if ids is None else f'{len(ids)} ({ids.dtype})'}")
    if s.attrs:
        print(f"attributes: {json.dumps(s.attrs)}")
    print(f"{'layer':<20}{'stored shape':<22}{'features':>10}{'dtype':>10}{'chunk rows':>12}")
    for l in s.layers:
        lay = s[l]
        print(f"{l:<20}{str(tuple(lay._zarr.shape)):<22}{lay.n_features:>10}{str(lay.dtype):>10}{lay.stored_chunk_rows:>12}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = compare_layers(
            args.a,
            args.b,
            metric=args.metric,
            layers_a=args.layers_a,
            layers_b=args.layers_b,
            estimator=args.estimator,
            **_engine_kw(args),
        )
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    print(_table(m))
    doc = {"bigalign_version": __version__, "a": args.a, "b": args.b, **m.to_dict()}
    if args.out:
        Path(args.out).write_text(json.dumps(doc, indent=1))
        print(f"wrote {args.out}")
    if args.plot:
        _save_plot(m, Path(args.plot))
        print(f"wrote {args.plot}")
    return 0


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
    c.add_argument("--metric", default="cka", choices=sorted(LINEAR_METRICS))
    c.add_argument("--estimator", default="unbiased", choices=["unbiased", "biased"])
    c.add_argument("--layers-a", nargs="+", default=None, metavar="LAYER")
    c.add_argument("--layers-b", nargs="+", default=None, metavar="LAYER")
    c.add_argument("--block-size", type=int, default=None, help="rows per block (default: planned)")
    c.add_argument("--scheduler", choices=["sync", "threads"], default=None)
    c.add_argument("--out", default=None, help="write the result as JSON here")
    c.add_argument("--plot", default=None, help="write a heatmap PNG here")
    c.set_defaults(func=cmd_compare)
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
