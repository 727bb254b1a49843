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
