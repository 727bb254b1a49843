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

import numpy as np

from .compare import LayerMatrix, compare_layers
from .errors import BigalignError
from .io import ActivationStore, open_activations
from .result import _jsonable

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
    ("Distance correlation (bias-corrected dCor²)", {"metric": "dcor"},
     "Székely–Rizzo distance correlation: 0 iff independent (population); exact O(n²) tiles, block estimator at large n. "
     "One call per pair of layers."),
    ("Mutual k-nearest neighbours (k = 10)", {"metric": "mutual_knn"},
     "Fraction of each sample's 10 cosine nearest neighbours shared by the two representations (platonic-rep); "
     "chance level is k/(n − 1). Beyond 20,000 samples, 10,000 seeded queries with a standard error."),
    ("Kernel canonical correlation (linear, κ = 10⁻²)", {"metric": "kcc"},
     "The largest regularised canonical correlation (Bach & Jordan 2002): a correlation in [0, 1), invariant to invertible "
     "linear maps up to the ridge; exact from the streamed moments."),
]

#: spectra: every eigenvalue up to this many features, else the leading SPECTRUM_RANK (randomized)
SPECTRUM_FULL_MAX_D = 4096
SPECTRUM_RANK = 256

#: the mutual-kNN section samples queries beyond this many samples (exact search is O(n²) per pair)
KNN_EXACT_MAX_N = 20_000

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#222;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem} h2{font-size:1.2rem;margin-top:2.2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
.meta{color:#666;font-size:.9rem} table{border-collapse:collapse;font-size:.85rem;margin:.6rem 0}
td,th{border:1px solid #ddd;padding:.25rem .5rem;text-align:right} th{background:#f4f4f4}
td.undef{color:#999} .fig{display:flex;gap:1.5rem;align-items:flex-start;flex-wrap:wrap} img{max-width:520px;height:auto} .wide img{max-width:100%}
code{background:#f4f4f4;padding:0 .2rem} .note{color:#555;font-size:.9rem}
"""


def _fig_png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _png(matrix: LayerMatrix) -> str:
    import matplotlib

    matplotlib.use("Agg")
    return _fig_png(matrix.plot().figure)


def _img(alt: str, b64: str) -> str:
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{b64}'>"


def _spectra(store: ActivationStore, label: str, engine_kw: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Eigenvalue decay of every layer's covariance (one streamed pass per layer), figure + table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .metrics.spectral import spectrum

    fig, ax = plt.subplots(figsize=(6.2, 4.2))
    rows, doc = [], {}
    for layer in store.layers:
        d = store[layer].n_features
        try:
            sp = spectrum(store[layer], rank=None if d <= SPECTRUM_FULL_MAX_D else SPECTRUM_RANK, **engine_kw)
        except BigalignError as exc:
            rows.append(f"<tr><th>{html.escape(layer)}</th><td>{d}</td><td class='undef' colspan='4'>"
                        f"{html.escape(str(exc))}</td></tr>")  # fmt: skip
            doc[layer] = {"error": str(exc)}
            continue
        ratio = np.asarray(sp.explained_variance_ratio)
        keep = ratio > ratio[0] * 1e-12  # below that: rounding of a rank-deficient covariance, not signal
        ax.loglog(np.arange(1, keep.sum() + 1), ratio[keep], marker="o", ms=2, lw=1.1, label=layer)
        top10 = float(ratio[:10].sum())
        lo, hi = sp.effective_dimension_bounds
        eff = f"{sp.effective_dimension:.3g}" if lo == hi else f"{sp.effective_dimension:.3g} [{lo:.3g}, {hi:.3g}]"
        rows.append(f"<tr><th>{html.escape(layer)}</th><td>{d}</td><td>{sp.rank}</td><td>{eff}</td>"
                    f"<td>{ratio[0]:.3f}</td><td>{top10:.3f}</td></tr>")  # fmt: skip
        doc[layer] = {"n_features": d, "rank": int(sp.rank), "effective_dimension": float(sp.effective_dimension),
                      "explained_variance_ratio": ratio.tolist(), "method": sp.method}  # fmt: skip
    ax.set_xlabel("eigenvalue index i")
    ax.set_ylabel("λᵢ / Σλ (explained variance ratio)")
    ax.set_title(f"covariance spectra of {label}'s layers")
    ax.grid(True, which="both", alpha=0.25)
    if ax.lines:
        ax.legend(fontsize=8)
    table = ("<table><tr><th>layer</th><th>features</th><th>eigenpairs</th><th>effective dimension</th>"
             f"<th>top-1 share</th><th>top-10 share</th></tr>{''.join(rows)}</table>")  # fmt: skip
    return f"<div class='fig'>{_img(f'spectra of {label}', _fig_png(fig))}{table}</div>", doc


def _stitching(sa: ActivationStore, sb: ActivationStore | None, engine_kw: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Stitching risk and Theorem 1's bound for every layer pair (needs the stores' targets)."""
    import matplotlib

    matplotlib.use("Agg")
    from .metrics.stitching import stitching_matrix

    sm = stitching_matrix(sa, sb, targets=sa.targets, **engine_kw)
    fig = sm.plot(("cka", "excess_risk", "excess_bound"))
    ex, bound = sm.values("excess_risk"), sm.values("excess_bound")
    head = "".join(f"<th>{html.escape(l)}</th>" for l in sm.layers_b)
    rows = [f"<tr><th>R(head of B)</th>{''.join(f'<td>{v:.4g}</td>' for v in sm.risk_b)}<td></td></tr>"]
    for i, la in enumerate(sm.layers_a):
        cells = "".join(f"<td>{ex[i, j]:.4g} <span class='note'>≤ {bound[i, j]:.3g}</span></td>" for j in range(len(sm.layers_b)))
        rows.append(f"<tr><th>{html.escape(la)}</th>{cells}<td>{sm.risk_a[i]:.4g}</td></tr>")
    table = f"<table><tr><th>A \\ B</th>{head}<th>R(head of A)</th></tr>{''.join(rows)}</table>"
    doc = {
        "layers_a": sm.layers_a, "layers_b": sm.layers_b, "excess_risk": ex.tolist(), "bound": sm.values("bound").tolist(),
        "stitched_risk": sm.values("stitched_risk").tolist(), "risk_a": sm.risk_a.tolist(), "risk_b": sm.risk_b.tolist(),
        "excess_bound": bound.tolist(), "cka": sm.cka.to_dict()["values"], "n_samples": sm.n_samples, "parameters": _jsonable(dict(sm.parameters)),
    }  # fmt: skip
    return f"<div class='fig wide'>{_img('stitching heatmaps', _fig_png(fig))}</div>{table}", doc


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
    spectra: bool = True,
    stitching: bool = True,
    title: str = "bigalign report",
    engine_kw: dict[str, Any] | None = None,
) -> tuple[str, dict[str, Any]]:
    """Compute every section and return (html, json-ready dict).

    Sections: the layer × layer matrices of ``sections`` (default
    :data:`DEFAULT_SECTIONS`), the covariance spectra of every layer
    (``spectra``), and, when the stores carry the same ``targets``, stitching
    risks with Theorem 1's bound (``stitching``).  A section that cannot be
    computed says why instead of failing the report.
    """
    from . import __version__

    ekw = dict(engine_kw or {})
    sa = a if isinstance(a, ActivationStore) else open_activations(a)
    sb = sa if b is None else (b if isinstance(b, ActivationStore) else open_activations(b))
    sections = list(sections or DEFAULT_SECTIONS)
    parts, doc = [], {"bigalign_version": __version__, "a": sa.source, "b": sb.source, "sections": {}}
    for name, kw, blurb in sections:
        kw = dict(kw)
        if kw.get("metric") == "mutual_knn" and sa.n_samples > KNN_EXACT_MAX_N:
            kw["metric_options"] = {"n_queries": 10_000, **kw.get("metric_options", {})}
        t0 = time.perf_counter()
        try:
            m = compare_layers(sa, None if b is None else sb, **kw, **ekw)
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
            f"<div class='fig'>{_img(f'{name} heatmap', _png(m))}{_table(m)}</div>"
        )
        doc["sections"][name] = {**m.to_dict(), "seconds": dt}
    if spectra:
        stores = [("A", sa)] + ([("B", sb)] if sb is not sa else [])
        for label, st in stores:
            name = f"Spectra of {label}"
            t0 = time.perf_counter()
            body, sdoc = _spectra(st, label, ekw)
            parts.append(
                f"<h2>{html.escape(name)}</h2><p class='note'>Eigenvalues of each layer's centred covariance "
                "(= the non-zero eigenvalues of its linear kernel / n), streamed; the effective dimension is "
                f"(Σλ)²/Σλ²; eigenvalues below 10⁻¹² of the largest (rounding) are not drawn. {time.perf_counter() - t0:.2f} s.</p>{body}"
            )
            doc["sections"][name] = sdoc
    if stitching:
        name = "Stitching (linear, Theorem 1)"
        why = _no_stitching_reason(sa, sb)
        if why:
            parts.append(f"<h2>{html.escape(name)}</h2><p class='note'>not computed: {html.escape(why)}</p>")
            doc["sections"][name] = {"error": why}
        else:
            t0 = time.perf_counter()
            try:
                body, sdoc = _stitching(sa, None if b is None else sb, ekw)
            except BigalignError as exc:
                body, sdoc = f"<p class='note'>not computed: {html.escape(str(exc))}</p>", {"error": str(exc)}
            parts.append(
                f"<h2>{html.escape(name)}</h2><p class='note'>Each A-layer stitched linearly into each B-layer and B's "
                "linear head for the stores' targets (squared loss, one-hot labels; 20% of rows held out). Cells: the "
                "held-out excess risk R₂(g₂∘s∘f₁) − R₂(H₂), then Theorem 1's bound on it, (√R₂ + κ₂√Ã₂)² − R₂; the "
                f"first row and the last column are the risks of the heads themselves. {time.perf_counter() - t0:.2f} s.</p>{body}"
            )
            doc["sections"][name] = sdoc
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


def _no_stitching_reason(sa: ActivationStore, sb: ActivationStore) -> str | None:
    """Why the stitching section cannot run (A's targets are used, as by ``bigalign stitch``), or None."""
    if sa.targets is None:
        return (f"stitching needs the task's targets and {sa.source!r} has none; write them with "
                "ActivationWriter.append(..., targets=labels) or add an array named 'targets' to the store.")  # fmt: skip
    if sb is not sa and sb.targets is not None and not np.array_equal(sa.targets, sb.targets):
        return "the two stores carry different targets; stitching compares two models on one task."
    return None


def write_report(a: Any, b: Any, out: str | Path, **kw: Any) -> Path:
    """Write ``out/report.html`` and ``out/report.json``; returns the HTML path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    page, doc = build_report(a, b, **kw)
    (out / "report.html").write_text(page, encoding="utf-8")
    (out / "report.json").write_text(json.dumps(doc, indent=1, default=float), encoding="utf-8")
    return out / "report.html"
