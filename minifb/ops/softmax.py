"""Softmax and log-softmax along one axis, computed stably.

``axis`` may be an int or a tuple of ints as in NumPy reductions; the
functions in :mod:`minifb.functional` pass a one-element tuple, or ``()`` for a
0-d tensor (whose softmax is 1).

Subtracting the row maximum before ``exp`` changes nothing mathematically and
keeps every exponent <= 0, so nothing overflows.
"""

from ..backend import array_module, sum_array
from ..tensor import Function


def log_softmax_array(x, axis):
    """Stable ``log(softmax(x))`` on a raw array (an empty array for an empty ``x``, which has no maximum)."""
    if not x.size:
        return x.copy()
    xp = array_module(x)
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - xp.log(sum_array(xp.exp(shifted), axis=axis, keepdims=True))


class Softmax(Function):
    """``exp(x) / sum(exp(x))`` along ``axis``; backward ``s·(g - sum(g·s))``."""

    saved_output = "out"   # backward reads the output: apply() records its version

    def forward(self, x, *, axis):
        self.axis = axis
        if not x.size:                 # no maximum to subtract; the softmax is as empty
            self.out = x.copy()
            return self.out
        xp = array_module(x)
        e = xp.exp(x - x.max(axis=axis, keepdims=True))
        self.out = e / sum_array(e, axis=axis, keepdims=True)
        return self.out

    def backward(self, grad):
        s = self.out
        return (s * (grad - sum_array(grad * s, axis=self.axis, keepdims=True)),)


class LogSoftmax(Function):
    """``x - logsumexp(x)`` along ``axis``; backward ``g - softmax·sum(g)``."""

    saved_output = "out"   # backward reads the output: apply() records its version

    def forward(self, x, *, axis):
        self.out, self.axis = log_softmax_array(x, axis), axis
        return self.out

    def backward(self, grad):
        xp = array_module(grad)
        return (grad - xp.exp(self.out) * sum_array(grad, axis=self.axis, keepdims=True),)
