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


# ---------------------------------------------------------------- found by mutation testing (session 13)
def _x5():
    return mf.tensor(np.random.default_rng(0).standard_normal(5), dtype="float64", requires_grad=True)


class _Square(Function):
    """x² whose backward is 2x scaled per element by ``factor`` (1: right)."""

    factor = 1.0

    def forward(self, x):
        self.x = x
        return x * x

    def backward(self, grad):
        return (grad * 2 * self.x * self.factor,)


def _square_with(factor):
    return type("Square", (_Square,), {"factor": factor}).apply


def test_gradcheck_catches_a_gradient_off_by_one_percent():
    """The default rtol is 1e-4: a derivative 1% too large is a failure, not noise."""
    with pytest.raises(AssertionError, match="input 0"):
        gradcheck(_square_with(1.01), _x5())


def test_gradcheck_catches_a_gradient_of_the_wrong_sign():
    with pytest.raises(AssertionError, match="input 0"):
        gradcheck(_square_with(-1.0), _x5())


def test_gradcheck_catches_a_wrong_gradient_in_one_element_only():
    """Every element of the input is probed, the last as much as the first."""
    factor = np.ones(5)
    factor[-1] = 0.0   # the last element gets no gradient
    with pytest.raises(AssertionError, match="input 0"):
        gradcheck(_square_with(factor), _x5())


class _IgnoresItsGrad(Function):
    """x² whose backward ignores the incoming gradient (right only when it is all ones)."""

    def forward(self, x):
        self.x = x
        return x * x

    def backward(self, grad):
        return (2 * self.x,)


def test_gradcheck_weights_the_output_elements_unequally():
    """The output is reduced with random weights, not summed: an op that ignores its output's gradient fails."""
    with pytest.raises(AssertionError, match="input 0"):
        gradcheck(_IgnoresItsGrad.apply, _x5())


class _WrongForSecond(Function):
    """a * b with a right gradient for a and a wrong one (2a instead of a) for b."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, grad):
        return grad * self.b, grad * 2 * self.a


def test_gradcheck_checks_every_input_not_only_the_first():
    rng = np.random.default_rng(0)
    a, b = (mf.tensor(rng.standard_normal(4), dtype="float64", requires_grad=True) for _ in range(2))
    with pytest.raises(AssertionError, match="input 1"):
        gradcheck(_WrongForSecond.apply, a, b)


class _NoGradient(Function):
    """x² whose backward gives no gradient at all."""

    def forward(self, x):
        return x * x

    def backward(self, grad):
        return (None,)


def test_gradcheck_counts_a_missing_gradient_as_zero():
    with pytest.raises(AssertionError, match="input 0"):
        gradcheck(_NoGradient.apply, _x5())


def test_gradcheck_ignores_a_gradient_left_from_an_earlier_backward_and_restores_the_input():
    x = _x5()
    before = x.numpy().copy()
    (x * x).sum().backward()                       # x.grad is 2x now; gradcheck must not add to it
    assert gradcheck(lambda t: t * t, x)
    assert gradcheck(lambda t: t * t, x)           # and again, with the grad of the first check left over
    np.testing.assert_array_equal(x.numpy(), before)   # the probes put the input back exactly


def test_gradcheck_tries_the_requested_number_of_directions():
    """One forward pass for the gradient, then two (x + eps v, x - eps v) per direction and checked input."""
    calls = []

    def fn(a, b):
        calls.append(1)
        return a * b

    rng = np.random.default_rng(0)
    a, b = (mf.tensor(rng.standard_normal(3), dtype="float64", requires_grad=True) for _ in range(2))
    gradcheck(fn, a, b, directions=4)
    assert len(calls) == 1 + 2 * 4 * 2


# ---------------------------------------------------------------- user audit (session 14)
def test_gradcheck_refuses_an_input_that_is_not_a_leaf():
    """A computed input's gradient goes to its leaf, never to its .grad: it gave a false mismatch."""
    with pytest.raises(ValueError, match=r"gradcheck: input 0 requires grad but is not a leaf \(it was computed "
                                         r"by \w+\); pass a leaf"):
        gradcheck(lambda t: t * t, _x5() * 2)


@pytest.mark.parametrize("fn, got", [(lambda t: (t * 2, t * 3), "tuple"), (lambda t: t.numpy(), "ndarray")],
                         ids=["tuple", "ndarray"])
def test_gradcheck_needs_fn_to_return_one_tensor(fn, got):
    with pytest.raises(TypeError, match=rf"gradcheck: fn must return one Tensor, got {got}"):
        gradcheck(fn, _x5())


@pytest.mark.parametrize("kwargs, error, match", [
    ({"eps": 0}, ValueError, r"gradcheck: eps must be a finite number > 0, got 0"),
    ({"eps": -1e-6}, ValueError, r"gradcheck: eps must be a finite number > 0"),
    ({"eps": float("nan")}, ValueError, r"gradcheck: eps must be a finite number > 0"),
    ({"eps": None}, TypeError, r"gradcheck: eps must be a number, got None"),
    ({"atol": -1.0}, ValueError, r"gradcheck: atol must be a number >= 0"),
    ({"rtol": -1.0}, ValueError, r"gradcheck: rtol must be a number >= 0"),
    ({"directions": 0}, ValueError, r"gradcheck: directions must be a positive integer, got 0"),
    ({"directions": 2.5}, ValueError, r"gradcheck: directions must be a positive integer, got 2.5"),
], ids=["eps=0", "eps<0", "eps=nan", "eps=None", "atol<0", "rtol<0", "directions=0", "directions=2.5"])
def test_gradcheck_checks_its_settings(kwargs, error, match):
    """eps=0 divided by zero; directions=0 returned True having checked nothing (even a wrong gradient)."""
    with pytest.raises(error, match=match):
        gradcheck(WrongSquare.apply, _x5(), **kwargs)


def test_gradcheck_refuses_to_check_nothing():
    x = mf.tensor(np.ones(3), dtype="float64")
    with pytest.raises(ValueError, match="gradcheck: no input is a Tensor with requires_grad=True"):
        gradcheck(lambda t: t * 2, x)


def test_gradcheck_puts_the_input_back_when_fn_raises_at_a_perturbed_point():
    x = _x5()
    before = x.numpy().copy()
    calls = []

    def fn(t):
        calls.append(1)
        if len(calls) > 1:                     # the first perturbed evaluation
            raise FloatingPointError("not defined here")
        return t * t

    with pytest.raises(FloatingPointError):
        gradcheck(fn, x)
    np.testing.assert_array_equal(x.numpy(), before)
