"""Activation functions: pointwise nonlinearities and their derivatives.

Where the derivative is cheapest in terms of the output (sigmoid, tanh) the op
saves the output rather than the input.
"""

import math

import numpy as np

from ..backend import array_module
from ..tensor import Function


class ReLU(Function):
    """``max(x, 0)``; the derivative is 1 where x > 0, else 0."""

    saved_output = "out"   # backward reads the output: apply() records its version

    def forward(self, x):
        out = array_module(x).maximum(x, 0)
        self.out = out
        return out

    def backward(self, grad):
        return (grad * (self.out > 0),)


class LeakyReLU(Function):
    """``x if x > 0 else slope·x``."""

    def forward(self, x, *, negative_slope):
        xp = array_module(x)
        self.positive = x > 0
        self.slope = negative_slope
        return xp.where(self.positive, x, x * x.dtype.type(negative_slope))

    def backward(self, grad):
        xp = array_module(grad)
        return (xp.where(self.positive, grad, grad * grad.dtype.type(self.slope)),)


def sigmoid_array(x):
    """Numerically stable logistic function on a raw array: never overflows ``exp``."""
    xp = array_module(x)
    e = xp.exp(-abs(x))
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


class Sigmoid(Function):
    """``1 / (1 + exp(-x))``; the derivative is ``s·(1-s)``."""

    saved_output = "out"   # backward reads the output: apply() records its version

    def forward(self, x):
        self.out = sigmoid_array(x)
        return self.out

    def backward(self, grad):
        s = self.out
        return (grad * s * (1 - s),)


class Tanh(Function):
    """``tanh(x)``; the derivative is ``1 - tanh²``."""

    saved_output = "out"   # backward reads the output: apply() records its version

    def forward(self, x):
        self.out = array_module(x).tanh(x)
        return self.out

    def backward(self, grad):
        return (grad * (1 - self.out * self.out),)


class Softplus(Function):
    """``log(1 + exp(x))`` computed stably; the derivative is ``sigmoid(x)``."""

    def forward(self, x):
        xp = array_module(x)
        self.x = x
        return xp.maximum(x, 0) + xp.log1p(xp.exp(-abs(x)))

    def backward(self, grad):
        return (grad * sigmoid_array(self.x),)


def erf_array(x):
    """The error function on a raw array (NumPy has none).

    Uses the classic Chebyshev fit of ``erfc`` (Numerical Recipes, 2nd ed.,
    §6.2), whose fractional error is below 1.2e-7 everywhere: enough for float32
    values and for float64 gradchecks at the usual tolerances.
    """
    xp = array_module(x)
    z = abs(x)
    t = 1 / (1 + 0.5 * z)
    poly = (-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (
        -0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (
            -0.82215223 + t * 0.17087277)))))))))
    erfc = t * xp.exp(poly)
    return xp.where(x >= 0, 1 - erfc, erfc - 1).astype(x.dtype, copy=False)


def _in_float32_if_half(x):
    """float16 as float32, as PyTorch computes half: gelu's x³ overflows float16 beyond |x| ≈ 40, and
    the tanh form's slope ``1 + 3c·x²`` beyond |x| ≈ 700 where its ``1 - t²`` is 0 (0·inf, a NaN)."""
    return x.astype(np.float32) if x.dtype == np.float16 else x


class GELU(Function):
    """Gaussian error linear unit ``x·Φ(x)``, exact (erf) or with the tanh approximation."""

    def forward(self, x, *, approximate):
        xp = array_module(x)
        self.x, self.approximate = x, approximate
        if approximate == "tanh":
            xc = _in_float32_if_half(x)
            self.inner = xp.tanh(math.sqrt(2 / math.pi) * (xc + 0.044715 * xc ** 3))
            return (0.5 * xc * (1 + self.inner)).astype(x.dtype, copy=False)
        return 0.5 * x * (1 + erf_array(x / math.sqrt(2)))

    def backward(self, grad):
        xp = array_module(grad)
        x = self.x
        if self.approximate == "tanh":
            x, t = _in_float32_if_half(x), self.inner
            dinner = math.sqrt(2 / math.pi) * (1 + 3 * 0.044715 * x * x)
            return ((grad * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * dinner)).astype(grad.dtype, copy=False),)
        cdf = 0.5 * (1 + erf_array(x / math.sqrt(2)))
        pdf = xp.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
        return (grad * (cdf + x * pdf),)
