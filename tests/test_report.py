"""The HTML report: self-contained, every section present, and it renders in headless Chromium."""

import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

import bigalign


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
            wr.append(layers, sample_ids=np.arange(400))
    path = bigalign.write_report(root / "m0.zarr", root / "m1.zarr", root / "out")
    return path


def test_self_contained_and_complete(report):
    page = report.read_text(encoding="utf-8")
    # nothing fetched from elsewhere: every image is inline, no scripts, links or stylesheets
    assert not re.search(r"""(src|href)=["'](?!data:)""", page)
    assert "<script" not in page
    assert page.count("data:image/png;base64,") == 5
    for title in ("Linear CKA (debiased)", "Linear CKA (biased)", "RBF CKA", "Kernel alignment", "Distance alignment"):
        assert title in page
    assert "undefined" in page  # the constant layer is reported, not NaN
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page)  # base64 may spell anything
    assert not re.search(r"\bnan\b", text, flags=re.IGNORECASE)
    doc = json.loads((report.parent / "report.json").read_text())
    cka = doc["sections"]["Linear CKA (debiased)"]
    assert cka["layers_a"] == ["early", "late", "dead"]
    assert cka["values"][2][2] is None
    ref = bigalign.cka(bigalign.open_activations(report.parent.parent / "m0.zarr")["early"],
                       bigalign.open_activations(report.parent.parent / "m1.zarr")["late"]).value  # fmt: skip
    assert cka["values"][0][1] == pytest.approx(ref, rel=1e-12)


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
    dom = subprocess.run([chromium, *flags, "--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "Linear CKA (debiased)" in dom.stdout and dom.stdout.count("<img") == 5
    # page errors would be logged as console messages ("Uncaught ...")
    assert "Uncaught" not in dom.stderr
    sub = subprocess.run([chromium, *flags, f"--screenshot={shot}", "--window-size=1200,1600", report.as_uri()],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert sub.returncode == 0 and shot.stat().st_size > 50_000  # a rendered page, not a blank one
