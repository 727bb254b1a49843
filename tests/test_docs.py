"""The docstring examples are real: run them."""

import doctest

import pytest

import bigalign.metrics.distance
import bigalign.metrics.kernel


@pytest.mark.parametrize("module", [bigalign.metrics.kernel, bigalign.metrics.distance])
def test_docstring_examples(module):
    result = doctest.testmod(module)
    assert result.attempted > 0
    assert result.failed == 0
