"""The gradient checker must catch a wrong gradient, not just pass right ones."""

import numpy as np
import pytest

import minifb as mf
from minifb.tensor import Function
from minifb.testing import gradcheck


class WrongSquare(Function):
    """x² with a deliberately wrong derivative (x instead of 2x)."""

    def forward(self, x):
        self.x = x
        return x * x

    def backward(self, grad):
        return (grad * self.x,)


def test_gradcheck_passes_a_correct_op():
    x = mf.tensor(np.random.default_rng(0).standard_normal(5), dtype="float64", requires_grad=True)
    assert gradcheck(lambda t: t * t, x)


def test_gradcheck_catches_a_wrong_gradient():
    x = mf.tensor(np.random.default_rng(0).standard_normal(5), dtype="float64", requires_grad=True)
    with pytest.raises(AssertionError, match="input 0"):
        gradcheck(WrongSquare.apply, x)


def test_gradcheck_refuses_float32():
    x = mf.randn(3, requires_grad=True)
    with pytest.raises(TypeError, match="float64"):
        gradcheck(lambda t: t * 2, x)
