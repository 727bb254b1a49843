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


def test_demo_end_to_end(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "bigalign.cli", "demo", "--out", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=300,
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
