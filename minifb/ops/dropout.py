"""Inverted dropout: zero each element with probability ``p`` and scale the rest by ``1/(1-p)``."""

from .. import backend
from ..tensor import Function


class Dropout(Function):
    """Multiply by a random keep-mask scaled by ``1/(1-p)``; backward uses the same mask.

    ``x`` must be floating-point (:func:`minifb.functional.dropout` converts other dtypes).
    """

    def forward(self, x, *, p):
        if x.dtype.kind != "f":
            raise TypeError(f"dropout: needs a floating-point input, got dtype {x.dtype}")
        gen = backend.rng(backend.device_of(x))
        keep = gen.random(x.shape, dtype=x.dtype) >= p
        self.mask = keep * x.dtype.type(1.0 / (1.0 - p))
        return x * self.mask

    def backward(self, grad):
        return (grad * self.mask,)
