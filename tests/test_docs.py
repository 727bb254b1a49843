"""The docstring examples are real: run them."""

import doctest

import pytest

import bigalign.metrics.distance
import bigalign.metrics.independence
import bigalign.metrics.kernel
import bigalign.metrics.mmd


@pytest.mark.parametrize("module", [bigalign.metrics.kernel, bigalign.metrics.distance, bigalign.metrics.independence, bigalign.metrics.mmd])
def test_docstring_examples(module):
    result = doctest.testmod(module)
    assert result.attempted > 0
    assert result.failed == 0
