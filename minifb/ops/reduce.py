"""Reductions: sum, mean, max and min over axes, with ``keepdims``.

The backward of a reduction broadcasts the output gradient back over the
reduced axes, so it first re-inserts them as size-1 axes.
"""

import numpy as np

from .. import cpu_conv
from ..backend import array_module, is_int, sum_array
from ..tensor import Function


def check_axis(axis, ndim, name="axis", fn=None) -> int:
    """Return one axis as a non-negative int, checking that it is an int in ``[-ndim, ndim)``.

    As in PyTorch, a 0-d tensor accepts ``0`` and ``-1`` (both returned as 0).

    Args:
        axis: the axis, an int (Python or NumPy).
        ndim: the number of dimensions it indexes.
        name: the argument's name, for the error message.
        fn: the calling function's name, prefixed to the error message.

    Raises:
        TypeError: ``axis`` is not an int.
        ValueError: ``axis`` is out of range.
    """
    prefix = f"{fn}: " if fn else ""
    if not is_int(axis):
        raise TypeError(f"{prefix}{name} must be an int, got {axis!r}")
    n = max(ndim, 1)
    if not -n <= axis < n:
        raise ValueError(f"{prefix}{name}={int(axis)} is out of range for a {ndim}-d tensor "
                         f"(expected an int in [{-n}, {n - 1}])")
    return int(axis) % n


def normalize_axis(axis, ndim, name="axis", fn=None) -> tuple:
    """Return ``axis`` (an int, a tuple/list of ints, or ``None`` for all axes) as a sorted tuple of
    non-negative ints; each is checked by :func:`check_axis`.  A 0-d tensor gives ``()``."""
    if axis is None:
        return tuple(range(ndim))
    prefix = f"{fn}: " if fn else ""
    if is_int(axis):
        axes = (axis,)
    elif isinstance(axis, (tuple, list)):
        axes = tuple(axis)
    else:
        raise TypeError(f"{prefix}{name} must be an int, a tuple of ints or None, got {axis!r}")
    out = [check_axis(a, ndim, name, fn) for a in axes]
    if len(set(out)) != len(out):
        raise ValueError(f"{prefix}{name}={axis!r} repeats an axis")
    return () if ndim == 0 else tuple(sorted(out))


#: From this many numbers on, :func:`channel_sum` of a NumPy float array runs on the compiled library
#: (:func:`minifb.cpu_conv.matmul`, on the calling thread) instead of BLAS, which runs that matrix-vector
#: product on all its threads (from 9216 numbers on), and those threads then spin for about 0.1 s, taking
#: a core from the compiled convolution's threads (W2's step 67 -> 59 ms; benchmarks/NOTES.md, "Session
#: 16"). Smaller sums (a Dense layer's bias gradient) stay with BLAS: there the call's few microseconds
#: would cost more than the sum.
COLUMN_SUM_MIN = 1 << 16


def channel_sum(a, axis):
    """Sum of the raw array ``a`` over every axis but ``axis``: a per-channel bias gradient, ``(C,)``.

    When the channel axis is innermost in memory (Dense outputs ``(N, C)``, and the channels-last
    images the convolutions return, see ``ops/conv.py``), this is one matrix-vector product
    ``ones @ a.reshape(-1, C)``, which BLAS runs about 3x faster than NumPy's reduction over
    the strided axes (measured on W2's shapes: 0.15 against 0.55 ms for (32, 32, 28, 28)); for large
    NumPy float arrays the compiled library computes that product instead (:data:`COLUMN_SUM_MIN`).
    """
    xp = array_module(a)
    last = xp.moveaxis(a, axis, -1)
    if a.ndim > 1 and a.size and last.flags.c_contiguous and a.dtype in (np.float32, np.float64):
        rows = last.reshape(-1, last.shape[-1])
        if rows.size >= COLUMN_SUM_MIN and cpu_conv.applies(rows):
            return cpu_conv.matmul(np.ones((1, rows.shape[0]), dtype=a.dtype), rows)[0]
        return xp.matmul(xp.ones(rows.shape[0], dtype=a.dtype), rows)
    return sum_array(a, axis=tuple(i for i in range(a.ndim) if i != axis % a.ndim))


def _expand(grad, axes, keepdims):
    """Re-insert reduced axes as size 1 so ``grad`` broadcasts against the input."""
    if keepdims or not axes:
        return grad
    xp = array_module(grad)
    return xp.expand_dims(grad, axes)


class Sum(Function):
    """``x.sum(axis, keepdims)``; the gradient is copied back over the summed axes."""

    def forward(self, x, *, axis, keepdims):
        self.shape, self.axes, self.keepdims = x.shape, axis, keepdims
        return sum_array(x, axis=axis, keepdims=keepdims)  # PyTorch's accumulators (int64, float32 for float16)

    def backward(self, grad):
        xp = array_module(grad)
        return (xp.broadcast_to(_expand(grad, self.axes, self.keepdims), self.shape),)


class Mean(Function):
    """``x.mean(axis, keepdims)``; the gradient is spread evenly over the averaged axes."""

    def forward(self, x, *, axis, keepdims):
        self.shape, self.axes, self.keepdims = x.shape, axis, keepdims
        count = 1
        for a in axis:
            count *= x.shape[a]
        self.count = count
        return x.mean(axis=axis, keepdims=keepdims)

    def backward(self, grad):
        xp = array_module(grad)
        g, count = _expand(grad, self.axes, self.keepdims), max(self.count, 1)
        if g.dtype == np.float16:   # float16(count) is inf past 65504, while 1 / count may still be representable
            g = (g.astype(np.float32) / np.float32(count)).astype(np.float16)
        else:
            g = g / g.dtype.type(count)
        return (xp.broadcast_to(g, self.shape),)


class Max(Function):
    """``x.max(axis, keepdims)`` (``minimum=True`` gives min); ties share the gradient equally.

    As in NumPy, an empty tensor may be reduced over axes of non-zero length (``zeros(0, 3).max(axis=1)``
    has shape ``(0,)``), but not over an axis of length 0, whose maximum is undefined.
    """

    def forward(self, x, *, axis, keepdims, minimum=False):
        empty = [a for a in axis if x.shape[a] == 0]
        if empty:
            raise ValueError(f"{'min' if minimum else 'max'}: cannot reduce over axis {empty[0]} of length 0 "
                             f"(a tensor of shape {x.shape}): the result would be undefined")
        out = x.min(axis=axis, keepdims=True) if minimum else x.max(axis=axis, keepdims=True)
        self.mask = None
        if self.needs[0]:
            self.mask = x == out
            if x.dtype.kind == "f":
                # a NaN wins the reduction (as in NumPy and PyTorch) but equals nothing, so the NaNs get the
                # gradient; a slice with a NaN has a NaN maximum, so no test of ``out`` (on a GPU, a sync) is needed
                self.mask |= array_module(x).isnan(x)
        self.axes, self.keepdims = axis, keepdims
        return out if keepdims else out.reshape([n for i, n in enumerate(x.shape) if i not in axis])

    def backward(self, grad):
        mask = self.mask
        count = mask.sum(axis=self.axes, keepdims=True)
        return (_expand(grad, self.axes, self.keepdims) * mask / count.astype(grad.dtype),)
