"""Shared fixtures: every behavioural test runs on both backends."""

import numpy as np
import pytest

import softmax_kernels as sk


@pytest.fixture(params=["compiled", "reference"])
def backend(request):
    """The module whose functions are under test: the compiled API or the NumPy reference."""
    if request.param == "compiled":
        if sk.show_config()["backend"] != "compiled":
            pytest.skip("the compiled extension is not in use (SOFTMAX_KERNELS_BACKEND or a failed build)")
        return sk
    return sk.reference


@pytest.fixture
def rng():
    return np.random.default_rng(20261127)
