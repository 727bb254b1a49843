"""Self-contained HTML reports: several metric families side by side, figures embedded."""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
import time
from pathlib import Path
from typing import Any, Sequence


from .compare import LayerMatrix, compare_layers
from .errors import BigalignError
from .io import ActivationStore, open_activations

__all__ = ["DEFAULT_SECTIONS", "build_report", "write_report"]

#: (title, compare_layers keyword arguments, one-line explanation)
DEFAULT_SECTIONS: list[tuple[str, dict[str, Any], str]] = [
    ("Linear CKA (debiased)", {"metric": "cka", "estimator": "unbiased"},
     "Centred kernel alignment from the unbiased HSIC; exact, streamed. Near 0 for independent representations even when d ≫ n."),
    ("Linear CKA (biased)", {"metric": "cka", "estimator": "biased"},
     "The classic V-statistic CKA (Kornblith et al. 2019); in [0, 1], inflated when d is not ≪ n."),
    ("RBF CKA (debiased, median bandwidth)", {"metric": "cka", "kernel": "rbf", "estimator": "unbiased"},
     "Non-linear CKA; exact tiles up to 20,000 samples, Nyström/ORF with error bars beyond (method='auto')."),
    ("Kernel alignment (uncentred, linear)", {"metric": "kernel_alignment"},
     "⟨K, L⟩ / (‖K‖‖L‖) without centring: sensitive to the mean of the activations."),
    ("Distance alignment D", {"metric": "distance_alignment"},
     "The paper's (1/n²) Σ (‖xᵢ−xⱼ‖² − ‖yᵢ−yⱼ‖²)²: 0 when pairwise distances agree; not a correlation (scale-dependent)."),
]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#222;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem} h2{font-size:1.2rem;margin-top:2.2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
.meta{color:#666;font-size:.9rem} table{border-collapse:collapse;font-size:.85rem;margin:.6rem 0}
td,th{border:1px solid #ddd;padding:.25rem .5rem;text-align:right} th{background:#f4f4f4}
td.undef{color:#999} .fig{display:flex;gap:1.5rem;align-items:flex-start;flex-wrap:wrap} img{max-width:520px;height:auto}
code{background:#f4f4f4;padding:0 .2rem} .note{color:#555;font-size:.9rem}
"""


def _png(matrix: LayerMatrix) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ax = matrix.plot()
    ax.figure.tight_layout()
    buf = io.BytesIO()
    ax.figure.savefig(buf, format="png", dpi=110)
    plt.close(ax.figure)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _table(m: LayerMatrix) -> str:
    vals = m.values
    head = "".join(f"<th>{html.escape(l)}</th>" for l in m.layers_b)
    rows = []
    for i, la in enumerate(m.layers_a):
        cells = []
        for j in range(len(m.layers_b)):
            r = m.results[i][j]
            if r is None:
                why = html.escape(m.undefined.get((i, j), "undefined"))
                cells.append(f'<td class="undef" title="{why}">undefined</td>')
            else:
                se = f" ± {r.stderr:.2g}" if r.stderr is not None else ""
                cells.append(f"<td>{vals[i, j]:.4g}{se}</td>")
        rows.append(f"<tr><th>{html.escape(la)}</th>{''.join(cells)}</tr>")
    return f"<table><tr><th>A \\ B</th>{head}</tr>{''.join(rows)}</table>"


def _describe(store: ActivationStore) -> str:
    ids = "with sample ids" if store.sample_ids is not None else "without sample ids (pairing not verifiable)"
    layers = ", ".join(f"{l} ({store[l].n_features})" for l in store.layers)
    attrs = f"; attributes {html.escape(json.dumps(store.attrs))}" if store.attrs else ""
    return f"<code>{html.escape(store.source)}</code>: {store.n_samples} samples, {ids}; layers {html.escape(layers)}{attrs}"


def build_report(
    a: Any,
    b: Any = None,
    *,
    sections: Sequence[tuple[str, dict[str, Any], str]] | None = None,
    title: str = "bigalign report",
    engine_kw: dict[str, Any] | None = None,
) -> tuple[str, dict[str, Any]]:
    """Compute every section and return (html, json-ready dict)."""
    from . import __version__

    sa = a if isinstance(a, ActivationStore) else open_activations(a)
    sb = sa if b is None else (b if isinstance(b, ActivationStore) else open_activations(b))
    sections = list(sections or DEFAULT_SECTIONS)
    parts, doc = [], {"bigalign_version": __version__, "a": sa.source, "b": sb.source, "sections": {}}
    for name, kw, blurb in sections:
        t0 = time.perf_counter()
        try:
            m = compare_layers(sa, None if b is None else sb, **kw, **(engine_kw or {}))
        except BigalignError as exc:
            parts.append(f"<h2>{html.escape(name)}</h2><p class='note'>not computed: {html.escape(str(exc))}</p>")
            doc["sections"][name] = {"error": str(exc)}
            continue
        dt = time.perf_counter() - t0
        r0 = next((r for row in m.results for r in row if r is not None), None)
        method = f"method <code>{html.escape(r0.method)}</code>" if r0 else ""
        parts.append(
            f"<h2>{html.escape(name)}</h2><p class='note'>{html.escape(blurb)} {method}; "
            f"{m.n_passes} pass(es) over the data, {dt:.2f} s.</p>"
            f"<div class='fig'><img alt='{html.escape(name)} heatmap' src='data:image/png;base64,{_png(m)}'>"
            f"{_table(m)}</div>"
        )
        doc["sections"][name] = {**m.to_dict(), "seconds": dt}
    when = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    body = (
        f"<h1>{html.escape(title)}</h1><p class='meta'>bigalign {__version__}, {when}</p>"
        f"<p>A: {_describe(sa)}<br>B: {_describe(sb)}</p>" + "".join(parts)
    )
    page = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>{body}</body></html>"
    )
    return page, doc


def write_report(a: Any, b: Any, out: str | Path, **kw: Any) -> Path:
    """Write ``out/report.html`` and ``out/report.json``; returns the HTML path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    page, doc = build_report(a, b, **kw)
    (out / "report.html").write_text(page, encoding="utf-8")
    (out / "report.json").write_text(json.dumps(doc, indent=1, default=float), encoding="utf-8")
    return out / "report.html"
