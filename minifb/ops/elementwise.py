"""Elementwise arithmetic and math: the gradient rules every student derives first.

All binary ops broadcast like NumPy; :meth:`Tensor.backward` undoes the
broadcasting of each gradient (with the input shapes that :meth:`Function.apply`
recorded), so the ``backward`` methods here may return broadcast-shaped gradients.
"""

import numpy as np

from ..backend import array_module
from ..tensor import Function


class Add(Function):
    """``a + b``; d/da = d/db = 1."""

    def forward(self, a, b):
        return a + b

    def backward(self, grad):
        return grad, grad


class Sub(Function):
    """``a - b``; d/da = 1, d/db = -1."""

    def forward(self, a, b):
        return a - b

    def backward(self, grad):
        return grad, (-grad if self.needs[1] else None)


class Mul(Function):
    """``a * b``; d/da = b, d/db = a."""

    def forward(self, a, b):
        self.a = a if self.needs[1] else None
        self.b = b if self.needs[0] else None
        return a * b

    def backward(self, grad):
        return (grad * self.b if self.needs[0] else None,
                grad * self.a if self.needs[1] else None)


class Div(Function):
    """``a / b``; d/da = 1/b, d/db = -a/b²."""

    saved_output = "out"   # kept (and its version recorded) only when b needs a gradient

    def forward(self, a, b):
        self.b = b
        out = a / b
        self.out = out if self.needs[1] else None
        return out

    def backward(self, grad):
        # d/db as -grad·((a/b)/b), PyTorch's order: at a = 0 it is 0 even when 1/b overflows (inf·0 was NaN)
        return (grad / self.b if self.needs[0] else None,
                -(grad * (self.out / self.b)) if self.needs[1] else None)


class Neg(Function):
    """``-a``."""

    def forward(self, a):
        return -a

    def backward(self, grad):
        return (-grad,)


class Pow(Function):
    """``a ** b`` for tensors; d/da = b·a^(b-1), d/db = a^b·log(a).

    As in PyTorch, d/da is 0 where ``b == 0`` (not ``0·0^-1 = NaN``), and
    d/db is 0 where ``a == 0`` and ``b >= 0`` (the limit of ``0^b·log 0``); a
    negative base gives a NaN d/db, as ``log(a)`` is undefined there.
    """

    saved_output = "out"   # kept (and its version recorded) only when b needs a gradient

    def forward(self, a, b):
        out = a ** b
        self.a, self.b = a, b
        self.out = out if self.needs[1] else None
        return out

    def backward(self, grad):
        xp = array_module(grad)
        a, b = self.a, self.b
        zero = grad.dtype.type(0)
        ga = gb = None
        with np.errstate(divide="ignore", invalid="ignore"):  # the masked-out entries may be inf or NaN
            if self.needs[0]:
                ga = grad * xp.where(b == 0, zero, b * a ** (b - 1))
            if self.needs[1]:
                gb = grad * xp.where((a == 0) & (b >= 0), zero, self.out * xp.log(a))
        return ga, gb


class PowScalar(Function):
    """``a ** p`` for a Python number ``p``; d/da = p·a^(p-1) (0 for ``p == 0``, as in PyTorch)."""

    def forward(self, a, *, exponent):
        self.a, self.p = a, exponent
        return a ** exponent

    def backward(self, grad):
        p = self.p
        if p == 0:
            return (array_module(grad).zeros_like(grad),)
        return (grad * (p * self.a ** (p - 1)).astype(grad.dtype, copy=False),)


class Exp(Function):
    """``exp(a)``; the derivative is the output itself."""

    saved_output = "out"   # backward reads the output: apply() records its version

    def forward(self, a):
        self.out = array_module(a).exp(a)
        return self.out

    def backward(self, grad):
        return (grad * self.out,)


class Log(Function):
    """``log(a)``; d/da = 1/a."""

    def forward(self, a):
        self.a = a
        return array_module(a).log(a)

    def backward(self, grad):
        return (grad / self.a,)


class Sqrt(Function):
    """``sqrt(a)``; d/da = 1/(2·sqrt(a))."""

    saved_output = "out"   # backward reads the output: apply() records its version

    def forward(self, a):
        self.out = array_module(a).sqrt(a)
        return self.out

    def backward(self, grad):
        return (grad / (2 * self.out),)


class Abs(Function):
    """``|a|``; d/da = sign(a) (0 at 0)."""

    def forward(self, a):
        self.a = a
        return abs(a)

    def backward(self, grad):
        return (grad * array_module(grad).sign(self.a),)


def _winner_grads(op, grad, a_loses, b_loses):
    """Gradients of max/min: each side gets ``grad`` unless it lost, half of it at a tie.

    A side that did not lose keeps its share, so at a NaN (no comparison holds) both sides get the whole
    gradient, whatever the argument order, as in PyTorch.
    """
    tie = grad.dtype.type(0.5) * (op.a == op.b)   # in grad's dtype: 0.5 * bools would be float64
    return (grad * (~a_loses() - tie) if op.needs[0] else None,
            grad * (~b_loses() - tie) if op.needs[1] else None)


class Maximum(Function):
    """Elementwise ``max(a, b)``; a tie sends half the gradient to each side, a NaN all of it to both."""

    def forward(self, a, b):
        xp = array_module(a, b)
        self.a, self.b = a, b
        return xp.maximum(a, b)

    def backward(self, grad):
        return _winner_grads(self, grad, lambda: self.a < self.b, lambda: self.a > self.b)


class Minimum(Function):
    """Elementwise ``min(a, b)``; a tie sends half the gradient to each side, a NaN all of it to both."""

    def forward(self, a, b):
        xp = array_module(a, b)
        self.a, self.b = a, b
        return xp.minimum(a, b)

    def backward(self, grad):
        return _winner_grads(self, grad, lambda: self.a > self.b, lambda: self.a < self.b)


class Where(Function):
    """``where(cond, a, b)`` with a boolean array ``cond`` (not differentiable)."""

    def forward(self, a, b, *, condition):
        self.condition = condition
        return array_module(a, b).where(condition, a, b)

    def backward(self, grad):
        zero = grad.dtype.type(0)
        xp = array_module(grad)
        return (xp.where(self.condition, grad, zero) if self.needs[0] else None,
                xp.where(self.condition, zero, grad) if self.needs[1] else None)


class Clip(Function):
    """``clip(a, low, high)``; the gradient passes where the value was not clipped."""

    def forward(self, a, *, low, high):
        xp = array_module(a)
        self.inside = (a >= (-xp.inf if low is None else low)) & (a <= (xp.inf if high is None else high))
        if low is None and high is None:  # NumPy < 1.25 refuses xp.clip with neither bound
            return a.copy()
        return xp.clip(a, low, high)

    def backward(self, grad):
        return (grad * self.inside,)
