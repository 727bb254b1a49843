"""The command line: compare gives the Python API's numbers; demo runs end to end."""

import json
import subprocess
import sys

import numpy as np
import pytest
import zarr

import bigalign
from bigalign.cli import main


@pytest.fixture()
def plain_groups(tmp_path):
    """Two Zarr groups written with zarr alone (no bigalign metadata, no sample ids)."""
    rng = np.random.default_rng(0)
    base = rng.normal(size=(300, 5))
    paths = []
    for k in range(2):
        g = zarr.open_group(tmp_path / f"g{k}.zarr", mode="w")
        a = g.create_array("layer_2", shape=(300, 7), chunks=(64, 7), dtype="f4")
        a[:] = np.tanh(base @ rng.normal(size=(5, 7)))
        b = g.create_array("layer_10", shape=(300, 2, 3), chunks=(50, 2, 3), dtype="f8")
        b[:] = (base @ rng.normal(size=(5, 6))).reshape(300, 2, 3)
        paths.append(str(tmp_path / f"g{k}.zarr"))
    return paths


def test_compare_plain_groups_matches_api(plain_groups, tmp_path, capsys):
    a, b = plain_groups
    out = tmp_path / "r.json"
    with pytest.warns(bigalign.PairingWarning):
        ref = bigalign.compare_layers(a, b, metric="cka")
    assert main(["compare", a, b, "--metric", "cka", "--out", str(out), "--plot", str(tmp_path / "h.png")]) == 0
    doc = json.loads(out.read_text())
    assert doc["layers_a"] == ["layer_2", "layer_10"]  # natural order
    np.testing.assert_allclose(np.array(doc["values"]), ref.values, rtol=1e-12)
    assert doc["bigalign_version"] == bigalign.__version__
    err = capsys.readouterr().err
    assert "pairing cannot be verified" in err
    assert (tmp_path / "h.png").stat().st_size > 1000


def test_info(plain_groups, capsys):
    assert main(["info", plain_groups[0]]) == 0
    out = capsys.readouterr().out
    assert "layer_10" in out and "300" in out and "absent" in out


def test_missing_store_exits_2(tmp_path, capsys):
    assert main(["info", str(tmp_path / "nothing.zarr")]) == 2
    assert "no Zarr group" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "bigalign.cli", "demo", "--out", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "demo" / "results.json").read_text())
    m = doc["results"]["cka_seed0_layers"]
    v = np.array(m["values"], dtype=float)
    np.testing.assert_allclose(np.diag(v), 1.0, rtol=1e-12)
    # two seeds of the same architecture: each hidden layer is more similar to its
    # counterpart than the raw input is to the logits (a loose, robust expectation)
    cross = np.array(doc["results"]["cka_seed0_vs_seed1"]["values"], dtype=float)
    assert cross[1, 1] > cross[0, 4]
    assert (tmp_path / "demo" / "cka_seed0_vs_seed1.png").exists()


@pytest.mark.parametrize("metric, options, kw", [
    ("dcor", [], {}),
    ("mutual_knn", ["--option", "k=5"], {"metric_options": {"k": 5}}),
    ("kcc", ["--option", "ridge=0.1"], {"metric_options": {"ridge": 0.1}}),
    ("gaussian_w2", [], {}),
])  # fmt: skip
def test_compare_any_measure_matches_api(plain_groups, tmp_path, metric, options, kw):
    a, b = plain_groups
    out = tmp_path / "r.json"
    with pytest.warns(bigalign.PairingWarning):
        ref = bigalign.compare_layers(a, b, metric=metric, **kw)
    assert main(["compare", a, b, "--metric", metric, *options, "--out", str(out), "--quiet"]) == 0
    doc = json.loads(out.read_text())
    assert doc["metric"] == metric
    np.testing.assert_allclose(np.array(doc["values"], dtype=float), ref.values, rtol=1e-12)


@pytest.mark.parametrize("argv, match", [
    (["--option", "k"], "KEY=VALUE"),
    (["--option", "kk=3", "--metric", "mutual_knn"], "not options of bigalign.mutual_knn"),
    (["--metric", "dcor", "--kernel", "rbf"], "takes no 'kernel'"),
])  # fmt: skip
def test_compare_bad_options_exit_2_with_the_reason(plain_groups, capsys, argv, match):
    a, b = plain_groups
    assert main(["compare", a, b, "--quiet", *argv]) == 2
    assert match in capsys.readouterr().err


@pytest.fixture()
def stores_with_targets(tmp_path):
    rng = np.random.default_rng(3)
    z = rng.normal(size=(240, 4))
    labels = (z[:, 0] > 0).astype(int) + 2 * (z[:, 1] > 0)
    paths = []
    for k in range(2):
        w = np.random.default_rng(10 + k)
        with bigalign.ActivationWriter(tmp_path / f"t{k}.zarr") as wr:
            wr.append({"h1": np.tanh(z @ w.normal(size=(4, 6))), "h2": z @ w.normal(size=(4, 3))},
                      sample_ids=np.arange(240), targets=labels)  # fmt: skip
        paths.append(str(tmp_path / f"t{k}.zarr"))
    return paths, labels


def test_stitch_uses_the_stores_targets_and_matches_api(stores_with_targets, tmp_path, capsys):
    (a, b), labels = stores_with_targets
    out, png = tmp_path / "s.json", tmp_path / "s.png"
    assert main(["stitch", a, b, "--out", str(out), "--plot", str(png), "--quiet"]) == 0
    doc = json.loads(out.read_text())
    ref = bigalign.stitching_matrix(a, b, targets=labels)
    np.testing.assert_allclose(doc["excess_risk"], ref.values("excess_risk"), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(doc["bound"], ref.values("bound"), rtol=1e-10)
    assert "≤" in capsys.readouterr().out and png.stat().st_size > 1000
    # an explicit --targets file gives the same
    np.save(tmp_path / "labels.npy", labels)
    assert main(["stitch", a, b, "--targets", str(tmp_path / "labels.npy"), "--out", str(out), "--quiet"]) == 0
    np.testing.assert_allclose(json.loads(out.read_text())["excess_risk"], doc["excess_risk"], rtol=0, atol=0)


def test_stitch_without_targets_says_how_to_add_them(plain_groups, capsys):
    assert main(["stitch", plain_groups[0], "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "no targets" in err and "--targets" in err


def test_info_reports_targets(stores_with_targets, capsys):
    assert main(["info", stores_with_targets[0][0]]) == 0
    assert "targets: 240 (int64, 4 classes)" in capsys.readouterr().out


@pytest.mark.parametrize("extra, match", [
    (["--ridge", "foo"], "--ridge must be 'cv' or a number"),
    (["--targets", "missing.npy"], "could not be read as a .npy array"),
])  # fmt: skip
def test_stitch_bad_arguments_exit_2_with_the_reason(stores_with_targets, capsys, monkeypatch, tmp_path, extra, match):
    monkeypatch.chdir(tmp_path)
    (a, b), _ = stores_with_targets
    assert main(["stitch", a, b, "--quiet", *extra]) == 2
    assert match in capsys.readouterr().err


def test_stitch_kernel_kind_matches_api(stores_with_targets, tmp_path):
    (a, b), labels = stores_with_targets
    out = tmp_path / "k.json"
    argv = ["stitch", a, b, "--kind", "kernel", "--option", "n_features=64", "--layers-a", "h1", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    doc = json.loads(out.read_text())
    assert doc["kind"] == "kernel"
    ref = bigalign.stitch(bigalign.open_activations(a)["h1"], bigalign.open_activations(b)["h2"], kind="kernel",
                          n_features=64, targets=labels)  # fmt: skip
    assert doc["excess_risk"][0][1] == pytest.approx(ref.excess_risk, rel=1e-10, abs=1e-13)


def test_report_section_names_in_the_parser_match_the_report():
    """cli.py names report's sections itself (so that --help imports no metric code): they must agree."""
    from bigalign import cli, report

    assert tuple(cli.REPORT_SECTION_KEYS) == tuple(report.SECTION_KEYS)
    assert tuple(cli.REPORT_QUADRATIC_SECTIONS) == tuple(report.QUADRATIC_SECTIONS)
