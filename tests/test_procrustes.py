"""Procrustes distance against scipy's orthogonal Procrustes on the full data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.linalg import orthogonal_procrustes

import bigalign
from bigalign.errors import DegenerateInputError, InvalidInputError


def _reference(x: np.ndarray, y: np.ndarray, angular: bool, normalize: bool) -> float:
    """Centre, zero-pad to a common width, rotate with scipy, measure."""
    xc = x - x.mean(axis=0)
    yc = y - y.mean(axis=0)
    d = max(xc.shape[1], yc.shape[1])
    xc = np.pad(xc, ((0, 0), (0, d - xc.shape[1])))
    yc = np.pad(yc, ((0, 0), (0, d - yc.shape[1])))
    if angular or normalize:
        xc = xc / np.linalg.norm(xc)
        yc = yc / np.linalg.norm(yc)
    q, _ = orthogonal_procrustes(xc, yc)
    if angular:
        return math.acos(float(np.sum((xc @ q) * yc)))
    dist = float(np.linalg.norm(xc @ q - yc))
    return dist if normalize else dist / math.sqrt(x.shape[0])


@pytest.mark.parametrize("dx,dy", [(5, 5), (7, 3), (3, 8)])
@pytest.mark.parametrize("angular,normalize", [(False, False), (False, True), (True, False)])
def test_matches_scipy(rng, dx, dy, angular, normalize):
    n = 300
    x = rng.normal(size=(n, dx)) * rng.uniform(0.5, 3, size=dx) + 5.0
    y = x[:, :1] @ rng.normal(size=(1, dy)) + rng.normal(size=(n, dy))
    got = bigalign.procrustes(x, y, angular=angular, normalize=normalize, block_size=64)
    ref = _reference(x, y, angular, normalize)
    assert got.value == pytest.approx(ref, rel=1e-9, abs=1e-12)
    assert got.metric == ("procrustes_angular" if angular else "procrustes")
    assert got.parameters["angular"] is angular


def test_invariances(rng):
    x = rng.normal(size=(200, 6))
    y = rng.normal(size=(200, 4)) + x[:, :4]
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    base = bigalign.procrustes(x, y).value
    assert bigalign.procrustes(x @ q + 3.0, y).value == pytest.approx(base, rel=1e-10)
    ang = bigalign.procrustes(x, y, angular=True).value
    assert bigalign.procrustes(7.0 * x @ q, 0.1 * y, angular=True).value == pytest.approx(ang, rel=1e-10)
    assert 0 <= ang <= math.pi / 2
    # symmetric
    assert bigalign.procrustes(y, x).value == pytest.approx(base, rel=1e-10)


def test_identical_up_to_rotation_is_zero(rng):
    x = rng.normal(size=(100, 5))
    q, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    assert bigalign.procrustes(x, x @ q).value < 1e-6
    assert bigalign.procrustes(x, 2 * x, angular=True).value < 1e-6


def test_streams_from_dask(rng):
    da = pytest.importorskip("dask.array")
    x = rng.normal(size=(500, 8))
    y = rng.normal(size=(500, 6)) + x[:, :6]
    ref = _reference(x, y, True, False)
    got = bigalign.procrustes(da.from_array(x, chunks=77), da.from_array(y, chunks=77), angular=True)
    assert got.value == pytest.approx(ref, rel=1e-9)


def test_constant_and_options(rng):
    x = rng.normal(size=(50, 3))
    c = np.ones((50, 2))
    with pytest.raises(DegenerateInputError):
        bigalign.procrustes(x, c, angular=True)
    r = bigalign.procrustes(x, c)
    assert r.value == pytest.approx(np.linalg.norm(x - x.mean(0)) / math.sqrt(50), rel=1e-12)
    assert "y_constant" in r.flags
    with pytest.raises(InvalidInputError):
        bigalign.procrustes(x, x, angular=True, normalize=True)
    with pytest.raises(InvalidInputError):
        bigalign.procrustes(x, x, angular=1)
    assert bigalign.procrustes(x, x + 1).to_dict()["metric"] == "procrustes"
