"""Inverted dropout: zero each element with probability ``p`` and scale the rest by ``1/(1-p)``."""

import numpy as np

from .. import backend
from ..tensor import Function


class Dropout(Function):
    """Multiply by a random keep-mask scaled by ``1/(1-p)``; backward uses the same mask.

    ``x`` must be floating-point (:func:`minifb.functional.dropout` converts other dtypes).  The
    uniform numbers the mask compares with ``p`` are drawn in ``x``'s dtype, except for float16
    (the generators draw only float32 and float64), where they are drawn in float32; the mask and
    the output keep ``x``'s dtype.
    """

    def forward(self, x, *, p):
        if x.dtype.kind != "f":
            raise TypeError(f"dropout: needs a floating-point input, got dtype {x.dtype}")
        gen = backend.rng(backend.device_of(x))
        draw_dtype = np.float32 if x.dtype == np.float16 else x.dtype
        keep = gen.random(x.shape, dtype=draw_dtype) >= p
        # where, not keep * scale: a float16 scale may overflow to inf, and False * inf would be NaN
        xp = backend.array_module(x)
        with np.errstate(over="ignore"):   # a scale past float16's range is inf, as in PyTorch
            scale = x.dtype.type(1.0 / (1.0 - p))
        self.mask = xp.where(keep, scale, x.dtype.type(0))
        return x * self.mask

    def backward(self, grad):
        return (grad * self.mask,)
