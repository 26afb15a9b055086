"""The tiny ReLU-MLP Llama shared by the attribution-graph tests."""

import pytest
from helpers.circuits import relu_llama


@pytest.fixture(scope="module")
def relu_lm():
    return relu_llama()
