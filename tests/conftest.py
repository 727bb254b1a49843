"""Shared fixtures for the bigalign test suite."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

# ``import references`` works whatever pytest's import mode (and whether or not
# tests/ ever becomes a package).
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


@pytest.fixture
def rng() -> np.random.Generator:
    """A fresh, seeded generator per test (tests are reproducible in any order)."""
    return np.random.default_rng(20250214)


@pytest.fixture(scope="session")
def local_cluster():
    """One real ``distributed`` cluster (2 worker processes × 1 thread) for the whole session.

    Started on first use (~2 s) and closed at the end; not made the default client, so
    ``scheduler=None`` elsewhere keeps meaning threads.  Pass it as ``scheduler=local_cluster``.
    """
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
    client = distributed.Client(cluster, set_as_default=False)
    try:
        yield client
    finally:
        client.close()
        cluster.close()
