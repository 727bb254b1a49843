"""bigalign report: layer and section selection, the row cap of the O(n²) sections, readable heatmaps."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("matplotlib")

import bigalign  # noqa: E402
from bigalign.cli import main  # noqa: E402
from bigalign.errors import BigalignError  # noqa: E402
from bigalign.report import _colour_range, _number_format, build_report  # noqa: E402


@pytest.fixture
def store(tmp_path):
    rng = np.random.default_rng(0)
    z = rng.standard_normal((300, 4))
    path = tmp_path / "s.zarr"
    with bigalign.ActivationWriter(path) as w:
        w.append({f"l{i}": z @ rng.standard_normal((4, 6)) + 0.5 * i * rng.standard_normal((300, 6)) for i in range(3)},
                 sample_ids=np.arange(300))  # fmt: skip
    return path


def test_selection_and_row_cap(store):
    page, doc = build_report(store, layers_a=["l0", "l2"], metrics=["cka", "dcor"], max_rows=120)
    assert set(doc["sections"]) == {"Linear CKA (debiased)", "Distance correlation (bias-corrected dCor²)"}
    cka = doc["sections"]["Linear CKA (debiased)"]
    dc = doc["sections"]["Distance correlation (bias-corrected dCor²)"]
    assert cka["layers_a"] == ["l0", "l2"] and cka["rows_used"] == 300
    assert dc["rows_used"] == 120 and dc["n_samples"] == 120
    assert doc["selection"]["capped_sections"] == ["Distance correlation (bias-corrected dCor²)"]
    assert "Capped:" in page and "120 of 300 rows" in page
    # the capped section is the metric on exactly those rows
    rows = np.sort(np.random.default_rng(0).choice(300, 120, replace=False))
    s = bigalign.open_activations(store)
    want = bigalign.dcor(np.asarray(s["l0"])[rows], np.asarray(s["l2"])[rows]).value
    assert dc["values"][0][1] == pytest.approx(want, rel=1e-10)


def test_bad_selection_is_an_error(store):
    with pytest.raises(BigalignError, match="unknown section"):
        build_report(store, metrics=["cka", "nope"])
    with pytest.raises(BigalignError, match="no layer"):
        build_report(store, layers_a=["l9"])


def test_value_format_follows_the_magnitude():
    assert _number_format(np.array([0.93, 0.5]))[1].format(0.93) == "0.93"
    assert _number_format(np.array([45.0, 3.0]))[1].format(45.0) == "45.0"
    assert _number_format(np.array([378.0, 3.0]))[1].format(378.0) == "378"
    div, fmt, suffix = _number_format(np.array([3.1e6, 2e5]))
    assert fmt.format(3.1e6 / div) == "3.10" and "10⁶" in suffix


def test_colour_scale_is_clipped_to_the_meaningful_range():
    from matplotlib.colors import LogNorm

    # bounds spanning decades (a log scale), with one rounding-level cell that must not stretch it to 1e-14
    vals = np.logspace(-3, 2, 16).reshape(4, 4)
    vals[0, 0] = 6.6e-14
    norm, extend, note = _colour_range(vals)
    assert isinstance(norm, LogNorm) and norm.vmin >= 100.0 * 1e-6 and extend == "min" and "log" in note
    # a linear quantity with one outlier: robust limits, arrows on the colour bar
    lin = np.linspace(0.2, 0.4, 25).reshape(5, 5)
    lin[0, 0] = 50.0
    norm, extend, _ = _colour_range(lin)
    assert norm.vmax < 50.0 and extend in ("max", "both")


def test_cli_report_options(store, tmp_path, capsys):
    out = tmp_path / "rep"
    rc = main(["report", str(store), "--out", str(out), "--layers", "l0", "l1", "--metrics", "cka", "mutual_knn",
               "--max-rows", "100", "--quiet"])  # fmt: skip
    assert rc == 0
    doc = json.loads((out / "report.json").read_text())
    assert len(doc["sections"]) == 2 and doc["selection"]["max_rows"] == 100
    assert doc["sections"]["Mutual k-nearest neighbours (k = 10)"]["rows_used"] == 100
