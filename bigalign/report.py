"""Self-contained HTML reports: several metric families side by side, figures embedded."""

from __future__ import annotations

import base64
import contextlib
import datetime as _dt
import html
import io
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ._version import __version__
from .compare import LayerMatrix, compare_layers
from .errors import BigalignError
from .io import ActivationStore, PairingWarning, as_representation, check_pairing, open_activations
from .layer_stitching import stitching_matrix
from .metrics.spectral import spectrum
from .progress import active as active_progress
from .progress import job as progress_job
from .result import _jsonable

__all__ = ["DEFAULT_SECTIONS", "QUADRATIC_SECTIONS", "SECTION_KEYS", "build_report", "write_report"]

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

#: short names of the sections, for ``metrics=`` and ``bigalign report --metrics``
SECTION_KEYS: dict[str, str] = {
    "cka": DEFAULT_SECTIONS[0][0], "cka_biased": DEFAULT_SECTIONS[1][0], "rbf_cka": DEFAULT_SECTIONS[2][0],
    "kernel_alignment": DEFAULT_SECTIONS[3][0], "distance_alignment": DEFAULT_SECTIONS[4][0],
    "dcor": DEFAULT_SECTIONS[5][0], "mutual_knn": DEFAULT_SECTIONS[6][0], "kcc": DEFAULT_SECTIONS[7][0],
    "spectra": "Spectra", "stitching": "Stitching (linear, Theorem 1)",
}  # fmt: skip
#: the sections whose cost grows as n² (capped by ``max_rows``)
QUADRATIC_SECTIONS = ("rbf_cka", "dcor", "mutual_knn")
#: sections run as one engine pass per pair of layers
_PER_PAIR = ("rbf_cka", "dcor", "mutual_knn")

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


def _number_format(vals: np.ndarray) -> tuple[float, str, str]:
    """(divisor, format, colour-bar suffix) chosen from the largest magnitude: 0.93, 45.2, 378, 3.10 (×10⁶)."""
    finite = np.abs(vals[np.isfinite(vals)])
    amax = float(finite.max()) if finite.size else 0.0
    if amax == 0.0:
        return 1.0, "{:.2f}", ""
    e = int(np.floor(np.log10(amax)))
    if -2 <= e <= 3:
        return 1.0, f"{{:.{ {-2: 3, -1: 2}.get(e, max(0, 2 - e)) }f}}", ""
    sup = str(e).translate(str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹"))
    return 10.0**e, "{:.2f}", f" (×10{sup})"


def _compact(x: float, floor: float) -> str:
    """A log-scaled cell: 3.2e6, 459, 0.31; values under the colour scale's floor as '<1e-4'."""
    if x < floor:
        return f"<{floor:.0e}".replace("e-0", "e-").replace("e+0", "e")
    if 1000 <= abs(x) < 1e4:
        return f"{x:.0f}"
    if 0.01 <= abs(x) < 1000:
        return f"{x:.3g}"
    return f"{x:.1e}".replace("e+0", "e").replace("e-0", "e-").replace("e+", "e")


def _colour_range(vals: np.ndarray) -> tuple[Any, str, str]:
    """A norm over the data's meaningful range: robust limits, a log scale when positive values span decades.

    Returns (norm, extend, note): values outside are drawn in the end colours (arrows on the colour bar).
    """
    from matplotlib.colors import LogNorm, Normalize

    v = vals[np.isfinite(vals)]
    if v.size == 0:
        return Normalize(0, 1), "neither", ""
    lo, hi = (np.percentile(v, [2, 98]) if v.size >= 9 else (v.min(), v.max()))
    lo, hi = float(lo), float(hi)
    if (v > 0).all() and hi / max(lo, 1e-300) > 1e3:
        floor = max(float(v.min()), hi * 1e-6)
        lo = max(lo, floor)
        note = f"log scale; values below {lo:.2g} drawn at the bottom colour" if (v < lo).any() else "log scale"
        return LogNorm(vmin=lo, vmax=hi), "min" if (v < lo).any() else "neither", note
    if hi <= lo:
        hi = lo + (abs(lo) * 1e-6 or 1e-12)
    extend = {(False, False): "neither", (True, False): "min", (False, True): "max", (True, True): "both"}[
        (bool((v < lo).any()), bool((v > hi).any()))
    ]
    return Normalize(vmin=lo, vmax=hi), extend, ""


def _heatmap_ax(ax: Any, vals: Any, rows: Sequence[str], cols: Sequence[str], title: str, label: str, cmap: str = "viridis") -> str:
    """Draw one readable heatmap on ax: clipped colour range, colour bar, numbers formatted from the magnitude."""
    from matplotlib.colors import LogNorm

    arr = np.ma.filled(np.ma.asarray(vals, dtype=float), np.nan)
    norm, extend, note = _colour_range(arr)
    if isinstance(norm, LogNorm):  # values spanning decades: each cell in its own power of ten
        div, fmt, suffix = 1.0, None, ""
    else:
        div, fmt, suffix = _number_format(arr)
    im = ax.imshow(np.ma.masked_invalid(arr), cmap=cmap, norm=norm, aspect="auto")
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.figure.colorbar(im, ax=ax, extend=extend, label=label + suffix)
    if arr.size <= 256:
        size = max(5.5, min(9.0, 90.0 / max(arr.shape[1], 1)))
        cm = im.get_cmap()
        for i in range(arr.shape[0]):
            for j in range(arr.shape[1]):
                x = arr[i, j]
                if not np.isfinite(x):
                    ax.text(j, i, "—", ha="center", va="center", fontsize=size, color="#888")
                    continue
                r, g, b, _ = cm(norm(np.clip(x, norm.vmin, norm.vmax)))
                colour = "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"
                txt = _compact(x, norm.vmin) if fmt is None else fmt.format(x / div)
                ax.text(j, i, txt, ha="center", va="center", fontsize=size, color=colour)
    return note


def _png(matrix: LayerMatrix) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    w = max(4.5, 0.55 * len(matrix.layers_b) + 2.5)
    h = max(3.6, 0.45 * len(matrix.layers_a) + 1.8)
    fig, ax = plt.subplots(figsize=(w, h))
    label = f"{matrix.metric} ({matrix.estimator})" if matrix.estimator else matrix.metric
    _heatmap_ax(ax, matrix.values, matrix.layers_a, matrix.layers_b, f"{label}, n = {matrix.n_samples}", matrix.metric)
    ax.set_xlabel("B layers")
    ax.set_ylabel("A layers")
    return _fig_png(fig)


def _img(alt: str, b64: str) -> str:
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{b64}'>"


def _spectra(store: ActivationStore, label: str, engine_kw: dict[str, Any], layers: Any = None) -> tuple[str, dict[str, Any]]:
    """Eigenvalue decay of every layer's covariance (one streamed pass per layer), figure + table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    fig, ax = plt.subplots(figsize=(6.2, 4.2))
    rows, doc = [], {}
    for layer in layers or store.layers:
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


def _stitching(sa: ActivationStore, sb: ActivationStore | None, engine_kw: dict[str, Any], layers_a: Any = None,
               layers_b: Any = None) -> tuple[str, dict[str, Any]]:
    """Stitching risk and Theorem 1's bound for every layer pair (needs the stores' targets)."""
    import matplotlib

    matplotlib.use("Agg")
    sm = stitching_matrix(sa, sb, targets=sa.targets, layers_a=layers_a, layers_b=layers_b, **engine_kw)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(3 * max(4.0, 0.5 * len(sm.layers_b) + 2.0), max(3.6, 0.45 * len(sm.layers_a) + 1.8)))
    for ax, (what, title) in zip(axes, (("cka", "linear CKA"), ("excess_risk", "held-out excess risk"),
                                        ("excess_bound", "Theorem 1 bound on it"))):  # fmt: skip
        vals = sm.cka.values if what == "cka" else sm.values(what)
        _heatmap_ax(ax, vals, sm.layers_a, sm.layers_b, title, what)
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
    layers_a: Sequence[str] | None = None,
    layers_b: Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
    max_rows: int | None = None,
    seed: int = 0,
    narrate: bool = False,
) -> tuple[str, dict[str, Any]]:
    """Compute every section and return (html, json-ready dict).

    Sections: the layer × layer matrices of ``sections`` (default
    :data:`DEFAULT_SECTIONS`), the covariance spectra of every layer
    (``spectra``), and, when the stores carry the same ``targets``, stitching
    risks with Theorem 1's bound (``stitching``).  A section that cannot be
    computed says why instead of failing the report.

    Parameters
    ----------
    layers_a, layers_b : list of str, optional
        Only these layers of A / B (default: all; for one store, ``layers_b``
        defaults to ``layers_a``).
    metrics : list of str, optional
        Only these sections, by key (:data:`SECTION_KEYS`: ``"cka"``,
        ``"rbf_cka"``, ``"dcor"``, ..., ``"spectra"``, ``"stitching"``).
    max_rows : int, optional
        Compute the sections whose cost grows as n² (:data:`QUADRATIC_SECTIONS`)
        on ``max_rows`` rows drawn at random (``seed``; the same rows of A and
        B) when the stores hold more.  The report says which sections were
        capped and on how many rows.
    narrate : bool
        Print one line per section to stderr as it starts.
    """
    ekw = dict(engine_kw or {})
    sa = a if isinstance(a, ActivationStore) else open_activations(a)
    sb = sa if b is None else (b if isinstance(b, ActivationStore) else open_activations(b))
    la = list(layers_a) if layers_a else None
    lb = list(layers_b) if layers_b else (la if b is None else None)
    for opt, chosen, st in (("layers_a", la, sa), ("layers_b", lb, sb)):
        missing = [l for l in chosen or [] if l not in st.layers]
        if missing:
            raise BigalignError(f"{opt}: {st.source!r} has no layer {missing}; its layers are {st.layers}.")
    keys = list(SECTION_KEYS)
    if metrics is not None:
        unknown = [m for m in metrics if m not in SECTION_KEYS]
        if unknown:
            raise BigalignError(f"metrics: unknown section {unknown}; expected keys among {keys}.")
    if max_rows is not None and (not isinstance(max_rows, (int, np.integer)) or max_rows < 10):
        raise BigalignError(f"max_rows must be an integer ≥ 10; got {max_rows!r}.")
    if sb is not sa:  # checked once here: the capped sections compare row subsets
        first_a, first_b = (la or sa.layers)[0], (lb or sb.layers)[0]
        check_pairing([as_representation(sa[first_a], "A"), as_representation(sb[first_b], "B")])
    if sections is None:
        chosen = [(k, sec) for k, sec in zip(keys, DEFAULT_SECTIONS) if metrics is None or k in metrics]
    else:
        by_title = {v: k for k, v in SECTION_KEYS.items()}
        chosen = [(by_title.get(sec[0], sec[0]), sec) for sec in sections]
    want_spectra = spectra and (metrics is None or "spectra" in metrics)
    want_stitching = stitching and (metrics is None or "stitching" in metrics)
    n = sa.n_samples
    rows = None
    if max_rows is not None and n > max_rows:
        rows = np.sort(np.random.default_rng(seed).choice(n, size=max_rows, replace=False))
    subsets: dict[str, Any] = {}

    def capped(store: ActivationStore, which: str, names: list[str]) -> dict[str, np.ndarray]:
        if which not in subsets:
            subsets[which] = {l: store[l]._take(rows) for l in names}
        return subsets[which]

    total = len(chosen) + (want_spectra * (1 if sb is sa else 2)) + want_stitching
    step = 0

    def say(what: str) -> None:
        nonlocal step
        step += 1
        if narrate:
            bar = active_progress()
            msg = f"report {step}/{total}: {what}"
            if bar is not None:
                bar.write_line(msg)
            else:
                print(msg, file=sys.stderr, flush=True)

    parts, doc = [], {"bigalign_version": __version__, "a": sa.source, "b": sb.source, "sections": {}}
    capped_names = []
    for key, (name, kw, blurb) in chosen:
        kw = dict(kw)
        say(name)
        if kw.get("metric") == "mutual_knn" and sa.n_samples > KNN_EXACT_MAX_N and rows is None:
            kw["metric_options"] = {"n_queries": 10_000, **kw.get("metric_options", {})}
        cap = rows is not None and key in QUADRATIC_SECTIONS
        names_a, names_b = la or sa.layers, lb or sb.layers
        if cap:
            xa = capped(sa, "a", names_a)
            xb = None if b is None else capped(sb, "b", names_b)
            src_a, src_b, lkw = xa, xb, {}
        else:
            src_a, src_b, lkw = sa, None if b is None else sb, {"layers_a": la, "layers_b": lb}
        n_pairs = len(names_a) * len(names_b) if key in _PER_PAIR else 0
        t0 = time.perf_counter()
        try:
            with progress_job(n_pairs, name.split(" (")[0]), warnings_as_pairing_safe():
                m = compare_layers(src_a, src_b, **lkw, **kw, **ekw)
        except BigalignError as exc:
            parts.append(f"<h2>{html.escape(name)}</h2><p class='note'>not computed: {html.escape(str(exc))}</p>")
            doc["sections"][name] = {"error": str(exc)}
            continue
        dt = time.perf_counter() - t0
        r0 = next((r for row in m.results for r in row if r is not None), None)
        method = f"method <code>{html.escape(r0.method)}</code>" if r0 else ""
        cap_note = ""
        if cap:
            capped_names.append(name)
            cap_note = (f" <b>Capped:</b> computed on {len(rows)} of {n} rows (seeded random subset, seed {seed}, "
                        "the same rows for A and B), since its cost grows as n².")  # fmt: skip
        parts.append(
            f"<h2>{html.escape(name)}</h2><p class='note'>{html.escape(blurb)} {method}; "
            f"{m.n_passes} pass(es) over the data, {dt:.2f} s.{cap_note}</p>"
            f"<div class='fig'>{_img(f'{name} heatmap', _png(m))}{_table(m)}</div>"
        )
        doc["sections"][name] = {**m.to_dict(), "seconds": dt, "rows_used": len(rows) if cap else n}
    if want_spectra:
        stores = [("A", sa, la)] + ([("B", sb, lb)] if sb is not sa else [])
        for label, st, names in stores:
            name = f"Spectra of {label}"
            say(name)
            t0 = time.perf_counter()
            with progress_job(0, name):
                body, sdoc = _spectra(st, label, ekw, names)
            parts.append(
                f"<h2>{html.escape(name)}</h2><p class='note'>Eigenvalues of each layer's centred covariance "
                "(= the non-zero eigenvalues of its linear kernel / n), streamed; the effective dimension is "
                f"(Σλ)²/Σλ²; eigenvalues below 10⁻¹² of the largest (rounding) are not drawn. {time.perf_counter() - t0:.2f} s.</p>{body}"
            )
            doc["sections"][name] = sdoc
    if want_stitching:
        name = "Stitching (linear, Theorem 1)"
        say(name)
        why = _no_stitching_reason(sa, sb)
        if why:
            parts.append(f"<h2>{html.escape(name)}</h2><p class='note'>not computed: {html.escape(why)}</p>")
            doc["sections"][name] = {"error": why}
        else:
            t0 = time.perf_counter()
            try:
                with progress_job(0, "linear stitching"):
                    body, sdoc = _stitching(sa, None if b is None else sb, ekw, la, lb)
            except BigalignError as exc:
                body, sdoc = f"<p class='note'>not computed: {html.escape(str(exc))}</p>", {"error": str(exc)}
            parts.append(
                f"<h2>{html.escape(name)}</h2><p class='note'>Each A-layer stitched linearly into each B-layer and B's "
                "linear head for the stores' targets (squared loss, one-hot labels; 20% of rows held out). Cells: the "
                "held-out excess risk R₂(g₂∘s∘f₁) − R₂(H₂), then Theorem 1's bound on it, (√R₂ + κ₂√Ã₂)² − R₂; the "
                f"first row and the last column are the risks of the heads themselves. {time.perf_counter() - t0:.2f} s.</p>{body}"
            )
            doc["sections"][name] = sdoc
    doc["selection"] = {"layers_a": la, "layers_b": lb, "metrics": list(metrics) if metrics else None,
                        "max_rows": max_rows, "capped_sections": capped_names,
                        "rows_used_by_capped": None if rows is None else len(rows), "n_samples": n, "seed": seed}  # fmt: skip
    when = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    selection = ""
    if la or lb or metrics:
        selection += f"<br>Selection: layers A {html.escape(str(la or 'all'))}, B {html.escape(str(lb or 'all'))}; sections {html.escape(str(list(metrics) if metrics else 'all'))}."
    if capped_names:
        selection += (f"<br><b>Row cap:</b> {html.escape(', '.join(capped_names))} computed on {len(rows)} of {n} rows "
                      f"(max_rows={max_rows}, seed {seed}); every other section uses all rows.")  # fmt: skip
    body = (
        f"<h1>{html.escape(title)}</h1><p class='meta'>bigalign {__version__}, {when}</p>"
        f"<p>A: {_describe(sa)}<br>B: {_describe(sb)}{selection}</p>" + "".join(parts)
    )
    page = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>{body}</body></html>"
    )
    return page, doc


@contextlib.contextmanager
def warnings_as_pairing_safe() -> Iterator[None]:
    """Row subsets are plain arrays: their pairing was checked on the stores, so drop the PairingWarning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PairingWarning)
        yield


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
    page, doc = build_report(a, b, **kw)  # arguments checked (and everything computed) before anything is written
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.html").write_text(page, encoding="utf-8")
    (out / "report.json").write_text(json.dumps(doc, indent=1, default=float), encoding="utf-8")
    return out / "report.html"
