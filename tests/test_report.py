"""The HTML report: self-contained, every section present, and it renders in headless Chromium."""

import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

import bigalign
import bigalign.report
from html import escape as html_escape

DEFAULT = bigalign.report.DEFAULT_SECTIONS


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    rng = np.random.default_rng(0)
    z = rng.normal(size=(400, 5))
    for k in range(2):
        w = np.random.default_rng(k + 1)
        layers = {
            "early": np.tanh(z @ w.normal(size=(5, 12))).astype(np.float32),
            "late": (z @ w.normal(size=(5, 4))) ** 2,
            "dead": np.zeros((400, 3), dtype=np.float32),  # a constant layer: CKA undefined
        }
        with bigalign.ActivationWriter(root / f"m{k}.zarr") as wr:
            wr.append(layers, sample_ids=np.arange(400), targets=(z[:, 0] > 0).astype(int) + (z[:, 1] > 0))
    path = bigalign.write_report(root / "m0.zarr", root / "m1.zarr", root / "out")
    return path


TITLES = ("Linear CKA (debiased)", "Linear CKA (biased)", "RBF CKA", "Kernel alignment", "Distance alignment",
          "Distance correlation", "Mutual k-nearest", "Kernel canonical correlation", "Spectra of A", "Spectra of B",
          "Stitching (linear, Theorem 1)")  # fmt: skip


def _n_figures(doc):
    """One figure per section that was computed (a section that could not be says why, without a figure)."""
    return sum("error" not in v for v in doc["sections"].values())


@pytest.mark.slow
def test_self_contained_and_complete(report):
    page = report.read_text(encoding="utf-8")
    doc = json.loads((report.parent / "report.json").read_text())
    # nothing fetched from elsewhere: every image is inline, no scripts, links or stylesheets
    assert not re.search(r"""(src|href)=["'](?!data:)""", page)
    assert "<script" not in page
    for title in TITLES:
        assert title in page
    assert len(doc["sections"]) == len(TITLES)
    # the all-zero layer: cells undefined where a metric is undefined; kNN (cosine) cannot take zero rows and says so
    assert "undefined" in page
    knn = next(v for k, v in doc["sections"].items() if k.startswith("Mutual"))
    assert "all zeros" in knn["error"]
    assert _n_figures(doc) == len(TITLES) - 1
    assert page.count("data:image/png;base64,") == _n_figures(doc)
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page)  # base64 may spell anything
    assert not re.search(r"\bnan\b", text, flags=re.IGNORECASE)
    cka = doc["sections"]["Linear CKA (debiased)"]
    assert cka["layers_a"] == ["early", "late", "dead"]
    assert cka["values"][2][2] is None
    a, b = (bigalign.open_activations(report.parent.parent / f"m{k}.zarr") for k in (0, 1))
    assert cka["values"][0][1] == pytest.approx(bigalign.cka(a["early"], b["late"]).value, rel=1e-12)
    dc = doc["sections"]["Distance correlation (bias-corrected dCor²)"]
    assert dc["values"][0][1] == pytest.approx(bigalign.dcor(a["early"], b["late"]).value, rel=1e-10)
    # spectra: every eigenvalue of each (non-constant) layer, summing to the total variance
    spec = doc["sections"]["Spectra of A"]
    lam = np.linalg.eigvalsh(np.cov(np.asarray(a["early"][:], dtype=np.float64).T, bias=True))[::-1]
    # exact road: the same eigenproblem up to rounding (eigenvalues of a 12×12 covariance; atol for the near-zero tail)
    np.testing.assert_allclose(spec["early"]["explained_variance_ratio"], lam / lam.sum(), rtol=1e-10, atol=1e-13)
    assert "error" in spec["dead"] and "constant" in spec["dead"]["error"]
    # stitching from the stores' targets: the same numbers as stitching_matrix
    st = doc["sections"]["Stitching (linear, Theorem 1)"]
    ref = bigalign.stitching_matrix(a, b, targets=a.targets)
    np.testing.assert_allclose(st["excess_risk"], ref.values("excess_risk"), rtol=1e-10, atol=1e-12)
    assert all(e <= bd + 1e-9 for row_e, row_b in zip(st["excess_risk"], st["excess_bound"]) for e, bd in zip(row_e, row_b))


def test_stitching_section_says_why_without_targets(tmp_path):
    rng = np.random.default_rng(1)
    with bigalign.ActivationWriter(tmp_path / "m.zarr") as wr:
        wr.append({"h": rng.normal(size=(50, 3))})
    page, doc = bigalign.report.build_report(tmp_path / "m.zarr", sections=[DEFAULT[0]], spectra=False)
    why = doc["sections"]["Stitching (linear, Theorem 1)"]["error"]
    assert "targets" in why and "ActivationWriter.append(..., targets=labels)" in why
    assert html_escape(why) in page


def test_renders_in_headless_chromium(report, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have Debian's chromium (.ci/run installs it)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    shot = tmp_path / "report.png"
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
    ]  # fmt: skip
    dom = subprocess.run([chromium, *flags, "--dump-dom", report.as_uri()], capture_output=True, text=True)
    assert dom.returncode == 0, dom.stderr[-2000:]
    doc = json.loads((report.parent / "report.json").read_text())
    assert "Linear CKA (debiased)" in dom.stdout and dom.stdout.count("<img") == _n_figures(doc)
    # page errors would be logged as console messages ("Uncaught ...")
    assert "Uncaught" not in dom.stderr
    sub = subprocess.run([chromium, *flags, f"--screenshot={shot}", "--window-size=1200,1600", report.as_uri()],
                         capture_output=True, text=True)  # fmt: skip
    assert sub.returncode == 0 and shot.stat().st_size > 50_000  # a rendered page, not a blank one
